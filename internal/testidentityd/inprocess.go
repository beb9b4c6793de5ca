package testidentityd

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/identityd/identity/audit"
	"github.com/identityd/identity/masterkey"
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
	tls       *TLS
	audit     *auditStream
	// tracerProvider: nil leaves tracing off.
	tracerProvider trace.TracerProvider
	now            func() time.Time
	hasher         []password.Option
}

type auditStream struct {
	key    string
	maxLen int64
}

// InProcessConfig changes the server's configuration, which starts as
// server.DefaultConfig with no login limits (LoginRatePerIP 0).
func InProcessConfig(f func(*server.Config)) InProcessOption {
	return func(o *inProcessOptions) { o.configure = append(o.configure, f) }
}

// InProcessHasher adds options to the server's password hasher, which hashes
// at CheapHash's parameters (users' stored hashes are checked at their own).
func InProcessHasher(opts ...password.Option) InProcessOption {
	return func(o *inProcessOptions) { o.hasher = append(o.hasher, opts...) }
}

// InProcessRedisURL puts the server on the Redis at url (the test owns it:
// testredis.URL, or a testredis.Server's) instead of the embedded store.
func InProcessRedisURL(url string) InProcessOption {
	return func(o *inProcessOptions) { o.redisURL = url }
}

// InProcessClock is the server's clock (server.Deps.Now): the time it
// issues and verifies tokens by. Default time.Now.
func InProcessClock(now func() time.Time) InProcessOption {
	return func(o *inProcessOptions) { o.now = now }
}

// InProcessLogger is the server's logger (default: discard).
func InProcessLogger(l *slog.Logger) InProcessOption {
	return func(o *inProcessOptions) { o.logger = l }
}

// InProcessAuditStream appends the audit events to the Redis stream key
// (trimmed to about maxLen), as --audit-redis-stream does; it needs
// InProcessRedisURL. InProcess.AuditStream is the stream's writer.
func InProcessAuditStream(key string, maxLen int64) InProcessOption {
	return func(o *inProcessOptions) { o.audit = &auditStream{key, maxLen} }
}

// InProcessTracerProvider turns the server's tracing on (server.Deps).
func InProcessTracerProvider(tp trace.TracerProvider) InProcessOption {
	return func(o *inProcessOptions) { o.tracerProvider = tp }
}

// InProcessTLS serves TLS with c's files, built as identityd builds them
// (client certificates required on gRPC with c.ClientCAFile); Client and
// HTTP reach the server with c.Client, and BaseURL is https://.
func InProcessTLS(c TLS) InProcessOption {
	return func(o *inProcessOptions) { o.tls = &c }
}

// InProcess is identity's real server (package server) running inside the
// test binary on loopback ports.
type InProcess struct {
	// Client is a connection to GRPCAddr, closed when the test ends.
	Client
	GRPCAddr string // host:port
	HTTPAddr string // host:port
	BaseURL  string // http://HTTPAddr, or https:// under InProcessTLS
	// HTTP is a client of BaseURL (under InProcessTLS: trusting its CA).
	HTTP *http.Client
	// ClientTLS is the harness's TLS client configuration (InProcessTLS);
	// nil on plaintext.
	ClientTLS *tls.Config
	Config    server.Config
	// Store is the server's store, for the test to act on directly.
	Store  tokenstore.Store
	Server *server.Server
	// Keys is the server's key manager: the real signing keys and refresh
	// secret, for tests that check they leak nowhere.
	Keys *token.Manager
	// MasterKeys seal the keyring on Redis (DefaultMasterKey, as Start
	// does); nil on the embedded store.
	MasterKeys *masterkey.Keys
	// AuditStream writes the audit events to Redis (InProcessAuditStream);
	// nil without it.
	AuditStream *audit.Stream
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
	built, err := buildServer(ctx, cfg, o)
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
	go func() { done <- built.srv.Serve(ctx, glis, hlis, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("testidentityd: in-process server: Serve: %v", err)
		}
		built.closeStore()
	})
	p := &InProcess{
		GRPCAddr:   glis.Addr().String(),
		HTTPAddr:   hlis.Addr().String(),
		Config:     cfg,
		Store:      built.store,
		Server:     built.srv,
		Keys:       built.keys,
		MasterKeys: built.masterKeys,

		AuditStream: built.auditStream,
	}
	if o.tls != nil {
		p.ClientTLS = o.tls.Client
	}
	p.BaseURL = p.client().scheme() + p.HTTPAddr
	p.HTTP = p.client().httpClient()
	p.Client = newClient(Dial(t, p.GRPCAddr, p.DialOption()))
	return p
}

