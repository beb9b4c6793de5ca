package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/server"
)

// discardExporter drops the spans the batch processor hands it: the cost
// measured is the SDK's and the instrumentation's, not a collector's.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }

// BenchmarkTracing is Verify (a cached token) over gRPC on loopback and
// over REST (the HTTP handler, httptest, no network), on a server with
// tracing off (no tracer provider: what identityd runs without OTEL_*) and
// on (every call sampled, spans batched to an exporter that drops them).
// Both servers are built first, so the modes run side by side in one run;
// BENCHMARKS.md has the figures.
func BenchmarkTracing(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(discardExporter{}))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	noLimits := testidentityd.InProcessConfig(func(c *server.Config) {
		c.LoginRatePerIP, c.LoginFailuresPerUser, c.LoginFailuresPerUserAddress = 0, 0, 0
		c.RefreshRatePerSession, c.RefreshRatePerIP = 0, 0
	})
	for _, mode := range []struct {
		name string
		opts []testidentityd.InProcessOption
	}{
		{"off", []testidentityd.InProcessOption{noLimits}},
		{"on", []testidentityd.InProcessOption{noLimits, testidentityd.InProcessTracerProvider(tp)}},
	} {
		s := testidentityd.StartInProcess(b, mode.opts...)
		pw := testidentityd.AddUser(b, s.Store, "bench", "")
		at := s.Login(b, "bench", pw).GetAccessToken()
		b.Run(mode.name+"/grpc-verify", func(b *testing.B) {
			ctx := b.Context()
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				req := &identityv1.VerifyRequest{Token: at}
				for pb.Next() {
					if _, err := s.API.Verify(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
		b.Run(mode.name+"/rest-verify", func(b *testing.B) {
			h := s.Server.HTTPHandler()
			body := `{"token":"` + at + `"}`
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequestWithContext(b.Context(), http.MethodPost, "/v1/verify", strings.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("verify: %d %s", w.Code, w.Body)
				}
			}
		})
	}
}
