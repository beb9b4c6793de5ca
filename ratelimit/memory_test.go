package ratelimit

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable time source.
type clock struct{ ns atomic.Int64 }

func newClock() *clock                   { c := &clock{}; c.ns.Store(t0.UnixNano()); return c }
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func allow(t *testing.T, l Limiter, key string, lim Limit) Result {
	t.Helper()
	r, err := l.Allow(t.Context(), key, lim)
	if err != nil {
		t.Fatalf("Allow(%q): %v", key, err)
	}
	return r
}

func TestMemoryBurstThenRate(t *testing.T) {
	t.Parallel()
	c := newClock()
	m := NewMemory(WithClock(c.Now))
	l := Limit{Rate: 5, Period: time.Minute, Burst: 3} // one per 12s
	for i := range 3 {
		if r := allow(t, m, "alice", l); !r.Allowed || r.RetryAfter != 0 {
			t.Fatalf("attempt %d of the burst: %+v", i+1, r)
		}
	}
	steps := []struct {
		advance time.Duration
		want    Result
	}{
		{0, Result{RetryAfter: 12 * time.Second}},
		{0, Result{RetryAfter: 12 * time.Second}}, // a refusal costs nothing
		{11*time.Second + 999*time.Millisecond, Result{RetryAfter: time.Millisecond}},
		{time.Millisecond, Result{Allowed: true}},
		{0, Result{RetryAfter: 12 * time.Second}},
		{36 * time.Second, Result{Allowed: true}}, // three tokens back...
		{0, Result{Allowed: true}},
		{0, Result{Allowed: true}},
		{0, Result{RetryAfter: 12 * time.Second}}, // ...and no more
		{time.Hour, Result{Allowed: true}},        // capped at the burst
		{0, Result{Allowed: true}},
		{0, Result{Allowed: true}},
		{0, Result{RetryAfter: 12 * time.Second}},
	}
	for i, s := range steps {
		c.Advance(s.advance)
		r := allow(t, m, "alice", l)
		if r.Allowed != s.want.Allowed || (r.RetryAfter-s.want.RetryAfter).Abs() > time.Microsecond {
			t.Errorf("step %d (+%v): %+v, want %+v", i, s.advance, r, s.want)
		}
	}
}

// gcra is the reference: redis_rate's algorithm (virtual scheduling), in
// exact integer time.
type gcra struct{ tat time.Time }

func (g *gcra) allow(now time.Time, l Limit) Result {
	T := l.Period / time.Duration(l.Rate)
	tat := g.tat
	if tat.Before(now) {
		tat = now
	}
	allowAt := tat.Add(T - time.Duration(l.Burst)*T)
	if now.Before(allowAt) {
		return Result{RetryAfter: allowAt.Sub(now)}
	}
	g.tat = tat.Add(T)
	return Result{Allowed: true}
}

// refund is the script's: the TAT moves back one interval, never before now.
func (g *gcra) refund(now time.Time, l Limit) {
	T := l.Period / time.Duration(l.Rate)
	if g.tat = g.tat.Add(-T); g.tat.Before(now) {
		g.tat = now
	}
}

// Memory answers exactly as the GCRA Redis runs, over long random runs
// in which a third of the allowed attempts are refunded.
func TestMemoryMatchesGCRA(t *testing.T) {
	t.Parallel()
	limits := []Limit{
		{Rate: 4, Period: 8 * time.Second, Burst: 1},
		{Rate: 4, Period: 8 * time.Second, Burst: 5},
		{Rate: 1, Period: time.Second, Burst: 10},
		{Rate: 16, Period: time.Second, Burst: 2},
	}
	for _, l := range limits {
		t.Run(fmt.Sprintf("%d per %v burst %d", l.Rate, l.Period, l.Burst), func(t *testing.T) {
			t.Parallel()
			c := newClock()
			m := NewMemory(WithClock(c.Now))
			var ref gcra
			rng := rand.New(rand.NewPCG(1, uint64(l.Burst)))
			allowed := 0
			for i := range 5000 {
				// Steps of T/16 (binary fractions of a second) keep every
				// float in the token bucket exact; 0.72 T on average makes
				// both answers common.
				c.Advance(time.Duration(rng.IntN(24)) * l.Period / time.Duration(l.Rate) / 16)
				got, want := allow(t, m, "k", l), ref.allow(c.Now(), l)
				if got.Allowed != want.Allowed || (got.RetryAfter-want.RetryAfter).Abs() > time.Microsecond {
					t.Fatalf("attempt %d at +%v: %+v, GCRA says %+v", i, c.Now().Sub(t0), got, want)
				}
				if got.Allowed {
					allowed++
					if rng.IntN(3) == 0 {
						refund(t, m, "k", l)
						ref.refund(c.Now(), l)
					}
				}
			}
			if allowed == 0 || allowed == 5000 {
				t.Errorf("%d of 5000 allowed: the run did not exercise both answers", allowed)
			}
		})
	}
}

func TestMemoryKeysAreIndependent(t *testing.T) {
	t.Parallel()
	m := NewMemory(WithClock(newClock().Now))
	l := Limit{Rate: 1, Period: time.Minute, Burst: 1}
	if !allow(t, m, "alice", l).Allowed || allow(t, m, "alice", l).Allowed {
		t.Fatal("alice: want one allowed, then refused")
	}
	if !allow(t, m, "bob", l).Allowed {
		t.Error("bob refused because of alice")
	}
}

