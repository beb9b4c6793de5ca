package tokencheck

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// forgetDefault is how long a revocation without a forget-after time is
// kept: far beyond any sane access-token lifetime.
const forgetDefault = 24 * time.Hour

// Revoked is the set of revoked sessions a verifier consults on every call,
// with what it needs to say plainly when the set cannot vouch for a token:
//
//   - fresh: the feed that fills the set has caught up with every event up
//     to a moment at most staleness ago (Heard). While the feed is down the
//     set keeps answering until that bound, then stops.
//   - reset: the feed could not resume (history lost), so revocations may
//     have been missed; tokens issued before the reset cannot be checked
//     here. iat is the issuer's clock, the reset time ours: the comparison
//     allows the skew for the difference, erring on the side of distrust.
//   - blind: a revocation did not fit in the bounded set; until it would
//     have expired, nothing can be checked here.
type Revoked struct {
	staleness time.Duration
	skew      time.Duration
	max       int

	mu       sync.RWMutex
	sessions map[string]int64 // session id -> forget after (unix ns)

	blindUntil atomic.Int64 // unix ns; written under mu
	lastHeard  atomic.Int64 // unix ns of the last catch-up; 0: never, or stale
	resetAt    atomic.Int64 // unix ns of the last reset; 0: none
	synced     chan struct{}
	syncOnce   sync.Once
}

// NewRevoked returns an empty set that trusts nothing until Heard: it
// vouches for a token while the last catch-up is at most staleness old,
// allows skew between the issuer's clock and ours, and holds at most max
// sessions.
func NewRevoked(staleness, skew time.Duration, max int) *Revoked {
	return &Revoked{
		staleness: staleness,
		skew:      skew,
		max:       max,
		sessions:  make(map[string]int64),
		synced:    make(chan struct{}),
	}
}

// Add records a revoked session until forgetAfter (the issuer's clock: the
// skew is added for the difference with ours). A zero forgetAfter means
// "long after any token of it".
func (r *Revoked) Add(sessionID string, forgetAfter, now time.Time) {
	until := forgetAfter.UnixNano() + int64(r.skew)
	if forgetAfter.IsZero() || forgetAfter.UnixNano() <= 0 {
		until = now.Add(forgetDefault).UnixNano()
	}
	if until <= now.UnixNano() {
		return // no token of the session can still be valid
	}
	r.mu.Lock()
	if old, ok := r.sessions[sessionID]; ok {
		r.sessions[sessionID] = max(old, until)
	} else if len(r.sessions) < r.max {
		r.sessions[sessionID] = until
	} else {
		r.blindUntil.Store(max(r.blindUntil.Load(), until))
	}
	r.mu.Unlock()
}

// IsRevoked reports whether the session was revoked.
func (r *Revoked) IsRevoked(sessionID string) bool {
	r.mu.RLock()
	_, ok := r.sessions[sessionID]
	r.mu.RUnlock()
	return ok
}

// Trusted reports whether the set may vouch that a token issued at iat is
// not revoked: fresh, not blinded by an overflow, and iat after any reset.
func (r *Revoked) Trusted(now, iat time.Time) bool {
	if !r.Fresh(now) {
		return false
	}
	if at := r.resetAt.Load(); at != 0 && iat.UnixNano() <= at+int64(r.skew) {
		return false
	}
	return now.UnixNano() >= r.blindUntil.Load()
}

// Fresh reports whether the feed caught up at most staleness ago.
func (r *Revoked) Fresh(now time.Time) bool {
	heard := r.lastHeard.Load()
	return heard != 0 && now.UnixNano()-heard <= int64(r.staleness)
}

// Heard records that every revocation up to at is in the set.
func (r *Revoked) Heard(at time.Time) {
	r.lastHeard.Store(at.UnixNano())
	// After lastHeard: whoever waited for the sync finds the set fresh.
	r.syncOnce.Do(func() { close(r.synced) })
}

// LastHeard is the time of the last catch-up (Heard), zero before the
// first one and while the set is stale (Stale).
func (r *Revoked) LastHeard() time.Time {
	if n := r.lastHeard.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Stale withdraws the set's word at once (the feed failed): until the next
// Heard, Trusted is false.
func (r *Revoked) Stale() { r.lastHeard.Store(0) }

// Reset records that revocations before at may have been missed.
func (r *Revoked) Reset(at time.Time) { r.resetAt.Store(at.UnixNano()) }

// Purge forgets the revocations past their forget-after time.
func (r *Revoked) Purge(now time.Time) {
	n := now.UnixNano()
	r.mu.Lock()
	for sid, until := range r.sessions {
		if until <= n {
			delete(r.sessions, sid)
		}
	}
	r.mu.Unlock()
}

// Len is the number of sessions in the set.
func (r *Revoked) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.sessions)
}

// WaitSynced waits until the first Heard.
func (r *Revoked) WaitSynced(ctx context.Context) error {
	select {
	case <-r.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
