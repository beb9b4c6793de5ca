package server_test

import (
	"runtime"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/server"
)

// BenchmarkGRPC goes through gRPC over loopback with every interceptor:
// noop is grpc.health.v1.Health/Check (the baseline of the ratios in
// BENCHMARKS.md),
// verify and refresh the RPCs. Client and server share this process's CPUs.
// The server is testidentityd's in-process one on the embedded store, with
// the default configuration and no login or refresh limits; logins, which it does not
// measure, are cheap (testidentityd.CheapHash).
func BenchmarkGRPC(b *testing.B) {
	s := testidentityd.StartInProcess(b, testidentityd.InProcessConfig(func(c *server.Config) {
		c.LoginRatePerIP, c.LoginFailuresPerUser, c.LoginFailuresPerUserAddress = 0, 0, 0
		c.RefreshRatePerSession, c.RefreshRatePerIP = 0, 0
	}))
	pw := testidentityd.AddUser(b, s.Store, "bench", "")
	api := s.API
	health := healthpb.NewHealthClient(s.Conn)
	ctx := b.Context()
	at := s.Login(b, "bench", pw).GetAccessToken()
	b.Run("noop", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := health.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("verify", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			req := &identityv1.VerifyRequest{Token: at}
			for pb.Next() {
				if _, err := api.Verify(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("refresh", func(b *testing.B) {
		// One session per goroutine, logged in beforehand.
		rts := make(chan string, 16*runtime.GOMAXPROCS(0))
		for range cap(rts) {
			rts <- s.Login(b, "bench", pw).GetRefreshToken()
		}
		b.ReportAllocs()
		b.SetParallelism(16)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			rt := <-rts
			for pb.Next() {
				tp, err := api.Refresh(ctx, &identityv1.RefreshRequest{RefreshToken: rt})
				if err != nil {
					b.Error(err)
					return
				}
				rt = tp.GetRefreshToken()
			}
		})
	})
}
