package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/identityd/identity/internal/testidentityd"
)

// otlpReceiver is an OTLP/gRPC trace collector inside the test: it keeps
// every span identityd exports.
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	addr string

	mu       sync.Mutex
	requests []*collectortrace.ExportTraceServiceRequest
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &otlpReceiver{addr: lis.Addr().String()}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, r)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return r
}

func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = append(r.requests, req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// receivedSpan is one exported span with its resource's attributes.
type receivedSpan struct {
	*tracepb.Span
	resource []*commonpb.KeyValue
}

func (r *otlpReceiver) spans() []receivedSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []receivedSpan
	for _, req := range r.requests {
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					out = append(out, receivedSpan{s, rs.GetResource().GetAttributes()})
				}
			}
		}
	}
	return out
}

// dump is everything received, as JSON: what a secret must not be in.
func (r *otlpReceiver) dump(t *testing.T) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, req := range r.requests {
		j, err := protojson.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func attr(kvs []*commonpb.KeyValue, key string) *commonpb.AnyValue {
	for _, kv := range kvs {
		if kv.GetKey() == key {
			return kv.GetValue()
		}
	}
	return nil
}

const grpcLoginSpan = "identity.v1.IdentityService/Login"

// restLoginTrace finds the trace of a REST login answered with status: the
// gateway's HTTP server span and the gRPC server span of its Login call.
func restLoginTrace(spans []receivedSpan, status int64) (httpSpan, grpcSpan receivedSpan, err error) {
	for _, s := range spans {
		if s.GetName() == "POST /v1/login" && s.GetKind() == tracepb.Span_SPAN_KIND_SERVER &&
			attr(s.GetAttributes(), "http.response.status_code").GetIntValue() == status {
			httpSpan = s
		}
	}
	if httpSpan.Span == nil {
		return httpSpan, grpcSpan, fmt.Errorf("no HTTP span of a REST login answered %d among %d spans", status, len(spans))
	}
	for _, s := range spans {
		if s.GetName() == grpcLoginSpan && string(s.GetTraceId()) == string(httpSpan.GetTraceId()) {
			grpcSpan = s
		}
	}
	if grpcSpan.Span == nil {
		return httpSpan, grpcSpan, fmt.Errorf("no %s span in the HTTP span's trace %x", grpcLoginSpan, httpSpan.GetTraceId())
	}
	return httpSpan, grpcSpan, nil
}

// A REST login against a real identityd exporting to an OTLP collector,
// on the embedded store and on Redis: the gateway's HTTP span and the gRPC
// Login span are one trace, parent and child; a caller's traceparent is
// continued; a gRPC login is traced too; no password or token is in any
// span; the failed login's log line carries the trace and span ids of its
// gRPC span; and on Redis the store's commands are spans of the request's
// trace, never traces of their own.
func TestTracingExportsOneTracePerRESTCall(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"embedded", "redis"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			testTracing(t, store == "embedded")
		})
	}
}

