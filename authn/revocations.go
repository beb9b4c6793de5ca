package authn

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/tokenstore"
)

// forgetDefault is how long a revocation without forget_after is kept: far
// beyond any sane access-token lifetime.
const forgetDefault = 24 * time.Hour

// purgeEvery spaces the sweeps of revocations past their forget_after.
const purgeEvery = 10 * time.Second

// feed follows identity's WatchRevocations stream into a set of revoked
// sessions. It is the local verifier's whole knowledge of logouts, so it
// states plainly when it cannot be trusted:
//
//   - fresh: the stream has caught up (a heartbeat came: identity sends one
//     only once every event up to its cursor is sent) and the last word
//     from identity is at most staleness old. While the stream is down the
//     set keeps answering until that bound, then stops.
//   - resetAt: identity could not resume from our cursor (history lost), so
//     revocations may have been missed; tokens issued before the reset
//     cannot be checked here. iat is identity's clock, resetAt ours: the
//     comparison allows the leeway for the difference, erring on the side
//     of distrust.
//   - blindUntil: a revocation did not fit in the bounded set; until it
//     would have expired, nothing can be checked here.
type feed struct {
	client    identityv1.IdentityServiceClient
	now       func() time.Time
	staleness time.Duration
	skew      time.Duration // allowed between identity's clock and ours
	max       int
	log       *slog.Logger
	backoff   [2]time.Duration

	// onReset lets a verifier drop what it cached; it runs on the feed's
	// goroutine and must be quick. (Revocations need no such hook: the
	// verifiers consult the set on every call, cache hits included.)
	onReset func()

	mu      sync.RWMutex
	revoked map[string]int64 // session id -> forget after (unix ns)

	blindUntil atomic.Int64 // unix ns; written under mu

	lastHeard atomic.Int64 // unix ns of the last message once caught up; 0: never
	resetAt   atomic.Int64 // unix ns of the last reset; 0: none
	synced    chan struct{}
	syncOnce  sync.Once

	// cursor and lastPurge belong to the run goroutine.
	cursor    string
	lastPurge time.Time
}

func newFeed(client identityv1.IdentityServiceClient, c *verifierConfig) *feed {
	return &feed{
		client:    client,
		now:       c.now,
		staleness: c.staleness,
		skew:      c.leeway,
		max:       c.maxRevoked,
		log:       c.log,
		backoff:   [2]time.Duration{c.backoffMin, c.backoffMax},
		onReset:   func() {},
		revoked:   make(map[string]int64),
		synced:    make(chan struct{}),
		// The whole retained history, so sessions revoked before this
		// process started are known too.
		cursor: tokenstore.CursorOrigin,
	}
}

// isRevoked reports whether the session was revoked.
func (f *feed) isRevoked(sessionID string) bool {
	f.mu.RLock()
	_, ok := f.revoked[sessionID]
	f.mu.RUnlock()
	return ok
}

// trusted reports whether the set may vouch that a token issued at iat is
// not revoked: fresh, not blinded by an overflow, and iat after any reset.
func (f *feed) trusted(now, iat time.Time) bool {
	heard := f.lastHeard.Load()
	n := now.UnixNano()
	if heard == 0 || n-heard > int64(f.staleness) {
		return false
	}
	if r := f.resetAt.Load(); r != 0 && iat.UnixNano() <= r+int64(f.skew) {
		return false
	}
	return n >= f.blindUntil.Load()
}

// fresh reports whether the stream is caught up and recent.
func (f *feed) fresh(now time.Time) bool {
	heard := f.lastHeard.Load()
	return heard != 0 && now.UnixNano()-heard <= int64(f.staleness)
}

// add records a revoked session until forgetAfter (identity's clock: the
// leeway is added for the difference with ours).
func (f *feed) add(sessionID string, forgetAfter time.Time, now time.Time) {
	until := forgetAfter.UnixNano() + int64(f.skew)
	if forgetAfter.IsZero() || forgetAfter.UnixNano() <= 0 {
		until = now.Add(forgetDefault).UnixNano()
	}
	if until <= now.UnixNano() {
		return // no token of the session can still be valid
	}
	f.mu.Lock()
	if old, ok := f.revoked[sessionID]; ok {
		f.revoked[sessionID] = max(old, until)
	} else if len(f.revoked) < f.max {
		f.revoked[sessionID] = until
	} else {
		f.blindUntil.Store(max(f.blindUntil.Load(), until))
	}
	f.mu.Unlock()
}

func (f *feed) purge(now time.Time) {
	n := now.UnixNano()
	f.mu.Lock()
	for sid, until := range f.revoked {
		if until <= n {
			delete(f.revoked, sid)
		}
	}
	f.mu.Unlock()
}

// waitSynced waits until the stream has caught up once.
func (f *feed) waitSynced(ctx context.Context) error {
	select {
	case <-f.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run follows the stream until ctx is done, reopening it with a jittered
// exponential backoff from the last cursor it saw.
func (f *feed) run(ctx context.Context) {
	wait := f.backoff[0]
	logged := false // one warning per outage, not one per attempt
	for ctx.Err() == nil {
		caughtUp, err := f.follow(ctx)
		if ctx.Err() != nil {
			return
		}
		if caughtUp {
			wait, logged = f.backoff[0], false
		}
		if !logged {
			f.log.Warn("authn: revocation stream down; reconnecting",
				slog.String("error", err.Error()),
				slog.Duration("fail_closed_after", f.staleness))
			logged = true
		}
		// Jitter over [wait/2, wait]: verifiers that lost the same
		// identity instance do not all come back in step.
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(wait*2, f.backoff[1])
	}
}

// follow opens one stream and reads it until it fails. caughtUp reports
// whether it got as far as a heartbeat.
func (f *feed) follow(ctx context.Context) (caughtUp bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A stream that says nothing for this long is dead even if TCP has
	// not noticed: identity sends a heartbeat every second.
	idle := max(f.staleness, 3*time.Second)
	watchdog := time.AfterFunc(idle, cancel)
	defer watchdog.Stop()

	stream, err := f.client.WatchRevocations(ctx, &identityv1.WatchRevocationsRequest{Cursor: f.cursor})
	if err != nil {
		return false, err
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			return caughtUp, err
		}
		watchdog.Reset(idle)
		now := f.now()
		switch {
		case msg.GetReset_():
			f.resetAt.Store(now.UnixNano())
			f.onReset()
			f.log.Warn("authn: identity could not resume the revocation stream; tokens issued until now are checked remotely or refused")
		case msg.GetSessionId() != "":
			f.add(msg.GetSessionId(), msg.GetForgetAfter().AsTime(), now)
		default:
			caughtUp = true
		}
		if c := msg.GetCursor(); c != "" {
			f.cursor = c
		}
		if caughtUp {
			f.lastHeard.Store(now.UnixNano())
			// After lastHeard: whoever waited for the sync finds it fresh.
			f.syncOnce.Do(func() {
				close(f.synced)
				f.log.Debug("authn: revocation stream caught up")
			})
		}
		if now.Sub(f.lastPurge) >= purgeEvery {
			f.purge(now)
			f.lastPurge = now
		}
	}
}
