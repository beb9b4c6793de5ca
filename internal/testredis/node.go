package testredis

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// node is one redis-server process of a topology (a cluster node, a
// Sentinel-monitored primary or replica, or a sentinel) on loopback, with
// its own data directory. Unlike Server it belongs to a topology, which
// kills and restarts it.
type node struct {
	dir     string
	conf    string   // config file given first (sentinels need one they can rewrite); "" for none
	extra   []string // arguments after the common ones
	cluster bool     // a cluster node: it also needs a cluster bus port

	mu      sync.Mutex
	port    int
	busPort int
	cmd     *exec.Cmd
	exited  chan struct{}
	admin   *redis.Client // a plain client of this one node, for the topology's own queries
	started bool
}

func (n *node) addr() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port))
}

// start runs the node on free ports, or on its former ports when it ran
// before (a restart keeps its address and its data).
func (n *node) start() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("no redis-server binary on PATH: %w", err)
	}
	n.mu.Lock()
	restart := n.started
	port, bus := n.port, n.busPort
	n.mu.Unlock()
	var lastErr error
	for range 5 {
		p, b := port, bus
		if !restart {
			if p, err = freePort(); err != nil {
				return err
			}
			if n.cluster {
				if b, err = freePort(); err != nil {
					return err
				}
			}
		}
		var args []string
		if n.conf != "" {
			args = append(args, n.conf)
		}
		logPath := filepath.Join(n.dir, "redis.log")
		args = append(args,
			"--port", strconv.Itoa(p),
			"--bind", "127.0.0.1",
			"--dir", n.dir,
			"--logfile", logPath,
			"--daemonize", "no",
		)
		if n.cluster {
			args = append(args, "--cluster-port", strconv.Itoa(b))
		}
		args = append(args, n.extra...)
		cmd, exited, err := launch(bin, args, p, logPath)
		if err != nil {
			lastErr = err
			if restart {
				time.Sleep(50 * time.Millisecond) // the port may be held for a moment
			}
			continue // on a first start, probably lost a race for a port: pick others
		}
		n.mu.Lock()
		n.cmd, n.exited, n.port, n.busPort, n.started = cmd, exited, p, b, true
		if n.admin == nil {
			n.admin = redis.NewClient(&redis.Options{
				Addr:         net.JoinHostPort("127.0.0.1", strconv.Itoa(p)),
				DialTimeout:  time.Second,
				ReadTimeout:  2 * time.Second,
				WriteTimeout: 2 * time.Second,
				MaxRetries:   -1,
				PoolSize:     2,
				Protocol:     2, // flat replies (SENTINEL MASTER) for the parsers here
				// A node that was just killed must not slow the next query
				// down with go-redis's dial retries.
				DialerRetries: 1,
			})
		}
		n.mu.Unlock()
		return nil
	}
	return lastErr
}

// running reports whether the process is up (not killed).
func (n *node) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// kill signals the process and waits for it to exit.
func (n *node) kill(sig syscall.Signal) {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

// close kills the process and closes the admin client.
func (n *node) close() {
	n.kill(syscall.SIGKILL)
	n.mu.Lock()
	admin := n.admin
	n.admin = nil
	n.mu.Unlock()
	if admin != nil {
		admin.Close()
	}
}

// do runs one command on this node with a short deadline.
func (n *node) do(args ...any) *redis.Cmd {
	n.mu.Lock()
	admin := n.admin
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if admin == nil {
		cmd := redis.NewCmd(ctx, args...)
		cmd.SetErr(fmt.Errorf("node not started"))
		return cmd
	}
	return admin.Do(ctx, args...)
}

// role is the first element of ROLE: "master", "slave" or "sentinel".
func (n *node) role() (string, error) {
	v, err := n.do("ROLE").Slice()
	if err != nil {
		return "", err
	}
	if len(v) == 0 {
		return "", fmt.Errorf("empty ROLE reply")
	}
	s, _ := v[0].(string)
	return s, nil
}

func (n *node) logTail() string { return tail(filepath.Join(n.dir, "redis.log")) }

// launch starts redis-server with args and waits until it answers PING on
// port. On failure nothing is left running.
func launch(bin string, args []string, port int, logPath string) (*exec.Cmd, chan struct{}, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	if err := waitPing(port, exited); err != nil {
		cmd.Process.Kill()
		<-exited
		return nil, nil, fmt.Errorf("redis-server on port %d: %w\n%s", port, err, tail(logPath))
	}
	return cmd, exited, nil
}

// requireBinaries fails with an error naming the first program missing
// from PATH.
func requireBinaries(names ...string) error {
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			return errMissing{fmt.Errorf("no %s binary on PATH: %w", name, err)}
		}
	}
	return nil
}

// errMissing marks a start that failed for want of a binary.
type errMissing struct{ err error }

func (e errMissing) Error() string { return e.err.Error() }

// topologyFailed ends t after a topology could not start: a missing binary
// skips it (fails it under CI=true; with REDIS_URL set and no binaries the
// machine provides Redis only by URL, so it skips even then, as NewServer
// does); any other failure fails it.
func topologyFailed(t testing.TB, err error) {
	t.Helper()
	if _, ok := err.(errMissing); !ok {
		t.Fatalf("testredis: %v", err)
	}
	if os.Getenv(EnvURL) != "" {
		t.Skipf("testredis: cannot start a private topology (%s is set): %v", EnvURL, err)
	}
	unavailable(t, err)
}

// pollUntil calls f every interval until it returns nil or timeout passes,
// and returns f's last error then.
func pollUntil(timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}
