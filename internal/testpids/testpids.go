// Package testpids checks, for the tests of the benchmark commands
// (identityload -suite, bench/peer), that every server a run started has
// gone: the commands print a "# identityd pid N ..." and a
// "# redis-server pid N ..." line for each process they start.
package testpids

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// Started returns the pids of the "# identityd pid N" and
// "# redis-server pid N" lines of out (N may end in a colon).
func Started(out string) []int {
	var pids []int
	for l := range strings.SplitSeq(out, "\n") {
		for _, p := range []string{"# identityd pid ", "# redis-server pid "} {
			if rest, ok := strings.CutPrefix(l, p); ok {
				f, _, _ := strings.Cut(rest, " ")
				if n, err := strconv.Atoi(strings.TrimSuffix(f, ":")); err == nil {
					pids = append(pids, n)
				}
			}
		}
	}
	return pids
}

// Gone fails t for each of pids that is still a process (Linux /proc).
func Gone(t testing.TB, pids []int, who string) {
	t.Helper()
	for _, pid := range pids {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			t.Errorf("process %d %s started is still there", pid, who)
		}
	}
}
