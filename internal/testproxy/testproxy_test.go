package testproxy_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/identityd/identity/internal/testproxy"
)

// echoServer answers each line it reads with the same line, on loopback,
// until t ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t, c, bufio.NewReader(c)}
}

// roundTrip sends line and reads the echo, waiting at most wait.
func (c *client) roundTrip(line string, wait time.Duration) (string, error) {
	c.c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c.c, line+"\n"); err != nil {
		return "", err
	}
	got, err := c.r.ReadString('\n')
	return strings.TrimSuffix(got, "\n"), err
}

func (c *client) requireEcho(line string) {
	c.t.Helper()
	got, err := c.roundTrip(line, 10*time.Second)
	if err != nil || got != line {
		c.t.Fatalf("echo of %q: %q, %v", line, got, err)
	}
}

func TestForwards(t *testing.T) {
	t.Parallel()
	p := testproxy.New(t, echoServer(t))
	c := dial(t, p.Addr())
	c.requireEcho("hello")
	big := strings.Repeat("x", 200<<10) // several chunks
	c.requireEcho(big)
	if p.Accepted() != 1 || p.Open() != 1 {
		t.Errorf("accepted %d, open %d; want 1, 1", p.Accepted(), p.Open())
	}
}

// TestLatency: a round trip takes at least the latency of both directions
// (a lower bound the proxy itself guarantees; no upper bound is checked),
// and setting it back to zero releases held bytes.
func TestLatency(t *testing.T) {
	t.Parallel()
	p := testproxy.New(t, echoServer(t))
	c := dial(t, p.Addr())
	c.requireEcho("warm")
	p.SetLatency(150*time.Millisecond, 100*time.Millisecond)
	start := time.Now()
	c.requireEcho("slow")
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("round trip with 150ms+100ms of latency took %v", d)
	}

	// Bytes held by a long latency go on once it is lifted.
	p.SetLatency(time.Hour, 0)
	if _, err := io.WriteString(c.c, "held\n"); err != nil {
		t.Fatal(err)
	}
	c.c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if got, err := c.r.ReadString('\n'); !isTimeout(err) {
		t.Fatalf("read under an hour of latency: %q, %v; want a timeout", got, err)
	}
	p.SetLatency(0, 0)
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := c.r.ReadString('\n'); err != nil || got != "held\n" {
		t.Fatalf("after the latency was lifted: %q, %v", got, err)
	}
}

// TestPauseResume: paused, nothing passes on open or new connections (both
// still connect); resumed, everything held arrives in order.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	p := testproxy.New(t, echoServer(t))
	c := dial(t, p.Addr())
	c.requireEcho("before")
	p.Pause()
	if got, err := c.roundTrip("one", 200*time.Millisecond); !isTimeout(err) {
		t.Fatalf("paused: %q, %v; want a timeout", got, err)
	}
	fresh := dial(t, p.Addr()) // accepted while paused
	if got, err := fresh.roundTrip("two", 200*time.Millisecond); !isTimeout(err) {
		t.Fatalf("new connection while paused: %q, %v; want a timeout", got, err)
	}
	p.Resume()
	c.c.SetDeadline(time.Now().Add(10 * time.Second))
	if got, err := c.r.ReadString('\n'); err != nil || got != "one\n" {
		t.Fatalf("held bytes after Resume: %q, %v", got, err)
	}
	fresh.c.SetDeadline(time.Now().Add(10 * time.Second))
	if got, err := fresh.r.ReadString('\n'); err != nil || got != "two\n" {
		t.Fatalf("held bytes of the new connection after Resume: %q, %v", got, err)
	}
	c.requireEcho("after")
}

// TestDropResume: Drop closes open connections and new ones; after Resume
// new connections work again.
func TestDropResume(t *testing.T) {
	t.Parallel()
	p := testproxy.New(t, echoServer(t))
	c := dial(t, p.Addr())
	c.requireEcho("before")
	p.Drop()
	if got, err := c.roundTrip("x", 10*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("open connection after Drop: %q, %v; want it closed", got, err)
	}
	fresh := dial(t, p.Addr())
	if got, err := fresh.roundTrip("y", 10*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("new connection while dropping: %q, %v; want it closed", got, err)
	}
	p.Resume()
	dial(t, p.Addr()).requireEcho("after")
}

// TestTargetDown: with nothing listening at the target, a client's
// connection is closed, not left hanging.
func TestTargetDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := testproxy.New(t, addr)
	if got, err := dial(t, p.Addr()).roundTrip("x", 10*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("through a proxy to a closed port: %q, %v; want the connection closed", got, err)
	}
}

// TestClose: Close ends every connection, even a paused one, and returns.
func TestClose(t *testing.T) {
	t.Parallel()
	p := testproxy.New(t, echoServer(t))
	c := dial(t, p.Addr())
	c.requireEcho("before")
	p.Pause()
	if _, err := io.WriteString(c.c, "held\n"); err != nil {
		t.Fatal(err)
	}
	p.Close()
	c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if got, err := c.r.ReadString('\n'); err == nil || isTimeout(err) {
		t.Fatalf("after Close: %q, %v; want the connection closed", got, err)
	}
	p.Close() // twice is fine
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
