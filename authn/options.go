package authn

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/identityd/identity/token"
)

// Defaults of the verifiers' options.
const (
	// DefaultStaleness is how long a local verifier keeps trusting its
	// revocation set after the last word from identity (identity sends a
	// heartbeat every second on a quiet stream).
	DefaultStaleness = 5 * time.Second
	// DefaultKeyRefresh is how often a local verifier refetches the keys.
	// It is below identity's default publish-ahead (1m), so a rotated-in key
	// is known before the first token it signs arrives.
	DefaultKeyRefresh = 30 * time.Second
	// DefaultKeyRefetchInterval spaces the refetches an unknown kid
	// triggers: a flood of forged kids costs identity one fetch per interval.
	DefaultKeyRefetchInterval = time.Second
	// DefaultCallTimeout bounds one call to identity (Verify,
	// GetPublicKeys, a JWKS fetch) when the caller's context allows more.
	DefaultCallTimeout = 5 * time.Second
	// DefaultLocalCacheSize is how many verified tokens a local verifier
	// remembers (their signature is not checked again until they expire).
	DefaultLocalCacheSize = 10_000
	// DefaultMaxRevoked bounds the revoked-session set of a local verifier.
	DefaultMaxRevoked = 1_000_000
	// DefaultMaxAccessTTL is the longest access-token lifetime a local
	// verifier accepts unless told identity's own (WithAccessTTL).
	DefaultMaxAccessTTL = 24 * time.Hour
)

// The verifiers' options come in three types, so an option that does not
// apply to a constructor does not compile with it: a VerifierOption
// configures both NewLocal and NewRemote, a LocalOption only NewLocal, a
// RemoteOption only NewRemote.

// LocalOption configures NewLocal.
type LocalOption interface{ applyLocal(*localConfig) }

// RemoteOption configures NewRemote.
type RemoteOption interface{ applyRemote(*remoteConfig) }

// VerifierOption configures NewLocal and NewRemote alike.
type VerifierOption func(*commonConfig)

func (o VerifierOption) applyLocal(c *localConfig)   { o(&c.commonConfig) }
func (o VerifierOption) applyRemote(c *remoteConfig) { o(&c.commonConfig) }

type localOption func(*localConfig)

func (o localOption) applyLocal(c *localConfig) { o(c) }

type remoteOption func(*remoteConfig)

func (o remoteOption) applyRemote(c *remoteConfig) { o(c) }

// commonConfig is what both verifiers take.
type commonConfig struct {
	cacheSize   int
	cacheMaxAge time.Duration
	cacheSet    bool
	callTimeout time.Duration
	now         func() time.Time
	log         *slog.Logger
	staleness   time.Duration
	maxRevoked  int
	backoffMin  time.Duration
	backoffMax  time.Duration
	watchCreds  credentials.PerRPCCredentials
}

type localConfig struct {
	commonConfig
	jwksURL         string
	httpClient      *http.Client
	keysConn        grpc.ClientConnInterface
	revocationsConn grpc.ClientConnInterface
	fallbackConn    grpc.ClientConnInterface
	issuer          string
	audience        string
	leeway          time.Duration
	accessTTL       time.Duration
	keyRefresh      time.Duration
	keyRefetch      time.Duration
}

type remoteConfig struct {
	commonConfig
	watch bool
}

// WithCache (remote and local) keeps up to size verified tokens, keyed by
// the SHA-256 of the token, for at most maxAge and never past the token's
// own exp (maxAge <= 0: until exp). size <= 0 turns the cache off.
//
// Remote verifiers have no cache unless given this option. Without
// WithRevocationWatch a cached token stays accepted for up to maxAge after
// its session is logged out, so keep maxAge short (a few seconds); with it,
// a revocation event drops the session's tokens at once. Local verifiers
// cache DefaultLocalCacheSize tokens by default; the cache only saves the
// signature check, since the revocation set is consulted on every call.
func WithCache(size int, maxAge time.Duration) VerifierOption {
	return func(c *commonConfig) { c.cacheSize, c.cacheMaxAge, c.cacheSet = size, maxAge, true }
}

