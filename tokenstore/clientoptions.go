package tokenstore

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ClientOptions builds the go-redis options for a Store from identity's
// configuration: a redis:// or rediss:// URL (its query options, such as
// timeouts and pool size, are kept), or Redis Cluster seed addresses
// (always cluster mode, even with one seed). Calls are bounded by their
// context and never resent (RedisOptions); build the client from them with
// NewClient. identityd and identityctl both use it, so they reach the store
// the same way.
func ClientOptions(rawURL string, clusterAddrs []string) (*redis.UniversalOptions, error) {
	if len(clusterAddrs) > 0 {
		if rawURL != "" {
			return nil, errors.New("set a Redis URL or cluster addresses, not both")
		}
		return RedisOptions(redis.UniversalOptions{
			Addrs:         clusterAddrs,
			IsClusterMode: true,
			// One dial per attempt: the cluster client's redirect loop
			// already tries a failed node again and then the slot's
			// current master (see NewClient), while go-redis's default of
			// five dials 100 ms apart held every command for a dead
			// master 0.4 s per attempt before the loop could move on.
			DialerRetries: 1,
		}), nil
	}
	if !strings.HasPrefix(rawURL, "redis://") && !strings.HasPrefix(rawURL, "rediss://") {
		return nil, errors.New("--redis-url: want a redis:// or rediss:// URL")
	}
	o, err := redis.ParseURL(rawURL)
	if err != nil {
		// The URL may hold a password: say what is wrong, not the URL.
		return nil, fmt.Errorf("--redis-url: %v", redactURLError(err))
	}
	return RedisOptions(redis.UniversalOptions{
		Addrs:           []string{o.Addr},
		ClientName:      o.ClientName,
		DB:              o.DB,
		Protocol:        o.Protocol,
		Username:        o.Username,
		Password:        o.Password,
		TLSConfig:       o.TLSConfig,
		DialTimeout:     o.DialTimeout,
		ReadTimeout:     o.ReadTimeout,
		WriteTimeout:    o.WriteTimeout,
		PoolSize:        o.PoolSize,
		PoolTimeout:     o.PoolTimeout,
		MinIdleConns:    o.MinIdleConns,
		MaxIdleConns:    o.MaxIdleConns,
		MaxActiveConns:  o.MaxActiveConns,
		ConnMaxIdleTime: o.ConnMaxIdleTime,
		ConnMaxLifetime: o.ConnMaxLifetime,
		// One dial per command, as for a cluster: go-redis's default of
		// five dials 100 ms apart held every command for a stopped Redis
		// 0.4 s before it failed (TestStoreFaults/Stopped), pool turns
		// with it, while the caller's answer is STORE_UNAVAILABLE either
		// way and its clients retry.
		DialerRetries: 1,
	}), nil
}

// SentinelClientOptions builds the go-redis options for a Store on a
// primary watched by Redis Sentinel: master is the name the sentinels
// monitor it by, sentinelAddrs are the sentinels' addresses. go-redis asks
// the sentinels for the current primary and follows a failover itself.
// Calls are bounded and never resent, as with ClientOptions.
//
// The client is go-redis's failover cluster client (IsClusterMode with
// MasterName): the primary serves every slot, every command goes to it
// (ReadOnly stays false, so no read ever comes from a lagging replica), and
// a failover makes it build a client of the new primary. The plain failover
// client redials the same pool instead, and that pool's dial breaker, once
// tripped by the dead primary, probes only once a second: it kept failing
// calls for up to a second after the sentinels had named the new primary.
// With NewClient's hooks the cluster client also asks the sentinels again
// as soon as the primary fails.
func SentinelClientOptions(master string, sentinelAddrs []string) (*redis.UniversalOptions, error) {
	if master == "" {
		return nil, errors.New("--redis-sentinel-master: no name")
	}
	if len(sentinelAddrs) == 0 {
		return nil, errors.New("--redis-sentinel-master needs the sentinels' addresses in --redis-addrs")
	}
	return RedisOptions(redis.UniversalOptions{
		Addrs:         sentinelAddrs,
		MasterName:    master,
		IsClusterMode: true,
		DialerRetries: 1, // as for a cluster (ClientOptions)
	}), nil
}

// redactURLError drops the URL net/url quotes in its errors.
func redactURLError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// FeedClientOptions are the options of the client WithFeedClient wants: o
// (the same servers, credentials and timeouts) with a pool of its own, two
// connections per node, for one blocking read at a time.
func FeedClientOptions(o *redis.UniversalOptions) *redis.UniversalOptions {
	f := *o
	f.PoolSize = 2
	f.MinIdleConns = 0
	f.MaxIdleConns = 0
	return &f
}
