package server

import (
	"context"
	"log/slog"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
)

// Tracing (OpenTelemetry) is on when Deps.TracerProvider is set, and then
// only: with it unset no stats handler, HTTP middleware or log wrapper is
// installed at all, so a server without tracing does no tracing work.
//
// A REST call is one trace: otelhttp's span for the HTTP request, the
// parent of the gRPC server span of the IdentityService call it makes. The
// in-process channel (grpc.go) hands the service a context without the
// gateway's values, so the gateway writes the span's W3C traceparent into
// the call's metadata (traceMetadata) and the channel's server stats
// handler, the same otelgrpc handler as the gRPC server's, starts the
// server span from it. The spans carry method names, routes, status codes
// and peer addresses, never a request or response body: no password or
// token reaches a span.

// propagator is W3C Trace Context: a caller's traceparent (HTTP header or
// gRPC metadata) is continued, and the gateway passes its own on.
var propagator propagation.TextMapPropagator = propagation.TraceContext{}

// tracing is the server's tracing parts; nil when tracing is off.
type tracing struct {
	provider trace.TracerProvider
}

func newTracing(tp trace.TracerProvider) *tracing {
	if tp == nil {
		return nil
	}
	return &tracing{provider: tp}
}

// statsHandler is the gRPC server's (and the in-process channel's)
// otelgrpc handler. Health checks are not traced (probes, like /healthz).
// Its metrics go nowhere: identity's metrics are Prometheus's (metrics.go).
func (t *tracing) statsHandler() stats.Handler {
	return otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(t.provider),
		otelgrpc.WithMeterProvider(noop.NewMeterProvider()),
		otelgrpc.WithPropagators(propagator),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	)
}

// httpHandler traces the HTTP port's requests, but not the probes and
// scrapes (/healthz, /readyz, /metrics) that would fill a trace store
// with noise. The span is named by the method until countHTTP knows the
// route (nameHTTPSpan).
func (t *tracing) httpHandler(next http.Handler) http.Handler {
	return otelhttp.NewHandler(next, "http",
		otelhttp.WithTracerProvider(t.provider),
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
		otelhttp.WithPropagators(propagator),
		otelhttp.WithFilter(func(r *http.Request) bool {
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
				return false
			}
			return true
		}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method }),
	)
}

// nameHTTPSpan names the request's span after the route it took
// ("POST /v1/login"), as the HTTP conventions ask; route is "" when no
// route matched.
func nameHTTPSpan(ctx context.Context, method, route string) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() || route == "" {
		return
	}
	span.SetName(route)
	// countHTTP's route is "METHOD /path"; http.route is the path alone.
	if len(route) > len(method)+1 && route[:len(method)+1] == method+" " {
		route = route[len(method)+1:]
	}
	span.SetAttributes(attribute.String("http.route", route))
}

// traceMetadata is the gateway's metadata for the in-process call: the
// HTTP span's traceparent, so that the gRPC server span is its child.
func traceMetadata(ctx context.Context, _ *http.Request) metadata.MD {
	md := metadata.MD{}
	propagator.Inject(ctx, metadataCarrier(md))
	return md
}

// metadataCarrier lets a propagator write into gRPC metadata.
type metadataCarrier metadata.MD

func (c metadataCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c metadataCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// TraceLogHandler adds the trace_id and span_id of the context's span to
// every record logged with a context that carries a valid one, so a log
// line can be found from its trace and the other way round. New wraps the
// server's logger with it when tracing is on.
func TraceLogHandler(h slog.Handler) slog.Handler {
	if _, ok := h.(traceLogHandler); ok {
		return h
	}
	return traceLogHandler{h}
}

type traceLogHandler struct{ slog.Handler }

func (h traceLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceLogHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceLogHandler) WithGroup(name string) slog.Handler {
	return traceLogHandler{h.Handler.WithGroup(name)}
}