// WithCallTimeout (remote and local) bounds each call to identity that the
// caller's own deadline does not bound more tightly. Default
// DefaultCallTimeout.
func WithCallTimeout(d time.Duration) VerifierOption {
	return func(c *commonConfig) { c.callTimeout = d }
}

// WithClock (remote and local) replaces time.Now, for tests.
func WithClock(now func() time.Time) VerifierOption {
	return func(c *commonConfig) { c.now = now }
}

// WithLogger (remote and local) receives the verifier's background events:
// the revocation stream lost and regained, key fetches that failed. Never a
// token. Default slog.Default().
func WithLogger(l *slog.Logger) VerifierOption {
	return func(c *commonConfig) { c.log = l }
}

// WithWatchCredentials (local, and remote with WithRevocationWatch) opens
// the revocation stream with these per-RPC credentials: identity answers
// WatchRevocations only to a caller whose token has the ServiceRole (use a
// ServiceAccount), or, on a TLS port that asks client certificates, to a
// service it knows by its certificate. Without them the stream is refused
// with UNAUTHENTICATED and a local verifier fails closed.
func WithWatchCredentials(creds credentials.PerRPCCredentials) VerifierOption {
	return func(c *commonConfig) { c.watchCreds = creds }
}

// WithRevocationWatch (remote) follows identity's revocation stream over
// the remote verifier's connection, so a cached token is dropped as soon as
// its session is revoked (and the cache is bypassed while the stream is
// stale). Only useful with WithCache. Call Close to stop the watch.
func WithRevocationWatch() RemoteOption {
	return remoteOption(func(c *remoteConfig) { c.watch = true })
}

// WithJWKSURL (local) fetches the verification keys from identity's JWKS
// document, e.g. "http://127.0.0.1:8080/.well-known/jwks.json".
func WithJWKSURL(url string) LocalOption {
	return localOption(func(c *localConfig) { c.jwksURL = url })
}

// WithHTTPClient (local) is the client WithJWKSURL fetches with. Default
// http.DefaultClient; every fetch is bounded by WithCallTimeout anyway.
func WithHTTPClient(h *http.Client) LocalOption {
	return localOption(func(c *localConfig) { c.httpClient = h })
}

// WithKeysFromConn (local) fetches the verification keys with identity's
// GetPublicKeys RPC over conn. The revocation stream then uses conn too,
// unless WithRevocationsFromConn names another.
func WithKeysFromConn(conn grpc.ClientConnInterface) LocalOption {
	return localOption(func(c *localConfig) { c.keysConn = conn })
}

// WithRevocationsFromConn (local) follows identity's WatchRevocations
// stream over conn. Required with WithJWKSURL: a local verifier that cannot
// learn of logouts is exactly what authn exists to avoid.
func WithRevocationsFromConn(conn grpc.ClientConnInterface) LocalOption {
	return localOption(func(c *localConfig) { c.revocationsConn = conn })
}

// WithRemoteFallback (local) asks identity's Verify over conn instead of
// failing closed while the revocation stream is stale, and for tokens
// issued before a reset of the stream. Without it those calls fail with
// UNAVAILABLE / VERIFIER_STALE.
func WithRemoteFallback(conn grpc.ClientConnInterface) LocalOption {
	return localOption(func(c *localConfig) { c.fallbackConn = conn })
}

// WithIssuer (local) is the iss tokens must carry: identity's --issuer.
// Default "identity".
func WithIssuer(iss string) LocalOption {
	return localOption(func(c *localConfig) { c.issuer = iss })
}

// WithAudience (local) is the aud tokens must carry: identity's
// --audience. Default "identity".
func WithAudience(aud string) LocalOption {
	return localOption(func(c *localConfig) { c.audience = aud })
}

// WithLeeway (local) is the clock skew allowed on exp, nbf and iat, from 0
// to token.MaxLeeway. Default 30s, as identity's --leeway.
func WithLeeway(d time.Duration) LocalOption {
	return localOption(func(c *localConfig) { c.leeway = d })
}

