package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

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
	restVerify := map[string]func(testing.TB){}
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
		h, body := s.Server.HTTPHandler(), `{"token":"`+at+`"}`
		verify := func(b testing.TB) {
			r := httptest.NewRequestWithContext(context.Background(), http.MethodPost, "/v1/verify", strings.NewReader(body))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != http.StatusOK {
				b.Fatalf("verify: %d %s", w.Code, w.Body)
			}
		}
		restVerify[mode.name] = verify
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
			b.ReportAllocs()
			for b.Loop() {
				verify(b)
			}
		})
	}
	// paired: each iteration one REST Verify on each server, each timed,
	// so that both face the same load from other processes (this machine
	// is shared); off-ns and on-ns are the means, on/off their ratio.
	b.Run("paired/rest-verify", func(b *testing.B) {
		var off, on time.Duration
		for b.Loop() {
			t0 := time.Now()
			restVerify["off"](b)
			t1 := time.Now()
			restVerify["on"](b)
			on += time.Since(t1)
			off += t1.Sub(t0)
		}
		n := float64(b.N)
		b.ReportMetric(float64(off.Nanoseconds())/n, "off-ns")
		b.ReportMetric(float64(on.Nanoseconds())/n, "on-ns")
		b.ReportMetric(float64(on)/float64(off), "on/off")
	})
}
