package ratelimit

import (
	"container/list"
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Memory is an in-process Limiter (x/time/rate token buckets, which admit
// exactly what GCRA admits) for a single instance. It holds at most a bounded
// number of keys: buckets that have refilled are dropped as they go idle,
// losing nothing, and when the bound is reached anyway the least recently
// used key is dropped. That lets an attacker who cycles through more than
// the bound of keys reset a victim's bucket, at the price of that many
// attempts per reset; the alternative, refusing new keys, would lock every
// user out during such a flood.
type Memory struct {
	now     func() time.Time
	maxKeys int

	mu   sync.Mutex
	keys map[string]*list.Element // of *bucket
	lru  list.List                // front: most recently used
}

var _ Limiter = (*Memory)(nil)

type bucket struct {
	key   string
	limit Limit
	lim   *rate.Limiter
}

// MemoryOption configures a Memory.
type MemoryOption func(*Memory)

// WithMaxKeys bounds how many keys are tracked (default 100,000, a few
// tens of MiB at most).
func WithMaxKeys(n int) MemoryOption { return func(m *Memory) { m.maxKeys = max(n, 1) } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) MemoryOption { return func(m *Memory) { m.now = now } }

// NewMemory returns an empty in-process Limiter.
func NewMemory(opts ...MemoryOption) *Memory {
	m := &Memory{now: time.Now, maxKeys: 100_000, keys: map[string]*list.Element{}}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Allow implements Limiter.
func (m *Memory) Allow(ctx context.Context, key string, l Limit) (Result, error) {
	if err := check(ctx, key, l); err != nil {
		return Result{}, err
	}
	every := rate.Limit(float64(l.Rate) / l.Period.Seconds())

	m.mu.Lock()
	defer m.mu.Unlock()
	// Read the clock under the lock: a bucket handed an earlier time than
	// its last one would count the interval twice.
	now := m.now()
	b := m.bucket(key, l, every, now)
	res := Result{Allowed: true}
	if tokens := b.lim.TokensAt(now); tokens < 1 {
		// A refused attempt costs nothing (as in redis_rate): retry once
		// the missing fraction of a token has accrued.
		wait := math.Ceil((1 - tokens) / float64(every) * float64(time.Second))
		res = Result{RetryAfter: time.Duration(wait)}
	} else {
		b.lim.AllowN(now, 1)
	}
	m.evictIdle(now)
	return res, nil
}

// Refund implements Limiter.
func (m *Memory) Refund(ctx context.Context, key string, l Limit) error {
	if err := check(ctx, key, l); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	e, known := m.keys[key]
	if !known {
		return nil // dropped as full, or evicted: nothing to give back
	}
	b := e.Value.(*bucket)
	if b.lim.TokensAt(now)+1 >= float64(b.limit.Burst) {
		// Full again: a full bucket and a missing one are the same (as the
		// Redis script deletes the key).
		m.remove(e)
		return nil
	}
	b.lim.AllowN(now, -1) // a negative cost adds a token
	m.evictIdle(now)
	return nil
}

func check(ctx context.Context, key string, l Limit) error {
	if err := l.validate(); err != nil {
		return err
	}
	if key == "" {
		return errors.New("ratelimit: empty key")
	}
	return ctx.Err()
}

// bucket returns key's bucket, created full, moved to the front of the LRU,
// and set to l if the limit for key changed.
func (m *Memory) bucket(key string, l Limit, every rate.Limit, now time.Time) *bucket {
	if e, ok := m.keys[key]; ok {
		m.lru.MoveToFront(e)
		b := e.Value.(*bucket)
		if b.limit != l {
			b.lim.SetLimitAt(now, every)
			b.lim.SetBurstAt(now, l.Burst)
			b.limit = l
		}
		return b
	}
	if len(m.keys) >= m.maxKeys {
		m.remove(m.lru.Back())
	}
	b := &bucket{key: key, limit: l, lim: rate.NewLimiter(every, l.Burst)}
	m.keys[key] = m.lru.PushFront(b)
	return b
}

// evictIdle drops up to two least recently used buckets that are full
// again: a full bucket behaves exactly like a missing one, so memory follows
// the number of keys in use, without a janitor goroutine.
func (m *Memory) evictIdle(now time.Time) {
	for range 2 {
		e := m.lru.Back()
		if e == nil {
			return
		}
		b := e.Value.(*bucket)
		if b.lim.TokensAt(now) < float64(b.limit.Burst) {
			return
		}
		m.remove(e)
	}
}

func (m *Memory) remove(e *list.Element) {
	delete(m.keys, e.Value.(*bucket).key)
	m.lru.Remove(e)
}

// Len returns how many keys are tracked.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keys)
}
