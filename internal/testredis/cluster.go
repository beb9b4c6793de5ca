package testredis

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterNodeTimeout is the cluster-node-timeout of the test clusters: a
// master that does not answer for this long is failed over (Redis's
// default, 15 s, would make failover tests slow).
const ClusterNodeTimeout = 1000 * time.Millisecond

// Cluster is a real Redis Cluster on loopback: three masters and three
// replicas, each a private redis-server (AOF on) with its own ports and
// data directory, created with `redis-cli --cluster create`. Tests that
// kill nodes take a private one (NewCluster); others share one per test
// binary (SharedCluster) and isolate themselves by key (KeyPrefix).
type Cluster struct {
	nodes []*node
}

// NewCluster starts a private cluster for t and kills it when t ends.
// Without redis-server or redis-cli on PATH, t skips (fails under CI=true).
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	return private(t, startCluster)
}

var sharedCluster sharedTopology[*Cluster]

// SharedCluster returns the cluster shared by the tests of this test
// binary, starting it on first use; the last test using it stops it.
// Tests must not kill its nodes: take a NewCluster for that.
func SharedCluster(t testing.TB) *Cluster {
	t.Helper()
	return sharedCluster.use(t, "testredis-cluster-", startCluster)
}

func startCluster(dir string) (_ *Cluster, err error) {
	if err := requireBinaries("redis-server", "redis-cli"); err != nil {
		return nil, err
	}
	c := &Cluster{}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	for i := range 6 {
		d := filepath.Join(dir, "node"+strconv.Itoa(i))
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		n := &node{dir: d, cluster: true, extra: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", strconv.Itoa(int(ClusterNodeTimeout.Milliseconds())),
			"--cluster-announce-ip", "127.0.0.1",
			"--save", "",
			"--appendonly", "yes",
			// Replicas sync at once, not after Redis's default 5 s.
			"--repl-diskless-sync-delay", "0",
		}}
		c.nodes = append(c.nodes, n)
		if err := n.start(); err != nil {
			return nil, err
		}
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	cmd := exec.Command("redis-cli", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out.String())
	}
	if err := c.waitHealthy(30 * time.Second); err != nil {
		return nil, fmt.Errorf("cluster not ready: %w\n%s", err, c.logTails())
	}
	return c, nil
}

func (c *Cluster) close() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(n.close)
	}
	wg.Wait()
}

// Addrs are the addresses of every node, masters and replicas: seeds for a
// cluster client.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		addrs[i] = n.addr()
	}
	return addrs
}

// Client returns a cluster client of c, closed when t ends: every call
// bounded by its context, no resend by go-redis's per-node clients.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	client := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 c.Addrs(),
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
	})
	t.Cleanup(func() { client.Close() })
	return client
}

// Slot is the hash slot of key.
func (c *Cluster) Slot(t testing.TB, key string) int {
	t.Helper()
	n, err := c.anyRunning()
	if err != nil {
		t.Fatal(err)
	}
	slot, err := n.do("CLUSTER", "KEYSLOT", key).Int()
	if err != nil {
		t.Fatalf("testredis: CLUSTER KEYSLOT: %v", err)
	}
	return slot
}

// MasterOf is the address of the master that owns key's slot, as a running
// node sees the cluster (a master just killed still owns its slots until
// its replica takes over).
func (c *Cluster) MasterOf(t testing.TB, key string) string {
	t.Helper()
	slot := c.Slot(t, key)
	nodes, err := c.view()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.has("master") && n.owns(slot) {
			return n.addr
		}
	}
	t.Fatalf("testredis: no master owns slot %d", slot)
	return ""
}

// ReplicaOf is the address of a replica of the master at addr.
func (c *Cluster) ReplicaOf(t testing.TB, master string) string {
	t.Helper()
	nodes, err := c.view()
	if err != nil {
		t.Fatal(err)
	}
	var id string
	for _, n := range nodes {
		if n.addr == master {
			id = n.id
		}
	}
	for _, n := range nodes {
		if id != "" && n.master == id && n.has("slave") {
			return n.addr
		}
	}
	t.Fatalf("testredis: no replica of %s in the cluster's view", master)
	return ""
}

// Kill ends the node at addr with SIGKILL, as a crash would.
func (c *Cluster) Kill(t testing.TB, addr string) {
	t.Helper()
	c.node(t, addr).kill(syscall.SIGKILL)
}

