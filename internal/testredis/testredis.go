// Package testredis gives tests a real Redis.
//
// Start returns a client for the Redis named by REDIS_URL when it is set, and
// otherwise for a private redis-server that this package starts on a free
// loopback port and shares between the tests of one test binary. NewServer
// starts a private server for one test that the test may Stop, Kill and
// Restart (fail-closed tests). NewCluster and NewSentinel start real
// topologies on loopback (a 3+3 Redis Cluster; a primary, a replica and
// three sentinels) that a test may kill nodes of and watch fail over;
// SharedCluster and SharedSentinel share one of each per test binary.
// Without the binaries (redis-server, and redis-cli for a cluster) tests
// skip with a clear message, except under CI=true, where they fail.
//
// A Redis given by REDIS_URL is never flushed. Tests isolate themselves by
// key: KeyPrefix returns a random prefix and deletes the keys under it when
// the test ends, and tests use fresh random ids. It is for tests only: it
// is not a Redis supervisor and not a fixture loader.
package testredis

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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

// EnvURL names the environment variable of an existing Redis to test against.
const EnvURL = "REDIS_URL"

// shared is the private server handed out by Start while REDIS_URL is unset.
// It lives while at least one test uses it (on Linux the child also dies
// with its parent, see procAttr).
var shared refCounted[*Server]

// Start returns a client of the test Redis, closed when t ends. Keys the
// test writes stay unless it uses KeyPrefix; the Redis is never flushed.
func Start(t testing.TB) *redis.Client {
	t.Helper()
	return newClient(t, URL(t))
}

// URL returns the redis:// URL of the test Redis (REDIS_URL or the shared
// private server), valid until t ends.
func URL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return shared.use(t, func() (*Server, func(), error) {
		srv, err := startServer()
		if err != nil {
			return nil, nil, err
		}
		return srv, func() { srv.kill(syscall.SIGTERM); os.RemoveAll(srv.dir) }, nil
	}, unavailable).URL()
}

// KeyPrefix returns a random key prefix ("test:<hex>:") and, when t ends,
// deletes every key of client under it (on every master of a cluster
// client). This is how tests share a Redis without flushing it.
func KeyPrefix(t testing.TB, client redis.UniversalClient) string {
	t.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	prefix := "test:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		keys, err := scanAll(ctx, client, prefix+"*")
		if err != nil {
			t.Logf("testredis: cleaning %s*: %v", prefix, err)
			return
		}
		for _, k := range keys {
			// One key at a time: keys of different hash slots cannot
			// share a DEL on Redis Cluster.
			client.Del(ctx, k)
		}
	})
	return prefix
}

// Server is a private redis-server on a loopback port, with AOF on so data
// survives Stop and Restart. Its data directory is a t.TempDir.
type Server struct {
	t    testing.TB
	dir  string
	port int

	tls     *tlsFiles // WithTLS
	tlsPort int
	args    []string // WithArgs

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
}

// ServerOption configures NewServer.
type ServerOption func(*Server)

type tlsFiles struct{ cert, key, ca string }

// WithTLS has the server serve TLS too, on a port of its own (TLSAddr,
// TLSURL), with the PEM certificate and key in certFile and keyFile. caFile
// is the CA redis-server would check client certificates with; it asks
// for none (tls-auth-clients no). The plaintext port stays open for the
// readiness check. A redis-server built without TLS fails to start: the
// test is then skipped with the reason (failed under CI=true).
func WithTLS(certFile, keyFile, caFile string) ServerOption {
	return func(s *Server) { s.tls = &tlsFiles{certFile, keyFile, caFile} }
}

// WithArgs adds redis-server arguments after the package's own (a later
// one wins): "--appendfsync", "always" to fsync every write, or
// "--enable-debug-command", "local" for DEBUG SLEEP. They apply to every
// start, Restart included.
func WithArgs(args ...string) ServerOption {
	return func(s *Server) { s.args = append(s.args, args...) }
}

// NewServer starts a private redis-server for t and kills it when t ends.
// It ignores REDIS_URL: a test that stops its Redis needs one of its own.
func NewServer(t testing.TB, opts ...ServerOption) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil && os.Getenv(EnvURL) != "" {
		// CI that provides Redis only by URL cannot run a private one.
		t.Skipf("testredis: no redis-server binary for a private server (%s is set): %v", EnvURL, err)
	}
	s := &Server{t: t, dir: t.TempDir()}
	for _, o := range opts {
		o(s)
	}
	if err := s.start(0); err != nil {
		if s.tls != nil {
			skipOrFail(t, "testredis: redis-server does not serve TLS here (built without it?): %v", err)
		}
		unavailable(t, err)
	}
	t.Cleanup(func() { s.kill(syscall.SIGKILL) })
	return s
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL is redis://host:port/0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// TLSAddr is the TLS port's host:port (WithTLS).
func (s *Server) TLSAddr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.tlsPort)) }

