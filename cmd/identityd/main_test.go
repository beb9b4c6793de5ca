package main

import "testing"

func TestHashWorkers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ flag, procs, want int }{
		{0, 1, 1}, // never zero workers
		{0, 2, 1},
		{0, 8, 7},
		{4, 2, 4}, // an explicit value wins
	} {
		if got := hashWorkers(tc.flag, tc.procs); got != tc.want {
			t.Errorf("hashWorkers(%d, %d) = %d, want %d", tc.flag, tc.procs, got, tc.want)
		}
	}
}
