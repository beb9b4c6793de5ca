// Package bench holds the tests of the benchmark scripts in this directory
// (bench/run's suite is tested in cmd/identityload).
package bench

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/identityd/identity/internal/testidentityd"

	"github.com/identityd/identity/internal/testpids"
)

func TestMain(m *testing.M) { testidentityd.Main(m) }

// peerScript runs bench/peer with args and returns its combined output and
// its error.
func peerScript(t *testing.T, timeout time.Duration, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{"peer"}, args...)...)
	// SIGTERM, not SIGKILL, on a timeout: the script's trap then stops
	// what it started.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 30 * time.Second
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir(), "PEER_DIR=")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPeerIdentityHalf runs bench/peer without a peer, with tiny numbers
// (-d 1s -c 4): it must start its own redis-server and identityd, seed its
// sessions by login, run wrk on verify, refresh (chained) and login, print
// both tables with a row for every path, every one with a non-zero rate of
// 2xx answers and no non-2xx answer or socket error, and leave no process
// behind. Nothing here looks at how fast: only that every request was
// answered 2xx.
func TestPeerIdentityHalf(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "wrk", "curl", "redis-server"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("no %s on PATH (CI=true: .ci/run installs it)", tool)
			}
			t.Skipf("no %s on PATH: bench/peer cannot run here", tool)
		}
	}
	bin := testidentityd.IdentitydBinary(t)
	out, err := peerScript(t, 2*time.Minute, []string{"IDENTITYD=" + bin},
		"-d", "1s", "-c", "4", "-t", "2", "-quiet-wait", "0")
	if err != nil {
		t.Fatalf("bench/peer: %v\n%s", err, out)
	}
	for _, path := range []string{"verify", "refresh", "login"} {
		row := cells(out, path+": ")
		if row == nil {
			t.Errorf("no %s row in the comparison table of\n%s", path, out)
			continue
		}
		// | path | identity req/s | identity p99 | peer req/s | peer p99 | ratio | target | verdict |
		if len(row) != 8 {
			t.Errorf("%s row has %d cells, want 8: %q", path, len(row), row)
			continue
		}
		rate, err := strconv.ParseFloat(strings.TrimSuffix(row[1], "/s"), 64)
		if err != nil || rate <= 0 {
			t.Errorf("%s: identity req/s %q, want a rate above 0", path, row[1])
		}
		if row[3] != "-" || row[7] != "-" {
			t.Errorf("%s: peer columns %q and verdict %q without a peer, want -", path, row[3], row[7])
		}

		run := cells(out, "identity "+path+" ")
		// | run | load | waited | other% | requests | 2xx | non-2xx | 429 | socket errors | notes |
		if len(run) != 10 {
			t.Errorf("no (or a malformed) identity %s row in the runs table: %q\n%s", path, run, out)
			continue
		}
		if n, err := strconv.Atoi(run[5]); err != nil || n <= 0 {
			t.Errorf("identity %s: 2xx %q, want more than 0", path, run[5])
		}
		if run[6] != "0" || run[8] != "0" {
			t.Errorf("identity %s: non-2xx %q, socket errors %q, want 0 and 0", path, run[6], run[8])
		}
		if strings.Contains(run[9], "INVALID") {
			t.Errorf("identity %s run marked invalid: %q", path, run[9])
		}
	}
	if row := cells(out, "identity refresh "); len(row) == 10 && row[9] != "token pool empty 0" {
		t.Errorf("refresh: %q, want the chained pool never empty", row[9])
	}
	pids := testpids.Started(out)
	if len(pids) != 2 {
		t.Errorf("want the pids of one identityd and one redis-server, got %v in\n%s", pids, out)
	}
	testpids.Gone(t, pids, "bench/peer")
}

// TestPeerRefusesBadInput: every bad flag is a clear error and exit status
// 2, before anything is built or started.
func TestPeerRefusesBadInput(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash on PATH")
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-c", "0"}, "-c 0: want a number of connections >= 1"},
		{[]string{"-d", "1x"}, "-d 1x: want a whole number"},
		{[]string{"-timeout", "-3s"}, "-timeout -3s: want a whole number"},
		{[]string{"-t", "5", "-c", "4"}, "-t 5: wrk needs at least one connection per thread (-c 4)"},
		{[]string{"-hash-workers", "two"}, "-hash-workers two: want a number >= 1"},
		{[]string{"-quiet-wait", "soon"}, "-quiet-wait soon: want a number of seconds"},
		{[]string{"-peer-tokens", "0"}, "-peer-tokens 0: want a number >= 1"},
		{[]string{"-d"}, "-d needs a value"},
		{[]string{"-bogus"}, "unknown argument -bogus"},
	} {
		out, err := peerScript(t, 30*time.Second, nil, tc.args...)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("bench/peer %q: %v, want exit status 2\n%s", tc.args, err, out)
		}
		if !strings.Contains(out, "bench/peer: "+tc.want) {
			t.Errorf("bench/peer %q said %q, want %q", tc.args, out, tc.want)
		}
	}
}

// cells are the cells of the first Markdown table row whose first cell
// starts with prefix, or nil.
func cells(out, prefix string) []string {
	for l := range strings.SplitSeq(out, "\n") {
		if !strings.HasPrefix(l, "| "+prefix) {
			continue
		}
		parts := strings.Split(strings.TrimSuffix(strings.TrimPrefix(l, "|"), "|"), "|")
		for i := range parts {
			parts[i] = strings.TrimSpace(parts[i])
		}
		return parts
	}
	return nil
}
