package tokenstore

import (
	"context"
	"errors"
	"net"

	"github.com/redis/go-redis/v9"
)

// NewClient builds the go-redis universal client for a Store from o (from
// ClientOptions or SentinelClientOptions): one node, a Sentinel-watched
// primary or a Redis Cluster. identityd and identityctl use it, so both
// reach the store the same way.
//
// A cluster client (Redis Cluster, and Sentinel, which SentinelClientOptions
// runs on go-redis's failover cluster client) gets a hook on each node
// client (nodeHook), because go-redis v9's cluster client (osscluster.go)
// does two things a Store cannot live with:
//
//   - It learns a new topology only from a MOVED or ASK reply, a READONLY
//     error, or when its slot map is older than ClusterStateReloadInterval
//     (60 s, not settable through UniversalOptions). A killed master sends
//     no MOVED: every command for its slots went on to the dead address,
//     failing, for up to a minute after its replica had taken over. The
//     hook asks for a new slot map (ReloadState) as soon as a node fails
//     without a Redis reply, so the redirect loop's next attempt, or the
//     next command, goes to the promoted replica.
//   - Its redirect loop (MaxRedirects, 3) also resends a command after a
//     network error: io.EOF, a reset connection or a read timeout, all of
//     which can come after Redis ran the command. MaxRetries -1 stops only
//     the per-node retries, not this loop; a Lua rotation could run twice.
//     The hook hides such errors from the loop (see mayHaveRunError), and
//     leaves it every retry that cannot double-apply a write: MOVED and
//     ASK (the node refused the command without running it), TRYAGAIN,
//     CLUSTERDOWN, LOADING and READONLY (likewise refused), a failed dial
//     and a pool that gave no connection (nothing was sent).
//
// On Sentinel the new slot map comes from the sentinels (the failover
// cluster client's ClusterSlots), so the hook asks them again as soon as
// the primary fails. A single-node client needs neither: with MaxRetries -1
// it never resends.
func NewClient(o *redis.UniversalOptions) redis.UniversalClient {
	c := redis.NewUniversalClient(o)
	if cc, ok := c.(*redis.ClusterClient); ok {
		cc.OnNewNode(func(node *redis.Client) { node.AddHook(nodeHook{cc}) })
	}
	return c
}

// mayHaveRunError is a network error that may have come after Redis ran
// the command (the reply was lost, not the request). It keeps the error's
// text and deliberately no Unwrap: go-redis decides to resend by looking
// through Unwrap for io.EOF and net.Error, so an error it cannot see into
// is returned to the caller as it is, never resent. Callers fail closed on
// it like on any store error (ErrUnavailable).
type mayHaveRunError struct{ err error }

func (e *mayHaveRunError) Error() string { return e.err.Error() }

// mayHaveRun reports whether err could follow a command Redis ran: any
// error but a Redis reply (the server answered, so it is no lost reply), a
// context error (which go-redis never resends), a failed dial, or a pool
// that gave no connection (nothing was written).
func mayHaveRun(err error) bool {
	var reply redis.Error
	var op *net.OpError
	switch {
	case err == nil,
		errors.As(err, &reply), // includes redis.Nil
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &op) && op.Op == "dial",
		errors.Is(err, redis.ErrPoolTimeout), errors.Is(err, redis.ErrPoolExhausted), errors.Is(err, redis.ErrClosed):
		return false
	}
	return true
}

// nodeHook is a hook on each node client of a cluster client; it runs
// under the cluster client's redirect loop. A failure without a Redis
// reply (a dead or unreachable node, a timeout) asks for a new slot map:
// go-redis coalesces the requests (one reload at a time, at most one more
// 200 ms after it), so an outage costs a few CLUSTER SLOTS a second, not
// one per failed command. A possibly lost reply becomes a
// mayHaveRunError, which the loop does not resend. Pipelines are not
// shielded from resends: the store pipelines only reads (ListUsers),
// which a resend cannot harm.
type nodeHook struct{ c *redis.ClusterClient }

func (h nodeHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h nodeHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if nodeError(err) {
			h.c.ReloadState(ctx)
		}
		if mayHaveRun(err) {
			return &mayHaveRunError{err}
		}
		return err
	}
}

func (h nodeHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			if nodeError(cmd.Err()) {
				h.c.ReloadState(ctx)
				break
			}
		}
		return err
	}
}

// nodeError: err is no Redis reply, so the node may be gone.
func nodeError(err error) bool {
	var reply redis.Error
	return err != nil && !errors.As(err, &reply)
}
