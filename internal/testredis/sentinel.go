package testredis

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the test sentinels monitor their primary by.
const SentinelMaster = "testmaster"

// SentinelDownAfter is the sentinels' down-after-milliseconds: a primary
// silent this long is failed over (Redis's default is 30 s).
const SentinelDownAfter = 1000 * time.Millisecond

// Sentinel is a real Sentinel setup on loopback: a primary, one replica
// and three `redis-server --sentinel` processes (quorum 2) monitoring the
// primary as SentinelMaster, each process with its own port and directory.
// Tests that kill nodes take a private one (NewSentinel); others share one
// per test binary (SharedSentinel) and isolate themselves by key.
type Sentinel struct {
	data      []*node // the primary and the replica, in their first roles
	sentinels []*node
}

// NewSentinel starts a private Sentinel setup for t and kills it when t
// ends. Without redis-server on PATH, t skips (fails under CI=true).
func NewSentinel(t testing.TB) *Sentinel {
	t.Helper()
	return private(t, startSentinel)
}

var sharedSentinel sharedTopology[*Sentinel]

// SharedSentinel returns the Sentinel setup shared by the tests of this
// test binary, starting it on first use; the last test using it stops it.
// Tests must not kill its nodes: take a NewSentinel for that.
func SharedSentinel(t testing.TB) *Sentinel {
	t.Helper()
	return sharedSentinel.use(t, "testredis-sentinel-", startSentinel)
}

func startSentinel(dir string) (_ *Sentinel, err error) {
	if err := requireBinaries("redis-server"); err != nil {
		return nil, err
	}
	s := &Sentinel{}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	primary, replica, err := startPrimaryReplica(dir, nil)
	s.data = append(s.data, primary, replica)
	if err != nil {
		return nil, fmt.Errorf("sentinel setup: %w", err)
	}
	for i := range 3 {
		d := filepath.Join(dir, "sentinel"+strconv.Itoa(i))
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		conf := filepath.Join(d, "sentinel.conf")
		// Sentinels rewrite their config file (what they learn of the
		// topology): it must be a file of their own.
		body := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 2\n"+
			"sentinel down-after-milliseconds %[1]s %[3]d\n"+
			"sentinel failover-timeout %[1]s 5000\n"+
			"sentinel parallel-syncs %[1]s 1\n",
			SentinelMaster, primary.port, SentinelDownAfter.Milliseconds())
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			return nil, err
		}
		n := &node{dir: d, conf: conf, extra: []string{"--sentinel"}}
		s.sentinels = append(s.sentinels, n)
		if err := n.start(); err != nil {
			return nil, err
		}
	}
	// Ready once every sentinel knows the replica and the two other
	// sentinels (they meet through hello messages every 2 s): only then
	// can they agree on a failover.
	if err := pollUntil(30*time.Second, 50*time.Millisecond, func() error {
		for _, n := range s.sentinels {
			m, err := n.do("SENTINEL", "MASTER", SentinelMaster).Slice()
			if err != nil {
				return fmt.Errorf("%s: SENTINEL MASTER: %w", n.addr(), err)
			}
			f := fieldMap(m)
			if f["num-slaves"] == "0" || f["num-other-sentinels"] != "2" || f["flags"] != "master" {
				return fmt.Errorf("%s: sentinel sees %d replica(s), %s other sentinels, flags %s",
					n.addr(), atoi(f["num-slaves"]), f["num-other-sentinels"], f["flags"])
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("sentinels not ready: %w\n%s", err, s.logTails())
	}
	return s, nil
}

func (s *Sentinel) close() {
	var wg sync.WaitGroup
	for _, n := range append(append([]*node{}, s.sentinels...), s.data...) {
		wg.Go(n.close)
	}
	wg.Wait()
}

// MasterName is the name the sentinels monitor the primary by.
func (s *Sentinel) MasterName() string { return SentinelMaster }

// SentinelAddrs are the sentinels' addresses.
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, n := range s.sentinels {
		addrs[i] = n.addr()
	}
	return addrs
}

// DataAddrs are the addresses of the primary and the replica (in their
// first roles).
func (s *Sentinel) DataAddrs() []string {
	return []string{s.data[0].addr(), s.data[1].addr()}
}

// Client returns a go-redis failover client of the current primary
// (through the sentinels), closed when t ends: every call bounded by its
// context, no resend.
func (s *Sentinel) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:            SentinelMaster,
		SentinelAddrs:         s.SentinelAddrs(),
		ContextTimeoutEnabled: true,
		MaxRetries:            -1,
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// Master is the primary's address as the first sentinel that answers
// names it.
func (s *Sentinel) Master(t testing.TB) string {
	t.Helper()
	var lastErr error
	for _, n := range s.sentinels {
		if !n.running() {
			continue
		}
		v, err := n.do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster).StringSlice()
		if err == nil && len(v) == 2 {
			return v[0] + ":" + v[1]
		}
		lastErr = err
	}
	t.Fatalf("testredis: no sentinel names the master: %v", lastErr)
	return ""
}

