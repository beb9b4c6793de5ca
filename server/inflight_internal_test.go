package server

import (
	"context"
	"testing"
	"time"
)

// TestInFlight: a refused attempt waits only while another is in flight on
// its key (being charged, or charged and not settled), wakes when one
// settles, asks again at once when one settled since it asked, is refused
// when the last in flight is abandoned, gives up at its deadline or when its
// context ends, and no more than maxSettleWaiters wait on a key at once.
func TestInFlight(t *testing.T) {
	t.Parallel()
	var f inFlight
	ctx := t.Context()
	far := time.Now().Add(time.Minute)
	// refused is an attempt the limiter refused: its mark, taken as it
	// asked, and its abandon.
	refused := func(key string) flightMark {
		m := f.begin(key)
		f.abandon(key)
		return m
	}
	if f.awaitSettled(ctx, "k", refused("k"), far) {
		t.Fatal("waited with nothing in flight")
	}

	f.begin("k") // charged
	woke := make(chan bool)
	go func() { woke <- f.awaitSettled(ctx, "k", refused("k"), far) }()
	waitFor(t, func() bool { return f.waiters("k") == 1 })
	if f.awaitSettled(ctx, "other", refused("other"), far) {
		t.Fatal("waited on a key with nothing in flight")
	}
	f.settled("k")
	if !<-woke {
		t.Fatal("a waiter was not woken by the settle")
	}
	if f.awaitSettled(ctx, "k", refused("k"), far) {
		t.Fatal("waited after the last attempt settled")
	}
	if n := len(f.keys); n != 0 {
		t.Fatalf("%d keys kept with nothing in flight", n)
	}

	// Settled between the ask and the wait: ask again at once, whether
	// others are still in flight...
	f.begin("k")
	f.begin("k")
	m := f.begin("k")
	f.settled("k")
	f.abandon("k")
	if !f.awaitSettled(ctx, "k", m, far) {
		t.Fatal("not asked again after a settle since the ask")
	}
	// ...or the flight ended whole.
	m = f.begin("k")
	f.settled("k")
	f.abandon("k")
	if !f.awaitSettled(ctx, "k", m, far) {
		t.Fatal("not asked again after the flight ended since the ask")
	}
	if n := len(f.keys); n != 0 {
		t.Fatalf("%d keys kept with nothing in flight", n)
	}

	// The only other attempt in flight is refused too: the waiter is
	// answered then, not at its deadline, and is not sent back.
	f.begin("k") // asking
	go func() { woke <- f.awaitSettled(ctx, "k", refused("k"), far) }()
	waitFor(t, func() bool { return f.waiters("k") == 1 })
	f.abandon("k")
	if <-woke {
		t.Fatal("asked again when the last attempt in flight was refused")
	}

	// Nothing settles: wait until the deadline, or the context's end.
	f.begin("k") // charged
	if f.awaitSettled(ctx, "k", refused("k"), time.Now().Add(20*time.Millisecond)) {
		t.Fatal("woke with nothing settled (deadline)")
	}
	if f.awaitSettled(ctx, "k", refused("k"), time.Now().Add(-time.Second)) {
		t.Fatal("waited past its deadline")
	}
	cctx, cancel := context.WithCancel(ctx)
	go func() { woke <- f.awaitSettled(cctx, "k", refused("k"), far) }()
	waitFor(t, func() bool { return f.waiters("k") == 1 })
	cancel()
	if <-woke {
		t.Fatal("woke with nothing settled (context ended)")
	}

	for range maxSettleWaiters {
		go func() { woke <- f.awaitSettled(ctx, "k", refused("k"), far) }()
	}
	waitFor(t, func() bool { return f.waiters("k") == maxSettleWaiters })
	if f.awaitSettled(ctx, "k", refused("k"), far) {
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
