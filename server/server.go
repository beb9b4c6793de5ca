// Package server speaks identity's API: the gRPC IdentityService and
// AdminService, the REST gateway in front of them, and the HTTP endpoints
// beside it (JWKS, discovery, health, readiness, metrics). Its handlers validate a
// request, call a domain package and map the error (errors.go, the one
// table); the rules themselves live below them: sessions (login sessions,
// rotation, revocation and the instance's revocation feed), users
// (accounts), token (JWTs and refresh tokens), tokenstore (persistence) and
// internal/tokencheck (the verification core authn shares).
package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/identityd/identity/admin"
	"github.com/identityd/identity/audit"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/tokencheck"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/ratelimit"
	"github.com/identityd/identity/sessions"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// Config holds the service's tunables; the ones identityd has flags for are
// documented in docs/configuration.md.
type Config struct {
	Issuer             string
	Audience           string
	AccessTTL          time.Duration
	RefreshIdleTTL     time.Duration
	RefreshAbsoluteTTL time.Duration
	RefreshGrace       time.Duration
	Leeway             time.Duration
	// LoginRatePerIP is login attempts per minute per client address.
	LoginRatePerIP int
	// RefreshRatePerSession and RefreshRatePerIP bound refreshes per
	// minute, of one session (checked in the rotation's own store round
	// trip) and from one client address (0: no limit). Both are far above
	// what honest clients do (one refresh per access-token lifetime, a few
	// tabs, retries within the grace window): they stop a stolen refresh
	// token from being used as a rotation oracle, and a flood.
	RefreshRatePerSession int
	RefreshRatePerIP      int
	// LoginFailuresPerUser is failed logins per hour per username, from
	// every client address together (limits.go).
	LoginFailuresPerUser int
	// LoginFailuresPerUserAddress is failed logins per minute per username
	// from one client address.
	LoginFailuresPerUserAddress int
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// RevocationWait is how long the revocation feed's blocking read
	// waits when nothing happens (each idle read is a heartbeat to the
	// WatchRevocations streams); RevocationStaleAfter is how long Verify
	// trusts the revocation set without a read.
	RevocationWait       time.Duration
	RevocationStaleAfter time.Duration
	// MaxWatchers caps the open WatchRevocations streams.
	MaxWatchers int
	// KeyReload is how often keys are re-read from the store or the keys
	// dir (rotations made by another instance or by identityctl, a key
	// file added or withdrawn); the background loop ticks every second.
	KeyReload time.Duration
	// KeyRotation rotates the signing key on this schedule (0: never).
	KeyRotation time.Duration
	// MaxBodyBytes caps REST request bodies.
	MaxBodyBytes int64
	// WebDemo serves the browser demo page at /demo/.
	WebDemo bool
	// APIDocs serves the browsable API documentation (Swagger UI over
	// /openapi.json) at /docs/.
	APIDocs bool
	// AllowedOrigins are the web origins (scheme://host[:port]) that get
	// CORS answers and may make cookie-authenticated calls (browser.go);
	// the server's own origin is always allowed for the latter.
	AllowedOrigins []string
	// PublicURL is the base URL clients reach this service at
	// (https://id.example.com), for the absolute URLs of the discovery
	// document. Empty: the issuer if it is an https URL, else the
	// request's scheme and Host.
	PublicURL string
	// PasswordMinLength is the password policy's minimum, in characters,
	// for passwords set through this server (users.PasswordPolicy).
	PasswordMinLength int
	// IdleTimeout closes a connection, on either port, that has had no
	// request in flight for this long (HTTP IdleTimeout, gRPC
	// MaxConnectionIdle: conns.go).
	IdleTimeout time.Duration
}

