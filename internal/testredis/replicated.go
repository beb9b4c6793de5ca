package testredis

import (
	"fmt"
	"os"
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

// Replicated is a primary with one replica on loopback, without sentinels:
// the topology of a single Redis URL whose writes a replica copies. Tests
// freeze the replica (SIGSTOP) to see what a write that no replica
// confirms does, and thaw it (SIGCONT) again.
type Replicated struct {
	primary, replica *node
	mu               sync.Mutex
	frozen           bool
}

// NewReplicated starts a primary and a replica for t (AOF on, as Server)
// and kills both when t ends; extra arguments go to both redis-servers.
// Without redis-server on PATH, t skips (fails under CI=true).
func NewReplicated(t testing.TB, extra ...string) *Replicated {
	t.Helper()
	if err := requireBinaries("redis-server"); err != nil {
		topologyFailed(t, err)
	}
	primary, replica, err := startPrimaryReplica(t.TempDir(), extra)
	r := &Replicated{primary: primary, replica: replica}
	t.Cleanup(r.close)
	if err != nil {
		topologyFailed(t, err)
	}
	return r
}

// startPrimaryReplica starts a primary and a replica of it, each in a
// directory of its own under dir, and waits until the replica is in sync.
// The nodes it returns are to be closed by the caller, also on an error.
func startPrimaryReplica(dir string, extra []string) (primary, replica *node, err error) {
	dataArgs := slices.Concat([]string{"--save", "", "--appendonly", "yes", "--repl-diskless-sync-delay", "0"}, extra)
	primary = &node{dir: filepath.Join(dir, "primary"), extra: dataArgs}
	replica = &node{dir: filepath.Join(dir, "replica")}
	for _, n := range []*node{primary, replica} {
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			return primary, replica, err
		}
	}
	if err := primary.start(); err != nil {
		return primary, replica, err
	}
	replica.extra = slices.Concat(dataArgs, []string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.port)})
	if err := replica.start(); err != nil {
		return primary, replica, err
	}
	if err := pollUntil(20*time.Second, 20*time.Millisecond, func() error {
		repl, err := replica.do("INFO", "replication").Text()
		if err != nil {
			return err
		}
		if !strings.Contains(repl, "master_link_status:up") {
			return fmt.Errorf("replica not in sync")
		}
		return nil
	}); err != nil {
		return primary, replica, fmt.Errorf("%w\n--- primary ---\n%s\n--- replica ---\n%s", err, primary.logTail(), replica.logTail())
	}
	return primary, replica, nil
}

func (r *Replicated) close() {
	r.Thaw()
	var wg sync.WaitGroup
	wg.Go(r.primary.close)
	wg.Go(r.replica.close)
	wg.Wait()
}

// URL is the primary's redis:// URL.
func (r *Replicated) URL() string { return "redis://" + r.primary.addr() + "/0" }

// Client returns a new client of the primary, closed when t ends.
func (r *Replicated) Client(t testing.TB) *redis.Client {
	t.Helper()
	return newClient(t, r.URL())
}

// PrimaryAddr and ReplicaAddr are the two nodes' host:port.
func (r *Replicated) PrimaryAddr() string { return r.primary.addr() }
func (r *Replicated) ReplicaAddr() string { return r.replica.addr() }

// Freeze stops the replica's process (SIGSTOP): it keeps its connection
// to the primary but confirms nothing until Thaw. The topology's cleanup
// thaws it.
func (r *Replicated) Freeze(t testing.TB) {
	t.Helper()
	r.signalReplica(t, syscall.SIGSTOP, true)
}

// Thaw lets a frozen replica run again (SIGCONT).
func (r *Replicated) Thaw() {
	r.signalReplica(nil, syscall.SIGCONT, false)
}

func (r *Replicated) signalReplica(t testing.TB, sig syscall.Signal, frozen bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !frozen && !r.frozen {
		return
	}
	r.replica.mu.Lock()
	cmd := r.replica.cmd
	r.replica.mu.Unlock()
	if cmd == nil {
		if t != nil {
			t.Fatal("testredis: the replica is not running")
		}
		return
	}
	if err := cmd.Process.Signal(sig); err != nil && t != nil {
		t.Fatalf("testredis: signal the replica: %v", err)
	}
	r.frozen = frozen
}

// WaitReplicaSynced waits until the replica has the primary's whole
// replication stream (its offset equals the primary's), so a thawed
// replica has caught up.
func (r *Replicated) WaitReplicaSynced(t testing.TB, timeout time.Duration) {
	t.Helper()
	err := pollUntil(timeout, 20*time.Millisecond, func() error {
		p, err := r.primary.do("INFO", "replication").Text()
		if err != nil {
			return err
		}
		s, err := r.replica.do("INFO", "replication").Text()
		if err != nil {
			return err
		}
		po, so := infoField(p, "master_repl_offset"), infoField(s, "slave_repl_offset")
		if po == "" || po != so || !strings.Contains(s, "master_link_status:up") {
			return fmt.Errorf("replica at offset %q, primary at %q", so, po)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("testredis: replica not in sync within %v: %v", timeout, err)
	}
}

// infoField is one "name:value" line of an INFO reply.
func infoField(info, name string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return v
		}
	}
	return ""
}
