package authn

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/tokencheck"
)

// purgeEvery spaces the sweeps of revocations past their forget_after.
const purgeEvery = 10 * time.Second

// cursorOrigin is the API's cursor for "the whole retained history"
// (WatchRevocationsRequest.cursor).
const cursorOrigin = "origin"

// watcher follows identity's WatchRevocations stream into a revocation set
// (tokencheck.Revoked, the same one identity's own Verify uses). It is the
// local verifier's whole knowledge of logouts; the set says plainly when
// it cannot be trusted (stale, reset, overflowed).
type watcher struct {
	client  identityv1.IdentityServiceClient
	revoked *tokencheck.Revoked
	now     func() time.Time
	log     *slog.Logger
	backoff [2]time.Duration
	// staleness bounds how long a silent stream is believed alive.
	staleness time.Duration
	// callOpts carry the watch credentials, if any.
	callOpts []grpc.CallOption

	// onReset lets a verifier drop what it cached; it runs on the
	// watcher's goroutine and must be quick. (Revocations need no such
	// hook: the verifiers consult the set on every call, cache hits
	// included.)
	onReset func()

	// cursor and lastPurge belong to the run goroutine.
	cursor    string
	lastPurge time.Time
}

func newWatcher(client identityv1.IdentityServiceClient, revoked *tokencheck.Revoked, c *commonConfig) *watcher {
	var opts []grpc.CallOption
	if c.watchCreds != nil {
		opts = append(opts, grpc.PerRPCCredentials(c.watchCreds))
	}
	return &watcher{
		callOpts:  opts,
		client:    client,
		revoked:   revoked,
		now:       c.now,
		log:       c.log,
		backoff:   [2]time.Duration{c.backoffMin, c.backoffMax},
		staleness: c.staleness,
		onReset:   func() {},
		// The whole retained history, so sessions revoked before this
		// process started are known too.
		cursor: cursorOrigin,
	}
}

// run follows the stream until ctx is done, reopening it with a jittered
// exponential backoff from the last cursor it saw.
func (f *watcher) run(ctx context.Context) {
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
func (f *watcher) follow(ctx context.Context) (caughtUp bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A stream that says nothing for this long is dead even if TCP has
	// not noticed: identity sends a heartbeat every second.
	idle := max(f.staleness, 3*time.Second)
	watchdog := time.AfterFunc(idle, cancel)
	defer watchdog.Stop()

	stream, err := f.client.WatchRevocations(ctx, &identityv1.WatchRevocationsRequest{Cursor: f.cursor}, f.callOpts...)
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
			f.revoked.Reset(now)
			f.onReset()
			f.log.Warn("authn: identity could not resume the revocation stream; tokens issued until now are checked remotely or refused")
		case msg.GetSessionId() != "":
			f.revoked.Add(msg.GetSessionId(), msg.GetForgetAfter().AsTime(), now)
		default:
			if !caughtUp {
				f.log.Debug("authn: revocation stream caught up")
			}
			caughtUp = true
		}
		if c := msg.GetCursor(); c != "" {
			f.cursor = c
		}
		if caughtUp {
			f.revoked.Heard(now)
		}
		if now.Sub(f.lastPurge) >= purgeEvery {
			f.revoked.Purge(now)
			f.lastPurge = now
		}
	}
}