// DefaultConfig returns the defaults (docs/configuration.md).
func DefaultConfig() Config {
	return Config{
		Issuer:                "identity",
		Audience:              "identity",
		AccessTTL:             15 * time.Minute,
		RefreshIdleTTL:        720 * time.Hour,
		RefreshAbsoluteTTL:    2160 * time.Hour,
		RefreshGrace:          10 * time.Second,
		Leeway:                30 * time.Second,
		LoginRatePerIP:        300,
		LoginFailuresPerUser:  100,
		RefreshRatePerSession: 60,
		RefreshRatePerIP:      1200,
		RevocationWait:        sessions.DefaultFeedWait,
		RevocationStaleAfter:  2 * time.Second,
		MaxWatchers:           sessions.DefaultMaxWatchers,
		KeyReload:             30 * time.Second,
		KeyRotation:           0,
		MaxBodyBytes:          1 << 20,

		LoginFailuresPerUserAddress: 10,
		PasswordMinLength:           users.DefaultMinPasswordLength,
		IdleTimeout:                 DefaultIdleTimeout,
	}
}

// TokenOptions are the token package options matching c, shared by the
// Issuer, Verifier and key Manager so their TTLs and leeway agree.
func (c Config) TokenOptions(now func() time.Time, random io.Reader) []token.Option {
	opts := []token.Option{
		token.WithIssuer(c.Issuer),
		token.WithAudience(c.Audience),
		token.WithAccessTTL(c.AccessTTL),
		token.WithLeeway(c.Leeway),
	}
	if now != nil {
		opts = append(opts, token.WithClock(now))
	}
	if random != nil {
		opts = append(opts, token.WithRandom(random))
	}
	return opts
}

// Deps are the parts the server is built from.
type Deps struct {
	Store tokenstore.Store
	Keys  *token.Manager
	// KeysFromDir: Keys came from --keys-dir (rotation is done on disk).
	KeysFromDir bool
	Hasher      *password.Hasher
	Limiter     ratelimit.Limiter
	Logger      *slog.Logger
	// Registry receives the server's metrics; nil makes a new one.
	Registry *prometheus.Registry
	// Now and Rand default to time.Now and crypto/rand.Reader.
	Now  func() time.Time
	Rand io.Reader
	// TLS serves both ports with TLS (tls.go); nil: plaintext.
	TLS *TLS
	// AuditStream, if set, receives every audit event besides the log
	// (--audit-redis-stream); its owner closes it after Serve returns.
	AuditStream *audit.Stream
	// TracerProvider turns tracing on (tracing.go); nil: off, and no
	// tracing code runs.
	TracerProvider trace.TracerProvider
}

// Server is one identity instance: gRPC server, gateway and HTTP handler.
type Server struct {
	cfg      Config
	store    tokenstore.Store
	keys     *token.Manager
	issuer   *token.Issuer
	verifier *token.Verifier
	users    *users.Service
	sessions *sessions.Service
	hasher   *password.Hasher
	admin    *admin.Local
	limiter  ratelimit.Limiter
	// charged: the login attempts of this instance being charged to a
	// failure limit, or charged and not settled yet (inflight.go).
	charged inFlight
	log     *slog.Logger
	audit   audit.Sink // audit.go
	now     func() time.Time
	rand    io.Reader

	// checker is the verification core authn's local verifiers share:
	// cache of verified tokens, revocation set, staleness rule. The feed
	// fills its set; the session service adds this instance's own
	// revocations to it at once.
	checker *tokencheck.Checker
	feed    *sessions.Feed

	// metrics are the service's own (metrics.go).
	metrics *metrics
	// auditStream is Deps.AuditStream, for its dropped-events metric.
	auditStream *audit.Stream
	// tracing is nil when tracing is off (tracing.go).
	tracing *tracing

	// stopping is closed when Serve begins to shut down: long-lived
	// streams (WatchRevocations) end then instead of holding up
	// GracefulStop until the shutdown timeout.
	stopping     chan struct{}
	stoppingOnce sync.Once
	// draining: the HTTP port answers every new request 503 with
	// Connection: close (conns.go, drainHTTP).
	draining atomic.Bool

	registry *prometheus.Registry
	tls      *TLS
	grpc     *grpc.Server
	health   *health.Server
	inproc   *inprocChannel // the gateway's way in (inproc.go)
	http     http.Handler
}