// TLSURL is rediss://host:tlsport/0 (WithTLS).
func (s *Server) TLSURL() string { return "rediss://" + s.TLSAddr() + "/0" }

// Client returns a new client of s, closed when t ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	return newClient(t, s.URL())
}

// Stop shuts the server down cleanly (SIGTERM: the AOF is flushed) and
// waits for it to exit. Clients then get connection errors.
func (s *Server) Stop() {
	s.t.Helper()
	s.kill(syscall.SIGTERM)
}

// Kill ends the server abruptly (SIGKILL), as a crash would: writes of the
// last second may be lost (appendfsync everysec).
func (s *Server) Kill() {
	s.t.Helper()
	s.kill(syscall.SIGKILL)
}

// Dir is the server's data directory (its AOF is under it).
func (s *Server) Dir() string { return s.dir }

// Restart starts the server again on the same port and data directory, so
// existing clients reconnect by themselves and the AOF is replayed.
func (s *Server) Restart() {
	s.t.Helper()
	s.kill(syscall.SIGTERM)
	var err error
	// The port was free a moment ago; another process may grab it in
	// between, so try a few times before giving up.
	for range 20 {
		if err = s.start(s.port); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("testredis: restart on port %d: %v", s.port, err)
}

func startServer() (*Server, error) {
	dir, err := os.MkdirTemp("", "testredis-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir}
	if err := s.start(0); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// start runs redis-server on port, or on a free port when port is 0.
func (s *Server) start(port int) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("no redis-server binary on PATH: %w", err)
	}
	var lastErr error
	for range 5 {
		p := port
		if p == 0 {
			if p, err = freePort(); err != nil {
				return err
			}
		}
		logPath := filepath.Join(s.dir, "redis.log")
		args := []string{
			"--port", strconv.Itoa(p),
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "yes",
			"--dir", s.dir,
			"--logfile", logPath,
			"--daemonize", "no",
		}
		tlsPort := s.tlsPort
		if s.tls != nil {
			if port == 0 || tlsPort == 0 {
				if tlsPort, err = freePort(); err != nil {
					return err
				}
			}
			args = append(args,
				"--tls-port", strconv.Itoa(tlsPort),
				"--tls-cert-file", s.tls.cert,
				"--tls-key-file", s.tls.key,
				"--tls-ca-cert-file", s.tls.ca,
				"--tls-auth-clients", "no")
		}
		args = append(args, s.args...)
		cmd, exited, err := launch(bin, args, p, logPath)
		if err != nil {
			lastErr = err
			if port != 0 {
				return lastErr
			}
			continue // probably lost a race for the port: pick another
		}
		s.mu.Lock()
		s.cmd, s.exited, s.port, s.tlsPort = cmd, exited, p, tlsPort
		s.mu.Unlock()
		return nil
	}
	return lastErr
}

func (s *Server) kill(sig syscall.Signal) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
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

func waitPing(port int, exited <-chan struct{}) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("exited during start")
		default:
		}
		if ping(addr) == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no answer to PING within 10s")
}

// ping speaks RESP directly so starting a server needs no client options.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(buf[:n], []byte("+PONG")) {
		// -LOADING while the AOF is replayed: not ready yet.
		return fmt.Errorf("PING answered %q", bytes.TrimSpace(buf[:n]))
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// newClient builds the client the way production should: every call bounded
// by its context, no blind retries.
func newClient(t testing.TB, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("testredis: %s: %v", EnvURL, err)
	}
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// skipOrFail skips t for a missing prerequisite, or fails it under
// CI=true, where every test must run.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format+" (CI=true: failing instead of skipping)", args...)
	}
	t.Skipf(format, args...)
}

// unavailable skips t, or fails it under CI=true, where Redis tests must run.
func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("testredis: no Redis for this test (CI=true, %s unset): %v", EnvURL, err)
	}
	t.Skipf("testredis: skipping, no Redis: set %s or install redis-server: %v", EnvURL, err)
}
