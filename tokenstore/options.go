package tokenstore

import (
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults, matching the service's configuration defaults.
const (
	DefaultIdleTTL             = 720 * time.Hour
	DefaultRevocationRetention = 20 * time.Minute
	DefaultRedisPrefix         = "identity:"
)

// Option configures NewMemory and NewRedis.
type Option func(*options)

type options struct {
	prefix    string
	idleTTL   time.Duration
	retention time.Duration
	now       func() time.Time
	// waitReplicas and waitTimeout: WithReplicaWait.
	waitReplicas int
	waitTimeout  time.Duration
	feed         redis.UniversalClient
}

func newOptions(opts []Option) options {
	o := options{
		prefix:    DefaultRedisPrefix,
		idleTTL:   DefaultIdleTTL,
		retention: DefaultRevocationRetention,
		now:       time.Now,
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithPrefix sets the prefix of every Redis key (default "identity:"), so
// several deployments or tests can share one Redis. It may not contain '{'
// or '}': those delimit the hash tags. Memory ignores it.
func WithPrefix(prefix string) Option {
	if strings.ContainsAny(prefix, "{}") {
		panic("tokenstore: WithPrefix: the prefix may not contain '{' or '}'")
	}
	return func(o *options) { o.prefix = prefix }
}

// WithIdleTTL sets the idle lifetime CreateSession gives a new session
// (default 720h): it lives until min(LastUsedAt+idle, ExpiresAt) unless
// rotated. Rotate takes its idle lifetime from RotateRequest.IdleTTL and
// falls back to this one when that is zero.
func WithIdleTTL(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.idleTTL = d
		}
	}
}

// WithRevocationRetention sets how long revocation events are kept
// (default 20m). It must exceed the access-token lifetime plus the
// verification leeway: a Revocation's ForgetAfter is RevokedAt+retention,
// and verifiers drop an event then.
func WithRevocationRetention(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.retention = d
		}
	}
}

// DefaultReplicaWaitTimeout is how long a revocation waits for its
// replicas by default (WithReplicaWait with a zero timeout).
const DefaultReplicaWaitTimeout = time.Second

// WithReplicaWait makes Redis confirm every revocation write with WAIT:
// RevokeSession, RevokeUserSessions, the revocation a reused refresh token
// causes, and UpdateUser (a disabled flag, a new password hash or a raised
// credential epoch is a revocation too) return only once at least replicas
// replicas have acknowledged the write, or fail with ErrNotReplicated
// (which wraps ErrUnavailable) when fewer did within timeout. 0 (the
// default) waits for nothing. Memory ignores it: it has no replicas.
func WithReplicaWait(replicas int, timeout time.Duration) Option {
	return func(o *options) {
		o.waitReplicas = max(0, replicas)
		o.waitTimeout = timeout
		if o.waitTimeout <= 0 {
			o.waitTimeout = DefaultReplicaWaitTimeout
		}
	}
}

// DefaultReplicaWait is how many replicas a store built on o should wait
// for (WithReplicaWait) unless told otherwise: 1 on Redis Cluster and on
// Sentinel (o.IsClusterMode: ClientOptions and SentinelClientOptions set
// it), topologies that fail over to a replica; 0 on one Redis URL, which
// may have none. identityd and identityctl both take it from here.
func DefaultReplicaWait(o *redis.UniversalOptions) int {
	if o.IsClusterMode {
		return 1
	}
	return 0
}

// WithClock sets the clock for the calls that get no time from the caller
// (Session, ListSessions, CreateSession's expiry check and Memory's sweeps);
// default time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// ms is the store's time resolution: both stores keep unix milliseconds.
func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time { return time.UnixMilli(v).UTC() }

// truncMS gives a time the precision the stores keep.
func truncMS(t time.Time) time.Time { return fromMS(ms(t)) }

// WithFeedClient gives Redis's WaitRevocations (the revocation feed's one
// blocking read) a client of its own, built with FeedClientOptions: when
// store calls exhaust the main client's pool, the feed still reads, so
// Verify keeps trusting the instance's revocation set and answering
// verified tokens without the store. Default: the main client. Memory
// ignores it.
func WithFeedClient(c redis.UniversalClient) Option {
	return func(o *options) { o.feed = c }
}
