package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/server"
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