func (p *InProcess) client() clientSide { return clientSide{p.ClientTLS} }

// DialOption is the transport the harness reaches GRPCAddr with: TLS with
// ClientTLS under InProcessTLS, plaintext otherwise.
func (p *InProcess) DialOption() grpc.DialOption { return p.client().dialOption() }

// JWKSURL is the server's JWKS endpoint.
func (p *InProcess) JWKSURL() string { return p.BaseURL + "/.well-known/jwks.json" }

// built is what buildServer makes.
type built struct {
	srv         *server.Server
	store       tokenstore.Store
	keys        *token.Manager
	masterKeys  *masterkey.Keys
	auditStream *audit.Stream
	closeStore  func()
}

// buildServer is the one place tests build a server.Server: the parts
// cmd/identityd's run makes (store, keys sealed on Redis, hasher, limiter),
// then server.New. Keep it in step with run.
func buildServer(ctx context.Context, cfg server.Config, o inProcessOptions) (built, error) {
	storeOpts := []tokenstore.Option{
		tokenstore.WithIdleTTL(cfg.RefreshIdleTTL),
		tokenstore.WithRevocationRetention(cfg.AccessTTL + cfg.Leeway + time.Minute),
	}
	var (
		b       built
		limiter ratelimit.Limiter
		tokOpts = cfg.TokenOptions(nil, nil)
	)
	if o.audit != nil && o.redisURL == "" {
		return built{}, errors.New("InProcessAuditStream needs InProcessRedisURL")
	}
	if o.redisURL == "" {
		mem := tokenstore.NewMemory(storeOpts...)
		b.store, limiter, b.closeStore = mem, ratelimit.NewMemory(), func() { mem.Close() }
	} else {
		ropts, err := tokenstore.ClientOptions(o.redisURL, nil)
		if err != nil {
			return built{}, err
		}
		rdb := tokenstore.NewClient(ropts)
		feed := tokenstore.NewClient(tokenstore.FeedClientOptions(ropts))
		rs := tokenstore.NewRedis(rdb, append(storeOpts, tokenstore.WithFeedClient(feed))...)
		b.store, limiter, b.closeStore = rs, ratelimit.NewRedis(rdb), func() { rs.Close(); rdb.Close(); feed.Close() }
		if o.audit != nil {
			st := audit.NewStream(rdb, o.audit.key, o.audit.maxLen)
			b.auditStream = st
			b.closeStore = func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				st.Close(ctx)
				rs.Close()
				rdb.Close()
				feed.Close()
			}
		}
		if b.masterKeys, err = masterkey.Parse([]byte(DefaultMasterKey())); err != nil {
			b.closeStore()
			return built{}, err
		}
		tokOpts = append(tokOpts, token.WithSealing(token.Sealing{Sealer: b.masterKeys, Name: rs.KeyringKey()}))
	}
	fail := func(err error) (built, error) {
		b.closeStore()
		return built{}, err
	}
	var err error
	if b.keys, err = token.LoadOrCreate(ctx, b.store, token.EdDSA, tokOpts...); err != nil {
		return fail(err)
	}
	// Cheap hashes: users made by AddUser are checked at CheapHash's
	// cost anyway, and this keeps the unknown-user dummy cheap too.
	hasher, err := password.New(append([]password.Option{password.WithParams(CheapHash)}, o.hasher...)...)
	if err != nil {
		return fail(err)
	}
	deps := server.Deps{Store: b.store, Keys: b.keys, Hasher: hasher, Limiter: limiter, Logger: o.logger, TracerProvider: o.tracerProvider, AuditStream: b.auditStream, Now: o.now}
	if o.tls != nil {
		if deps.TLS, err = o.tls.serverTLS(); err != nil {
			return fail(err)
		}
	}
	if b.srv, err = server.New(ctx, cfg, deps); err != nil {
		return fail(err)
	}
	return b, nil
}