// Restart starts a killed node again on its address and data directory;
// it rejoins the cluster (as a replica, if it was failed over).
func (c *Cluster) Restart(t testing.TB, addr string) {
	t.Helper()
	if err := c.node(t, addr).start(); err != nil {
		t.Fatalf("testredis: restart %s: %v", addr, err)
	}
}

// Failover makes the replica at addr take over from its master the
// orderly way (CLUSTER FAILOVER: the master stops writes, the replica
// catches up, the roles swap) and waits until both report their new role
// and the old master is in sync as a replica.
// A client that still routes to the old master then gets MOVED.
func (c *Cluster) Failover(t testing.TB, addr string) {
	t.Helper()
	master := ""
	for _, l := range c.mustView(t) {
		if l.addr == addr {
			for _, m := range c.mustView(t) {
				if m.id == l.master {
					master = m.addr
				}
			}
		}
	}
	if master == "" {
		t.Fatalf("testredis: %s is no replica of a known master", addr)
	}
	// Redis gives up a manual failover after 5 s (an election lost on a
	// busy machine, say): ask again, a few times.
	replica := c.node(t, addr)
	var err error
	for range 4 {
		if err = replica.do("CLUSTER", "FAILOVER").Err(); err != nil {
			t.Fatalf("testredis: CLUSTER FAILOVER on %s: %v", addr, err)
		}
		if err = pollUntil(7*time.Second, 5*time.Millisecond, func() error {
			if role, err := replica.role(); err != nil || role != "master" {
				return fmt.Errorf("%s: role %s (%v), want master", addr, role, err)
			}
			return nil
		}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("testredis: manual failover to %s: %v\n%s", addr, err, replica.logTail())
	}
	waitRole(t, c.node(t, master), "slave", 30*time.Second)
	// Until the old master has synced with the new one, it cannot take
	// over from it (its data would count as too old): wait for that too.
	c.WaitHealthy(t, 30*time.Second)
}

func (c *Cluster) mustView(t testing.TB) []clusterNodeLine {
	t.Helper()
	v, err := c.view()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// WaitPromotion waits until the node at addr (a replica of a master that
// was killed) reports itself master, polling ROLE every few milliseconds,
// and returns when it first saw it: the promotion, as closely as a client
// can observe it.
func (c *Cluster) WaitPromotion(t testing.TB, addr string, timeout time.Duration) time.Time {
	t.Helper()
	return waitRole(t, c.node(t, addr), "master", timeout)
}

// WaitHealthy waits until every running node reports cluster_state:ok
// with all 16384 slots assigned, three running masters own them, and every
// other running node is a replica in sync with its master.
func (c *Cluster) WaitHealthy(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := c.waitHealthy(timeout); err != nil {
		t.Fatalf("testredis: cluster not healthy within %v: %v\n%s", timeout, err, c.logTails())
	}
}

func (c *Cluster) waitHealthy(timeout time.Duration) error {
	return pollUntil(timeout, 20*time.Millisecond, func() error {
		running := 0
		for _, n := range c.nodes {
			if !n.running() {
				continue
			}
			running++
			info, err := n.do("CLUSTER", "INFO").Text()
			if err != nil {
				return fmt.Errorf("%s: CLUSTER INFO: %w", n.addr(), err)
			}
			for _, want := range []string{"cluster_state:ok", "cluster_slots_assigned:16384", "cluster_known_nodes:" + strconv.Itoa(len(c.nodes))} {
				if !strings.Contains(info, want+"\r\n") {
					return fmt.Errorf("%s: no %s in CLUSTER INFO", n.addr(), want)
				}
			}
			repl, err := n.do("INFO", "replication").Text()
			if err != nil {
				return fmt.Errorf("%s: INFO replication: %w", n.addr(), err)
			}
			if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				return fmt.Errorf("%s: replica not in sync with its master", n.addr())
			}
		}
		if running == 0 {
			return fmt.Errorf("no node running")
		}
		// The view agrees: three masters own the slots, and every running
		// node is a master with slots or a replica of one, none suspected.
		view, err := c.view()
		if err != nil {
			return err
		}
		masters := 0
		for _, l := range view {
			if !c.runningAddr(l.addr) {
				continue
			}
			switch {
			case l.has("fail") || l.has("fail?"):
				return fmt.Errorf("%s is flagged %v", l.addr, l.flags)
			case l.has("master") && len(l.slots) > 0:
				masters++
			case l.has("slave") && l.master != "-":
			default:
				return fmt.Errorf("%s is neither a master with slots nor a replica: %v", l.addr, l.flags)
			}
		}
		if masters != 3 {
			return fmt.Errorf("%d running masters own slots, want 3", masters)
		}
		return nil
	})
}

func (c *Cluster) node(t testing.TB, addr string) *node {
	t.Helper()
	for _, n := range c.nodes {
		if n.addr() == addr {
			return n
		}
	}
	t.Fatalf("testredis: no cluster node %s", addr)
	return nil
}

func (c *Cluster) runningAddr(addr string) bool {
	for _, n := range c.nodes {
		if n.addr() == addr {
			return n.running()
		}
	}
	return false
}

func (c *Cluster) anyRunning() (*node, error) {
	for _, n := range c.nodes {
		if n.running() {
			return n, nil
		}
	}
	return nil, fmt.Errorf("testredis: no cluster node running")
}

// view is CLUSTER NODES as the first running node that answers sees it.
func (c *Cluster) view() ([]clusterNodeLine, error) {
	var lastErr error
	for _, n := range c.nodes {
		if !n.running() {
			continue
		}
		text, err := n.do("CLUSTER", "NODES").Text()
		if err != nil {
			lastErr = err
			continue
		}
		return parseClusterNodes(text), nil
	}
	return nil, fmt.Errorf("testredis: CLUSTER NODES: no running node answered: %v", lastErr)
}

func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, n := range c.nodes {
		fmt.Fprintf(&b, "--- %s (%s) ---\n%s\n", n.addr(), n.dir, n.logTail())
	}
	return b.String()
}

