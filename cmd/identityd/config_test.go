package main

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaultsMatchDesign(t *testing.T) {
	clearEnv(t)
	c, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Server
	checks := []struct {
		name      string
		got, want any
	}{
		{"grpc-addr", c.GRPCAddr, "127.0.0.1:9090"},
		{"http-addr", c.HTTPAddr, "127.0.0.1:8080"},
		{"redis-url", c.RedisURL, ""},
		{"access-ttl", s.AccessTTL, 15 * time.Minute},
		{"refresh-idle-ttl", s.RefreshIdleTTL, 720 * time.Hour},
		{"refresh-absolute-ttl", s.RefreshAbsoluteTTL, 2160 * time.Hour},
		{"refresh-grace", s.RefreshGrace, 10 * time.Second},
		{"leeway", s.Leeway, 30 * time.Second},
		{"issuer", s.Issuer, "identity"},
		{"audience", s.Audience, "identity"},
		{"signing-alg", c.SigningAlg, "EdDSA"},
		{"keys-dir", c.KeysDir, ""},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s default = %v, want %v", ck.name, ck.got, ck.want)
		}
	}
}

func TestConfigEnvAndFlags(t *testing.T) {
	clearEnv(t)
	t.Setenv("IDENTITY_ACCESS_TTL", "6s")
	t.Setenv("IDENTITY_GRPC_ADDR", "127.0.0.1:1")
	t.Setenv("IDENTITY_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7")
	t.Setenv("IDENTITY_ALLOWED_ORIGINS", "https://App.Example.com:443, http://localhost:3000")
	t.Setenv("IDENTITY_WEB_DEMO", "1")
	c, err := parseConfig([]string{"--grpc-addr", "127.0.0.1:2", "--signing-alg", "ES256"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.AccessTTL != 6*time.Second {
		t.Errorf("access TTL from env = %v, want 6s", c.Server.AccessTTL)
	}
	if c.GRPCAddr != "127.0.0.1:2" {
		t.Errorf("the flag must win over the env: grpc-addr = %q", c.GRPCAddr)
	}
	if c.SigningAlg != "ES256" {
		t.Errorf("signing alg = %q", c.SigningAlg)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32")}
	if len(c.Server.TrustedProxies) != 2 || c.Server.TrustedProxies[0] != want[0] || c.Server.TrustedProxies[1] != want[1] {
		t.Errorf("trusted proxies = %v, want %v", c.Server.TrustedProxies, want)
	}
	if got := strings.Join(c.Server.AllowedOrigins, " "); got != "https://app.example.com http://localhost:3000" || !c.Server.WebDemo {
		t.Errorf("allowed origins = %q (normalised as browsers send Origin), web demo = %t", got, c.Server.WebDemo)
	}
}

func TestConfigRejects(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad duration env", nil, map[string]string{"IDENTITY_ACCESS_TTL": "soon"}, "IDENTITY_ACCESS_TTL"},
		{"leeway over 30s", []string{"--leeway", "31s"}, nil, "--leeway"},
		{"negative grace", []string{"--refresh-grace", "-1s"}, nil, "--refresh-grace"},
		{"unknown alg", []string{"--signing-alg", "none"}, nil, "--signing-alg"},
		{"negative publish-ahead", []string{"--key-publish-ahead", "-1s"}, nil, "--key-publish-ahead"},
		{"url and cluster", []string{"--redis-url", "redis://x", "--redis-addrs", "a:1"}, nil, "not both"},
		{"sentinel master without sentinels", []string{"--redis-sentinel-master", "mymaster"}, nil, "--redis-sentinel-master needs the sentinels' addresses"},
		{"sentinel master with a URL", nil, map[string]string{"IDENTITY_REDIS_SENTINEL_MASTER": "mymaster", "IDENTITY_REDIS_URL": "redis://x"}, "not --redis-url"},
		{"stray argument", []string{"serve"}, nil, "unexpected arguments"},
		{"bad proxy", []string{"--trusted-proxies", "not-an-ip"}, nil, "trusted proxy"},
		{"wildcard origin", []string{"--allowed-origins", "*"}, nil, "--allowed-origins"},
		{"origin with a path", nil, map[string]string{"IDENTITY_ALLOWED_ORIGINS": "https://app.example.com/login"}, "--allowed-origins"},
		{"bootstrap without password", nil, map[string]string{"IDENTITY_BOOTSTRAP_USER": "alice"}, "IDENTITY_BOOTSTRAP_PASSWORD_FILE"},
		{"missing password file", nil, map[string]string{"IDENTITY_BOOTSTRAP_USER": "alice", "IDENTITY_BOOTSTRAP_PASSWORD_FILE": "/nonexistent/pw"}, "IDENTITY_BOOTSTRAP_PASSWORD_FILE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := parseConfig(tc.args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parseConfig error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestConfigRedisTopologies: --redis-url is one node, --redis-addrs a
// cluster, and --redis-addrs with --redis-sentinel-master the sentinels of
// a primary; each becomes go-redis universal options with calls bounded by
// their context and never resent.
func TestConfigRedisTopologies(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		mode       string
		addrs      []string
		masterName string
	}{
		{"url", []string{"--redis-url", "redis://127.0.0.1:6380/2"}, nil, "single", []string{"127.0.0.1:6380"}, ""},
		{"cluster", []string{"--redis-addrs", "10.0.0.1:7000, 10.0.0.2:7000"}, nil, "cluster", []string{"10.0.0.1:7000", "10.0.0.2:7000"}, ""},
		{"sentinel by flags", []string{"--redis-addrs", "10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379", "--redis-sentinel-master", "identity"},
			nil, "sentinel", []string{"10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"}, "identity"},
		{"sentinel by env", nil, map[string]string{"IDENTITY_REDIS_ADDRS": "10.0.0.1:26379", "IDENTITY_REDIS_SENTINEL_MASTER": "mymaster"},
			"sentinel", []string{"10.0.0.1:26379"}, "mymaster"},
		{"flag over env", []string{"--redis-sentinel-master", "flag"}, map[string]string{"IDENTITY_REDIS_ADDRS": "10.0.0.1:26379", "IDENTITY_REDIS_SENTINEL_MASTER": "env"},
			"sentinel", []string{"10.0.0.1:26379"}, "flag"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := parseConfig(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if got := redisMode(c); got != tc.mode {
				t.Errorf("mode %q, want %q", got, tc.mode)
			}
			o, err := redisOptions(c)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(o.Addrs, tc.addrs) || o.MasterName != tc.masterName {
				t.Errorf("addrs %v, master name %q; want %v, %q", o.Addrs, o.MasterName, tc.addrs, tc.masterName)
			}
			if o.MaxRetries != -1 || !o.ContextTimeoutEnabled || o.ReadTimeout != c.RedisTimeout {
				t.Errorf("MaxRetries %d, ContextTimeoutEnabled %t, ReadTimeout %v: want -1, true, --redis-timeout", o.MaxRetries, o.ContextTimeoutEnabled, o.ReadTimeout)
			}
		})
	}
}

func TestBootstrapPasswordFromFile(t *testing.T) {
	clearEnv(t)
	f := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("IDENTITY_BOOTSTRAP_USER", "alice")
	t.Setenv("IDENTITY_BOOTSTRAP_PASSWORD_FILE", f)
	c, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.BootstrapPassword != "s3cret" || c.BootstrapUser != "alice" || strings.Join(c.BootstrapRoles, ",") != "admin" {
		t.Fatalf("bootstrap = %q/%q roles %v: want the file's line without its newline and role admin", c.BootstrapUser, c.BootstrapPassword, c.BootstrapRoles)
	}
}

// clearEnv unsets every IDENTITY_* variable for the test.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "IDENTITY_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
}
