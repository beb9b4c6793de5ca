package server

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/ratelimit"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// Benchmarks of the service's hot paths, so regressions show in
//
//	go test -run '^$' -bench . -benchmem ./server/
//
// The handler benchmarks call IdentityService's methods directly on the
// memory store (no gRPC, no network); BenchmarkGRPC (grpc_bench_test.go)
// goes through a real gRPC server on loopback TCP with the production
// interceptor chain, client and server in this process. The load tool
// (cmd/identityload) measures a real identityd against the performance
// targets in BENCHMARKS.md; these only track per-call cost and allocations.
// Nothing here asserts a timing.

const (
	benchUser     = "bench"
	benchPassword = "correct horse battery staple"
)

type benchServer struct {
	s   *Server
	api *identityServer
}

// newBenchServer builds a Server as identityd does on the embedded store
// (default config, real keys and argon2id with the default parameters),
// with login and refresh limits off and one user.
func newBenchServer(b testing.TB) *benchServer { return newBenchServerLog(b, nil) }

// newBenchServerLog is newBenchServer with a logger (nil: discard).
func newBenchServerLog(b testing.TB, log *slog.Logger) *benchServer {
	b.Helper()
	ctx := b.Context()
	store := tokenstore.NewMemory()
	b.Cleanup(func() { store.Close() })
	cfg := DefaultConfig()
	cfg.LoginRatePerIP, cfg.LoginFailuresPerUser, cfg.LoginFailuresPerUserAddress = 0, 0, 0
	// As identityd runs for identityload: a benchmark rotates a session in
	// a tight loop, far past the per-session refresh limit.
	cfg.RefreshRatePerSession, cfg.RefreshRatePerIP = 0, 0
	keys, err := token.LoadOrCreate(ctx, store, token.EdDSA, cfg.TokenOptions(nil, nil)...)
	if err != nil {
		b.Fatal(err)
	}
	hasher, err := password.New()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := users.New(store, hasher, time.Now, rand.Reader).Create(ctx, benchUser, benchPassword, nil); err != nil {
		b.Fatal(err)
	}
	s, err := New(ctx, cfg, Deps{Store: store, Keys: keys, Hasher: hasher, Limiter: ratelimit.NewMemory(), Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	return &benchServer{s: s, api: &identityServer{s: s}}
}

func (bs *benchServer) login(b testing.TB) *identityv1.TokenPair {
	b.Helper()
	tp, err := bs.api.Login(b.Context(), &identityv1.LoginRequest{Username: benchUser, Password: benchPassword})
	if err != nil {
		b.Fatal(err)
	}
	return tp
}

// refreshTokens logs in n times beforehand, so a parallel benchmark's
// goroutines each take a session of their own without timing a login.
func (bs *benchServer) refreshTokens(b *testing.B, n int) chan string {
	b.Helper()
	ch := make(chan string, n)
	for range n {
		ch <- bs.login(b).GetRefreshToken()
	}
	return ch
}

// freshFeed runs the revocation feed without Serve, so handler benchmarks
// measure Verify's cached path; it returns once the feed has caught up.
func (bs *benchServer) freshFeed(b *testing.B) {
	b.Helper()
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan struct{})
	go func() { defer close(done); bs.s.feed.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	if err := bs.s.checker.Revoked().WaitSynced(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkVerify is the Verify handler: cached is the hot path (token
// verified before, session checked against the in-process revocation set);
// uncached pays the signature and claims check on every call; stale-feed
// asks the store for the session, as when the revocation feed is stale.
func BenchmarkVerify(b *testing.B) {
	bs := newBenchServer(b)
	bs.freshFeed(b)
	req := &identityv1.VerifyRequest{Token: bs.login(b).GetAccessToken()}
	ctx := b.Context()
	b.Run("cached", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := bs.api.Verify(ctx, req); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("uncached", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			bs.s.checker.Cache().Clear()
			if _, err := bs.api.Verify(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stale-feed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			bs.s.checker.Revoked().Stale()
			if _, err := bs.api.Verify(ctx, req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRefresh is the Refresh handler on the memory store: rotate, sign
// a new access token, derive the next refresh token. Each goroutine rotates
// its own session with the token it got back.
func BenchmarkRefresh(b *testing.B) {
	benchmarkRefresh(b, newBenchServer(b))
}

// BenchmarkRefreshAudited is BenchmarkRefresh with identityd's default
// log (JSON at info, here to io.Discard): every refresh then writes its
// audit record (audit.go), which BenchmarkRefresh's discarded log skips.
func BenchmarkRefreshAudited(b *testing.B) {
	benchmarkRefresh(b, newBenchServerLog(b, slog.New(slog.NewJSONHandler(io.Discard, nil))))
}

func benchmarkRefresh(b *testing.B, bs *benchServer) {
	ctx := b.Context()
	rts := bs.refreshTokens(b, runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rt := <-rts
		for pb.Next() {
			tp, err := bs.api.Refresh(ctx, &identityv1.RefreshRequest{RefreshToken: rt})
			if err != nil {
				b.Error(err)
				return
			}
			rt = tp.GetRefreshToken()
		}
	})
}

// BenchmarkLogin is the Login handler with argon2id's default parameters
// on the default number of hashing workers; compare with
// password.BenchmarkRawArgon2id for the pool's and the handler's overhead.
func BenchmarkLogin(b *testing.B) {
	bs := newBenchServer(b)
	ctx := b.Context()
	req := &identityv1.LoginRequest{Username: benchUser, Password: benchPassword}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := bs.api.Login(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkREST is the REST side in process: the HTTP handler identityd
// serves (security headers, browser gate, body limit, gateway, the
// in-process channel with every interceptor, the handler) called with
// httptest, no network. verify is POST /v1/verify of a cached token,
// noop the same call with no token (400 at the handler's first check, as
// identityload's REST no-op), refresh POST /v1/refresh.
func BenchmarkREST(b *testing.B) {
	bs := newBenchServer(b)
	bs.freshFeed(b)
	h := bs.s.HTTPHandler()
	at := bs.login(b).GetAccessToken()
	call := func(b *testing.B, path, body string, want int) {
		r := httptest.NewRequestWithContext(b.Context(), http.MethodPost, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			b.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
	}
	b.Run("noop", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			call(b, "/v1/verify", `{}`, http.StatusBadRequest)
		}
	})
	b.Run("verify", func(b *testing.B) {
		body := `{"token":"` + at + `"}`
		b.ReportAllocs()
		for b.Loop() {
			call(b, "/v1/verify", body, http.StatusOK)
		}
	})
	b.Run("refresh", func(b *testing.B) {
		rt := bs.login(b).GetRefreshToken()
		b.ReportAllocs()
		for b.Loop() {
			r := httptest.NewRequestWithContext(b.Context(), http.MethodPost, "/v1/refresh", strings.NewReader(`{"refresh_token":"`+rt+`"}`))
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			var tp struct {
				RefreshToken string `json:"refresh_token"`
			}
			if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &tp) != nil {
				b.Fatalf("refresh: %d %s", w.Code, w.Body)
			}
			rt = tp.RefreshToken
		}
	})
}
