package main

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
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
	t.Setenv("IDENTITY_PASSWORD_MIN_LENGTH", "15")
	c, err := parseConfig([]string{"--grpc-addr", "127.0.0.1:2", "--signing-alg", "ES256"}, io.Discard)
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
		{"stray argument", []string{"serve"}, nil, "unexpected arguments"},
		{"bad proxy", []string{"--trusted-proxies", "not-an-ip"}, nil, "trusted proxy"},
		{"wildcard origin", []string{"--allowed-origins", "*"}, nil, "--allowed-origins"},
		{"origin with a path", nil, map[string]string{"IDENTITY_ALLOWED_ORIGINS": "https://app.example.com/login"}, "--allowed-origins"},
		{"zero password length", []string{"--password-min-length", "0"}, nil, "--password-min-length"},
		{"password length over the limit", nil, map[string]string{"IDENTITY_PASSWORD_MIN_LENGTH": "1025"}, "--password-min-length"},
		{"password length not a number", nil, map[string]string{"IDENTITY_PASSWORD_MIN_LENGTH": "eight"}, "IDENTITY_PASSWORD_MIN_LENGTH"},
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
