package sessions_test

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/internal/tokencheck"
	"github.com/identityd/identity/sessions"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
)

// stores runs a test on the embedded store and on a real Redis.
func stores(t *testing.T, run func(t *testing.T, store tokenstore.Store)) {
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		run(t, tokenstore.NewMemory())
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		client := testredis.Start(t)
		run(t, tokenstore.NewRedis(client, tokenstore.WithPrefix(testredis.KeyPrefix(t, client))))
	})
}

type fixture struct {
	store   tokenstore.Store
	revoked *tokencheck.Revoked
	svc     *sessions.Service
	user    tokenstore.User
}

func newFixture(t *testing.T, store tokenstore.Store) *fixture {
	t.Helper()
	secret := make([]byte, 32)
	if _, err := io.ReadFull(rand.Reader, secret); err != nil {
		t.Fatal(err)
	}
	refresh, err := token.NewRefresh(secret)
	if err != nil {
		t.Fatal(err)
	}
	uid, err := tokenstore.NewUserID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u := tokenstore.User{ID: uid, Username: "u-" + uid, CreatedAt: time.Now()}
	if err := store.CreateUser(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	revoked := tokencheck.NewRevoked(time.Minute, 0, 1000)
	svc := sessions.New(store, refresh, revoked, sessions.Config{
		AbsoluteTTL: time.Hour, IdleTTL: time.Hour, Grace: 10 * time.Second,
		AccessTTL: 15 * time.Minute, Leeway: 30 * time.Second,
	}, time.Now, rand.Reader)
	return &fixture{store: store, revoked: revoked, svc: svc, user: u}
}

func (f *fixture) login(t *testing.T) (tokenstore.Session, string) {
	t.Helper()
	// As a login does: the user as it is now (its credential epoch).
	u, err := f.store.UserByID(t.Context(), f.user.ID)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := f.svc.Create(t.Context(), u, sessions.Client{UserAgent: "test\x00agent", Addr: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	return sess, f.svc.RefreshToken(sess)
}

// Every way of ending a session puts it in this instance's revocation set
// before it returns, so the instance's own Verify refuses its access
// tokens at once, without waiting for the feed.
func TestRevocationsReachTheSetAtOnce(t *testing.T) {
	stores(t, func(t *testing.T, store tokenstore.Store) {
		f := newFixture(t, store)
		ctx := t.Context()

		one, rt := f.login(t)
		if err := f.svc.Logout(ctx, rt, false); err != nil {
			t.Fatal(err)
		}
		if !f.revoked.IsRevoked(one.ID) {
			t.Error("Logout: session not in the revocation set")
		}
		if err := f.svc.Logout(ctx, rt, false); !errors.Is(err, sessions.ErrRefreshTokenInvalid) {
			t.Errorf("Logout of a logged-out session: %v, want ErrRefreshTokenInvalid", err)
		}

		a, rtA := f.login(t)
		b, _ := f.login(t)
		if err := f.svc.Logout(ctx, rtA, true); err != nil {
			t.Fatal(err)
		}
		if !f.revoked.IsRevoked(a.ID) || !f.revoked.IsRevoked(b.ID) {
			t.Error("Logout of all sessions: not every session in the revocation set")
		}

		admin, _ := f.login(t)
		if err := f.svc.RevokeSession(ctx, admin.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		if !f.revoked.IsRevoked(admin.ID) {
			t.Error("RevokeSession: session not in the revocation set")
		}

		reused, rtOld := f.login(t)
		if _, _, err := f.svc.Refresh(ctx, rtOld, sessions.Client{}); err != nil {
			t.Fatal(err)
		}
		// Past the grace window: the old token again is theft.
		late := sessions.New(store, refreshOf(t, f), f.revoked, sessions.Config{
			AbsoluteTTL: time.Hour, IdleTTL: time.Hour, Grace: 10 * time.Second,
			AccessTTL: 15 * time.Minute, Leeway: 30 * time.Second,
		}, func() time.Time { return time.Now().Add(time.Minute) }, rand.Reader)
		if _, _, err := late.Refresh(ctx, rtOld, sessions.Client{}); !errors.Is(err, tokenstore.ErrReused) {
			t.Fatalf("reused refresh token: %v, want ErrReused", err)
		}
		if !f.revoked.IsRevoked(reused.ID) {
			t.Error("reuse: session not in the revocation set")
		}

		if _, _, err := f.svc.Refresh(ctx, "rt1.garbage", sessions.Client{}); !errors.Is(err, sessions.ErrRefreshTokenInvalid) {
			t.Errorf("Refresh(garbage): %v, want ErrRefreshTokenInvalid", err)
		}
	})
}

// refreshOf digs the fixture's codec back out through a token round trip:
// a second Service must encode and decode with the same secret.
func refreshOf(t *testing.T, f *fixture) *token.Refresh {
	t.Helper()
	return f.svc.Codec()
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// receive waits for the watcher's next message that is not a heartbeat.
func receive(t *testing.T, w *sessions.Watcher) sessions.Message {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m := <-w.C:
			if len(m.Events) == 0 && !m.Reset {
				continue
			}
			return m
		case <-w.Done:
			t.Fatalf("watcher ended: %v", w.Err())
		case <-deadline:
			t.Fatal("no message from the feed")
		}
	}
}

// The feed reads what another instance revokes (straight in the store),
// fills the set and hands it to every watcher; an idle feed sends
// heartbeats.
// TestLogoutWithATokenAheadOfTheStore: a store that lost its last
// rotations (Redis restarted from an AOF without them) is behind the token
// its client holds. That token is still the session's own (its MAC says
// this service issued it): Logout with it ends the session, while Refresh
// refuses it as invalid, never as reused, and leaves the session alone.
func TestLogoutWithATokenAheadOfTheStore(t *testing.T) {
	stores(t, func(t *testing.T, store tokenstore.Store) {
		f := newFixture(t, store)
		ctx := t.Context()
		sess, _ := f.login(t)
		ahead := sess
		ahead.Generation += 2 // two rotations the store no longer has
		rt := f.svc.RefreshToken(ahead)

		if _, _, err := f.svc.Refresh(ctx, rt, sessions.Client{}); !errors.Is(err, sessions.ErrRefreshTokenInvalid) {
			t.Fatalf("Refresh with a token ahead of the store: %v, want ErrRefreshTokenInvalid", err)
		}
		if f.revoked.IsRevoked(sess.ID) {
			t.Fatal("Refresh with a token ahead of the store revoked the session")
		}
		if err := f.svc.Logout(ctx, rt, false); err != nil {
			t.Fatalf("Logout with a token ahead of the store: %v", err)
		}
		if _, err := store.Session(ctx, sess.ID); !errors.Is(err, tokenstore.ErrNotFound) {
			t.Errorf("session after Logout with a token ahead of the store: %v, want it gone", err)
		}
		if !f.revoked.IsRevoked(sess.ID) {
			t.Error("Logout with a token ahead of the store: session not in the revocation set")
		}

		// Another incarnation's token (another nonce) is still refused.
		other, _ := f.login(t)
		forged := other
		forged.Nonce = sess.Nonce
		if err := f.svc.Logout(ctx, f.svc.RefreshToken(forged), false); !errors.Is(err, sessions.ErrRefreshTokenInvalid) {
			t.Errorf("Logout with another nonce: %v, want ErrRefreshTokenInvalid", err)
		}
	})
}

func TestFeedFansOutRevocations(t *testing.T) {
	stores(t, func(t *testing.T, store tokenstore.Store) {
		f := newFixture(t, store)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		feed := sessions.NewFeed(store, f.revoked, sessions.FeedConfig{Wait: 50 * time.Millisecond}, time.Now, quietLog())
		go func() { defer close(done); feed.Run(ctx) }()
		defer func() { cancel(); <-done }()
		if err := f.revoked.WaitSynced(ctx); err != nil {
			t.Fatal(err)
		}

		watchers := make([]*sessions.Watcher, 3)
		for i := range watchers {
			w, err := feed.Subscribe()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			watchers[i] = w
		}
		if n := feed.Watchers(); n != 3 {
			t.Fatalf("Watchers() = %d, want 3", n)
		}
		// A heartbeat: a message with no events and no reset.
		select {
		case m := <-watchers[0].C:
			if len(m.Events) != 0 || m.Reset || m.Cursor == "" {
				t.Fatalf("first message of an idle feed: %+v, want a heartbeat", m)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("no heartbeat from an idle feed")
		}

		sess, _ := f.login(t)
		if err := store.RevokeSession(ctx, sess.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		for i, w := range watchers {
			m := receive(t, w)
			if len(m.Events) != 1 || m.Events[0].SessionID != sess.ID || m.Cursor != m.Events[0].Cursor {
				t.Fatalf("watcher %d got %+v, want the revocation of %s", i, m, sess.ID)
			}
		}
		if !f.revoked.IsRevoked(sess.ID) {
			t.Fatal("the feed did not put the event in the revocation set")
		}
	})
}

// A watcher that does not read is cut once its buffer is full; the others
// are not held up. The cap on watchers holds.
func TestFeedCutsSlowWatchersAndCapsThem(t *testing.T) {
	store := tokenstore.NewMemory()
	f := newFixture(t, store)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	feed := sessions.NewFeed(store, f.revoked, sessions.FeedConfig{
		Wait: time.Hour, MaxWatchers: 2, WatcherBuffer: 2,
	}, time.Now, quietLog())
	go func() { defer close(done); feed.Run(ctx) }()
	if err := f.revoked.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	slow, err := feed.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	fast, err := feed.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := feed.Subscribe(); !errors.Is(err, sessions.ErrTooManyWatchers) {
		t.Fatalf("third watcher: %v, want ErrTooManyWatchers", err)
	}
	for range 4 {
		sess, _ := f.login(t)
		if err := store.RevokeSession(ctx, sess.ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		receive(t, fast)
	}
	select {
	case <-slow.Done:
		if !errors.Is(slow.Err(), sessions.ErrTooSlow) {
			t.Fatalf("slow watcher ended with %v, want ErrTooSlow", slow.Err())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a watcher that never reads was not cut")
	}
	if n := feed.Watchers(); n != 1 {
		t.Fatalf("Watchers() = %d after the cut, want 1", n)
	}
	// Stopping the feed ends the others.
	cancel()
	<-done
	select {
	case <-fast.Done:
		if !errors.Is(fast.Err(), sessions.ErrFeedClosed) {
			t.Fatalf("watcher of a stopped feed ended with %v, want ErrFeedClosed", fast.Err())
		}
	default:
		t.Fatal("a stopped feed left a watcher open")
	}
	if _, err := feed.Subscribe(); !errors.Is(err, sessions.ErrFeedClosed) {
		t.Fatalf("Subscribe to a stopped feed: %v, want ErrFeedClosed", err)
	}
}

// A feed whose store stops answering withdraws the set's word at once, and
// gives it again by itself when the store is back.
func TestFeedFailsClosedWhileTheStoreIsDown(t *testing.T) {
	t.Parallel()
	srv := testredis.NewServer(t)
	store := tokenstore.NewRedis(srv.Client(t))
	revoked := tokencheck.NewRevoked(time.Hour, 0, 1000)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	feed := sessions.NewFeed(store, revoked, sessions.FeedConfig{Wait: 50 * time.Millisecond}, time.Now, quietLog())
	go func() { defer close(done); feed.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := revoked.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	waitFor(t, "the set to stop vouching with the store down", func() bool { return !revoked.Trusted(time.Now(), time.Now()) })
	srv.Restart()
	waitFor(t, "the set to vouch again with the store back", func() bool { return revoked.Trusted(time.Now(), time.Now()) })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The race of issue "a login in flight survives a password change", made
// deterministic: the login has authenticated (read the user) when the
// password changes; its session must not be born.
func TestLoginInFlightLosesToACredentialChange(t *testing.T) {
	stores(t, func(t *testing.T, store tokenstore.Store) {
		f := newFixture(t, store)
		ctx := t.Context()
		authenticated, err := store.UserByID(ctx, f.user.ID) // what Authenticate returned
		if err != nil {
			t.Fatal(err)
		}
		for _, change := range []struct {
			name string
			do   func() error
		}{
			{"password change", func() error {
				_, err := store.UpdateUser(ctx, f.user.ID, func(u tokenstore.User) (tokenstore.User, error) {
					u.PasswordHash, u.Epoch = "new-hash", u.Epoch+1
					return u, nil
				})
				return err
			}},
			{"log out everywhere", func() error { return f.svc.EndAll(ctx, f.user.ID, time.Now()) }},
		} {
			if err := change.do(); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.Create(ctx, authenticated, sessions.Client{}); !errors.Is(err, tokenstore.ErrStale) {
				t.Fatalf("after a %s, the in-flight login's session: %v, want ErrStale", change.name, err)
			}
			if live, err := store.ListSessions(ctx, f.user.ID); err != nil || len(live) != 0 {
				t.Fatalf("after a %s: %d live sessions, %v; want none", change.name, len(live), err)
			}
			authenticated, err = store.UserByID(ctx, f.user.ID)
			if err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestUnconfirmedLogoutStillRevokesHere: a Logout no replica confirmed
// answers the store's unavailability (the client retries), yet this
// instance refuses the session's access tokens from then on, as asked;
// the retry, once the replica runs, ends the session in the store.
func TestUnconfirmedLogoutStillRevokesHere(t *testing.T) {
	t.Parallel()
	rep := testredis.NewReplicated(t)
	store := tokenstore.NewRedis(rep.Client(t), tokenstore.WithReplicaWait(1, 500*time.Millisecond))
	f := newFixture(t, store)
	sess, raw := f.login(t)

	rep.Freeze(t)
	err := f.svc.Logout(t.Context(), raw, false)
	if !errors.Is(err, tokenstore.ErrUnavailable) || !errors.Is(err, tokenstore.ErrNotReplicated) {
		t.Fatalf("Logout with the replica frozen: %v, want ErrUnavailable and ErrNotReplicated", err)
	}
	if !f.revoked.IsRevoked(sess.ID) {
		t.Error("an unconfirmed Logout left the session out of this instance's revocation set")
	}
	rep.Thaw()
	rep.WaitReplicaSynced(t, 20*time.Second)
	if err := f.svc.Logout(t.Context(), raw, false); err != nil {
		t.Fatalf("retried Logout: %v", err)
	}
	if _, err := f.store.Session(t.Context(), sess.ID); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("session after the retried Logout: %v, want ErrNotFound", err)
	}
}
