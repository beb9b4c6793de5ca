package sessions_test

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/identityd/identity/internal/tokencheck"
	"github.com/identityd/identity/sessions"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
)

// Every revocation reaches Config.OnRevoke with its cause and its number
// of sessions: the rules name logout, logout_all and reuse; a caller of
// RevokeSession/RevokeUserSessions names its own, and admin is the default.
func TestOnRevokeReportsTheCause(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := tokenstore.NewMemory()
	var mu sync.Mutex
	got := map[sessions.Cause]int{}
	now := time.Now() // the memory store expires sessions by the wall clock
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	refresh, err := token.NewRefresh([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	svc := sessions.New(store, refresh, tokencheck.NewRevoked(time.Minute, 0, 1000), sessions.Config{
		AbsoluteTTL: time.Hour, IdleTTL: time.Hour, Grace: time.Second, AccessTTL: time.Minute,
		OnRevoke: func(c sessions.Cause, n int) { mu.Lock(); got[c] += n; mu.Unlock() },
	}, clock, rand.Reader)
	uid, _ := tokenstore.NewUserID(rand.Reader)
	u := tokenstore.User{ID: uid, Username: "u-" + uid, CreatedAt: now}
	if err := store.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	login := func() (tokenstore.Session, string) {
		t.Helper()
		cur, err := store.UserByID(ctx, u.ID) // its credential epoch as it is now
		if err != nil {
			t.Fatal(err)
		}
		sess, err := svc.Create(ctx, cur, sessions.Client{})
		if err != nil {
			t.Fatal(err)
		}
		return sess, svc.RefreshToken(sess)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	_, rt := login()
	must(svc.Logout(ctx, rt, false)) // logout: 1
	login()
	_, rt = login()
	must(svc.Logout(ctx, rt, true)) // logout_all: 2
	_, rt = login()
	if _, _, err := svc.Refresh(ctx, rt, sessions.Client{}); err != nil {
		t.Fatal(err)
	}
	advance(2 * time.Second) // past the grace window
	if _, _, err := svc.Refresh(ctx, rt, sessions.Client{}); !errors.Is(err, tokenstore.ErrReused) {
		t.Fatalf("reusing a rotated token: %v, want ErrReused", err)
	}
	// reuse: 1
	sess, _ := login()
	must(svc.RevokeSession(ctx, sess.ID, clock())) // admin, by default: 1
	login()
	login()
	// disable: 2
	if _, err := svc.RevokeUserSessions(sessions.WithCause(ctx, sessions.CauseDisable), u.ID, clock()); err != nil {
		t.Fatal(err)
	}
	sess, _ = login()
	must(svc.RevokeSession(sessions.WithCause(context.Background(), sessions.CausePasswordChange), sess.ID, clock())) // password_change: 1
	// No session left: nothing reported.
	if _, err := svc.RevokeUserSessions(ctx, u.ID, clock()); err != nil {
		t.Fatal(err)
	}

	want := map[sessions.Cause]int{
		sessions.CauseLogout: 1, sessions.CauseLogoutAll: 2, sessions.CauseReuse: 1,
		sessions.CauseAdmin: 1, sessions.CauseDisable: 2, sessions.CausePasswordChange: 1,
	}
	mu.Lock()
	defer mu.Unlock()
	for _, c := range sessions.Causes {
		if got[c] != want[c] {
			t.Errorf("cause %s: %d sessions reported, want %d", c, got[c], want[c])
		}
	}
	if len(got) != len(want) {
		t.Errorf("reported %v, want %v", got, want)
	}
}
