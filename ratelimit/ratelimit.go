// Package ratelimit limits login attempts per key (a username, a client
// address) with GCRA, shared across instances through Redis.
//
// Redis is the production Limiter (github.com/go-redis/redis_rate, one Lua
// call per attempt, Redis's clock, so every instance counts together, plus
// lua/refund.lua for the one thing redis_rate cannot do: give an attempt
// back);
// Memory is the in-process equivalent for the embedded single-instance
// store. Both answer the same way for the same limit. The package decides
// nothing about what to do when a store fails: it returns an error wrapping
// ErrUnavailable and the caller fails closed. It is not a general traffic
// shaper: it does not queue or delay requests, it only says yes or no and
// when to retry.
package ratelimit

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// Limit allows Rate events per Period on average, and up to Burst at once.
type Limit struct {
	Rate   int
	Period time.Duration
	Burst  int
}

func (l Limit) validate() error {
	if l.Rate < 1 || l.Period <= 0 || l.Burst < 1 {
		return fmt.Errorf("ratelimit: invalid limit %+v: rate, period and burst must be positive", l)
	}
	return nil
}

// Result is the answer for one attempt.
type Result struct {
	Allowed bool
	// RetryAfter is how long until an attempt would be allowed (zero when
	// Allowed): the server's Retry-After.
	RetryAfter time.Duration
}

// Limiter counts attempts per key. An error means the limiter could not
// answer; the caller must then refuse the attempt (fail closed).
//
// A limit on failures (wrong passwords) is kept by charging every attempt
// before it is made and refunding the ones that did not fail: the charge is
// atomic, so attempts made at the same moment can never together exceed
// the burst, which checking first and charging failures afterwards could
// not promise.
type Limiter interface {
	// Allow counts one attempt for key under l if it is allowed; a refused
	// attempt costs nothing.
	Allow(ctx context.Context, key string, l Limit) (Result, error)
	// Refund gives back one attempt Allow counted for key under the same
	// l, as if it had not been made. Call it once per allowed attempt at
	// most; a refund never fills the bucket beyond Burst.
	Refund(ctx context.Context, key string, l Limit) error
}

// ErrUnavailable wraps every failure to reach the shared store.
var ErrUnavailable = errors.New("ratelimit: store unavailable")

// Redis is a Limiter shared by every instance using the same Redis (or
// Redis Cluster: each key is one slot). Keys are stored as "rate:<key>" and
// expire by themselves once their bucket is full again.
type Redis struct {
	client redis.UniversalClient
	lim    *redis_rate.Limiter
}

var _ Limiter = (*Redis)(nil)

// NewRedis returns a Limiter on client. Every call is bounded by the
// caller's context.
func NewRedis(client redis.UniversalClient) *Redis {
	return &Redis{client: client, lim: redis_rate.NewLimiter(client)}
}

// Allow implements Limiter.
func (r *Redis) Allow(ctx context.Context, key string, l Limit) (Result, error) {
	if err := l.validate(); err != nil {
		return Result{}, err
	}
	if key == "" {
		return Result{}, errors.New("ratelimit: empty key")
	}
	res, err := r.lim.Allow(ctx, key, redis_rate.Limit{Rate: l.Rate, Period: l.Period, Burst: l.Burst})
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if res.Allowed > 0 {
		return Result{Allowed: true}, nil
	}
	return Result{RetryAfter: max(res.RetryAfter, 0)}, nil
}

// redisRatePrefix is redis_rate's key prefix (unexported there); Refund
// changes the keys Allow writes. TestRedisRefundUndoesAllow fails if it
// ever changes.
const redisRatePrefix = "rate:"

//go:embed lua/refund.lua
var refundLua string

var refundScript = redis.NewScript(refundLua)

// Refund implements Limiter.
func (r *Redis) Refund(ctx context.Context, key string, l Limit) error {
	if err := l.validate(); err != nil {
		return err
	}
	if key == "" {
		return errors.New("ratelimit: empty key")
	}
	if err := refundScript.Run(ctx, r.client, []string{redisRatePrefix + key}, l.Rate, l.Period.Seconds()).Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}
