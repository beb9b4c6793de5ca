package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/server"

	"github.com/identityd/identity/internal/testpids"
)

// TestScenariosOnBothProtocols runs every scenario but the login flood on
// gRPC and REST against an in-process identityd, a few requests each: each
// scenario must complete its requests without an error. Nothing here looks
// at a rate or a latency.
func TestScenariosOnBothProtocols(t *testing.T) {
	t.Parallel()
	s := testidentityd.StartInProcess(t, testidentityd.InProcessConfig(func(c *server.Config) {
		c.LoginRatePerIP, c.LoginFailuresPerUser = 0, 0
		c.RefreshRatePerSession, c.RefreshRatePerIP = 0, 0
	}))
	pw := testidentityd.AddUser(t, s.Store, "load", "")
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(pw), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errs bytes.Buffer
	err := run(t.Context(), []string{
		"-grpc", s.GRPCAddr, "-http", s.HTTPAddr, "-proto", "grpc,rest",
		"-user", "load", "-password-file", pwFile,
		"-scenario", "noop,verify,refresh,login", "-c", "4", "-tokens", "4",
		"-d", "0", "-n", "40", "-warmup", "0s", "-hash-workers", "1",
	}, &out, &errs)
	if err != nil {
		t.Fatalf("run: %v\n%s%s", err, out.String(), errs.String())
	}
	for _, name := range []string{"noop", "verify", "refresh", "login"} {
		for _, prefix := range []string{"", "rest "} {
			line := findLine(out.String(), prefix+name+" ")
			if line == "" {
				t.Errorf("no %q result in\n%s", prefix+name, out.String())
				continue
			}
			if !strings.Contains(line, "errors 0") {
				t.Errorf("%s: %s", prefix+name, line)
			}
		}
	}
	// The no-op again beside Refresh, so its ratio is taken between
	// adjacent windows.
	if line := findLine(out.String(), "noop beside refresh "); line == "" || !strings.Contains(line, "errors 0") {
		t.Errorf("no clean no-op beside refresh in\n%s", out.String())
	}
	if !strings.Contains(out.String(), "rest verify/grpc verify") {
		t.Errorf("no REST/gRPC ratio in\n%s", out.String())
	}
}

func findLine(out, prefix string) string {
	for l := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func TestParseConfigProto(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
		ok   bool
	}{
		{nil, "grpc", true},
		{[]string{"-proto", "rest"}, "rest", true},
		{[]string{"-proto", "grpc,rest"}, "grpc,rest", true},
		{[]string{"-proto", "http"}, "", false},
		{[]string{"-proto", "rest", "-http", "10.0.0.1:8080"}, "", false},
	} {
		c, err := parseConfig(tc.args, &bytes.Buffer{})
		if (err == nil) != tc.ok {
			t.Errorf("parseConfig(%q): err %v, want ok %v", tc.args, err, tc.ok)
			continue
		}
		if tc.ok && strings.Join(c.protos, ",") != tc.want {
			t.Errorf("parseConfig(%q): protos %q, want %q", tc.args, c.protos, tc.want)
		}
	}
}

// TestSuite runs -suite end to end with tiny numbers: it must start its own
// identityd (and a private redis-server when the machine has one), run
// every scenario without an error, print one table with a verdict on every
// target, prove the cache-miss scenario missed (identityd's own counters:
// every token verified once, no hit), and leave no process behind. Nothing
// here looks at a rate or a latency: the verdicts may be PASS or MISS.
func TestSuite(t *testing.T) {
	t.Parallel()
	bin := testidentityd.IdentitydBinary(t)
	redisServer, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no redis-server on PATH (CI=true)")
		}
		t.Log("no redis-server on PATH: the suite's Redis half is not run")
		redisServer = ""
	}
	var out, errs bytes.Buffer
	err = run(t.Context(), []string{
		"-suite", "-identityd", bin, "-redis-server", redisServer,
		"-c", "4", "-tokens", "4", "-d", "0", "-n", "40", "-warmup", "0s", "-hash-workers", "1",
		"-miss-tokens", "300", "-rss-requests", "200",
	}, &out, &errs)
	if err != nil {
		t.Fatalf("suite: %v\n%s%s", err, out.String(), errs.String())
	}
	text := out.String()
	stores := []string{"embedded"}
	if redisServer != "" {
		stores = append(stores, "redis")
	}
	targets := []string{
		"REST Verify / gRPC Verify >= 0.80",
		"cache-miss Verify / 1/(no-op cost + raw Ed25519 verify cost) >= 0.80",
		"Refresh p99 <= 5 ms",
		"Login / raw argon2id >= 0.90",
		"Verify p99 under a login flood / alone <= 3.00",
	}
	for _, st := range stores {
		want := slices.Clone(targets)
		if st == "embedded" {
			want = append(want, "Refresh / gRPC no-op >= 0.55", "identityd VmRSS flat over 200 Verify+Refresh")
		} else {
			want = append(want, "Refresh / gRPC no-op >= 0.45")
		}
		for _, target := range want {
			row := tableRow(text, target, st)
			if row == "" {
				t.Errorf("no %q row for the %s store in\n%s", target, st, text)
				continue
			}
			if !strings.HasSuffix(row, "| PASS |") && !strings.HasSuffix(row, "| MISS |") {
				t.Errorf("row without a verdict: %s", row)
			}
		}
		for _, ceiling := range []string{"ceiling: gRPC no-op", "ceiling: REST no-op", "ceiling: raw Ed25519 sign / verify", "ceiling: raw argon2id",
			"ceiling: gRPC no-op again, just before verify-miss", "ceiling: gRPC no-op again, just before refresh"} {
			if tableRow(text, ceiling, st) == "" {
				t.Errorf("no %q row for the %s store", ceiling, st)
			}
		}
		// 300 tokens, each verified once (warm-up 0: all measured).
		if row := tableRow(text, "cache-miss check", st); !strings.Contains(row, "cache misses 300, hits 0 over 300 distinct tokens") {
			t.Errorf("%s store: cache-miss check row %q, want 300 misses and no hit", st, row)
		}
	}
	if redisServer != "" && tableRow(text, "ceiling: raw EVALSHA", "redis") == "" {
		t.Errorf("no EVALSHA ceiling for the Redis store in\n%s", text)
	}
	for l := range strings.SplitSeq(text, "\n") {
		// A login may be refused (RESOURCE_EXHAUSTED) when the hashing
		// queue's expected wait is over the budget: that is the contract,
		// not a failure of the scenario.
		login := strings.HasPrefix(l, "login") || strings.HasPrefix(l, "rest login") || strings.HasPrefix(l, "  login during flood")
		if strings.Contains(l, "req/s") && strings.Contains(l, " errors ") && !strings.Contains(l, "errors 0") && !login {
			t.Errorf("a scenario had errors: %s", l)
		}
	}
	// Every server the suite started has exited (and been reaped).
	testpids.Gone(t, testpids.Started(text), "the suite")
}

// tableRow is the suite table's row whose first cell starts with target
// and whose second is store.
func tableRow(out, target, store string) string {
	for l := range strings.SplitSeq(out, "\n") {
		cells := strings.Split(l, " | ")
		if len(cells) > 2 && strings.HasPrefix(strings.TrimSpace(strings.TrimPrefix(cells[0], "|")), target) && cells[1] == store {
			return l
		}
	}
	return ""
}
