package ratelimit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/identityd/identity/internal/testredis"
)

// uniqueKey isolates a test on a shared Redis without flushing it; the
// limiter's keys expire by themselves within the limit's period.
func uniqueKey(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	return "test:" + t.Name() + ":" + hex.EncodeToString(b)
}

func TestRedisBurstThenRefuses(t *testing.T) {
	t.Parallel()
	r := NewRedis(testredis.Start(t))
	key := uniqueKey(t)
	l := Limit{Rate: 10, Period: time.Minute, Burst: 3} // one per 6s
	for i := range 3 {
		if res := allow(t, r, key, l); !res.Allowed || res.RetryAfter != 0 {
			t.Fatalf("attempt %d of the burst: %+v", i+1, res)
		}
	}
	for range 2 { // a refusal costs nothing
		res := allow(t, r, key, l)
		if res.Allowed || res.RetryAfter <= 5*time.Second || res.RetryAfter > 6*time.Second {
			t.Fatalf("after the burst: %+v, want refused, retry in just under 6s", res)
		}
	}
	if res := allow(t, r, uniqueKey(t), l); !res.Allowed {
		t.Error("another key refused")
	}
}

// Redis keeps time itself, so this test waits, briefly, for a token.
func TestRedisRefills(t *testing.T) {
	t.Parallel()
	r := NewRedis(testredis.Start(t))
	key := uniqueKey(t)
	l := Limit{Rate: 20, Period: time.Second, Burst: 1} // one per 50ms
	if !allow(t, r, key, l).Allowed {
		t.Fatal("first attempt refused")
	}
	res := allow(t, r, key, l)
	if res.Allowed || res.RetryAfter <= 0 || res.RetryAfter > 50*time.Millisecond {
		t.Fatalf("second attempt at once: %+v", res)
	}
	time.Sleep(res.RetryAfter + 10*time.Millisecond)
	if res := allow(t, r, key, l); !res.Allowed {
		t.Errorf("after RetryAfter: %+v", res)
	}
}

// Two instances (two clients) share one budget.
func TestRedisIsSharedAcrossInstances(t *testing.T) {
	t.Parallel()
	a, b := NewRedis(testredis.Start(t)), NewRedis(testredis.Start(t))
	key := uniqueKey(t)
	l := Limit{Rate: 1, Period: time.Minute, Burst: 2}
	if !allow(t, a, key, l).Allowed || !allow(t, b, key, l).Allowed {
		t.Fatal("burst of 2 refused")
	}
	if allow(t, a, key, l).Allowed || allow(t, b, key, l).Allowed {
		t.Error("third attempt allowed: instances do not share the count")
	}
}

// For the same limit, Memory and Redis admit the same burst and name
// nearly the same retry time.
func TestRedisAndMemoryAgree(t *testing.T) {
	t.Parallel()
	rd := NewRedis(testredis.Start(t))
	for _, l := range []Limit{
		{Rate: 5, Period: time.Minute, Burst: 5},
		{Rate: 1, Period: time.Hour, Burst: 1},
		{Rate: 100, Period: time.Second, Burst: 10},
		{Rate: 3, Period: 10 * time.Minute, Burst: 7},
	} {
		mem := NewMemory()
		key := uniqueKey(t)
		for i := range l.Burst + 4 {
			gotR, gotM := allow(t, rd, key, l), allow(t, mem, key, l)
			if gotR.Allowed != gotM.Allowed || (gotR.RetryAfter-gotM.RetryAfter).Abs() > 100*time.Millisecond {
				t.Errorf("%+v attempt %d: Redis %+v, Memory %+v", l, i+1, gotR, gotM)
			}
			if i == 1 || i == l.Burst+1 { // give one back while charged, and once exhausted
				refund(t, rd, key, l)
				refund(t, mem, key, l)
			}
		}
	}
}

// A Redis that went away is an error wrapping ErrUnavailable, never an
// answer: the caller fails closed.
func TestRedisUnavailableIsAnError(t *testing.T) {
	t.Parallel()
	srv := testredis.NewServer(t)
	r := NewRedis(srv.Client(t))
	key := uniqueKey(t)
	l := Limit{Rate: 1, Period: time.Minute, Burst: 1}
	if !allow(t, r, key, l).Allowed {
		t.Fatal("first attempt refused")
	}
	srv.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	res, err := r.Allow(ctx, key, l)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Allow with Redis down = %+v, %v; want ErrUnavailable", res, err)
	}
	if res.Allowed {
		t.Error("Allow: an error came with Allowed = true")
	}
	if err := r.Refund(ctx, key, l); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Refund with Redis down = %v; want ErrUnavailable", err)
	}
}

// Refund changes the keys Allow writes (redis_rate's prefix, its TAT on
// Redis's clock): each case of testRefund fails if either ever changes.
func TestRedisRefundUndoesAllow(t *testing.T) {
	t.Parallel()
	client := testredis.Start(t)
	testRefund(t, func(*testing.T) Limiter { return NewRedis(client) }, uniqueKey)
}

func TestRedisChargeFirstBoundsConcurrentFailures(t *testing.T) {
	t.Parallel()
	testChargeFirst(t, NewRedis(testredis.Start(t)), uniqueKey(t))
}
