package testredis_test

import (
	"crypto/x509"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/identityd/identity/internal/testcerts"
	"github.com/identityd/identity/internal/testredis"
)

func TestStart(t *testing.T) {
	t.Parallel()
	c := testredis.Start(t)
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	if u := testredis.URL(t); !strings.HasPrefix(u, "redis") {
		t.Fatalf("URL %q", u)
	}
}

func TestKeyPrefixCleansUp(t *testing.T) {
	t.Parallel()
	c := testredis.Start(t)
	var prefix string
	t.Run("writer", func(t *testing.T) {
		prefix = testredis.KeyPrefix(t, c)
		if err := c.Set(t.Context(), prefix+"a", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.HSet(t.Context(), prefix+"{x}:b", "f", "v").Err(); err != nil {
			t.Fatal(err)
		}
	})
	keys, err := c.Keys(t.Context(), prefix+"*").Result()
	if err != nil || len(keys) != 0 {
		t.Fatalf("keys left under %s after the test: %v, %v", prefix, keys, err)
	}
	if other := testredis.KeyPrefix(t, c); other == prefix {
		t.Fatal("KeyPrefix repeated a prefix")
	}
}

func TestServerStopRestartKeepsData(t *testing.T) {
	t.Parallel()
	srv := testredis.NewServer(t)
	c := srv.Client(t)
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()

	srv.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered with the server stopped")
	}
	srv.Restart()
	if srv.Addr() != addr {
		t.Fatalf("restarted on %s, want the same %s", srv.Addr(), addr)
	}
	got, err := c.Get(ctx, "k").Result()
	if err != nil || got != "v" {
		t.Fatalf("GET after restart: %q, %v; want the value written before (AOF)", got, err)
	}

	srv.Kill()
	srv.Restart()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after kill and restart: %v", err)
	}
}

// TestServerWithArgs: WithArgs reaches redis-server, on its first start and
// on a restart after a kill.
func TestServerWithArgs(t *testing.T) {
	t.Parallel()
	srv := testredis.NewServer(t, testredis.WithArgs("--appendfsync", "always", "--enable-debug-command", "local"))
	c := srv.Client(t)
	for range 2 {
		got, err := c.ConfigGet(t.Context(), "appendfsync").Result()
		if err != nil || got["appendfsync"] != "always" {
			t.Fatalf("CONFIG GET appendfsync: %v, %v; want always", got, err)
		}
		if err := c.Do(t.Context(), "DEBUG", "SLEEP", "0").Err(); err != nil {
			t.Fatalf("DEBUG SLEEP 0 with --enable-debug-command local: %v", err)
		}
		srv.Kill()
		srv.Restart()
	}
}

// TestNoRedisServer runs the helpers with no redis-server on PATH and no
// REDIS_URL: they skip, and under CI=true they fail (in a child process,
// since a failing test cannot be observed from inside).
func TestNoRedisServer(t *testing.T) {
	if os.Getenv("TESTREDIS_CHILD") == "1" {
		switch os.Getenv("TESTREDIS_START") {
		case "cluster":
			testredis.NewCluster(t)
		case "sentinel":
			testredis.NewSentinel(t)
		default:
			testredis.NewServer(t)
		}
		t.Fatal("returned without a redis-server binary")
	}
	t.Setenv("PATH", t.TempDir())
	t.Setenv(testredis.EnvURL, "")
	t.Setenv("CI", "")

	for name, start := range map[string]func(testing.TB){
		"Start":          func(t testing.TB) { testredis.Start(t) },
		"NewServer":      func(t testing.TB) { testredis.NewServer(t) },
		"NewCluster":     func(t testing.TB) { testredis.NewCluster(t) },
		"SharedCluster":  func(t testing.TB) { testredis.SharedCluster(t) },
		"NewSentinel":    func(t testing.TB) { testredis.NewSentinel(t) },
		"SharedSentinel": func(t testing.TB) { testredis.SharedSentinel(t) },
	} {
		var skipped bool
		t.Run(name, func(t *testing.T) {
			defer func() { skipped = t.Skipped() }()
			start(t)
		})
		if !skipped {
			t.Errorf("%s without redis-server: not skipped", name)
		}
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, start := range []string{"server", "cluster", "sentinel"} {
		cmd := exec.Command(exe, "-test.run=^TestNoRedisServer$", "-test.v")
		cmd.Env = append(os.Environ(), "TESTREDIS_CHILD=1", "TESTREDIS_START="+start, "CI=true")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || !strings.Contains(string(out), "CI=true") {
			t.Fatalf("%s under CI=true without redis-server: %v\n%s", start, err, out)
		}
	}
}

// A TLS server answers on its TLS port to a client that trusts its CA, and
// refuses one that does not; it keeps its TLS port across a Restart.
func TestServerWithTLS(t *testing.T) {
	t.Parallel()
	set := testcerts.NewSet(t)
	srv := testredis.NewServer(t, testredis.WithTLS(set.ServerCertFile, set.ServerKeyFile, set.CAFile))
	ping := func(roots *x509.CertPool) error {
		opt, err := redis.ParseURL(srv.TLSURL())
		if err != nil {
			t.Fatal(err)
		}
		opt.TLSConfig.RootCAs = roots
		opt.MaxRetries = -1
		c := redis.NewClient(opt)
		defer c.Close()
		return c.Ping(t.Context()).Err()
	}
	if err := ping(set.CA.Pool()); err != nil {
		t.Fatalf("PING over TLS: %v", err)
	}
	if err := ping(testcerts.NewCA(t, "other").Pool()); err == nil {
		t.Error("PING over TLS with another CA: answered, want a refused handshake")
	}
	addr := srv.TLSAddr()
	srv.Restart()
	if srv.TLSAddr() != addr {
		t.Errorf("TLS port after Restart: %s, want %s", srv.TLSAddr(), addr)
	}
	if err := ping(set.CA.Pool()); err != nil {
		t.Fatalf("PING over TLS after Restart: %v", err)
	}
}
