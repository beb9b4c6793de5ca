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

// sharedTopology is a topology the tests of one test binary share: started
// on first use, in a directory of its own, and stopped (its directory
// removed) when the last test using it ends.
type sharedTopology[T topology] struct {
	mu    sync.Mutex
	users int
	top   T
	dir   string // "" while nothing runs
}

func (s *sharedTopology[T]) use(t testing.TB, dirPattern string, start func(dir string) (T, error)) T {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir == "" {
		dir, err := os.MkdirTemp("", dirPattern)
		if err != nil {
			t.Fatal(err)
		}
		top, err := start(dir)
		if err != nil {
			os.RemoveAll(dir)
			topologyFailed(t, err)
		}
		s.top, s.dir = top, dir
	}
	s.users++
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.users--
		if s.users == 0 {
			s.top.close()
			os.RemoveAll(s.dir)
			var none T
			s.top, s.dir = none, ""
		}
	})
	return s.top
}
