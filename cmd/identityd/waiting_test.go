package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/identityd/identity/tokenstore"
)

var fastBackoff = backoff{first: time.Millisecond, max: 2 * time.Millisecond}

// syncBuffer is a log sink the test reads while nothing writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// failing returns a step that fails with err n times, then succeeds.
func failing(name string, n int, err error, calls *int) startStep {
	return startStep{waitsFor: name, run: func(context.Context) error {
		*calls++
		if *calls <= n {
			return err
		}
		return nil
	}}
}

func TestWaitForStore(t *testing.T) {
	t.Parallel()
	down := fmt.Errorf("tokenstore: redis ping: %w: connection refused", tokenstore.ErrUnavailable)
	var out syncBuffer
	log := slog.New(slog.NewTextHandler(&out, nil))
	var pings, keys, boots int
	err := waitForStore(t.Context(), log, fastBackoff, []startStep{
		failing("the store to answer", 5, down, &pings),
		failing("the signing keys", 3, fmt.Errorf("token: read keyring: %w", down), &keys),
		failing("the bootstrap user", 0, nil, &boots),
	})
	if err != nil {
		t.Fatal(err)
	}
	if pings != 6 || keys != 4 || boots != 1 {
		t.Errorf("attempts: %d pings, %d keyring reads, %d bootstraps; want 6, 4, 1 (each step retried until it passes, never redone)", pings, keys, boots)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{"waiting for the store to answer", "waiting for the signing keys", "the store answers: starting to serve"}
	if len(lines) != len(want) {
		t.Fatalf("log has %d lines, want one per thing waited for and one at the end:\n%s", len(lines), out.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("log line %d = %q, want it to say %q", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[2], "attempts=11") {
		t.Errorf("last line %q: want attempts=11", lines[2])
	}
}

func TestWaitForStoreNoWaitNoLog(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	var calls int
	if err := waitForStore(t.Context(), slog.New(slog.NewTextHandler(&out, nil)), fastBackoff,
		[]startStep{failing("the store to answer", 0, nil, &calls)}); err != nil {
		t.Fatal(err)
	}
	if out.String() != "" {
		t.Errorf("a start that did not wait logged: %s", out.String())
	}
}

func TestWaitForStoreGivesUp(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// An error that is not the store's ends the start at once.
	corrupt := errors.New("token: keyring does not decode")
	var calls int
	err := waitForStore(t.Context(), log, fastBackoff, []startStep{failing("the signing keys", 100, corrupt, &calls)})
	if !errors.Is(err, corrupt) || calls != 1 {
		t.Errorf("err %v after %d attempts; want the error after 1", err, calls)
	}
	// A signal while waiting: the context's error, no more attempts.
	ctx, cancel := context.WithCancel(t.Context())
	calls = 0
	err = waitForStore(ctx, log, fastBackoff, []startStep{{waitsFor: "the store", run: func(context.Context) error {
		calls++
		if calls == 3 {
			cancel()
		}
		return tokenstore.ErrUnavailable
	}}})
	if !errors.Is(err, context.Canceled) || calls != 3 {
		t.Errorf("err %v after %d attempts; want context.Canceled after 3", err, calls)
	}
}

// TestHandoff: connections accepted after next() go to the newest server,
// the bound port never closes in between, and a connection made while no
// server has taken it yet waits for one.
func TestHandoff(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := newHandoff(ln)
	defer h.Close()
	url := "http://" + ln.Addr().String() + "/"
	serve := func(name string, l net.Listener) *http.Server {
		s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, name) })}
		go s.Serve(l)
		return s
	}
	get := func() string {
		t.Helper()
		// A new connection each time: keep-alive would stay with the old server.
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("GET: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	first := serve("waiting", h.next())
	if got := get(); got != "waiting" {
		t.Fatalf("first server: got %q", got)
	}
	next := h.next()
	first.Shutdown(t.Context())
	// Nobody accepts on next yet: the connection waits, then the new
	// server takes it.
	done := make(chan string)
	go func() { done <- get() }()
	time.Sleep(20 * time.Millisecond) // likely (not necessarily) before the server: same answer either way
	second := serve("serving", next)
	defer second.Close()
	if got := <-done; got != "serving" {
		t.Fatalf("after the handoff: got %q, want the second server", got)
	}
	if got := get(); got != "serving" {
		t.Fatalf("second server: got %q", got)
	}
}

// TestHandoffLastClosesPort: once the last server stops taking
// connections, a client is refused at connect, not accepted by the kernel
// and then dropped after sending its request.
func TestHandoffLastClosesPort(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := newHandoff(ln)
	defer h.Close()
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "serving") })}
	go s.Serve(h.last())
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatalf("GET while serving: %v", err)
	}
	resp.Body.Close()
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
	if err == nil {
		conn.Close()
		t.Fatal("the port still takes connections after the last server shut down")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial after shutdown: %v, want connection refused", err)
	}
}