// Replica is the address of the data node that is not Master.
func (s *Sentinel) Replica(t testing.TB) string {
	t.Helper()
	m := s.Master(t)
	for _, n := range s.data {
		if a := n.addr(); a != m {
			return a
		}
	}
	t.Fatalf("testredis: no replica beside %s", m)
	return ""
}

// Kill ends the data node or sentinel at addr with SIGKILL.
func (s *Sentinel) Kill(t testing.TB, addr string) {
	t.Helper()
	s.node(t, addr).kill(syscall.SIGKILL)
}

// Restart starts a killed node again on its address and directory (a
// former primary is then made a replica by the sentinels).
func (s *Sentinel) Restart(t testing.TB, addr string) {
	t.Helper()
	if err := s.node(t, addr).start(); err != nil {
		t.Fatalf("testredis: restart %s: %v", addr, err)
	}
}

// WaitPromotion waits until the data node at addr reports itself master
// (the sentinels' REPLICAOF NO ONE has run), polling ROLE every few
// milliseconds, and returns when it first saw it.
func (s *Sentinel) WaitPromotion(t testing.TB, addr string, timeout time.Duration) time.Time {
	t.Helper()
	return waitRole(t, s.node(t, addr), "master", timeout)
}

// WaitSwitched waits until every running sentinel names addr as the
// primary.
func (s *Sentinel) WaitSwitched(t testing.TB, addr string, timeout time.Duration) {
	t.Helper()
	err := pollUntil(timeout, 20*time.Millisecond, func() error {
		for _, n := range s.sentinels {
			if !n.running() {
				continue
			}
			v, err := n.do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SentinelMaster).StringSlice()
			if err != nil {
				return err
			}
			if len(v) != 2 || v[0]+":"+v[1] != addr {
				return fmt.Errorf("%s names %v as master, want %s", n.addr(), v, addr)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("testredis: sentinels not switched to %s within %v: %v\n%s", addr, timeout, err, s.logTails())
	}
}

func (s *Sentinel) node(t testing.TB, addr string) *node {
	t.Helper()
	for _, n := range append(append([]*node{}, s.data...), s.sentinels...) {
		if n.addr() == addr {
			return n
		}
	}
	t.Fatalf("testredis: no node %s in the sentinel setup", addr)
	return nil
}

func (s *Sentinel) logTails() string {
	var b strings.Builder
	for _, n := range append(append([]*node{}, s.data...), s.sentinels...) {
		fmt.Fprintf(&b, "--- %s (%s) ---\n%s\n", n.addr(), n.dir, n.logTail())
	}
	return b.String()
}

// fieldMap reads a flat [name, value, ...] reply.
func fieldMap(v []any) map[string]string {
	m := make(map[string]string, len(v)/2)
	for i := 0; i+1 < len(v); i += 2 {
		k, _ := v[i].(string)
		val, _ := v[i+1].(string)
		m[k] = val
	}
	return m
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
