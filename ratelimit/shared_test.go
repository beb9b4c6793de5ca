package ratelimit

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The checks every Limiter passes, run on Memory (memory_test.go) and on
// Redis (redis_test.go).

// testRefund checks Refund on a Limiter with a clock that does not move
// within an hour's limit.
func testRefund(t *testing.T, newLimiter func(*testing.T) Limiter, newKey func(*testing.T) string) {
	t.Helper()
	l := Limit{Rate: 1, Period: time.Hour, Burst: 3}
	t.Run("the only charge given back leaves the whole burst", func(t *testing.T) {
		lim, key := newLimiter(t), newKey(t)
		allow(t, lim, key, l)
		refund(t, lim, key, l)
		for i := range 3 {
			if !allow(t, lim, key, l).Allowed {
				t.Fatalf("attempt %d of the burst refused after a charge and its refund", i+1)
			}
		}
	})
	t.Run("an exhausted key given one back allows one more", func(t *testing.T) {
		lim, key := newLimiter(t), newKey(t)
		for range 3 {
			allow(t, lim, key, l)
		}
		refund(t, lim, key, l)
		if !allow(t, lim, key, l).Allowed {
			t.Fatal("refused after a refund")
		}
		if r := allow(t, lim, key, l); r.Allowed || r.RetryAfter <= 59*time.Minute {
			t.Errorf("second attempt after one refund: %+v, want refused for about an hour", r)
		}
	})
	t.Run("a refund never grows the burst", func(t *testing.T) {
		lim, key := newLimiter(t), newKey(t)
		for range 5 {
			refund(t, lim, key, l) // nothing charged
		}
		allow(t, lim, key, l)
		refund(t, lim, key, l)
		refund(t, lim, key, l) // one more than charged
		n := 0
		for range 6 {
			if allow(t, lim, key, l).Allowed {
				n++
			}
		}
		if n != 3 {
			t.Errorf("%d attempts allowed after surplus refunds, want the burst, 3", n)
		}
	})
}

func testChargeFirst(t *testing.T, lim Limiter, key string) {
	t.Helper()
	l := Limit{Rate: 1, Period: time.Hour, Burst: 5}
	var failures atomic.Int32
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Go(func() {
			r, err := lim.Allow(context.Background(), key, l)
			if err != nil {
				t.Error(err)
				return
			}
			if !r.Allowed {
				return
			}
			if i%3 == 0 { // the right password: give the attempt back
				if err := lim.Refund(context.Background(), key, l); err != nil {
					t.Error(err)
				}
				return
			}
			failures.Add(1)
		})
	}
	wg.Wait()
	if n := failures.Load(); n > 5 {
		t.Errorf("%d failed attempts got through at once, limit's burst 5", n)
	}
	// The failures' charges stay, the successes' are given back: what is
	// left of the burst is what the failures did not use.
	allowedNow := 0
	for range 5 {
		if allow(t, lim, key, l).Allowed {
			allowedNow++
		}
	}
	if want := 5 - int(failures.Load()); allowedNow != want {
		t.Errorf("after %d failures, %d attempts left, want %d: refunds or charges went astray", failures.Load(), allowedNow, want)
	}
}
