package main

import (
	"crypto/rand"
	"encoding/base64"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/identityd/identity/masterkey"
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
		{"api-docs", s.APIDocs, false},
		{"master key", c.MasterKeys == nil, true},
		{"insecure-plaintext-keys", c.InsecurePlaintextKeys, false},
		{"key-reload", s.KeyReload, 30 * time.Second},
		{"login-rate-per-ip", s.LoginRatePerIP, 300},
		{"login-failures-per-user-address", s.LoginFailuresPerUserAddress, 10},
		{"login-failures-per-user", s.LoginFailuresPerUser, 100},
		// No TLS files: plaintext (loopback only), no client certificates.
		{"tls-cert-file", c.TLSCertFile, ""},
		{"tls-key-file", c.TLSKeyFile, ""},
		{"tls-client-ca-file", c.TLSClientCAFile, ""},
		{"redis-ca-file", c.RedisCAFile, ""},
		{"password-min-length", s.PasswordMinLength, 8},
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
	t.Setenv("IDENTITY_API_DOCS", "true")
	t.Setenv("IDENTITY_PASSWORD_MIN_LENGTH", "15")
	t.Setenv("IDENTITY_LOGIN_FAILURES_PER_USER_ADDRESS", "3")
	t.Setenv("IDENTITY_LOGIN_FAILURES_PER_USER", "30")
	t.Setenv("IDENTITY_PUBLIC_URL", "https://id.example.com/identity/")
	c, err := parseConfig([]string{"--grpc-addr", "127.0.0.1:2", "--signing-alg", "ES256", "--login-failures-per-user", "40"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.AccessTTL != 6*time.Second {
		t.Errorf("access TTL from env = %v, want 6s", c.Server.AccessTTL)
	}
	if c.Server.PasswordMinLength != 15 {
		t.Errorf("password min length from env = %d, want 15", c.Server.PasswordMinLength)
	}
	if c.GRPCAddr != "127.0.0.1:2" {
		t.Errorf("the flag must win over the env: grpc-addr = %q", c.GRPCAddr)
	}
	if c.SigningAlg != "ES256" {
		t.Errorf("signing alg = %q", c.SigningAlg)
	}
	if c.Server.LoginFailuresPerUserAddress != 3 || c.Server.LoginFailuresPerUser != 40 {
		t.Errorf("login failures per user and address = %d (env 3), per user = %d (flag 40 over env 30)",
			c.Server.LoginFailuresPerUserAddress, c.Server.LoginFailuresPerUser)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.7/32")}
	if len(c.Server.TrustedProxies) != 2 || c.Server.TrustedProxies[0] != want[0] || c.Server.TrustedProxies[1] != want[1] {
		t.Errorf("trusted proxies = %v, want %v", c.Server.TrustedProxies, want)
	}
	if c.Server.PublicURL != "https://id.example.com/identity" {
		t.Errorf("public URL = %q, want it without its trailing slash", c.Server.PublicURL)
	}
	if got := strings.Join(c.Server.AllowedOrigins, " "); got != "https://app.example.com http://localhost:3000" || !c.Server.WebDemo {
		t.Errorf("allowed origins = %q (normalised as browsers send Origin), web demo = %t", got, c.Server.WebDemo)
	}
	if !c.Server.APIDocs {
		t.Error("IDENTITY_API_DOCS=true did not turn the API docs on")
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
		{"key reload under a second", []string{"--key-reload", "100ms"}, nil, "--key-reload"},
		{"url and cluster", []string{"--redis-url", "redis://x", "--redis-addrs", "a:1"}, nil, "not both"},
		{"sentinel master without sentinels", []string{"--redis-sentinel-master", "mymaster"}, nil, "--redis-sentinel-master needs the sentinels' addresses"},
		{"sentinel master with a URL", nil, map[string]string{"IDENTITY_REDIS_SENTINEL_MASTER": "mymaster", "IDENTITY_REDIS_URL": "redis://x"}, "not --redis-url"},
		{"stray argument", []string{"serve"}, nil, "unexpected arguments"},
		{"negative per-address failures", []string{"--login-failures-per-user-address", "-1"}, nil, "login limits"},
		{"bad per-address failures env", nil, map[string]string{"IDENTITY_LOGIN_FAILURES_PER_USER_ADDRESS": "ten"}, "IDENTITY_LOGIN_FAILURES_PER_USER_ADDRESS"},
		{"bad proxy", []string{"--trusted-proxies", "not-an-ip"}, nil, "trusted proxy"},
		{"public URL not http", []string{"--public-url", "ftp://id.example.com"}, nil, "--public-url"},
		{"public URL with a query", nil, map[string]string{"IDENTITY_PUBLIC_URL": "https://id.example.com/?x=1"}, "--public-url"},
		{"wildcard origin", []string{"--allowed-origins", "*"}, nil, "--allowed-origins"},
		{"origin with a path", nil, map[string]string{"IDENTITY_ALLOWED_ORIGINS": "https://app.example.com/login"}, "--allowed-origins"},
		{"cert without key", []string{"--tls-cert-file", "/c.pem"}, nil, "--tls-key-file go together"},
		{"key without cert", nil, map[string]string{"IDENTITY_TLS_KEY_FILE": "/k.pem"}, "--tls-key-file go together"},
		{"client CA without TLS", []string{"--tls-client-ca-file", "/ca.pem"}, nil, "--tls-client-ca-file needs"},
		{"redis CA without Redis", []string{"--redis-ca-file", "/ca.pem"}, nil, "--redis-ca-file needs"},
		{"audit stream without Redis", []string{"--audit-redis-stream", "audit"}, nil, "--audit-redis-stream needs a Redis store"},
		{"audit stream of no length", nil, map[string]string{"IDENTITY_AUDIT_STREAM_MAX_LEN": "0"}, "--audit-stream-max-len"},
		{"redis CA on plaintext Redis", []string{"--redis-ca-file", "/ca.pem", "--redis-url", "redis://127.0.0.1:6379"}, nil, "rediss://"},
		{"zero password length", []string{"--password-min-length", "0"}, nil, "--password-min-length"},
		{"password length over the limit", nil, map[string]string{"IDENTITY_PASSWORD_MIN_LENGTH": "1025"}, "--password-min-length"},
		{"password length not a number", nil, map[string]string{"IDENTITY_PASSWORD_MIN_LENGTH": "eight"}, "IDENTITY_PASSWORD_MIN_LENGTH"},
		{"bootstrap without password", nil, map[string]string{"IDENTITY_BOOTSTRAP_USER": "alice"}, "IDENTITY_BOOTSTRAP_PASSWORD_FILE"},
		{"missing password file", nil, map[string]string{"IDENTITY_BOOTSTRAP_USER": "alice", "IDENTITY_BOOTSTRAP_PASSWORD_FILE": "/nonexistent/pw"}, "IDENTITY_BOOTSTRAP_PASSWORD_FILE"},
		{"redis without a master key", []string{"--redis-url", "redis://x"}, nil, "set IDENTITY_MASTER_KEY_FILE to a file holding one (openssl rand -base64 32 > master.key)"},
		{"cluster without a master key", nil, map[string]string{"IDENTITY_REDIS_ADDRS": "a:1,b:1"}, "--insecure-plaintext-keys for a trial"},
		{"missing master key file", []string{"--redis-url", "redis://x"}, map[string]string{"IDENTITY_MASTER_KEY_FILE": "/nonexistent/master.key"}, "IDENTITY_MASTER_KEY_FILE: open /nonexistent/master.key"},
		{"bad insecure env", nil, map[string]string{"IDENTITY_INSECURE_PLAINTEXT_KEYS": "maybe"}, "IDENTITY_INSECURE_PLAINTEXT_KEYS"},
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
			t.Setenv("IDENTITY_INSECURE_PLAINTEXT_KEYS", "true") // not what this test is about
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
			// Sentinel runs on go-redis's failover cluster client (see
			// tokenstore.SentinelClientOptions), with reads on the primary.
			if wantCluster := tc.mode != "single"; o.IsClusterMode != wantCluster || o.ReadOnly {
				t.Errorf("IsClusterMode %t, ReadOnly %t; want %t, false", o.IsClusterMode, o.ReadOnly, wantCluster)
			}
			if o.MaxRetries != -1 || !o.ContextTimeoutEnabled || o.ReadTimeout != c.RedisTimeout {
				t.Errorf("MaxRetries %d, ContextTimeoutEnabled %t, ReadTimeout %v: want -1, true, --redis-timeout", o.MaxRetries, o.ContextTimeoutEnabled, o.ReadTimeout)
			}
		})
	}
}

func TestConfigTLSFromEnvAndFlags(t *testing.T) {
	clearEnv(t)
	t.Setenv("IDENTITY_TLS_CERT_FILE", "/etc/identity/tls.crt")
	t.Setenv("IDENTITY_TLS_KEY_FILE", "/etc/identity/tls.key")
	t.Setenv("IDENTITY_TLS_CLIENT_CA_FILE", "/etc/identity/clients-ca.crt")
	t.Setenv("IDENTITY_REDIS_URL", "rediss://redis.internal:6380/0")
	t.Setenv("IDENTITY_REDIS_CA_FILE", "/etc/identity/redis-ca.crt")
	t.Setenv("IDENTITY_INSECURE_PLAINTEXT_KEYS", "true") // not what this test is about
	c, err := parseConfig([]string{"--tls-cert-file", "/run/renewed.crt"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	got := []string{c.TLSCertFile, c.TLSKeyFile, c.TLSClientCAFile, c.RedisCAFile}
	want := []string{"/run/renewed.crt", "/etc/identity/tls.key", "/etc/identity/clients-ca.crt", "/etc/identity/redis-ca.crt"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("TLS files = %q, want %q (the flag over its env)", got, want)
	}
}

func TestBootstrapPasswordFromFile(t *testing.T) {
	clearEnv(t)
	f := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(f, []byte("correct horse battery\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("IDENTITY_BOOTSTRAP_USER", "alice")
	t.Setenv("IDENTITY_BOOTSTRAP_PASSWORD_FILE", f)
	c, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.BootstrapPassword != "correct horse battery" || c.BootstrapUser != "alice" || strings.Join(c.BootstrapRoles, ",") != "admin" {
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

// writeMasterKey writes a key file as `openssl rand -base64 32 > f` does and
// returns its path and its line.
func writeMasterKey(t *testing.T, lines ...string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func newKeyLine(t *testing.T) string {
	t.Helper()
	b := make([]byte, masterkey.Size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

func TestMasterKeyConfig(t *testing.T) {
	current, accepted := newKeyLine(t), newKeyLine(t)
	want, err := masterkey.Parse([]byte(current + "\n" + accepted))
	if err != nil {
		t.Fatal(err)
	}
	redis := []string{"--redis-url", "redis://127.0.0.1:6379"}

	t.Run("from the file, every line", func(t *testing.T) {
		clearEnv(t)
		t.Setenv("IDENTITY_MASTER_KEY_FILE", writeMasterKey(t, "# rotation overlap", current, accepted))
		c, err := parseConfig(redis, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if c.MasterKeys == nil || strings.Join(c.MasterKeys.IDs(), ",") != strings.Join(want.IDs(), ",") {
			t.Fatalf("master keys = %v, want %v (the first seals)", c.MasterKeys, want.IDs())
		}
	})
	t.Run("not needed without Redis or with a keys dir", func(t *testing.T) {
		clearEnv(t)
		if _, err := parseConfig(nil, io.Discard); err != nil {
			t.Errorf("embedded store: %v", err)
		}
		if _, err := parseConfig(append(redis, "--keys-dir", t.TempDir()), io.Discard); err != nil {
			t.Errorf("keys dir on Redis: %v", err)
		}
	})
	t.Run("insecure plaintext keys, flag or env", func(t *testing.T) {
		clearEnv(t)
		c, err := parseConfig(append(redis, "--insecure-plaintext-keys"), io.Discard)
		if err != nil || !c.InsecurePlaintextKeys {
			t.Errorf("--insecure-plaintext-keys: %v, %t", err, c.InsecurePlaintextKeys)
		}
		t.Setenv("IDENTITY_INSECURE_PLAINTEXT_KEYS", "true")
		if c, err = parseConfig(redis, io.Discard); err != nil || !c.InsecurePlaintextKeys {
			t.Errorf("IDENTITY_INSECURE_PLAINTEXT_KEYS: %v, %t", err, c.InsecurePlaintextKeys)
		}
		t.Setenv("IDENTITY_MASTER_KEY_FILE", writeMasterKey(t, current))
		if _, err = parseConfig(redis, io.Discard); err == nil || !strings.Contains(err.Error(), "contradict") {
			t.Errorf("a master key and --insecure-plaintext-keys: %v, want a refusal", err)
		}
	})
	t.Run("a bad file is refused without showing it", func(t *testing.T) {
		for name, text := range map[string]string{
			"short key":  base64.StdEncoding.EncodeToString([]byte("sixteen byte key")),
			"not base64": "my-secret-passphrase",
			"empty":      "",
		} {
			clearEnv(t)
			t.Setenv("IDENTITY_MASTER_KEY_FILE", writeMasterKey(t, text))
			_, err := parseConfig(redis, io.Discard)
			if err == nil || !strings.Contains(err.Error(), "IDENTITY_MASTER_KEY_FILE") || !strings.Contains(err.Error(), "openssl rand -base64 32") {
				t.Errorf("%s: %v, want a refusal that says how to make a key", name, err)
				continue
			}
			if text != "" && strings.Contains(err.Error(), text) {
				t.Errorf("%s: the error shows the file's content: %v", name, err)
			}
		}
	})
}

// TestConfigRedisWaitReplicas: by default a revocation waits for a replica
// on Cluster and Sentinel and for none on one Redis URL; a number given
// (flag or variable) holds on every topology; anything else is refused.
func TestConfigRedisWaitReplicas(t *testing.T) {
	mk := "IDENTITY_MASTER_KEY_FILE"
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want int
	}{
		{"single, auto", []string{"--redis-url", "redis://127.0.0.1:6379/0"}, nil, 0},
		{"cluster, auto", []string{"--redis-addrs", "127.0.0.1:7000"}, nil, 1},
		{"sentinel, auto", []string{"--redis-addrs", "127.0.0.1:26379", "--redis-sentinel-master", "m"}, nil, 1},
		{"single, flag", []string{"--redis-url", "redis://127.0.0.1:6379/0", "--redis-wait-replicas", "2"}, nil, 2},
		{"cluster, env 0", []string{"--redis-addrs", "127.0.0.1:7000"}, map[string]string{"IDENTITY_REDIS_WAIT_REPLICAS": "0"}, 0},
		{"embedded", nil, nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			t.Setenv(mk, writeMasterKey(t, newKeyLine(t)))
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := parseConfig(tc.args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.waitReplicas(); got != tc.want {
				t.Errorf("waitReplicas() = %d, want %d", got, tc.want)
			}
			if c.RedisWaitTimeout != time.Second || c.RedisAllowEviction {
				t.Errorf("defaults: wait timeout %v, allow eviction %v; want 1s, false", c.RedisWaitTimeout, c.RedisAllowEviction)
			}
		})
	}
	for _, bad := range [][]string{{"--redis-wait-replicas", "-1"}, {"--redis-wait-replicas", "one"}, {"--redis-wait-timeout", "0s"}} {
		clearEnv(t)
		if _, err := parseConfig(append([]string{"--redis-url", "redis://127.0.0.1:6379/0", "--insecure-plaintext-keys"}, bad...), io.Discard); err == nil {
			t.Errorf("parseConfig(%q) accepted it", bad)
		}
	}
}
