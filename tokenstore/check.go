package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// MaxmemoryPolicies returns the maxmemory-policy of every master the store
// writes to (one Redis, the Sentinel-watched primary or every Cluster
// master), by address, from INFO memory (or CONFIG GET). A store is only as good as a Redis that keeps its
// keys: an evicting policy (Evicts) may drop a session, a user or the
// revocation stream when memory runs short. A transport failure wraps
// ErrUnavailable; a Redis that refuses both (an ACL, a managed Redis that
// renames them) gives an error that does not.
func (r *Redis) MaxmemoryPolicies(ctx context.Context) (map[string]string, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	policies := map[string]string{}
	get := func(ctx context.Context, c *redis.Client) error {
		policy, err := maxmemoryPolicy(ctx, c)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		policies[c.Options().Addr] = policy
		return nil
	}
	var err error
	switch c := r.c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, get)
	case *redis.Client:
		err = get(ctx, c)
	default:
		return nil, fmt.Errorf("tokenstore: cannot read the eviction policy through a %T", r.c)
	}
	if err != nil {
		return nil, err
	}
	return policies, nil
}

// maxmemoryPolicy asks one node with INFO memory, which reports
// maxmemory_policy, and only where that does not say with CONFIG GET: the
// ACL the README recommends grants INFO but not CONFIG, whose GET would
// also hand out requirepass and masterauth.
func maxmemoryPolicy(ctx context.Context, c *redis.Client) (string, error) {
	var reply redis.Error
	info, ierr := c.Info(ctx, "memory").Result()
	if ierr != nil && !errors.As(ierr, &reply) {
		return "", unavailable("info", ierr)
	}
	for line := range strings.Lines(info) {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "maxmemory_policy:"); ok {
			return p, nil
		}
	}
	v, err := c.ConfigGet(ctx, "maxmemory-policy").Result()
	if err != nil && !errors.As(err, &reply) {
		return "", unavailable("config get", err)
	}
	if p := v["maxmemory-policy"]; err == nil && p != "" {
		return p, nil
	}
	return "", fmt.Errorf("tokenstore: %s tells its maxmemory-policy neither in INFO memory (%v) nor to CONFIG GET (%v)", c.Options().Addr, ierr, err)
}

// Evicts reports whether a maxmemory-policy lets Redis delete keys to
// free memory: every allkeys-* policy, which may drop any key (a user, the
// keyring, the revocation stream), and every volatile-* policy, which may
// drop the keys with a TTL (live sessions and their indexes).
func Evicts(policy string) bool {
	return strings.HasPrefix(policy, "allkeys-") || strings.HasPrefix(policy, "volatile-")
}
