package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/identityd/identity/password"
	"github.com/identityd/identity/server"
	"github.com/identityd/identity/token"
)

// config is everything identityd reads at start: flags, each with an
// IDENTITY_* environment variable (the flag wins when both are set).
type config struct {
	GRPCAddr        string
	HTTPAddr        string
	RedisURL        string
	RedisAddrs      []string
	RedisTimeout    time.Duration
	SigningAlg      string
	KeysDir         string
	KeyPublishAhead time.Duration
	LogFormat       string
	LogLevel        string
	ShutdownTimeout time.Duration
	HashWorkers     int
	LoginWaitBudget time.Duration
	Server          server.Config

	BootstrapUser     string
	BootstrapPassword string
	BootstrapRoles    []string
}

// envFlags registers flags whose defaults come from the environment.
type envFlags struct {
	fs   *flag.FlagSet
	errs []error
}

func (e *envFlags) env(name string) (string, bool) {
	v, ok := os.LookupEnv(name)
	return v, ok && v != ""
}

func (e *envFlags) str(p *string, flagName, envName, def, usage string) {
	if v, ok := e.env(envName); ok {
		def = v
	}
	e.fs.StringVar(p, flagName, def, usage+" (env "+envName+")")
}

func (e *envFlags) dur(p *time.Duration, flagName, envName string, def time.Duration, usage string) {
	if v, ok := e.env(envName); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s: %w", envName, err))
		} else {
			def = d
		}
	}
	e.fs.DurationVar(p, flagName, def, usage+" (env "+envName+")")
}

func (e *envFlags) num(p *int, flagName, envName string, def int, usage string) {
	if v, ok := e.env(envName); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s: %w", envName, err))
		} else {
			def = n
		}
	}
	e.fs.IntVar(p, flagName, def, usage+" (env "+envName+")")
}

func (e *envFlags) boolean(p *bool, flagName, envName string, def bool, usage string) {
	if v, ok := e.env(envName); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s: %w", envName, err))
		} else {
			def = b
		}
	}
	e.fs.BoolVar(p, flagName, def, usage+" (env "+envName+")")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// parseConfig reads flags from args and the environment.