// clusterNodeLine is one line of CLUSTER NODES.
type clusterNodeLine struct {
	id, addr, master string
	flags            []string
	slots            [][2]int
}

func (l clusterNodeLine) has(flag string) bool { return slices.Contains(l.flags, flag) }

func (l clusterNodeLine) owns(slot int) bool {
	for _, r := range l.slots {
		if slot >= r[0] && slot <= r[1] {
			return true
		}
	}
	return false
}

// parseClusterNodes reads CLUSTER NODES: "<id> <ip:port@cport[,host]>
// <flags> <master id or -> <ping> <pong> <epoch> <link> <slot ranges>...".
func parseClusterNodes(text string) []clusterNodeLine {
	var out []clusterNodeLine
	for line := range strings.SplitSeq(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		addr, _, _ := strings.Cut(f[1], "@")
		l := clusterNodeLine{id: f[0], addr: addr, flags: strings.Split(f[2], ","), master: f[3]}
		for _, r := range f[8:] {
			if strings.HasPrefix(r, "[") {
				continue // a slot being migrated
			}
			lo, hi, found := strings.Cut(r, "-")
			a, err1 := strconv.Atoi(lo)
			b := a
			var err2 error
			if found {
				b, err2 = strconv.Atoi(hi)
			}
			if err1 == nil && err2 == nil {
				l.slots = append(l.slots, [2]int{a, b})
			}
		}
		out = append(out, l)
	}
	return out
}

// waitRole polls n's ROLE until it is want and returns when it saw it.
func waitRole(t testing.TB, n *node, want string, timeout time.Duration) time.Time {
	t.Helper()
	var seen time.Time
	err := pollUntil(timeout, 5*time.Millisecond, func() error {
		role, err := n.role()
		if err != nil {
			return err
		}
		if role != want {
			return fmt.Errorf("%s: role %s, want %s", n.addr(), role, want)
		}
		seen = time.Now()
		return nil
	})
	if err != nil {
		t.Fatalf("testredis: not within %v: %v\n%s", timeout, err, n.logTail())
	}
	return seen
}

// scanAll lists the keys matching pattern on every master of a cluster
// client, or on the one server of any other client.
func scanAll(ctx context.Context, client redis.UniversalClient, pattern string) ([]string, error) {
	scan := func(ctx context.Context, c redis.Cmdable) ([]string, error) {
		var keys []string
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		return keys, iter.Err()
	}
	cc, ok := client.(*redis.ClusterClient)
	if !ok {
		return scan(ctx, client)
	}
	var mu sync.Mutex
	var all []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		keys, err := scan(ctx, m)
		mu.Lock()
		all = append(all, keys...)
		mu.Unlock()
		return err
	})
	return all, err
}
