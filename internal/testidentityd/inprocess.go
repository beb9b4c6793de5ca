package testidentityd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/identityd/identity/password"
	"github.com/identityd/identity/ratelimit"
	"github.com/identityd/identity/server"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
)

// InProcessOption configures StartInProcess.
type InProcessOption func(*inProcessOptions)

type inProcessOptions struct {
	configure []func(*server.Config)
	redisURL  string
	logger    *slog.Logger
}

// InProcessConfig changes the server's configuration, which starts as
// server.DefaultConfig with no login limits (LoginRatePerIP 0).
func InProcessConfig(f func(*server.Config)) InProcessOption {
	return func(o *inProcessOptions) { o.configure = append(o.configure, f) }
}

// InProcessRedisURL puts the server on the Redis at url (the test owns it:
// testredis.URL, or a testredis.Server's) instead of the embedded store.
func InProcessRedisURL(url string) InProcessOption {
	return func(o *inProcessOptions) { o.redisURL = url }
}

// InProcessLogger is the server's logger (default: discard).
func InProcessLogger(l *slog.Logger) InProcessOption {
	return func(o *inProcessOptions) { o.logger = l }
}

// InProcess is identity's real server (package server) running inside the
// test binary on loopback ports.
type InProcess struct {
	// Client is a connection to GRPCAddr, closed when the test ends.
	Client
	GRPCAddr string // host:port
	HTTPAddr string // host:port
	BaseURL  string // http://HTTPAddr
	Config   server.Config
	// Store is the server's store, for the test to act on directly.
	Store  tokenstore.Store
	Server *server.Server
}

// StartInProcess builds a server.Server on the embedded store (or the
// Redis of InProcessRedisURL), serves it on loopback listeners until t
// ends, and returns a client of it.
func StartInProcess(t testing.TB, opts ...InProcessOption) *InProcess {
	t.Helper()
	var o inProcessOptions
	for _, opt := range opts {
		opt(&o)
	}
	cfg := server.DefaultConfig()
	cfg.LoginRatePerIP = 0
	for _, f := range o.configure {
		f(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, store, closeStore, err := buildServer(ctx, cfg, o)
	if err != nil {
		cancel()
		t.Fatalf("testidentityd: in-process server: %v", err)
	}
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		glis.Close()
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, glis, hlis, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("testidentityd: in-process server: Serve: %v", err)
		}
		closeStore()
	})
	p := &InProcess{
		GRPCAddr: glis.Addr().String(),
		HTTPAddr: hlis.Addr().String(),
		Config:   cfg,
		Store:    store,
		Server:   srv,
	}
	p.BaseURL = "http://" + p.HTTPAddr
	p.Client = newClient(Dial(t, p.GRPCAddr))
	return p
}

// JWKSURL is the server's JWKS endpoint.
func (p *InProcess) JWKSURL() string { return p.BaseURL + "/.well-known/jwks.json" }

// buildServer is the one place tests build a server.Server: the parts
// cmd/identityd's run makes (store, keys, hasher, limiter), then
// server.New. Keep it in step with run.
func buildServer(ctx context.Context, cfg server.Config, o inProcessOptions) (*server.Server, tokenstore.Store, func(), error) {
	storeOpts := []tokenstore.Option{
		tokenstore.WithIdleTTL(cfg.RefreshIdleTTL),
		tokenstore.WithRevocationRetention(cfg.AccessTTL + cfg.Leeway + time.Minute),
	}
	var (
		store   tokenstore.Store
		limiter ratelimit.Limiter
		closeFn func()
	)
	if o.redisURL == "" {
		mem := tokenstore.NewMemory(storeOpts...)
		store, limiter, closeFn = mem, ratelimit.NewMemory(), func() { mem.Close() }
	} else {
		ropts, err := tokenstore.ClientOptions(o.redisURL, nil)
		if err != nil {
			return nil, nil, nil, err
		}
		rdb := tokenstore.NewClient(ropts)
		rs := tokenstore.NewRedis(rdb, storeOpts...)
		store, limiter, closeFn = rs, ratelimit.NewRedis(rdb), func() { rs.Close(); rdb.Close() }
	}
	fail := func(err error) (*server.Server, tokenstore.Store, func(), error) {
		closeFn()
		return nil, nil, nil, err
	}
	keys, err := token.LoadOrCreate(ctx, store, token.EdDSA, cfg.TokenOptions(nil, nil)...)
	if err != nil {
		return fail(err)
	}
	// Cheap hashes: users made by AddUser are checked at CheapHash's
	// cost anyway, and this keeps the unknown-user dummy cheap too.
	hasher, err := password.New(password.WithParams(CheapHash))
	if err != nil {
		return fail(err)
	}
	srv, err := server.New(ctx, cfg, server.Deps{Store: store, Keys: keys, Hasher: hasher, Limiter: limiter, Logger: o.logger})
	if err != nil {
		return fail(err)
	}
	return srv, store, closeFn, nil
}