func parseConfig(args []string, stderr io.Writer) (config, error) {
	c := config{Server: server.DefaultConfig()}
	fs := flag.NewFlagSet("identityd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	e := &envFlags{fs: fs}
	s := &c.Server
	var redisAddrs, trusted, bootstrapRoles, origins string
	e.str(&c.GRPCAddr, "grpc-addr", "IDENTITY_GRPC_ADDR", "127.0.0.1:9090", "gRPC listen address")
	e.str(&c.HTTPAddr, "http-addr", "IDENTITY_HTTP_ADDR", "127.0.0.1:8080", "HTTP (REST, JWKS, health, metrics) listen address")
	e.str(&c.RedisURL, "redis-url", "IDENTITY_REDIS_URL", "", "Redis URL (redis:// or rediss://); unset: embedded in-memory store")
	e.str(&redisAddrs, "redis-addrs", "IDENTITY_REDIS_ADDRS", "", "comma-separated Redis Cluster seed addresses")
	e.dur(&c.RedisTimeout, "redis-timeout", "IDENTITY_REDIS_TIMEOUT", 500*time.Millisecond, "deadline of one Redis call")
	e.dur(&s.AccessTTL, "access-ttl", "IDENTITY_ACCESS_TTL", s.AccessTTL, "access token lifetime")
	e.dur(&s.RefreshIdleTTL, "refresh-idle-ttl", "IDENTITY_REFRESH_IDLE_TTL", s.RefreshIdleTTL, "session idle lifetime")
	e.dur(&s.RefreshAbsoluteTTL, "refresh-absolute-ttl", "IDENTITY_REFRESH_ABSOLUTE_TTL", s.RefreshAbsoluteTTL, "session absolute lifetime")
	e.dur(&s.RefreshGrace, "refresh-grace", "IDENTITY_REFRESH_GRACE", s.RefreshGrace, "window in which a just-rotated refresh token is answered idempotently")
	e.dur(&s.Leeway, "leeway", "IDENTITY_LEEWAY", s.Leeway, "clock leeway when verifying exp/nbf/iat (0 to 30s)")
	e.str(&s.Issuer, "issuer", "IDENTITY_ISSUER", s.Issuer, "iss of issued tokens")
	e.str(&s.Audience, "audience", "IDENTITY_AUDIENCE", s.Audience, "aud of issued tokens")
	e.str(&c.SigningAlg, "signing-alg", "IDENTITY_SIGNING_ALG", "EdDSA", "signing algorithm: EdDSA, ES256, RS256 or HS256")
	e.str(&c.KeysDir, "keys-dir", "IDENTITY_KEYS_DIR", "", "directory of PEM signing keys; unset: keys made at start and kept in the store")
	e.dur(&c.KeyPublishAhead, "key-publish-ahead", "IDENTITY_KEY_PUBLISH_AHEAD", token.DefaultPublishAhead, "how long a key rotated in by this instance is published before it signs; keep it above the other instances' key reload (30s) and the verifiers' JWKS refresh; shorter is for tests")
	e.dur(&s.KeyRotation, "key-rotation", "IDENTITY_KEY_ROTATION", 0, "rotate the signing key when it is this old (0: only by identityctl key rotate)")
	e.num(&s.LoginRatePerIP, "login-rate-per-ip", "IDENTITY_LOGIN_RATE_PER_IP", s.LoginRatePerIP, "login attempts per minute per client address (0: no limit)")
	e.num(&s.RefreshRatePerSession, "refresh-rate-per-session", "IDENTITY_REFRESH_RATE_PER_SESSION", s.RefreshRatePerSession, "refreshes per minute of one session, half of them at once (0: no limit)")
	e.num(&s.RefreshRatePerIP, "refresh-rate-per-ip", "IDENTITY_REFRESH_RATE_PER_IP", s.RefreshRatePerIP, "refreshes per minute per client address (0: no limit)")
	e.num(&s.LoginFailuresPerUser, "login-failures-per-user", "IDENTITY_LOGIN_FAILURES_PER_USER", s.LoginFailuresPerUser, "failed logins per minute per username (0: no limit)")
	e.str(&trusted, "trusted-proxies", "IDENTITY_TRUSTED_PROXIES", "", "comma-separated CIDRs whose X-Forwarded-For is believed")
	e.num(&c.HashWorkers, "hash-workers", "IDENTITY_HASH_WORKERS", 0, "concurrent password hashes (0: one less than the CPUs, at least 1, so a login flood leaves a CPU to Verify)")
	e.dur(&c.LoginWaitBudget, "login-wait-budget", "IDENTITY_LOGIN_WAIT_BUDGET", password.DefaultWaitBudget, "longest expected wait for a hash worker a login is queued with ((logins ahead + ½) × measured hash time ÷ workers); past it RATE_LIMITED with that wait (0: no queue)")
	e.boolean(&s.WebDemo, "web-demo", "IDENTITY_WEB_DEMO", false, "serve the browser demo page at /demo/")
	e.str(&origins, "allowed-origins", "IDENTITY_ALLOWED_ORIGINS", "", "comma-separated web origins (https://app.example.com) allowed CORS and cookie-authenticated calls; the server's own origin always is")
	e.str(&c.LogFormat, "log-format", "IDENTITY_LOG_FORMAT", "text", "log format: text or json")
	e.str(&c.LogLevel, "log-level", "IDENTITY_LOG_LEVEL", "info", "log level: debug, info, warn, error")
	e.dur(&c.ShutdownTimeout, "shutdown-timeout", "IDENTITY_SHUTDOWN_TIMEOUT", 10*time.Second, "time to drain connections on SIGINT/SIGTERM")
	e.str(&bootstrapRoles, "bootstrap-roles", "IDENTITY_BOOTSTRAP_ROLES", "admin", "roles of the bootstrap user")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if len(e.errs) > 0 {
		return c, errors.Join(e.errs...)
	}
	c.RedisAddrs = splitList(redisAddrs)
	c.BootstrapRoles = splitList(bootstrapRoles)
	for _, o := range splitList(origins) {
		n, err := server.NormalizeOrigin(o)
		if err != nil {
			return c, fmt.Errorf("--allowed-origins: %w", err)
		}
		s.AllowedOrigins = append(s.AllowedOrigins, n)
	}
	for _, p := range splitList(trusted) {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			addr, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return c, fmt.Errorf("trusted proxy %q: %w", p, err)
			}
			pfx = netip.PrefixFrom(addr, addr.BitLen())
		}
		s.TrustedProxies = append(s.TrustedProxies, pfx)
	}

	// Secrets come from files or the environment, never from a flag.
	c.BootstrapUser = os.Getenv("IDENTITY_BOOTSTRAP_USER")
	if f := os.Getenv("IDENTITY_BOOTSTRAP_PASSWORD_FILE"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return c, fmt.Errorf("IDENTITY_BOOTSTRAP_PASSWORD_FILE: %w", err)
		}
		c.BootstrapPassword = strings.TrimRight(string(b), "\r\n")
	} else {
		c.BootstrapPassword = os.Getenv("IDENTITY_BOOTSTRAP_PASSWORD")
	}
	if c.BootstrapUser != "" && c.BootstrapPassword == "" {
		return c, errors.New("IDENTITY_BOOTSTRAP_USER needs IDENTITY_BOOTSTRAP_PASSWORD_FILE (or IDENTITY_BOOTSTRAP_PASSWORD)")
	}
	return c, c.validate()
}

