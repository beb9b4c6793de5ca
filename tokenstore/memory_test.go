package tokenstore_test

import (
	"context"
	"crypto/rand"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/tokenstore/storetest"
)

func TestMemoryConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) tokenstore.Store { return tokenstore.NewMemory() })
}

// clock is a settable clock for tests that must not sleep.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func memSession(t *testing.T, m *tokenstore.Memory, at time.Time, idle, lifetime time.Duration) tokenstore.Session {
	t.Helper()
	uid, _ := tokenstore.NewUserID(rand.Reader)
	if err := m.CreateUser(context.Background(), tokenstore.User{ID: uid, Username: "u-" + uid, CreatedAt: at}); err != nil {
		t.Fatal(err)
	}
	sid, _ := tokenstore.NewSessionID(uid, rand.Reader)
	s := tokenstore.Session{
		ID: sid, UserID: uid, Nonce: "n",
		CreatedAt: at, RotatedAt: at, LastUsedAt: at, ExpiresAt: at.Add(lifetime),
	}
	if err := m.CreateSession(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMemoryExpiryUsesInjectedClock(t *testing.T) {
	clk := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := tokenstore.NewMemory(tokenstore.WithClock(clk.Now), tokenstore.WithIdleTTL(time.Hour))
	ctx := context.Background()
	s := memSession(t, m, clk.Now(), time.Hour, 24*time.Hour)

	clk.Add(59 * time.Minute)
	if _, err := m.Session(ctx, s.ID); err != nil {
		t.Fatalf("Session within the idle lifetime: %v", err)
	}
	// A rotation restarts the idle lifetime from its Now.
	if _, _, err := m.Rotate(ctx, tokenstore.RotateRequest{SessionID: s.ID, Nonce: s.Nonce, Now: clk.Now(), IdleTTL: time.Hour}); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	clk.Add(59 * time.Minute)
	if _, err := m.Session(ctx, s.ID); err != nil {
		t.Fatalf("Session within the restarted idle lifetime: %v", err)
	}
	clk.Add(2 * time.Minute)
	if _, err := m.Session(ctx, s.ID); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("Session after the idle lifetime: %v, want ErrNotFound", err)
	}
}

func TestMemoryIsBounded(t *testing.T) {
	clk := &clock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := tokenstore.NewMemory(tokenstore.WithClock(clk.Now), tokenstore.WithRevocationRetention(20*time.Minute))
	ctx := context.Background()
	var revoke []tokenstore.Session
	for i := range 1000 {
		s := memSession(t, m, clk.Now(), time.Hour, time.Minute)
		if i%10 == 0 {
			revoke = append(revoke, s)
		}
	}
	for _, s := range revoke {
		if err := m.RevokeSession(ctx, s.ID, clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
	sessions, users, events := tokenstore.MemorySizes(m)
	if sessions != 900 || users != 900 || events != 100 {
		t.Fatalf("before: %d sessions, %d users indexed, %d events; want 900, 900, 100", sessions, users, events)
	}

	// Nobody reads the expired sessions again; the next write sweeps them,
	// and the next revocation trims the events older than the retention.
	clk.Add(time.Hour)
	last := memSession(t, m, clk.Now(), time.Hour, time.Hour)
	if err := m.RevokeSession(ctx, last.ID, clk.Now()); err != nil {
		t.Fatal(err)
	}
	sessions, users, events = tokenstore.MemorySizes(m)
	if sessions != 0 || users != 0 || events != 1 {
		t.Fatalf("after: %d sessions, %d users indexed, %d events; want 0, 0, 1", sessions, users, events)
	}
}
