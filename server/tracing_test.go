package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/server"
)

// A caller's trace, as a W3C traceparent (sampled).
const (
	callerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	traceparent   = "00-" + callerTraceID + "-00f067aa0ba902b7-01"
)

func TestTraceLogHandler(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(server.TraceLogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "test")
	tid, _ := trace.TraceIDFromHex(callerTraceID)
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	spanCtx := trace.ContextWithSpanContext(context.Background(),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
	for _, c := range []struct {
		name      string
		ctx       context.Context
		wantTrace string
		wantSpan  string
	}{
		{"with a span", spanCtx, callerTraceID, "00f067aa0ba902b7"},
		{"without", context.Background(), "", ""},
		{"with an invalid span context", trace.ContextWithSpanContext(context.Background(), trace.SpanContext{}), "", ""},
	} {
		buf.Reset()
		log.InfoContext(c.ctx, "hello")
		var rec map[string]any
		if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
			t.Fatalf("%s: %v: %s", c.name, err, buf.String())
		}
		got, _ := rec["trace_id"].(string)
		gotSpan, _ := rec["span_id"].(string)
		if got != c.wantTrace || gotSpan != c.wantSpan {
			t.Errorf("%s: trace_id %q span_id %q, want %q %q", c.name, got, gotSpan, c.wantTrace, c.wantSpan)
		}
		if rec["component"] != "test" {
			t.Errorf("%s: the logger's own attributes were lost: %s", c.name, buf.String())
		}
	}
}

// restLogin posts a login with a caller's traceparent and returns the
// status.
func restLogin(t *testing.T, s *testidentityd.InProcess, username, pw string) int {
	t.Helper()
	body := fmt.Sprintf(`{"username":%q,"password":%q}`, username, pw)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.BaseURL+"/v1/login", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Traceparent", traceparent)
	resp, err := s.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// With a tracer provider, a REST call is one trace (the HTTP span the
// parent of the gRPC span, continuing the caller's), health checks are
// not traced, and the call's log line carries the gRPC span's ids.
func TestTracingOn(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	var logs testidentityd.LockedBuffer
	s := testidentityd.StartInProcess(t, testidentityd.InProcessTracerProvider(tp), testidentityd.InProcessLogger(
		slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	pw := testidentityd.AddUser(t, s.Store, "alice", "")
	if _, err := healthpb.NewHealthClient(s.Conn).Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := restLogin(t, s, "alice", pw+"-wrong"); got != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d, want 401", got)
	}

	// The in-process channel may hand the gateway its answer before the
	// gRPC span has ended: wait for both.
	var httpSpan, grpcSpan sdktrace.ReadOnlySpan
	testidentityd.Eventually(t, 30*time.Second, func() error {
		httpSpan, grpcSpan = nil, nil
		for _, sp := range rec.Ended() {
			switch sp.Name() {
			case "POST /v1/login":
				httpSpan = sp
			case "identity.v1.IdentityService/Login":
				grpcSpan = sp
			}
		}
		if httpSpan == nil || grpcSpan == nil {
			return fmt.Errorf("want an HTTP and a gRPC span of the login, got %v", names(rec.Ended()))
		}
		return nil
	})
	for _, sp := range rec.Started() {
		if strings.Contains(sp.Name(), "Health") {
			t.Errorf("a health check was traced: %s", sp.Name())
		}
	}
	if got := httpSpan.SpanContext().TraceID().String(); got != callerTraceID {
		t.Errorf("HTTP span's trace %s, want the caller's %s", got, callerTraceID)
	}
	if grpcSpan.Parent().SpanID() != httpSpan.SpanContext().SpanID() || grpcSpan.SpanContext().TraceID() != httpSpan.SpanContext().TraceID() {
		t.Errorf("the gRPC span's parent is %v, want the HTTP span %v", grpcSpan.Parent(), httpSpan.SpanContext())
	}
	if grpcSpan.SpanKind() != trace.SpanKindServer || httpSpan.SpanKind() != trace.SpanKindServer {
		t.Errorf("span kinds %v (gRPC) and %v (HTTP), want server", grpcSpan.SpanKind(), httpSpan.SpanKind())
	}
	want := "trace_id=" + callerTraceID + " span_id=" + grpcSpan.SpanContext().SpanID().String()
	if !strings.Contains(logs.String(), want) {
		t.Errorf("no log line with %s:\n%s", want, logs.String())
	}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// Without a tracer provider nothing is traced: a caller's traceparent,
// over REST or gRPC, reaches no log line.
func TestTracingOff(t *testing.T) {
	t.Parallel()
	var logs testidentityd.LockedBuffer
	s := testidentityd.StartInProcess(t, testidentityd.InProcessLogger(
		slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	pw := testidentityd.AddUser(t, s.Store, "alice", "")
	if got := restLogin(t, s, "alice", pw+"-wrong"); got != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d, want 401", got)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", traceparent)
	if _, err := s.API.Login(ctx, &identityv1.LoginRequest{Username: "alice", Password: pw + "-wrong"}); err == nil {
		t.Fatal("gRPC login with a wrong password: no error")
	}
	if got := strings.Count(logs.String(), "finished call"); got != 2 {
		t.Fatalf("%d \"finished call\" lines, want 2 (one per login):\n%s", got, logs.String())
	}
	if strings.Contains(logs.String(), "trace_id") || strings.Contains(logs.String(), callerTraceID) {
		t.Errorf("tracing off, yet a log line names a trace:\n%s", logs.String())
	}
}
