package testredis

import (
	"os"
	"sync"
	"testing"
)

// topology is a set of Redis processes started together (a Cluster, a
// Sentinel setup); close kills them all.
type topology interface{ close() }

// private starts a topology in a directory of t's and kills it when t ends;
// a start that fails skips t (fails it under CI=true).
func private[T topology](t testing.TB, start func(dir string) (T, error)) T {
	t.Helper()
	top, err := start(t.TempDir())
	if err != nil {
		topologyFailed(t, err)
	}
	t.Cleanup(top.close)
	return top
}

// sharedTopology is a topology the tests of one test binary share, in a
// directory of its own that goes with it.
type sharedTopology[T topology] struct{ refCounted[T] }

func (s *sharedTopology[T]) use(t testing.TB, dirPattern string, start func(dir string) (T, error)) T {
	t.Helper()
	return s.refCounted.use(t, func() (T, func(), error) {
		var none T
		dir, err := os.MkdirTemp("", dirPattern)
		if err != nil {
			return none, nil, err
		}
		top, err := start(dir)
		if err != nil {
			os.RemoveAll(dir)
			return none, nil, err
		}
		return top, func() { top.close(); os.RemoveAll(dir) }, nil
	}, topologyFailed)
}

// refCounted is a value the tests of one test binary share: started on
// first use and stopped when the last test using it ends, so no
// redis-server outlives the test binary.
type refCounted[T any] struct {
	mu    sync.Mutex
	users int
	v     T
	stop  func() // nil while nothing runs
}

// use returns the value, starting it first if none runs; a start that
// fails is reported to failed (which ends t).
func (s *refCounted[T]) use(t testing.TB, start func() (T, func(), error), failed func(testing.TB, error)) T {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop == nil {
		v, stop, err := start()
		if err != nil {
			failed(t, err)
		}
		s.v, s.stop = v, stop
	}
	s.users++
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.users--
		if s.users == 0 {
			s.stop()
			var none T
			s.v, s.stop = none, nil
		}
	})
	return s.v
}