func (c config) validate() error {
	s := c.Server
	var errs []error
	check := func(ok bool, msg string) {
		if !ok {
			errs = append(errs, errors.New(msg))
		}
	}
	check(s.AccessTTL >= time.Second, "--access-ttl must be at least 1s")
	check(s.RefreshIdleTTL >= time.Second, "--refresh-idle-ttl must be at least 1s")
	check(s.RefreshAbsoluteTTL >= s.RefreshIdleTTL || s.RefreshAbsoluteTTL >= time.Second, "--refresh-absolute-ttl must be at least 1s")
	check(s.RefreshGrace >= 0 && s.RefreshGrace <= time.Minute, "--refresh-grace must be between 0 and 1m")
	check(s.Leeway >= 0 && s.Leeway <= 30*time.Second, "--leeway must be between 0 and 30s")
	check(s.Issuer != "" && s.Audience != "", "--issuer and --audience must not be empty")
	check(s.LoginRatePerIP >= 0 && s.LoginFailuresPerUser >= 0, "login limits must not be negative")
	check(s.RefreshRatePerSession >= 0 && s.RefreshRatePerIP >= 0, "refresh limits must not be negative")
	check(c.LoginWaitBudget >= 0, "--login-wait-budget must not be negative")
	check(c.RedisURL == "" || len(c.RedisAddrs) == 0, "set --redis-url or --redis-addrs, not both")
	check(c.LogFormat == "text" || c.LogFormat == "json", "--log-format must be text or json")
	check(c.RedisTimeout > 0, "--redis-timeout must be positive")
	check(c.KeyPublishAhead >= 0, "--key-publish-ahead must not be negative")
	switch c.SigningAlg {
	case "EdDSA", "ES256", "RS256", "HS256":
	default:
		errs = append(errs, fmt.Errorf("--signing-alg %q: want EdDSA, ES256, RS256 or HS256", c.SigningAlg))
	}
	return errors.Join(errs...)
}
