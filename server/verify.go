package server

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
)

// Verify's hot path must not be "parse, check the signature, ask the store"
// on every call (DESIGN.md targets). Two in-process structures remove that:
//
//   - tokenCache remembers tokens whose signature and claims already
//     verified, until they expire; a hit costs a map lookup.
//   - revocations is a set of revoked session ids fed by the store's
//     revocation stream (polled every few milliseconds, and at once after a
//     revocation made here). While the feed is fresh the session check is
//     answered from that set; when the feed is stale (store down, or the
//     history it resumed from was lost) Verify falls back to asking the
//     store, which fails closed when the store is unreachable.

// tokenCache is a bounded map of verified access tokens.
type tokenCache struct {
	mu  sync.RWMutex
	m   map[string]*token.Claims
	max int
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{m: make(map[string]*token.Claims), max: max}
}

func (c *tokenCache) get(raw string) (*token.Claims, bool) {
	c.mu.RLock()
	cl, ok := c.m[raw]
	c.mu.RUnlock()
	return cl, ok
}

func (c *tokenCache) put(raw string, cl *token.Claims) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		// Evict an arbitrary eighth (map order is random): cheap, bounded,
		// and a miss only costs one signature check.
		n := c.max / 8
		for k := range c.m {
			delete(c.m, k)
			if n--; n <= 0 {
				break
			}
		}
	}
	c.m[raw] = cl
}

func (c *tokenCache) purgeExpired(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, cl := range c.m {
		if now.After(cl.ExpiresAt) {
			delete(c.m, k)
		}
	}
}

func (c *tokenCache) clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}

// revocations is the in-process set of revoked sessions.
type revocations struct {
	mu       sync.RWMutex
	sessions map[string]time.Time // session id -> forget after
}

func newRevocations() *revocations {
	return &revocations{sessions: make(map[string]time.Time)}
}

func (r *revocations) add(sid string, forgetAfter time.Time) {
	r.mu.Lock()
	if forgetAfter.After(r.sessions[sid]) {
		r.sessions[sid] = forgetAfter
	}
	r.mu.Unlock()
}

func (r *revocations) revoked(sid string) bool {
	r.mu.RLock()
	_, ok := r.sessions[sid]
	r.mu.RUnlock()
	return ok
}

func (r *revocations) purge(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, t := range r.sessions {
		if now.After(t) {
			delete(r.sessions, k)
		}
	}
}

// feed follows the store's revocation stream into revocations.
type feed struct {
	store  tokenstore.Store
	rev    *revocations
	cache  *tokenCache
	now    func() time.Time
	cursor string
	mu     sync.Mutex // one poll at a time
	// freshUntil is the unix-nano time until which the session check may be
	// answered from rev alone.
	freshUntil atomic.Int64
	staleAfter time.Duration
	// horizon is how long a revoked session's tokens can stay valid.
	horizon time.Duration
	// blindUntil: after lost history, the store answers every session
	// check until tokens issued before the gap have expired (guarded by mu).
	blindUntil time.Time
}

// start loads the retained history so revocations made before this process
// started are known too.
func (f *feed) start(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cursor = tokenstore.CursorOrigin
	return f.pollLocked(ctx)
}

// poll reads every event after the cursor and marks the feed fresh.
func (f *feed) poll(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pollLocked(ctx)
}

func (f *feed) pollLocked(ctx context.Context) error {
	began := f.now()
	for {
		events, next, ok, err := f.store.Revocations(ctx, f.cursor, 1000)
		if err != nil {
			// Fail closed at once: until a read succeeds, the store
			// answers every session check (and fails if it is down).
			f.freshUntil.Store(0)
			return err
		}
		if !ok {
			// History was lost (store restarted empty, or we fell behind
			// the retention): distrust everything cached and ask the store
			// for every token until all tokens from before have expired.
			f.cache.clear()
			f.freshUntil.Store(0)
			f.cursor = next
			f.blindUntil = began.Add(f.horizon)
			continue
		}
		for _, e := range events {
			f.rev.add(e.SessionID, e.ForgetAfter)
		}
		f.cursor = next
		if len(events) < 1000 {
			break
		}
	}
	if began.After(f.blindUntil) {
		f.freshUntil.Store(began.Add(f.staleAfter).UnixNano())
	}
	return nil
}

// fresh reports whether rev alone may answer the session check now.
func (f *feed) fresh(now time.Time) bool {
	return now.UnixNano() < f.freshUntil.Load()
}

// verify checks an access token completely: signature and claims (cached),
// expiry, and that its session is still live.
func (s *Server) verify(ctx context.Context, raw string) (*token.Claims, error) {
	now := s.now()
	c, ok := s.cache.get(raw)
	if !ok {
		claims, err := s.verifier.Verify(raw)
		if err != nil {
			return nil, err
		}
		c = &claims
		s.cache.put(raw, c)
	} else if now.After(c.ExpiresAt.Add(s.cfg.Leeway)) {
		return nil, token.ErrExpired
	}
	if s.revoked.revoked(c.SessionID) {
		return nil, errTokenRevoked
	}
	if s.feed.fresh(now) {
		return c, nil
	}
	sess, err := s.store.Session(ctx, c.SessionID)
	if errors.Is(err, tokenstore.ErrNotFound) || err == nil && sess.UserID != c.Subject {
		return nil, errTokenRevoked
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}
