package main

import (
	"bytes"
	"flag"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"testing"

	"github.com/identityd/identity/internal/testcerts"
)

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

// identityd refuses to start on TLS files it cannot use, and builds the
// server's TLS from good ones.
func TestLoadTLS(t *testing.T) {
	set := testcerts.NewSet(t)
	log := slog.New(slog.DiscardHandler)
	if tl, err := loadTLS(config{}, log); tl != nil || err != nil {
		t.Fatalf("no files: %v, %v; want plaintext (nil, nil)", tl, err)
	}
	tl, err := loadTLS(config{TLSCertFile: set.ServerCertFile, TLSKeyFile: set.ServerKeyFile, TLSClientCAFile: set.CAFile}, log)
	if err != nil || tl.GetCertificate == nil || tl.ClientCAs == nil {
		t.Fatalf("good files: %+v, %v", tl, err)
	}
	cert, err := tl.GetCertificate(nil)
	if err != nil || cert.Leaf.SerialNumber.Cmp(set.Server.Leaf.SerialNumber) != 0 {
		t.Errorf("served certificate: %v, %v; want the file's", cert, err)
	}
	for name, c := range map[string]config{
		"key of another certificate": {TLSCertFile: set.ServerCertFile, TLSKeyFile: set.ClientKeyFile},
		"client CA file not a CA":    {TLSCertFile: set.ServerCertFile, TLSKeyFile: set.ServerKeyFile, TLSClientCAFile: set.ServerKeyFile},
	} {
		if _, err := loadTLS(c, log); err == nil {
			t.Errorf("%s: loaded; want identityd to refuse to start", name)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:9090": true, "[::1]:9090": true, "0.0.0.0:9090": false, "[::]:9090": false, "192.0.2.1:9090": false} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := isLoopback(a); got != want {
			t.Errorf("isLoopback(%s) = %t, want %t", addr, got, want)
		}
	}
}

func TestVersion(t *testing.T) {
	clearEnv(t)
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"--version"}, &stdout, &stderr)
	if code := exitCode(err, &stderr); code != 0 || stderr.Len() != 0 {
		t.Fatalf("--version: exit %d, error %v, stderr %q", code, err, stderr.String())
	}
	out := stdout.String()
	if !regexp.MustCompile(`^identityd \S+\n`).MatchString(out) || !strings.Contains(out, "\ngo: go1.") {
		t.Errorf("--version printed %q; want \"identityd <version>\" then the Go version", out)
	}
}

func TestHelp(t *testing.T) {
	clearEnv(t)
	// A default taken from the environment may hold a secret: the help
	// shows the built-in default, never the variable's value.
	t.Setenv("IDENTITY_REDIS_URL", "redis://:hunter2-secret@redis.example:6379/0")
	t.Setenv("IDENTITY_INSECURE_PLAINTEXT_KEYS", "true") // not what this test is about
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"--help"}, &stdout, &stderr)
	if code := exitCode(err, &stderr); code != 0 || stderr.Len() != 0 {
		t.Fatalf("--help: exit %d, stderr %q", code, stderr.String())
	}
	help := stdout.String()
	if strings.Contains(help, "hunter2") {
		t.Error("the help shows a value from the environment")
	}
	for _, want := range []string{"Usage: identityd [flags]", "Common invocations:", "IDENTITY_BOOTSTRAP_PASSWORD_FILE", "[15m]  IDENTITY_ACCESS_TTL"} {
		if !strings.Contains(help, want) {
			t.Errorf("the help lacks %q", want)
		}
	}
	// Every flag is listed once, with its variable (--version has none).
	fs, entries := flagSet(t)
	fs.VisitAll(func(f *flag.Flag) {
		if n := strings.Count(help, "\n  --"+f.Name+" "); n != 1 {
			t.Errorf("--%s is listed %d times", f.Name, n)
		}
		if env := entries[f.Name].env; f.Name != "version" && !strings.Contains(help, "  "+env+"\n") {
			t.Errorf("--%s: its variable %q is not in the help", f.Name, env)
		}
	})
}

// flagSet returns identityd's flags and their recorded variables, as
// parseConfig registers them.
func flagSet(t *testing.T) (*flag.FlagSet, map[string]flagEntry) {
	t.Helper()
	c, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return c.flags.fs, c.flags.entries
}

func TestBadCommandLine(t *testing.T) {
	clearEnv(t)
	for _, args := range [][]string{{"--no-such-flag"}, {"serve"}, {"--access-ttl", "soon"}} {
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), args, &stdout, &stderr)
		if code := exitCode(err, &stderr); code != 2 || stdout.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q; want 2 and nothing on stdout", args, code, stdout.String())
		}
		if got := stderr.String(); strings.Count(got, "\n") != 2 || !strings.Contains(got, "identityd --help") {
			t.Errorf("%q: stderr %q; want the error and a pointer to --help, in two lines", args, got)
		}
	}
}
