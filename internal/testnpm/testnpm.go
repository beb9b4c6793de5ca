// Package testnpm installs the pinned npm dependencies of the Node code the
// Go tests run (web/, web/apidocs/, clients/node/, clients/node-verify/):
// `npm ci` in the package's directory, once per test process, when
// node_modules lacks what the tests need. Where the npm registry cannot be
// reached (a machine without network), the test is skipped with that
// reason, except under CI=true, where it fails (testidentityd.SkipOrFail):
// CI must never pass by skipping. It is not a package manager: it only
// runs npm.
package testnpm

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/identityd/identity/internal/testidentityd"
)

// Timeouts of npm's runs: an install of a few packages over a slow link,
// and the registry probe, which npm itself stops after probeFetchTimeout.
const (
	installTimeout    = 5 * time.Minute
	probeTimeout      = 30 * time.Second
	probeFetchTimeout = 10 * time.Second
)

type install struct {
	once        sync.Once
	unreachable bool   // the registry did not answer npm ping
	err         error  // npm ci (or the probe) failed
	out         []byte // what npm printed
}

var installs sync.Map // dir + args → *install

// Install makes sure dir/node_modules holds every package in want (names as
// in package.json: "axios", "@grpc/grpc-js"): if one is missing it runs
// `npm ci --no-audit --no-fund` with args in dir, once per process for dir
// and args. It skips t (fails it under CI=true) when npm is not on PATH or
// the registry does not answer, and fails t when npm ci fails otherwise.
func Install(t testing.TB, dir string, want []string, args ...string) {
	t.Helper()
	if Installed(dir, want) {
		return
	}
	npm := testidentityd.RequireTool(t, "npm")
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	v, _ := installs.LoadOrStore(dir+"\x00"+strings.Join(args, "\x00"), &install{})
	in := v.(*install)
	in.once.Do(func() { in.run(npm, dir, args) })
	switch {
	case in.unreachable:
		testidentityd.SkipOrFail(t, "testnpm: npm ci in %s needs the npm registry, which does not answer here (npm ping: %v):\n%s",
			dir, in.err, head(in.out, 6))
	case in.err != nil:
		t.Fatalf("testnpm: npm ci in %s: %v\n%s", dir, in.err, in.out)
	case !Installed(dir, want):
		t.Fatalf("testnpm: npm ci in %s did not install all of %s (are they in its package-lock.json?)\n%s", dir, strings.Join(want, ", "), in.out)
	}
}

// run asks the registry first, so a machine without network skips in
// seconds: npm ci would retry for over a minute before it gave up.
func (in *install) run(npm, dir string, args []string) {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	ping := exec.CommandContext(ctx, npm, "ping", "--fetch-retries=0",
		"--fetch-timeout="+strconv.FormatInt(probeFetchTimeout.Milliseconds(), 10))
	ping.Dir = dir
	if out, err := ping.CombinedOutput(); err != nil {
		in.unreachable, in.err, in.out = true, err, out
		return
	}
	ctx, cancel = context.WithTimeout(context.Background(), installTimeout)
	defer cancel()
	ci := exec.CommandContext(ctx, npm, append([]string{"ci", "--no-audit", "--no-fund"}, args...)...)
	ci.Dir = dir
	in.out, in.err = ci.CombinedOutput()
}

// Installed reports whether dir/node_modules holds every package in want.
func Installed(dir string, want []string) bool {
	for _, p := range want {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", filepath.FromSlash(p), "package.json")); err != nil {
			return false
		}
	}
	return true
}

// head is the first n lines of npm's output: which registry, and why it
// failed, without the stack trace that follows.
func head(out []byte, n int) []byte {
	lines := bytes.SplitN(bytes.TrimSpace(out), []byte("\n"), n+1)
	if len(lines) > n {
		lines = append(lines[:n], []byte("..."))
	}
	return bytes.Join(lines, []byte("\n"))
}
