package server

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/ratelimit"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestRequestLogLevels: the per-call "finished call" line is written when
// the log level is debug and not otherwise (the interceptor is skipped, for
// speed); a failure that is the client's (INVALID_ARGUMENT) stays quiet at
// info.
func TestRequestLogLevels(t *testing.T) {
	t.Parallel()
	hasher, err := password.New(password.WithParams(password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		level    slog.Level
		wantLine bool
	}{
		{slog.LevelDebug, true},
		{slog.LevelInfo, false},
	} {
		t.Run(tc.level.String(), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			var logs syncBuffer
			store := tokenstore.NewMemory()
			keys, err := token.LoadOrCreate(ctx, store, token.EdDSA)
			if err != nil {
				t.Fatal(err)
			}
			s, err := New(ctx, DefaultConfig(), Deps{
				Store: store, Keys: keys, Hasher: hasher, Limiter: ratelimit.NewMemory(),
				Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: tc.level})),
			})
			if err != nil {
				t.Fatal(err)
			}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go s.GRPCServer().Serve(lis)
			t.Cleanup(s.GRPCServer().Stop)
			conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })

			if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatal(err)
			}
			if _, err := identityv1.NewIdentityServiceClient(conn).Verify(ctx, &identityv1.VerifyRequest{}); err == nil {
				t.Fatal("Verify without a token: no error")
			}
			got := strings.Count(logs.String(), "finished call")
			if tc.wantLine && got != 2 || !tc.wantLine && got != 0 {
				t.Errorf("%d \"finished call\" lines at level %v, want %d per call (2 calls)\n%s",
					got, tc.level, map[bool]int{true: 1, false: 0}[tc.wantLine], logs.String())
			}
		})
	}
}
