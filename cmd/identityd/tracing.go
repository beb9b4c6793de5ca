package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/identityd/identity/internal/buildinfo"
)

// Tracing is configured the OpenTelemetry way, by the standard OTEL_*
// environment variables (docs/configuration.md), and is off unless they
// ask for it: OTEL_TRACES_EXPORTER set to an exporter (otlp, console), or
// an OTLP endpoint given (OTEL_EXPORTER_OTLP_ENDPOINT,
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). OTEL_SDK_DISABLED=true and
// OTEL_TRACES_EXPORTER=none keep it off. Off, identityd builds no tracer
// provider and the server installs no tracing code (server/tracing.go).
//
// The exporter (autoexport: OTLP over gRPC or HTTP by
// OTEL_EXPORTER_OTLP_PROTOCOL, endpoint, headers, timeout), the sampler
// (OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG), the batch processor
// (OTEL_BSP_*) and the resource (OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES) read their variables themselves.

// tracingWanted reports whether the environment (getenv) turns tracing on.
func tracingWanted(getenv func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	switch exp := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")); {
	case exp == "none":
		return false
	case exp != "":
		return true
	}
	return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// newTracerProvider builds the tracer provider the environment asks for,
// or returns nil when tracing is off. Its Shutdown flushes the spans not
// yet exported; run calls it once the server has drained.
func newTracerProvider(ctx context.Context, getenv func(string) string, log *slog.Logger) (*sdktrace.TracerProvider, error) {
	if !tracingWanted(getenv) {
		return nil, nil
	}
	exp, err := autoexport.NewSpanExporter(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracing (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_*): %w", err)
	}
	// service.name is identityd unless OTEL_SERVICE_NAME or
	// OTEL_RESOURCE_ATTRIBUTES say otherwise (the later detector wins).
	// No process detector: it would put the command line in every trace.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(
			attribute.String("service.name", "identityd"),
			attribute.String("service.version", buildinfo.Read().Version),
		),
		resource.WithFromEnv(),
	)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}
	// The SDK's own errors (an export that failed: the collector is away)
	// go to identityd's log, not to the standard logger. They carry no
	// span content and never the OTLP headers.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("tracing: "+err.Error(), slog.String("source", "opentelemetry"))
	}))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	log.Info("tracing on: spans are exported by OpenTelemetry", slog.String("exporter", exporterName(getenv)))
	return tp, nil
}

// exporterName is the exporter the environment picks, for the log.
func exporterName(getenv func(string) string) string {
	name := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	if name == "" {
		name = "otlp"
	}
	if name == "otlp" {
		proto := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
		if proto == "" {
			proto = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
		}
		if proto == "" {
			proto = "http/protobuf"
		}
		name += " " + proto
	}
	return name
}

// shutdownTracing flushes and stops tp within timeout.
func shutdownTracing(tp *sdktrace.TracerProvider, timeout time.Duration, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		log.Warn("tracing: spans not flushed at shutdown", slog.String("error", err.Error()))
	}
}

// tracerProvider is tp for server.Deps: a nil interface, not a nil
// pointer in one, when tracing is off.
func tracerProvider(tp *sdktrace.TracerProvider) trace.TracerProvider {
	if tp == nil {
		return nil
	}
	return tp
}

// traceRedis gives the Redis commands made for a traced request spans of
// their own, children of its gRPC span: command name, server address and
// duration, never the command's arguments (keys, token hashes, password
// hashes: WithDBStatement(false)). Commands made outside a request (the
// health check's ping every second, the revocation feed's blocking reads,
// the pool's dials) get none: they would be a new trace each.
func traceRedis(rdb redis.UniversalClient, tp *sdktrace.TracerProvider) error {
	return redisotel.InstrumentTracing(rdb,
		redisotel.WithTracerProvider(childSpansOnly{tp}),
		redisotel.WithDBStatement(false),
		redisotel.WithCallerEnabled(false))
}

// childSpansOnly is a tracer provider whose tracers start a span only
// within one: without a valid span in the context they start none.
type childSpansOnly struct{ trace.TracerProvider }

func (p childSpansOnly) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return childOnlyTracer{p.TracerProvider.Tracer(name, opts...)}
}

type childOnlyTracer struct{ trace.Tracer }

func (t childOnlyTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if parent := trace.SpanFromContext(ctx); !parent.SpanContext().IsValid() {
		return ctx, parent // a non-recording span; ending it does nothing
	}
	return t.Tracer.Start(ctx, name, opts...)
}