func TestMemoryLimitChangeApplies(t *testing.T) {
	t.Parallel()
	c := newClock()
	m := NewMemory(WithClock(c.Now))
	strict := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	loose := Limit{Rate: 60, Period: time.Minute, Burst: 1}
	allow(t, m, "k", strict)
	if r := allow(t, m, "k", strict); r.Allowed || r.RetryAfter != time.Hour {
		t.Fatalf("strict: %+v", r)
	}
	// The new rate applies from the change on: the next token is a second
	// away, not an hour.
	c.Advance(time.Second)
	if r := allow(t, m, "k", loose); r.Allowed || r.RetryAfter > time.Second {
		t.Fatalf("right after loosening the limit: %+v", r)
	}
	c.Advance(time.Second)
	if r := allow(t, m, "k", loose); !r.Allowed {
		t.Errorf("a second after loosening the limit: %+v", r)
	}
}

func TestMemoryBoundsKeys(t *testing.T) {
	t.Parallel()
	c := newClock()
	m := NewMemory(WithClock(c.Now), WithMaxKeys(3))
	l := Limit{Rate: 1, Period: time.Minute, Burst: 1}
	for i := range 10 {
		allow(t, m, fmt.Sprint("k", i), l)
		if n := m.Len(); n > 3 {
			t.Fatalf("%d keys tracked, bound 3", n)
		}
	}
	// The most recent keys are kept: k9 is still refused.
	if allow(t, m, "k9", l).Allowed {
		t.Error("the most recently used key lost its state")
	}
	// Evicted least recently used: k0 is allowed again (the documented cost).
	if !allow(t, m, "k0", l).Allowed {
		t.Error("k0 was not evicted")
	}
}

func TestMemoryDropsIdleKeys(t *testing.T) {
	t.Parallel()
	c := newClock()
	m := NewMemory(WithClock(c.Now))
	l := Limit{Rate: 1, Period: time.Second, Burst: 2}
	for i := range 100 {
		allow(t, m, fmt.Sprint("k", i), l)
	}
	if n := m.Len(); n != 100 {
		t.Fatalf("%d keys tracked, want 100 (none refilled yet)", n)
	}
	c.Advance(time.Second) // every bucket is full again
	for range 60 {
		allow(t, m, "active", l)
		c.Advance(time.Second)
	}
	if n := m.Len(); n != 1 {
		t.Errorf("%d keys tracked after they went idle, want only the active one", n)
	}
}

func TestMemoryConcurrentAttemptsNeverExceedBurst(t *testing.T) {
	t.Parallel()
	m := NewMemory(WithClock(newClock().Now)) // time stands still
	l := Limit{Rate: 1, Period: time.Hour, Burst: 100}
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			for range 10 {
				r, err := m.Allow(context.Background(), "k", l)
				if err != nil {
					t.Error(err)
					return
				}
				if r.Allowed {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != 100 {
		t.Errorf("%d of 500 concurrent attempts allowed, want exactly the burst, 100", n)
	}
}

func TestRefusesBadInput(t *testing.T) {
	t.Parallel()
	good := Limit{Rate: 1, Period: time.Second, Burst: 1}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	m := NewMemory()
	for name, call := range map[string]func() error{
		"zero rate":            func() error { _, err := m.Allow(t.Context(), "k", Limit{Period: time.Second, Burst: 1}); return err },
		"zero period":          func() error { _, err := m.Allow(t.Context(), "k", Limit{Rate: 1, Burst: 1}); return err },
		"zero burst":           func() error { _, err := m.Allow(t.Context(), "k", Limit{Rate: 1, Period: time.Second}); return err },
		"empty key":            func() error { _, err := m.Allow(t.Context(), "", good); return err },
		"refund, no burst":     func() error { return m.Refund(t.Context(), "k", Limit{Rate: 1, Period: time.Second}) },
		"refund, no key":       func() error { return m.Refund(t.Context(), "", good) },
		"redis refund, no key": func() error { return NewRedis(nil).Refund(t.Context(), "", good) },
		"cancelled":            func() error { _, err := m.Allow(cancelled, "k", good); return err },
		"redis, no rate":       func() error { _, err := NewRedis(nil).Allow(t.Context(), "k", Limit{}); return err },
		"redis, no key":        func() error { _, err := NewRedis(nil).Allow(t.Context(), "", good); return err },
	} {
		if err := call(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestMemoryRefund(t *testing.T) {
	t.Parallel()
	testRefund(t, func(*testing.T) Limiter { return NewMemory(WithClock(newClock().Now)) }, func(*testing.T) string { return "k" })
}

// The failures-only pattern run by many at once: every attempt is charged
// before it is made, refunded if it succeeded. However many run together,
// at most Burst failures get through, and successes cost nothing.
func TestMemoryChargeFirstBoundsConcurrentFailures(t *testing.T) {
	t.Parallel()
	testChargeFirst(t, NewMemory(WithClock(newClock().Now)), "victim") // time stands still
}

func refund(t *testing.T, l Limiter, key string, lim Limit) {
	t.Helper()
	if err := l.Refund(t.Context(), key, lim); err != nil {
		t.Fatalf("Refund(%q): %v", key, err)
	}
}
