package authn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/tokencheck"
	"github.com/identityd/identity/token"
)

// Remote verifies access tokens by asking identity's Verify over a
// connection the caller owns: every check sees revocations at once, at the
// price of a round trip (and of identity being up). Identity's own answers
// (TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_REVOKED, STORE_UNAVAILABLE...) pass
// through unchanged; when identity cannot be reached or does not answer in
// time, Verify fails with UNAVAILABLE / IDENTITY_UNAVAILABLE. It never
// answers OK without identity's word, except from its optional cache
// (WithCache, WithRevocationWatch).
//
// It is safe for concurrent use. Returned claims may be shared between
// calls: read them, do not modify them.
type Remote struct {
	client  identityv1.IdentityServiceClient
	timeout time.Duration
	now     func() time.Time
	cache   *tokencheck.Cache
	revoked *tokencheck.Revoked // nil without WithRevocationWatch

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var _ Verifier = (*Remote)(nil)

// NewRemote returns a verifier asking identity over conn, or an error for
// invalid option values. With WithRevocationWatch (and WithCache), Close
// stops the watch.
func NewRemote(conn grpc.ClientConnInterface, opts ...RemoteOption) (*Remote, error) {
	c := newRemoteConfig(opts)
	if err := c.check(); err != nil {
		return nil, err
	}
	if conn == nil {
		return nil, errors.New("authn: NewRemote needs a connection to identity")
	}
	r := newRemote(conn, &c)
	if c.watch && r.cache != nil {
		r.revoked = tokencheck.NewRevoked(c.staleness, token.DefaultLeeway, c.maxRevoked)
		w := newWatcher(r.client, r.revoked, &c.commonConfig)
		w.onReset = r.cache.Clear
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		r.wg.Go(func() { w.run(ctx) })
	}
	return r, nil
}

func newRemote(conn grpc.ClientConnInterface, c *remoteConfig) *Remote {
	return &Remote{
		client:  identityv1.NewIdentityServiceClient(conn),
		timeout: c.callTimeout,
		now:     c.now,
		cache:   tokencheck.NewCache(c.cacheSize, c.cacheMaxAge),
		cancel:  func() {},
	}
}

// Verify asks identity about raw, or answers from the cache.
func (r *Remote) Verify(ctx context.Context, raw string) (*Claims, error) {
	if raw == "" {
		return nil, errMissingToken
	}
	if len(raw) > token.MaxTokenSize {
		// identity would call it INVALID_REQUEST; to the caller of a
		// protected service it is just an invalid token.
		return nil, errTokenInvalid
	}
	var key tokencheck.Key
	var epoch uint64
	if r.cache != nil {
		key = tokencheck.KeyOf(raw)
		now := r.now()
		if c, ok := r.cache.Get(key, now); ok {
			if r.revoked == nil || !r.revoked.IsRevoked(c.SessionID) && r.revoked.Trusted(now, c.IssuedAt) {
				return c, nil
			}
			r.cache.Remove(key)
		}
		epoch = r.cache.Epoch()
	}
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	resp, err := r.client.Verify(ctx, &identityv1.VerifyRequest{Token: raw})
	if err != nil {
		if ErrorInfo(err) != nil {
			return nil, err // identity's own answer: the contract's error
		}
		// No ErrorInfo: identity was not reached, or did not answer in
		// time, or something between us broke the call.
		return nil, errUnavailable
	}
	c := &Claims{
		Subject:   resp.GetSubject(),
		Username:  resp.GetUsername(),
		Roles:     resp.GetRoles(),
		SessionID: resp.GetSessionId(),
		IssuedAt:  resp.GetIssuedAt().AsTime(),
		ExpiresAt: resp.GetExpiresAt().AsTime(),
	}
	r.cache.Put(key, c, r.now(), epoch)
	return c, nil
}

// WaitReady waits until the revocation watch (WithRevocationWatch) has
// caught up, so the cache may answer; without a watch it returns at once.
func (r *Remote) WaitReady(ctx context.Context) error {
	if r.revoked == nil {
		return nil
	}
	if err := r.revoked.WaitSynced(ctx); err != nil {
		return fmt.Errorf("authn: revocation watch not caught up: %w", err)
	}
	return nil
}

// Close stops the revocation watch, if any, and waits for it to end. The
// connection stays open: it is the caller's. Close is idempotent.
func (r *Remote) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		r.wg.Wait()
	})
	return nil
}
