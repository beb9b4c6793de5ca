package server

import (
	"context"
	"sync"
	"time"
)

// maxSettleWaiters bounds the attempts that wait on one key at once; more
// are refused at once, so a flood of guesses holds no more than this many
// calls (each for the wait budget at most).
const maxSettleWaiters = 64

// inFlight counts, per failure-limit key, the attempts of this instance
// that are being charged or were charged and have not settled, and wakes
// the attempts waiting for one to settle. Attempts in flight on another
// instance are not seen: an attempt refused there is refused at once. The
// zero value is ready to use.
type inFlight struct {
	mu   sync.Mutex
	keys map[string]*flight
	// settles counts the attempts settled on every key: a key's flight
	// can end, and another begin, between a mark and the wait.
	settles uint64
}

// flight is a key's attempts in flight, from the first that asks to be
// charged to the last settled (then the key's entry goes, once nobody waits
// on it).
type flight struct {
	inFlight, waiting int
	settles           int           // attempts of this flight settled so far
	wake              chan struct{} // closed (and replaced) when one settles, or the last is abandoned
}

// flightMark is what had settled on a key when an attempt asked to be
// charged: its flight and how many of that flight, and of every key, had
// settled.
type flightMark struct {
	fl         *flight
	settles    int
	allSettles uint64
}

// begin counts an attempt in flight on key before it asks the limiter to
// charge it, so that an attempt refused meanwhile waits for it; abandon
// takes it back if the limiter refuses or fails, settled once a charged
// attempt is settled.
func (f *inFlight) begin(key string) flightMark {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keys == nil {
		f.keys = make(map[string]*flight)
	}
	fl := f.keys[key]
	if fl == nil {
		fl = &flight{wake: make(chan struct{})}
		f.keys[key] = fl
	}
	fl.inFlight++
	return flightMark{fl, fl.settles, f.settles}
}

// abandon takes back an attempt that was not charged. When it was the last
// in flight, the attempts waiting on key are woken: nothing is left to
// settle, they ask again and are answered at once.
func (f *inFlight) abandon(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.keys[key]
	if fl == nil {
		return // not begun: nothing to take back
	}
	fl.inFlight--
	if fl.inFlight == 0 {
		fl.wakeAll()
	}
	f.forget(key, fl)
}

// settled ends a charged attempt (its charge given back or kept).
func (f *inFlight) settled(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl := f.keys[key]
	if fl == nil {
		return // not begun: nothing to settle
	}
	fl.inFlight--
	fl.settles++
	f.settles++
	fl.wakeAll()
	f.forget(key, fl)
}

func (fl *flight) wakeAll() {
	close(fl.wake)
	fl.wake = make(chan struct{})
}

// forget drops key's entry, fl, once nothing is in flight or waits on it.
func (f *inFlight) forget(key string, fl *flight) {
	if fl.inFlight == 0 && fl.waiting == 0 && f.keys[key] == fl {
		delete(f.keys, key)
	}
}

// awaitSettled reports whether an attempt the limiter refused for key, and
// that was abandoned, should ask again: when an attempt on key settled
// since its mark m (or, where key's flight changed since, any attempt did),
// at once or, with others in flight on key, once one of them settles. It
// reports false when none is in flight, at once or once the last is
// abandoned, when maxSettleWaiters wait already, and when ctx ends or
// deadline passes before anything settles. Only a settle sends a waiter
// back to the limiter, so waiters never wake each other in turn.
func (f *inFlight) awaitSettled(ctx context.Context, key string, m flightMark, deadline time.Time) bool {
	wait := time.Until(deadline)
	if wait <= 0 || ctx.Err() != nil {
		return false
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	var waitingOn *flight // while set, key's entry stays (forget)
	defer func() {
		if waitingOn != nil {
			waitingOn.waiting--
			f.forget(key, waitingOn)
		}
	}()
	for {
		fl := f.keys[key]
		settledSince := f.settles != m.allSettles
		if fl != nil && fl == m.fl {
			settledSince = fl.settles != m.settles
		}
		if settledSince {
			return true
		}
		if fl == nil || fl.inFlight == 0 {
			return false
		}
		if waitingOn == nil {
			if fl.waiting >= maxSettleWaiters {
				return false
			}
			fl.waiting++
			waitingOn = fl
		}
		wake := fl.wake
		f.mu.Unlock()
		select {
		case <-wake:
		case <-timer.C:
			f.mu.Lock()
			return false
		case <-ctx.Done():
			f.mu.Lock()
			return false
		}
		f.mu.Lock()
	}
}
