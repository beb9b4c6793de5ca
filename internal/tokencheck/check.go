// Package tokencheck is the verification core that identity's own Verify
// and authn's verifiers share, so its rules live once: a bounded cache of
// verified tokens keyed by their SHA-256 (never by the bearer token
// itself), the set of revoked sessions fed by the revocation stream, and
// the rule for when that set may vouch for a token (fresh, not reset, not
// overflowed), failing closed otherwise. It checks signatures through the
// function it is given and knows nothing of stores, gRPC or where the
// revocations come from.
package tokencheck

import (
	"context"
	"errors"
	"time"

	"github.com/identityd/identity/token"
)

var (
	// ErrRevoked: the token's session was revoked.
	ErrRevoked = errors.New("tokencheck: session revoked")
	// ErrUntrusted: the token is genuine, but the revocation set cannot
	// vouch for its session (stale feed, reset, overflow). Check returns
	// the claims with it; the caller asks a higher authority (the store,
	// identity's Verify) or fails closed.
	ErrUntrusted = errors.New("tokencheck: revocation state cannot vouch for the session")
)

// VerifyFunc checks a token's signature and claims.
type VerifyFunc func(ctx context.Context, raw string) (*token.Claims, error)

// Checker verifies tokens through a cache and checks their sessions
// against a revocation set. It is safe for concurrent use; returned claims
// are shared between calls and must not be modified.
type Checker struct {
	verify  VerifyFunc
	cache   *Cache
	revoked *Revoked
	now     func() time.Time
	keys    token.KeySource
}

// CheckerOption configures a Checker.
type CheckerOption func(*Checker)

// WithKeys makes cached tokens die with their key: a cache hit whose kid
// (token.Claims.KeyID) keys no longer knows (the key was withdrawn or
// retired) is dropped and verified again, which refuses it. Without it, a
// cached token outlives its key until its exp, unless the cache is cleared
// when the key set changes.
func WithKeys(keys token.KeySource) CheckerOption { return func(c *Checker) { c.keys = keys } }

// NewChecker returns a Checker; cache may be nil (no cache).
func NewChecker(verify VerifyFunc, cache *Cache, revoked *Revoked, now func() time.Time, opts ...CheckerOption) *Checker {
	c := &Checker{verify: verify, cache: cache, revoked: revoked, now: now}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Cache is the checker's cache (to Clear it when keys change).
func (c *Checker) Cache() *Cache { return c.cache }

// Revoked is the checker's revocation set.
func (c *Checker) Revoked() *Revoked { return c.revoked }

// Check verifies raw (from the cache when it can) and its session. It
// returns the verify function's error for a bad token, ErrRevoked for a
// revoked session, and the claims with ErrUntrusted when the set cannot
// vouch for the session.
func (c *Checker) Check(ctx context.Context, raw string) (*token.Claims, error) {
	now := c.now()
	var key Key
	if c.cache != nil {
		key = KeyOf(raw)
	}
	cl, ok := c.cache.Get(key, now)
	if ok && c.keys != nil {
		if _, _, live := c.keys.Key(cl.KeyID); !live {
			c.cache.Remove(key)
			ok = false
		}
	}
	if !ok {
		epoch := c.cache.Epoch()
		var err error
		if cl, err = c.verify(ctx, raw); err != nil {
			return nil, err
		}
		c.cache.Put(key, cl, now, epoch)
	}
	if c.revoked.IsRevoked(cl.SessionID) {
		return nil, ErrRevoked
	}
	if !c.revoked.Trusted(now, cl.IssuedAt) {
		return cl, ErrUntrusted
	}
	return cl, nil
}