func testTracing(t *testing.T, embedded bool) {
	recv := startOTLPReceiver(t)
	d := startIdentityd(t, opts{
		embedded: embedded,
		flags:    map[string]string{"log-level": "debug"},
		extra: []testidentityd.Option{testidentityd.WithEnv(
			"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+recv.addr,
			"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
			"OTEL_BSP_SCHEDULE_DELAY=50",
			"OTEL_TRACES_SAMPLER=always_on",
			"OTEL_SERVICE_NAME=identity-e2e",
		)},
	})
	if !strings.Contains(d.Log.String(), "tracing on") {
		t.Errorf("identityd did not log that tracing is on")
	}

	// A caller's trace (W3C traceparent) is continued by the HTTP span.
	callerTrace := "4bf92f3577b34da6a3ce929d0e0e4736"
	r := d.do(t, http.MethodPost, "/v1/login",
		strings.NewReader(fmt.Sprintf(`{"username":%q,"password":%q}`, d.Username, d.Password)),
		http.Header{"Content-Type": {"application/json"}, "Traceparent": {"00-" + callerTrace + "-00f067aa0ba902b7-01"}})
	pair := d.requireTokenPair(t, r)
	wrong := testidentityd.RandomPassword()
	d.Remember(wrong)
	requireError(t, d.loginREST(t, d.Username, wrong), http.StatusUnauthorized, "INVALID_CREDENTIALS")
	grpcPair := d.Login(t, d.Username, d.Password)
	d.Remember(grpcPair.GetAccessToken(), grpcPair.GetRefreshToken())

	var failedHTTP, failedGRPC receivedSpan
	testidentityd.Eventually(t, 2*time.Minute, func() error {
		spans := recv.spans()
		if _, _, err := restLoginTrace(spans, http.StatusOK); err != nil {
			return err
		}
		var err error
		if failedHTTP, failedGRPC, err = restLoginTrace(spans, http.StatusUnauthorized); err != nil {
			return err
		}
		grpcLogins := 0
		for _, s := range spans {
			if s.GetName() == grpcLoginSpan {
				grpcLogins++
			}
		}
		if grpcLogins < 3 {
			return fmt.Errorf("%d %s spans, want 3 (two REST, one gRPC)", grpcLogins, grpcLoginSpan)
		}
		return nil
	})
	spans := recv.spans()

	okHTTP, okGRPC, _ := restLoginTrace(spans, http.StatusOK)
	for _, c := range []struct {
		name           string
		httpS, grpcS   receivedSpan
		wantGRPCStatus string
	}{
		{"login", okHTTP, okGRPC, "OK"},
		{"failed login", failedHTTP, failedGRPC, "UNAUTHENTICATED"},
	} {
		if string(c.grpcS.GetParentSpanId()) != string(c.httpS.GetSpanId()) {
			t.Errorf("%s: the gRPC span's parent is %x, want the HTTP span %x", c.name, c.grpcS.GetParentSpanId(), c.httpS.GetSpanId())
		}
		if c.grpcS.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("%s: the gRPC span is of kind %v, want SERVER", c.name, c.grpcS.GetKind())
		}
		if got := attr(c.grpcS.GetAttributes(), "rpc.response.status_code").GetStringValue(); got != c.wantGRPCStatus {
			t.Errorf("%s: rpc.response.status_code = %q, want %q", c.name, got, c.wantGRPCStatus)
		}
		if got := attr(c.httpS.GetAttributes(), "http.route").GetStringValue(); got != "/v1/login" {
			t.Errorf("%s: http.route = %q, want /v1/login", c.name, got)
		}
		if got := attr(c.httpS.resource, "service.name").GetStringValue(); got != "identity-e2e" {
			t.Errorf("%s: service.name = %q, want OTEL_SERVICE_NAME's identity-e2e", c.name, got)
		}
	}
	if got := hex.EncodeToString(okHTTP.GetTraceId()); got != callerTrace {
		t.Errorf("the REST login's trace is %s, want the caller's traceparent %s", got, callerTrace)
	}
	if string(failedHTTP.GetTraceId()) == string(okHTTP.GetTraceId()) {
		t.Errorf("two REST calls share trace %x", okHTTP.GetTraceId())
	}

	// The failed login's log line (at debug, one per call) names the
	// trace and the gRPC span it was written in; so does its audit record.
	traceID, spanID := hex.EncodeToString(failedGRPC.GetTraceId()), hex.EncodeToString(failedGRPC.GetSpanId())
	var line, auditLine string
	for l := range strings.Lines(d.Log.String()) {
		switch {
		case !strings.Contains(l, "trace_id="+traceID):
		case strings.Contains(l, "msg=audit"):
			auditLine = l
		case line == "":
			line = l
		}
	}
	if !strings.Contains(auditLine, "audit.event=login.failed") || !strings.Contains(auditLine, "span_id="+spanID) {
		t.Errorf("the failed login's audit record does not carry trace %s and span %s: %q", traceID, spanID, auditLine)
	}
	switch {
	case line == "":
		t.Errorf("no log line carries trace_id=%s", traceID)
	case !strings.Contains(line, "span_id="+spanID):
		t.Errorf("the log line of trace %s lacks span_id=%s: %s", traceID, spanID, line)
	case !strings.Contains(line, "Login"):
		t.Errorf("the log line of trace %s is not the Login call's: %s", traceID, line)
	}

	if !embedded {
		redisInTrace, redisRoots := 0, 0
		for _, s := range spans {
			if attr(s.GetAttributes(), "db.system").GetStringValue() != "redis" {
				continue
			}
			if len(s.GetParentSpanId()) == 0 {
				redisRoots++
			}
			if string(s.GetTraceId()) == string(failedGRPC.GetTraceId()) {
				redisInTrace++
			}
		}
		if redisInTrace == 0 {
			t.Errorf("no Redis span in the failed login's trace")
		}
		if redisRoots > 0 {
			t.Errorf("%d Redis spans are traces of their own (commands made outside a request)", redisRoots)
		}
	}

	dump := recv.dump(t)
	for what, secret := range map[string]string{
		"password":               d.Password,
		"wrong password":         wrong,
		"access token":           pair.AccessToken,
		"refresh token":          pair.RefreshToken,
		"gRPC access token":      grpcPair.GetAccessToken(),
		"gRPC refresh token":     grpcPair.GetRefreshToken(),
		"access token signature": pair.AccessToken[strings.LastIndexByte(pair.AccessToken, '.')+1:],
	} {
		if strings.Contains(dump, secret) {
			t.Errorf("the exported spans contain the %s", what)
		}
	}
}

// Spans still in the batch when identityd is told to stop are sent before
// it exits: with a batch delay of an hour, nothing is exported until the
// SIGTERM, and the login's spans are received by the time it has exited.
func TestTracingFlushedAtShutdown(t *testing.T) {
	t.Parallel()
	recv := startOTLPReceiver(t)
	d := startIdentityd(t, opts{
		embedded: true,
		extra: []testidentityd.Option{testidentityd.WithEnv(
			"OTEL_EXPORTER_OTLP_ENDPOINT=http://"+recv.addr,
			"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
			"OTEL_BSP_SCHEDULE_DELAY=3600000",
		)},
	})
	d.login(t, d.Username, d.Password)
	if n := len(recv.spans()); n != 0 {
		t.Fatalf("%d spans exported before the batch delay (an hour) or the shutdown", n)
	}
	d.Stop()
	if _, _, err := restLoginTrace(recv.spans(), http.StatusOK); err != nil {
		t.Fatalf("after identityd exited: %v", err)
	}
}
