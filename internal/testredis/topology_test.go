package testredis_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/identityd/identity/internal/testredis"
)

// TestCluster starts a private cluster, writes through a cluster client,
// kills the master of a key and sees its replica take over with the
// acknowledged data (written with WAIT, so the replica had it), then
// restarts the killed node and sees it rejoin.
func TestCluster(t *testing.T) {
	t.Parallel()
	c := testredis.NewCluster(t)
	if n := len(c.Addrs()); n != 6 {
		t.Fatalf("%d nodes, want 3 masters + 3 replicas", n)
	}
	client := c.Client(t)
	ctx := t.Context()
	prefix := testredis.KeyPrefix(t, client)
	masters := map[string]bool{}
	for i := range 30 {
		key := fmt.Sprintf("%s{k%d}", prefix, i)
		if err := client.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		masters[c.MasterOf(t, key)] = true
	}
	if len(masters) != 3 {
		t.Fatalf("30 keys landed on %d masters, want all 3", len(masters))
	}

	key := prefix + "{victim}"
	master := c.MasterOf(t, key)
	replica := c.ReplicaOf(t, master)
	// SET and WAIT on one connection of the key's master: WAIT counts the
	// writes of its own connection only, so the replica has this one
	// before the kill (a WAIT sent through the cluster client goes to any
	// node and any pooled connection, and proved nothing: the test was
	// flaky).
	node, err := client.MasterForKey(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	var acked *redis.Cmd
	if _, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, "acknowledged", 0)
		acked = p.Do(ctx, "WAIT", 1, 5000)
		return nil
	}); err != nil {
		t.Fatalf("SET + WAIT on the key's master: %v", err)
	}
	if n, err := acked.Int(); err != nil || n < 1 {
		t.Fatalf("WAIT on the key's master: %d replicas, %v; want 1", n, err)
	}
	killed := time.Now()
	c.Kill(t, master)
	promoted := c.WaitPromotion(t, replica, 30*time.Second)
	t.Logf("replica %s promoted %v after the kill of %s", replica, promoted.Sub(killed).Round(time.Millisecond), master)
	c.WaitHealthy(t, 30*time.Second)
	if got := c.MasterOf(t, key); got != replica {
		t.Fatalf("after the failover the key's master is %s, want the promoted %s", got, replica)
	}
	c.Restart(t, master)
	c.WaitHealthy(t, 30*time.Second)
	if got := c.ReplicaOf(t, replica); got != master {
		t.Fatalf("the restarted %s is not the replica of %s (it is %s's)", master, replica, got)
	}
	// The client follows by itself (MOVED from the old master, now a
	// replica, or a reload): retry briefly.
	var val string
	for range 100 {
		if val, err = client.Get(ctx, key).Result(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if val != "acknowledged" {
		t.Fatalf("GET after failover: %q, %v", val, err)
	}
}

func TestSharedClusterIsShared(t *testing.T) {
	t.Parallel()
	a := testredis.SharedCluster(t)
	var b *testredis.Cluster
	t.Run("inner", func(t *testing.T) { b = testredis.SharedCluster(t) })
	if a != b {
		t.Fatal("SharedCluster started a second cluster while the first was in use")
	}
	if err := a.Client(t).Ping(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
}

// TestSentinel starts a private Sentinel setup, writes through a failover
// client, kills the primary and sees the replica promoted and named by
// every sentinel, the client following it.
func TestSentinel(t *testing.T) {
	t.Parallel()
	s := testredis.NewSentinel(t)
	client := s.Client(t)
	ctx := t.Context()
	primary := s.Master(t)
	replica := s.Replica(t)
	// SET and WAIT in one pipeline, so over one connection: WAIT counts
	// only the writes of the connection it runs on.
	var acked *redis.Cmd
	if _, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "k", "acknowledged", 0)
		acked = p.Do(ctx, "WAIT", 1, 5000)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := acked.Int(); err != nil || n != 1 {
		t.Fatalf("WAIT: %d, %v", n, err)
	}
	killed := time.Now()
	s.Kill(t, primary)
	promoted := s.WaitPromotion(t, replica, 30*time.Second)
	s.WaitSwitched(t, replica, 30*time.Second)
	t.Logf("replica %s promoted %v after the kill; sentinels all switched %v after the promotion", replica,
		promoted.Sub(killed).Round(time.Millisecond), time.Since(promoted).Round(time.Millisecond))
	var val string
	var err error
	for range 100 {
		if val, err = client.Get(ctx, "k").Result(); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if val != "acknowledged" {
		t.Fatalf("GET after failover: %q, %v", val, err)
	}
	// The old primary comes back on its address (the sentinels make it a
	// replica some 8 s later: not waited for here).
	s.Restart(t, primary)
	old := redis.NewClient(&redis.Options{Addr: primary, MaxRetries: -1})
	defer old.Close()
	if err := old.Ping(ctx).Err(); err != nil {
		t.Fatalf("restarted primary: %v", err)
	}
}
