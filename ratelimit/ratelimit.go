// Package ratelimit limits login attempts per key (a username, a client
// address) with GCRA, shared across instances through Redis.
//
// Redis is the production Limiter (github.com/go-redis/redis_rate, one Lua
// call per attempt, Redis's clock, so every instance counts together);
// Memory is the in-process equivalent for the embedded single-instance
// store. Both answer the same way for the same limit. The package decides
// nothing about what to do when a store fails: it returns an error wrapping
// ErrUnavailable and the caller fails closed. It is not a general traffic
// shaper: it does not queue or delay requests, it only says yes or no and
// when to retry.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
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
type Limiter interface {
	// Allow counts one attempt for key under l if it is allowed; a refused
	// attempt costs nothing.
	Allow(ctx context.Context, key string, l Limit) (Result, error)
	// Peek answers what Allow would, without counting anything. It serves
	// limits that charge only failures: Peek before the attempt, Allow once
	// it failed. Peek-then-Allow is not atomic, so attempts made at the
	// same moment all pass Peek; bound concurrency per key elsewhere if
	// that matters.
	Peek(ctx context.Context, key string, l Limit) (Result, error)
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

// redisRatePrefix is redis_rate's key prefix (unexported there); Peek reads
// the keys Allow writes. TestRedisPeekSeesAllow fails if it ever changes.
const redisRatePrefix = "rate:"

// peekScript is redis_rate's GCRA decision for a cost of one, read-only:
// same key, same stored TAT (seconds since 2017-01-01, from Redis's clock).
var peekScript = redis.NewScript(`
local emission_interval = tonumber(ARGV[3]) / tonumber(ARGV[2])
local burst_offset = emission_interval * tonumber(ARGV[1])
local t = redis.call("TIME")
local now = (t[1] - 1483228800) + (t[2] / 1000000)
local tat = tonumber(redis.call("GET", KEYS[1]) or now)
tat = math.max(tat, now)
local diff = now - (tat + emission_interval - burst_offset)
if diff < 0 then
  return {0, tostring(-diff)}
end
return {1, "0"}
`)

// Peek implements Limiter.
func (r *Redis) Peek(ctx context.Context, key string, l Limit) (Result, error) {
	if err := l.validate(); err != nil {
		return Result{}, err
	}
	if key == "" {
		return Result{}, errors.New("ratelimit: empty key")
	}
	v, err := peekScript.Run(ctx, r.client, []string{redisRatePrefix + key}, l.Burst, l.Rate, l.Period.Seconds()).Slice()
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	allowed, _ := v[0].(int64)
	if allowed == 1 {
		return Result{Allowed: true}, nil
	}
	s, _ := v[1].(string)
	secs, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return Result{}, fmt.Errorf("%w: peek answered %v", ErrUnavailable, v)
	}
	return Result{RetryAfter: time.Duration(secs * float64(time.Second))}, nil
}
