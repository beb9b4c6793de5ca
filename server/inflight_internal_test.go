package server

import (
	"context"
	"testing"
	"time"
)

// TestInFlight: an attempt waits only while another is in flight on its
// key, wakes when one settles, gives up at its deadline or when its context
// ends, and no more than maxSettleWaiters wait on a key at once.
func TestInFlight(t *testing.T) {
	t.Parallel()
	var f inFlight
	ctx := t.Context()
	far := time.Now().Add(time.Minute)
	if f.awaitSettled(ctx, "k", far) {
		t.Fatal("waited with nothing in flight")
	}

	f.add("k")
	woke := make(chan bool)
	go func() { woke <- f.awaitSettled(ctx, "k", far) }()
	waitFor(t, func() bool { return f.waiters("k") == 1 })
	if f.awaitSettled(ctx, "other", far) {
		t.Fatal("waited on a key with nothing in flight")
	}
	f.settled("k")
	if !<-woke {
		t.Fatal("a waiter was not woken by the settle")
	}
	if f.awaitSettled(ctx, "k", far) {
		t.Fatal("waited after the last attempt settled")
	}
	if n := len(f.keys); n != 0 {
		t.Fatalf("%d keys kept with nothing in flight", n)
	}

	f.add("k")
	if f.awaitSettled(ctx, "k", time.Now().Add(20*time.Millisecond)) {
		t.Fatal("woke with nothing settled (deadline)")
	}
	if f.awaitSettled(ctx, "k", time.Now().Add(-time.Second)) {
		t.Fatal("waited past its deadline")
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { woke <- f.awaitSettled(cctx, "k", far) }()
	waitFor(t, func() bool { return f.waiters("k") == 1 })
	cancel()
	if <-woke {
		t.Fatal("woke with nothing settled (context ended)")
	}

	for range maxSettleWaiters {
		go func() { woke <- f.awaitSettled(ctx, "k", far) }()
	}
	waitFor(t, func() bool { return f.waiters("k") == maxSettleWaiters })
	if f.awaitSettled(ctx, "k", far) {
		t.Fatal("one waiter more than maxSettleWaiters waited")
	}
	f.settled("k")
	for range maxSettleWaiters {
		if !<-woke {
			t.Fatal("a waiter was not woken by the settle")
		}
	}
	if n := len(f.keys); n != 0 {
		t.Fatalf("%d keys kept with nothing in flight", n)
	}
}

func (f *inFlight) waiters(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.keys[key]; fl != nil {
		return fl.waiting
	}
	return 0
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
	}
}