// New builds a server. It does not listen; see Serve.
func New(ctx context.Context, cfg Config, d Deps) (*Server, error) {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Rand == nil {
		d.Rand = rand.Reader
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Registry == nil {
		d.Registry = prometheus.NewRegistry()
	}
	if d.TracerProvider != nil {
		d.Logger = slog.New(TraceLogHandler(d.Logger.Handler()))
	}
	s := &Server{
		cfg:      cfg,
		store:    d.Store,
		keys:     d.Keys,
		hasher:   d.Hasher,
		limiter:  d.Limiter,
		log:      d.Logger,
		now:      d.Now,
		audit:    newAuditSink(d),
		rand:     d.Rand,
		stopping: make(chan struct{}),
		registry: d.Registry,
		tls:      d.TLS,
		metrics:  newMetrics(),
		tracing:  newTracing(d.TracerProvider),
	}
	s.auditStream = d.AuditStream
	var err error
	topts := cfg.TokenOptions(d.Now, d.Rand)
	if s.issuer, err = token.NewIssuer(d.Keys, topts...); err != nil {
		return nil, err
	}
	if s.verifier, err = token.NewVerifier(d.Keys, topts...); err != nil {
		return nil, err
	}
	revoked := tokencheck.NewRevoked(cfg.RevocationStaleAfter, cfg.Leeway, maxRevoked)
	// WithKeys: a cached token dies with its key (withdrawn from the keys
	// dir or the keyring, or retired), not at its exp.
	s.checker = tokencheck.NewChecker(s.verifySignature, tokencheck.NewCache(verifiedCacheSize, 0), revoked, d.Now, tokencheck.WithKeys(d.Keys))
	s.sessions = sessions.New(d.Store, d.Keys.Refresh(), revoked, sessions.Config{
		AbsoluteTTL: cfg.RefreshAbsoluteTTL,
		IdleTTL:     cfg.RefreshIdleTTL,
		Grace:       cfg.RefreshGrace,
		AccessTTL:   cfg.AccessTTL,
		Leeway:      cfg.Leeway,
		RefreshLimit: func() tokenstore.UseLimit {
			if cfg.RefreshRatePerSession <= 0 {
				return tokenstore.UseLimit{}
			}
			return tokenstore.UseLimit{Every: time.Minute / time.Duration(cfg.RefreshRatePerSession), Burst: max(1, cfg.RefreshRatePerSession/2)}
		}(),
		OnRevoke: s.metrics.sessionsRevoked,
	}, d.Now, d.Rand)
	s.feed = sessions.NewFeed(d.Store, revoked, sessions.FeedConfig{
		Wait:        cfg.RevocationWait,
		MaxWatchers: cfg.MaxWatchers,
		OnReset:     s.checker.Cache().Clear,
	}, d.Now, d.Logger)
	policy := users.PasswordPolicy{MinLength: cfg.PasswordMinLength}
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	s.users = users.New(d.Store, d.Hasher, d.Now, d.Rand, users.WithSessions(s.sessions),
		users.WithPasswordPolicy(policy), users.WithLogger(d.Logger))
	var keys admin.Keys = admin.NewDirKeys(d.Keys)
	if !d.KeysFromDir {
		keys = admin.NewStoreKeys(d.Store, d.Keys.Sealing(), func(context.Context) (*token.Manager, error) { return d.Keys, nil }, d.Now)
	}
	s.admin = admin.NewLocal(s.sessions, s.users, keys, admin.WithClock(d.Now), admin.WithIdleTTL(cfg.RefreshIdleTTL))
	if err := s.registerMetrics(); err != nil {
		return nil, err
	}
	if err := s.buildGRPC(); err != nil {
		return nil, err
	}
	if err := s.buildHTTP(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// GRPCServer exposes the gRPC server (for tests that serve it themselves).
func (s *Server) GRPCServer() *grpc.Server { return s.grpc }

// HTTPHandler is the REST gateway plus JWKS, health and metrics.
func (s *Server) HTTPHandler() http.Handler { return s.http }

// Serve serves gRPC on grpcLis and HTTP on httpLis until ctx is done, then
// drains both within shutdownTimeout. With Deps.TLS both speak TLS; the
// REST gateway's in-process connection to the gRPC server stays plaintext.
func (s *Server) Serve(ctx context.Context, grpcLis, httpLis net.Listener, shutdownTimeout time.Duration) error {
	conns := &connCount{}
	httpSrv := s.httpServer(conns)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.grpc.Serve(grpcLis) })
	g.Go(func() error {
		var err error
		if s.tls != nil {
			httpSrv.TLSConfig = s.tls.httpConfig()
			err = httpSrv.ServeTLS(httpLis, "", "")
		} else {
			err = httpSrv.Serve(httpLis)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error { s.background(gctx); return nil })
	g.Go(func() error { s.feed.Run(gctx); return nil })
	g.Go(func() error {
		<-gctx.Done()
		s.stoppingOnce.Do(func() { close(s.stopping) })
		s.health.Shutdown()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		// Both ports drain at once. gRPC's GOAWAY tells clients which
		// calls were taken; HTTP/1.1 has no such signal (drainHTTP).
		stopped := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(stopped) }()
		herr := s.drainHTTP(sctx, httpSrv, conns, drainNotice(shutdownTimeout))
		select {
		case <-stopped:
		case <-sctx.Done():
			s.grpc.Stop()
			<-stopped
		}
		if herr != nil {
			return fmt.Errorf("http shutdown: %w", herr)
		}
		return nil
	})
	err := g.Wait()
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	if ctx.Err() != nil && err == nil {
		return nil
	}
	return err
}

// background runs the periodic jobs: cache purges, health status, key
// reload and scheduled rotation. (The revocation feed runs on its own.)
func (s *Server) background(ctx context.Context) {
	slow := time.NewTicker(time.Second)
	defer slow.Stop()
	lastReload, lastRotateCheck := s.now(), s.now()
	var lastReloadWarning time.Time
	serving := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-slow.C:
			now := s.now()
			s.checker.Cache().Purge(now)
			s.checker.Revoked().Purge(now)
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			ok := s.store.Ping(pctx) == nil
			if ok {
				s.metrics.storeUp.Set(1)
			} else {
				s.metrics.storeUp.Set(0)
			}
			if ok && now.Sub(lastReload) >= s.cfg.KeyReload {
				if err := s.keys.Reload(pctx); err == nil {
					lastReload = now
				} else if now.Sub(lastReloadWarning) >= s.cfg.KeyReload {
					// A keyring this instance cannot open (rewrapped under a
					// master key it was not given) must not go unnoticed.
					lastReloadWarning = now
					s.log.Warn("key reload failed; signing with the keys in memory", slog.String("error", err.Error()))
				}
			}
			if ok && s.cfg.KeyRotation > 0 && now.Sub(lastRotateCheck) >= time.Minute {
				lastRotateCheck = now
				rotated, err := s.keys.RotateIfOlder(pctx, now, s.cfg.KeyRotation)
				switch {
				case err != nil:
					s.log.Warn("scheduled key rotation failed", slog.String("error", err.Error()))
				case rotated:
					s.log.Info("signing key rotated on schedule")
					s.recordScheduledRotation(pctx)
				}
			}
			cancel()
			if ok != serving {
				serving = ok
				st := healthpb.HealthCheckResponse_SERVING
				if !ok {
					st = healthpb.HealthCheckResponse_NOT_SERVING
					s.log.Warn("store unreachable: not serving")
				} else {
					s.log.Info("store reachable again: serving")
				}
				s.health.SetServingStatus("", st)
				s.health.SetServingStatus(identityv1.IdentityService_ServiceDesc.ServiceName, st)
			}
		}
	}
}
