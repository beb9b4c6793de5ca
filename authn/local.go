package authn

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc/codes"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/tokencheck"
	"github.com/identityd/identity/token"
)

// The contract's answers, built once: they carry nothing specific to a
// call, and a status error is never modified once made.
var (
	errMissingToken = Error(codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID, "missing bearer access token")
	errTokenInvalid = Error(codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID, "access token invalid")
	errTokenExpired = Error(codes.Unauthenticated, identityv1.ErrorReason_TOKEN_EXPIRED, "access token expired")
	errTokenRevoked = Error(codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED, "access token revoked")
	errStale        = Error(codes.Unavailable, identityv1.ErrorReason_VERIFIER_STALE, "cannot check the token: no recent word from the identity service")
	errUnavailable  = Error(codes.Unavailable, identityv1.ErrorReason_IDENTITY_UNAVAILABLE, "the identity service is unavailable")
)

// Local verifies access tokens in process: the signature with identity's
// published keys (through the same token.Verifier the server uses, with
// the same iss, aud, typ, exp and leeway rules), and the session against a
// set of revoked sessions that identity pushes over WatchRevocations.
//
// It never answers from a set it cannot trust: when the stream has been
// down longer than the staleness bound, Verify fails with UNAVAILABLE /
// VERIFIER_STALE, or asks identity's Verify instead (WithRemoteFallback).
// A token that verifies locally is cached (keyed by its SHA-256), so a
// repeated token costs a hash and two map lookups.
//
// Build one per process with NewLocal and Close it when done; it is safe
// for concurrent use. Returned claims are shared between calls: read them,
// do not modify them.
type Local struct {
	verifier *token.Verifier
	keys     *keys
	watcher  *watcher
	checker  *tokencheck.Checker
	fallback *Remote

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var _ Verifier = (*Local)(nil)

// NewLocal starts a local verifier: its key fetches and its revocation
// stream run in the background from now on, so the first calls may fail
// with UNAVAILABLE until both are in (see WaitReady). It needs a key
// source (WithJWKSURL or WithKeysFromConn) and a connection for the
// revocation stream (WithKeysFromConn's, or WithRevocationsFromConn).
func NewLocal(opts ...LocalOption) (*Local, error) {
	c := newLocalConfig(opts)
	if !c.cacheSet {
		c.cacheSize, c.cacheMaxAge = DefaultLocalCacheSize, 0
	}
	errs := []error{c.check()}
	var fetch fetchKeys
	switch {
	case c.jwksURL != "" && c.keysConn != nil:
		errs = append(errs, errors.New("authn: WithJWKSURL and WithKeysFromConn are exclusive: give one"))
	case c.jwksURL != "":
		if c.httpClient == nil {
			errs = append(errs, errors.New("authn: WithHTTPClient(nil)"))
		}
		fetch = jwksFetcher(c.jwksURL, c.httpClient)
	case c.keysConn != nil:
		fetch = grpcKeysFetcher(c.keysConn)
	default:
		errs = append(errs, errors.New("authn: NewLocal needs a key source: WithJWKSURL or WithKeysFromConn"))
	}
	revConn := c.revocationsConn
	if revConn == nil {
		revConn = c.keysConn
	}
	if revConn == nil {
		errs = append(errs, errors.New("authn: NewLocal needs the revocation stream: WithRevocationsFromConn (or WithKeysFromConn)"))
	}
	if c.accessTTL <= 0 {
		errs = append(errs, fmt.Errorf("authn: access TTL %v must be positive", c.accessTTL))
	}
	if c.keyRefresh <= 0 || c.keyRefetch < 0 {
		errs = append(errs, fmt.Errorf("authn: key refresh %v must be positive and refetch interval %v not negative", c.keyRefresh, c.keyRefetch))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(context.Background())
	l := &Local{cancel: cancel}
	cache := tokencheck.NewCache(c.cacheSize, c.cacheMaxAge)
	revoked := tokencheck.NewRevoked(c.staleness, c.leeway, c.maxRevoked)
	l.checker = tokencheck.NewChecker(l.verifySignature, cache, revoked, c.now)
	l.keys = &keys{
		fetch:   fetch,
		timeout: c.callTimeout,
		minGap:  c.keyRefetch,
		now:     c.now,
		log:     c.log,
		// A key withdrawn must not leave the tokens it signed in the
		// cache, nor a verification under way with it put one there.
		onChange: cache.Clear,
		ctx:      ctx,
		wg:       &l.wg,
		loaded:   make(chan struct{}),
	}
	v, err := token.NewVerifier(l.keys,
		token.WithIssuer(c.issuer),
		token.WithAudience(c.audience),
		token.WithLeeway(c.leeway),
		token.WithAccessTTL(c.accessTTL),
		token.WithClock(c.now))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("authn: %w", err)
	}
	l.verifier = v
	l.watcher = newWatcher(identityv1.NewIdentityServiceClient(revConn), revoked, &c.commonConfig)
	// Every token is checked against the set on every call, so a
	// revocation needs no cache eviction; a reset does, as asked of
	// every verifier that cached tokens.
	l.watcher.onReset = cache.Clear
	if c.fallbackConn != nil {
		l.fallback = newRemote(c.fallbackConn, &remoteConfig{commonConfig: commonConfig{callTimeout: c.callTimeout, now: c.now}})
	}
	l.wg.Go(func() { l.watcher.run(ctx) })
	l.wg.Go(func() { l.keys.run(ctx, c.keyRefresh) })
	return l, nil
}

// Verify checks an access token: signature and claims, then its session
// against the revocation set. Errors are the contract's: UNAUTHENTICATED
// with TOKEN_INVALID, TOKEN_EXPIRED or TOKEN_REVOKED, or UNAVAILABLE with
// VERIFIER_STALE (or, with WithRemoteFallback, whatever identity answers).
func (l *Local) Verify(ctx context.Context, raw string) (*Claims, error) {
	if raw == "" {
		return nil, errMissingToken
	}
	c, err := l.checker.Check(ctx, raw)
	switch {
	case err == nil:
		return c, nil
	case errors.Is(err, tokencheck.ErrRevoked):
		return nil, errTokenRevoked
	case errors.Is(err, tokencheck.ErrUntrusted), errors.Is(err, errKeysUnavailable):
		return l.distrusted(ctx, raw)
	}
	return nil, err
}

// verifySignature checks raw's signature and claims.
func (l *Local) verifySignature(ctx context.Context, raw string) (*Claims, error) {
	seen := l.keys.cur.Load()
	claims, err := l.verifier.Verify(raw)
	if err != nil && errors.Is(err, token.ErrInvalid) && len(raw) <= token.MaxTokenSize {
		// Perhaps signed by a key we have not seen yet (a rotation):
		// fetch the keys again, at once but rate limited, and retry.
		known, unsure := l.keys.learn(ctx, kidOf(raw), seen)
		switch {
		case known:
			claims, err = l.verifier.Verify(raw)
		case unsure:
			return nil, errKeysUnavailable
		}
	}
	switch {
	case err == nil:
		return &claims, nil
	case errors.Is(err, token.ErrExpired):
		return nil, errTokenExpired
	}
	return nil, errTokenInvalid
}

// errKeysUnavailable: the token names a key we could not fetch. It never
// leaves the package: Verify answers it as it answers a stale feed.
var errKeysUnavailable = errors.New("authn: verification keys unavailable")

// distrusted answers for a token that cannot be checked here: its session
// (the revocation set cannot vouch for it) or its key (not fetched).
func (l *Local) distrusted(ctx context.Context, raw string) (*Claims, error) {
	if l.fallback != nil {
		return l.fallback.Verify(ctx, raw)
	}
	return nil, errStale
}

// WaitReady waits until the keys are loaded and the revocation stream has
// caught up once, so Verify can answer locally; use it at startup, with a
// deadline.
func (l *Local) WaitReady(ctx context.Context) error {
	select {
	case <-l.keys.loaded:
	case <-ctx.Done():
		return fmt.Errorf("authn: verification keys not loaded: %w", ctx.Err())
	}
	if err := l.checker.Revoked().WaitSynced(ctx); err != nil {
		return fmt.Errorf("authn: revocation stream not caught up: %w", err)
	}
	return nil
}

// Close stops the background work (key refresh, revocation stream) and
// waits for it to end. Verify keeps answering from what it knows until the
// staleness bound, then fails closed. Close is idempotent.
func (l *Local) Close() error {
	l.closeOnce.Do(func() {
		l.keys.close()
		l.cancel()
		l.wg.Wait()
	})
	return nil
}