// WithAccessTTL (local) is identity's --access-ttl: a token whose lifetime
// (exp - iat) exceeds it plus the leeway is refused, so a token minted with
// a leaked key and a far exp is not accepted for years. Default
// DefaultMaxAccessTTL, a bound no sane deployment reaches; set it to match
// identityd for the tightest check.
func WithAccessTTL(d time.Duration) LocalOption {
	return localOption(func(c *localConfig) { c.accessTTL = d })
}

// WithStaleness (local, and remote with WithRevocationWatch) is how long
// the verifier keeps trusting its revocation set after it last heard from
// identity; past it, a local Verify fails closed (or falls back, see
// WithRemoteFallback) and a remote one stops answering from its cache.
// Default DefaultStaleness. It must exceed identity's heartbeat interval
// (1s).
func WithStaleness(d time.Duration) VerifierOption {
	return func(c *commonConfig) { c.staleness = d }
}

// WithKeyRefresh (local) is how often the keys are refetched in the
// background. Default DefaultKeyRefresh.
func WithKeyRefresh(d time.Duration) LocalOption {
	return localOption(func(c *localConfig) { c.keyRefresh = d })
}

// WithKeyRefetchInterval (local) is the least time between two refetches
// triggered by an unknown kid. Default DefaultKeyRefetchInterval.
func WithKeyRefetchInterval(d time.Duration) LocalOption {
	return localOption(func(c *localConfig) { c.keyRefetch = d })
}

// WithMaxRevoked (local, and remote with WithRevocationWatch) bounds the revoked-session set. A revocation that
// does not fit is not dropped: the verifier distrusts every token (fails
// closed or falls back) until that revocation would have expired. Default
// DefaultMaxRevoked.
func WithMaxRevoked(n int) VerifierOption {
	return func(c *commonConfig) { c.maxRevoked = n }
}

// WithReconnectBackoff (local, and remote with WithRevocationWatch) bounds
// the exponential, jittered wait between attempts to reopen the revocation
// stream. Default 100ms to 5s.
func WithReconnectBackoff(min, max time.Duration) VerifierOption {
	return func(c *commonConfig) { c.backoffMin, c.backoffMax = min, max }
}

func defaultCommon() commonConfig {
	return commonConfig{
		callTimeout: DefaultCallTimeout,
		now:         time.Now,
		log:         slog.Default(),
		staleness:   DefaultStaleness,
		maxRevoked:  DefaultMaxRevoked,
		backoffMin:  100 * time.Millisecond,
		backoffMax:  5 * time.Second,
	}
}

func newLocalConfig(opts []LocalOption) localConfig {
	c := localConfig{
		commonConfig: defaultCommon(),
		issuer:       token.DefaultIssuer,
		audience:     token.DefaultAudience,
		leeway:       token.DefaultLeeway,
		accessTTL:    DefaultMaxAccessTTL,
		keyRefresh:   DefaultKeyRefresh,
		keyRefetch:   DefaultKeyRefetchInterval,
		httpClient:   http.DefaultClient,
	}
	for _, o := range opts {
		o.applyLocal(&c)
	}
	return c
}

func newRemoteConfig(opts []RemoteOption) remoteConfig {
	c := remoteConfig{commonConfig: defaultCommon()}
	for _, o := range opts {
		o.applyRemote(&c)
	}
	return c
}

func (c *commonConfig) check() error {
	var errs []error
	if c.callTimeout <= 0 {
		errs = append(errs, fmt.Errorf("authn: call timeout %v must be positive", c.callTimeout))
	}
	if c.now == nil {
		errs = append(errs, errors.New("authn: clock must not be nil"))
	}
	if c.log == nil {
		errs = append(errs, errors.New("authn: logger must not be nil"))
	}
	if c.backoffMin <= 0 || c.backoffMax < c.backoffMin {
		errs = append(errs, fmt.Errorf("authn: reconnect backoff %v..%v: want 0 < min <= max", c.backoffMin, c.backoffMax))
	}
	if c.staleness <= 0 {
		errs = append(errs, fmt.Errorf("authn: staleness %v must be positive", c.staleness))
	}
	if c.maxRevoked <= 0 {
		errs = append(errs, fmt.Errorf("authn: max revoked %d must be positive", c.maxRevoked))
	}
	return errors.Join(errs...)
}
