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

	"github.com/identityd/identity/audit"
	"github.com/identityd/identity/masterkey"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/server"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// config is everything identityd reads at start: flags, each with an
// IDENTITY_* environment variable (the flag wins when both are set).
type config struct {
	GRPCAddr        string
	HTTPAddr        string
	RedisURL        string
	RedisAddrs      []string
	RedisTimeout    time.Duration
	RedisCAFile     string
	SigningAlg      string
	KeysDir         string
	KeyPublishAhead time.Duration
	LogFormat       string
	LogLevel        string
	ShutdownTimeout time.Duration
	HashWorkers     int
	LoginWaitBudget time.Duration
	Server          server.Config

	// AuditRedisStream, when set, is the Redis stream the audit events
	// are also appended to, trimmed to about AuditStreamMaxLen entries.
	AuditRedisStream  string
	AuditStreamMaxLen int
	// RedisWaitReplicas is how many replicas must confirm a revocation
	// (tokenstore.WithReplicaWait), -1 for the topology's default
	// (waitReplicas); RedisWaitTimeout bounds the wait.
	RedisWaitReplicas int
	RedisWaitTimeout  time.Duration
	// RedisAllowEviction lets identityd start on a Redis whose
	// maxmemory-policy evicts keys, with a warning (checkEviction).
	RedisAllowEviction bool

	// RedisSentinelMaster, when set, makes RedisAddrs the sentinels'
	// addresses and names the primary they monitor.
	RedisSentinelMaster string
	// TLS on both ports from these files (re-read when they change);
	// with TLSClientCAFile the gRPC port requires client certificates.
	TLSCertFile     string
	TLSKeyFile      string
	TLSClientCAFile string

	BootstrapUser     string
	BootstrapPassword string
	BootstrapRoles    []string

	// MasterKeys seal the keyring in Redis (IDENTITY_MASTER_KEY_FILE: the
	// first key seals, every one opens); nil when not configured.
	MasterKeys *masterkey.Keys
	// InsecurePlaintextKeys allows Redis without a master key, the keyring
	// then stored in the clear: for a trial only.
	InsecurePlaintextKeys bool
	// SigningAlgGiven: --signing-alg (or its variable) was set, not left
	// at its default; with --keys-dir the keys must then be of that alg.
	SigningAlgGiven bool

	// flags is the flag set parsed (for the help's tests).
	flags *envFlags
}

// envFlags registers flags whose defaults come from the environment, and
// remembers each flag's variable and built-in default for the help text
// (which shows the built-in default, never the environment's value: that
// may be a Redis URL with a password in it).
type envFlags struct {
	fs      *flag.FlagSet
	errs    []error
	entries map[string]flagEntry
}

type flagEntry struct {
	env string
	def string // built-in default, as the help shows it
	set bool   // the variable was set (non-empty)
}

func (e *envFlags) env(name string) (string, bool) {
	v, ok := os.LookupEnv(name)
	return v, ok && v != ""
}

func (e *envFlags) record(flagName, envName, def string) {
	if e.entries == nil {
		e.entries = map[string]flagEntry{}
	}
	_, set := e.env(envName)
	e.entries[flagName] = flagEntry{env: envName, def: def, set: set}
}

func (e *envFlags) str(p *string, flagName, envName, def, usage string) {
	e.record(flagName, envName, def)
	if v, ok := e.env(envName); ok {
		def = v
	}
	e.fs.StringVar(p, flagName, def, usage)
}

func (e *envFlags) dur(p *time.Duration, flagName, envName string, def time.Duration, usage string) {
	e.record(flagName, envName, shortDuration(def))
	if v, ok := e.env(envName); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s: %w", envName, err))
		} else {
			def = d
		}
	}
	e.fs.DurationVar(p, flagName, def, usage)
}

func (e *envFlags) num(p *int, flagName, envName string, def int, usage string) {
	e.record(flagName, envName, strconv.Itoa(def))
	if v, ok := e.env(envName); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s: %w", envName, err))
		} else {
			def = n
		}
	}
	e.fs.IntVar(p, flagName, def, usage)
}

func (e *envFlags) boolean(p *bool, flagName, envName string, def bool, usage string) {
	e.record(flagName, envName, strconv.FormatBool(def))
	if v, ok := e.env(envName); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			e.errs = append(e.errs, fmt.Errorf("%s: %w", envName, err))
		} else {
			def = b
		}
	}
	e.fs.BoolVar(p, flagName, def, usage)
}

// shortDuration is d as the docs write it: 15m, 720h, 1m30s, 500ms.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// given reports whether the operator chose the flag's value: on the
// command line or through its variable.
func (e *envFlags) given(flagName string) bool {
	if e.entries[flagName].set {
		return true
	}
	found := false
	e.fs.Visit(func(f *flag.Flag) { found = found || f.Name == flagName })
	return found
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

// usageError is a command line the flags cannot parse: exit status 2.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

// errShowVersion: --version was given; nothing else is parsed.
var errShowVersion = errors.New("version requested")

// parseConfig reads flags from args and the environment. For -h/--help it
// writes the help text to help and returns flag.ErrHelp; for --version it
// returns errShowVersion. The flag package itself prints nothing: the
// caller reports a bad flag in one line.
func parseConfig(args []string, help io.Writer) (config, error) {
	c := config{Server: server.DefaultConfig()}
	fs := flag.NewFlagSet("identityd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	e := &envFlags{fs: fs}
	c.flags = e
	s := &c.Server
	var redisAddrs, trusted, bootstrapRoles, origins, publicURL, waitReplicas string
	e.str(&c.GRPCAddr, "grpc-addr", "IDENTITY_GRPC_ADDR", "127.0.0.1:9090", "gRPC listen address")
	e.str(&c.HTTPAddr, "http-addr", "IDENTITY_HTTP_ADDR", "127.0.0.1:8080", "HTTP (REST, JWKS, health, metrics) listen address")
	e.str(&publicURL, "public-url", "IDENTITY_PUBLIC_URL", "", "base URL clients reach identityd at (https://id.example.com), for the discovery document's jwks_uri; unset: the issuer if it is an https URL, else the request's Host")
	e.str(&c.RedisURL, "redis-url", "IDENTITY_REDIS_URL", "", "Redis URL (redis:// or rediss://); unset: embedded in-memory store")
	e.str(&redisAddrs, "redis-addrs", "IDENTITY_REDIS_ADDRS", "", "comma-separated Redis Cluster seed addresses, or the sentinels' addresses with --redis-sentinel-master")
	e.str(&c.RedisSentinelMaster, "redis-sentinel-master", "IDENTITY_REDIS_SENTINEL_MASTER", "", "name of the primary the sentinels in --redis-addrs monitor (Redis Sentinel)")
	e.dur(&c.RedisTimeout, "redis-timeout", "IDENTITY_REDIS_TIMEOUT", 500*time.Millisecond, "deadline of one Redis call")
	e.str(&waitReplicas, "redis-wait-replicas", "IDENTITY_REDIS_WAIT_REPLICAS", "auto", "replicas that must confirm a revocation (logout, revoke, disable, password or role change) before it answers OK, else STORE_UNAVAILABLE; auto: 1 on Redis Cluster and Sentinel, 0 on --redis-url")
	e.dur(&c.RedisWaitTimeout, "redis-wait-timeout", "IDENTITY_REDIS_WAIT_TIMEOUT", time.Second, "how long a revocation waits for --redis-wait-replicas replicas")
	e.boolean(&c.RedisAllowEviction, "redis-allow-eviction", "IDENTITY_REDIS_ALLOW_EVICTION", false, "start even when Redis's maxmemory-policy evicts keys (allkeys-*, volatile-*), with a warning: evicted sessions, users or revocations are lost")
	e.str(&c.RedisCAFile, "redis-ca-file", "IDENTITY_REDIS_CA_FILE", "", "PEM CA certificates to verify Redis's TLS certificate with (rediss:// or --redis-addrs); unset: the system's roots")
	e.str(&c.TLSCertFile, "tls-cert-file", "IDENTITY_TLS_CERT_FILE", "", "PEM certificate (chain) served on both ports, re-read when it changes; unset: plaintext, for loopback only")
	e.str(&c.TLSKeyFile, "tls-key-file", "IDENTITY_TLS_KEY_FILE", "", "PEM private key of --tls-cert-file")
	e.str(&c.TLSClientCAFile, "tls-client-ca-file", "IDENTITY_TLS_CLIENT_CA_FILE", "", "PEM CA certificates: the gRPC port then requires client certificates signed by them (mTLS)")
	e.dur(&s.AccessTTL, "access-ttl", "IDENTITY_ACCESS_TTL", s.AccessTTL, "access token lifetime")
	e.dur(&s.RefreshIdleTTL, "refresh-idle-ttl", "IDENTITY_REFRESH_IDLE_TTL", s.RefreshIdleTTL, "session idle lifetime")
	e.dur(&s.RefreshAbsoluteTTL, "refresh-absolute-ttl", "IDENTITY_REFRESH_ABSOLUTE_TTL", s.RefreshAbsoluteTTL, "session absolute lifetime")
	e.dur(&s.RefreshGrace, "refresh-grace", "IDENTITY_REFRESH_GRACE", s.RefreshGrace, "window in which a just-rotated refresh token is answered idempotently")
	e.dur(&s.Leeway, "leeway", "IDENTITY_LEEWAY", s.Leeway, "clock leeway when verifying exp/nbf/iat (0 to 30s)")
	e.str(&s.Issuer, "issuer", "IDENTITY_ISSUER", s.Issuer, "iss of issued tokens")
	e.str(&s.Audience, "audience", "IDENTITY_AUDIENCE", s.Audience, "aud of issued tokens")
	e.str(&c.SigningAlg, "signing-alg", "IDENTITY_SIGNING_ALG", "EdDSA", "signing algorithm: EdDSA, ES256, RS256 or HS256; with --keys-dir the keys decide, and a value given here must match them")
	e.str(&c.KeysDir, "keys-dir", "IDENTITY_KEYS_DIR", "", "directory of PEM signing keys; unset: keys made at start and kept in the store")
	e.dur(&c.KeyPublishAhead, "key-publish-ahead", "IDENTITY_KEY_PUBLISH_AHEAD", token.DefaultPublishAhead, "how long a key rotated in by this instance is published before it signs; keep it above the other instances' key reload (30s) and the verifiers' JWKS refresh; shorter is for tests")
	e.dur(&s.KeyReload, "key-reload", "IDENTITY_KEY_RELOAD", s.KeyReload, "how often keys are re-read from the store or --keys-dir: a rotation or a withdrawn key file takes effect within this (at least 1s)")
	e.dur(&s.KeyRotation, "key-rotation", "IDENTITY_KEY_ROTATION", 0, "rotate the signing key when it is this old (0: only by identityctl key rotate)")
	e.num(&s.LoginRatePerIP, "login-rate-per-ip", "IDENTITY_LOGIN_RATE_PER_IP", s.LoginRatePerIP, "login attempts per minute per client address (0: no limit)")
	e.num(&s.RefreshRatePerSession, "refresh-rate-per-session", "IDENTITY_REFRESH_RATE_PER_SESSION", s.RefreshRatePerSession, "refreshes per minute of one session, half of them at once (0: no limit)")
	e.num(&s.RefreshRatePerIP, "refresh-rate-per-ip", "IDENTITY_REFRESH_RATE_PER_IP", s.RefreshRatePerIP, "refreshes per minute per client address (0: no limit)")
	e.num(&s.LoginFailuresPerUserAddress, "login-failures-per-user-address", "IDENTITY_LOGIN_FAILURES_PER_USER_ADDRESS", s.LoginFailuresPerUserAddress, "failed logins per minute per username from one client address (0: no limit)")
	e.num(&s.LoginFailuresPerUser, "login-failures-per-user", "IDENTITY_LOGIN_FAILURES_PER_USER", s.LoginFailuresPerUser, "failed logins per hour per username from every address together (0: no limit)")
	e.str(&trusted, "trusted-proxies", "IDENTITY_TRUSTED_PROXIES", "", "comma-separated CIDRs whose X-Forwarded-For is believed")
	e.num(&s.PasswordMinLength, "password-min-length", "IDENTITY_PASSWORD_MIN_LENGTH", s.PasswordMinLength, "shortest password accepted when one is set, in characters (NIST SP 800-63B asks 15 where the password is the only factor); common and easily guessed passwords are refused at any length")
	e.num(&c.HashWorkers, "hash-workers", "IDENTITY_HASH_WORKERS", 0, "concurrent password hashes (0: one less than the CPUs, at least 1, so a login flood leaves a CPU to Verify)")
	e.dur(&c.LoginWaitBudget, "login-wait-budget", "IDENTITY_LOGIN_WAIT_BUDGET", password.DefaultWaitBudget, "longest expected wait for a hash worker a login is queued with ((logins ahead + ½) × measured hash time ÷ workers); past it RATE_LIMITED with that wait (0: no queue)")
	e.boolean(&s.WebDemo, "web-demo", "IDENTITY_WEB_DEMO", false, "serve the browser demo page at /demo/")
	e.boolean(&s.APIDocs, "api-docs", "IDENTITY_API_DOCS", false, "serve the browsable API documentation (Swagger UI over /openapi.json) at /docs/")
	e.str(&origins, "allowed-origins", "IDENTITY_ALLOWED_ORIGINS", "", "comma-separated web origins (https://app.example.com) allowed CORS and cookie-authenticated calls; the server's own origin always is")
	e.str(&c.AuditRedisStream, "audit-redis-stream", "IDENTITY_AUDIT_REDIS_STREAM", "", "Redis stream key the audit events are also appended to (XADD MAXLEN ~), for a collector; needs a Redis store; unset: the log only")
	e.num(&c.AuditStreamMaxLen, "audit-stream-max-len", "IDENTITY_AUDIT_STREAM_MAX_LEN", audit.DefaultStreamMaxLen, "about how many events --audit-redis-stream keeps (older ones are trimmed)")
	e.str(&c.LogFormat, "log-format", "IDENTITY_LOG_FORMAT", "text", "log format: text or json")
	e.str(&c.LogLevel, "log-level", "IDENTITY_LOG_LEVEL", "info", "log level: debug, info, warn, error")
	e.dur(&c.ShutdownTimeout, "shutdown-timeout", "IDENTITY_SHUTDOWN_TIMEOUT", 10*time.Second, "time to drain connections on SIGINT/SIGTERM")
	e.dur(&s.IdleTimeout, "idle-timeout", "IDENTITY_IDLE_TIMEOUT", s.IdleTimeout, "close a connection (gRPC or HTTP) that has had no request in flight for this long; keep it above a load balancer's own idle timeout (at least 1s)")
	e.str(&bootstrapRoles, "bootstrap-roles", "IDENTITY_BOOTSTRAP_ROLES", "admin", "roles of the bootstrap user")
	e.boolean(&c.InsecurePlaintextKeys, "insecure-plaintext-keys", "IDENTITY_INSECURE_PLAINTEXT_KEYS", false, "with Redis and no IDENTITY_MASTER_KEY_FILE, store the signing keys and refresh-token secret in the clear (a trial only: anyone who can read Redis can then mint tokens)")
	version := fs.Bool("version", false, "print the build (version, VCS revision and time, Go version) and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			writeHelp(help, fs, e.entries)
			return c, err
		}
		return c, &usageError{err}
	}
	if *version {
		return c, errShowVersion
	}
	c.SigningAlgGiven = e.given("signing-alg")
	if fs.NArg() > 0 {
		return c, &usageError{fmt.Errorf("unexpected arguments: %q", fs.Args())}
	}
	if len(e.errs) > 0 {
		return c, errors.Join(e.errs...)
	}
	c.RedisAddrs = splitList(redisAddrs)
	c.RedisWaitReplicas = -1
	if waitReplicas != "auto" {
		n, err := strconv.Atoi(waitReplicas)
		if err != nil || n < 0 {
			return c, fmt.Errorf("--redis-wait-replicas (IDENTITY_REDIS_WAIT_REPLICAS) %q: want auto or a number of replicas (0: no wait)", waitReplicas)
		}
		c.RedisWaitReplicas = n
	}
	c.BootstrapRoles = splitList(bootstrapRoles)
	for _, o := range splitList(origins) {
		n, err := server.NormalizeOrigin(o)
		if err != nil {
			return c, fmt.Errorf("--allowed-origins: %w", err)
		}
		s.AllowedOrigins = append(s.AllowedOrigins, n)
	}
	if publicURL != "" {
		u, err := server.ParsePublicURL(publicURL)
		if err != nil {
			return c, fmt.Errorf("--public-url: %w", err)
		}
		s.PublicURL = u
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
	// The master key only ever comes from a file: never a flag or an
	// environment value that `ps` or a crash report could show.
	if f := os.Getenv("IDENTITY_MASTER_KEY_FILE"); f != "" {
		k, err := masterkey.LoadFile(f)
		if err != nil {
			return c, fmt.Errorf("IDENTITY_MASTER_KEY_FILE: %w", err)
		}
		c.MasterKeys = k
	}
	return c, c.validate()
}

// usesRedis reports whether the store is Redis (not the embedded one).
func (c config) usesRedis() bool { return c.RedisURL != "" || len(c.RedisAddrs) > 0 }

// waitReplicas is how many replicas confirm a revocation:
// --redis-wait-replicas, or tokenstore.DefaultReplicaWait for the
// topology (1 on Redis Cluster and Sentinel, 0 on one Redis URL).
func (c config) waitReplicas() int {
	if c.RedisWaitReplicas >= 0 {
		return c.RedisWaitReplicas
	}
	if !c.usesRedis() {
		return 0
	}
	opts, err := redisOptions(c)
	if err != nil {
		return 0 // identityd stops on that error before it builds a store
	}
	return tokenstore.DefaultReplicaWait(opts)
}

// keysInRedis reports whether the signing keys live in Redis: the store is
// Redis and there is no keys directory.
func (c config) keysInRedis() bool { return c.usesRedis() && c.KeysDir == "" }

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
	check(s.LoginRatePerIP >= 0 && s.LoginFailuresPerUser >= 0 && s.LoginFailuresPerUserAddress >= 0, "login limits must not be negative")
	check(s.RefreshRatePerSession >= 0 && s.RefreshRatePerIP >= 0, "refresh limits must not be negative")
	check(c.LoginWaitBudget >= 0, "--login-wait-budget must not be negative")
	check(c.RedisURL == "" || len(c.RedisAddrs) == 0, "set --redis-url or --redis-addrs, not both")
	check(c.RedisSentinelMaster == "" || len(c.RedisAddrs) > 0, "--redis-sentinel-master needs the sentinels' addresses in --redis-addrs")
	check(c.RedisSentinelMaster == "" || c.RedisURL == "", "--redis-sentinel-master goes with --redis-addrs, not --redis-url")
	check(c.LogFormat == "text" || c.LogFormat == "json", "--log-format must be text or json")
	check(c.AuditRedisStream == "" || c.usesRedis(), "--audit-redis-stream needs a Redis store (--redis-url or --redis-addrs)")
	check(c.AuditStreamMaxLen >= 1, "--audit-stream-max-len must be at least 1")
	check(c.RedisTimeout > 0, "--redis-timeout must be positive")
	check(c.RedisWaitTimeout > 0, "--redis-wait-timeout must be positive")
	check(c.KeyPublishAhead >= 0, "--key-publish-ahead must not be negative")
	check(c.MasterKeys == nil || !c.InsecurePlaintextKeys, "IDENTITY_MASTER_KEY_FILE and --insecure-plaintext-keys contradict each other: give one")
	check(!c.keysInRedis() || c.MasterKeys != nil || c.InsecurePlaintextKeys,
		"with Redis the signing keys are stored encrypted under a master key that never enters Redis: "+
			"set IDENTITY_MASTER_KEY_FILE to a file holding one (openssl rand -base64 32 > master.key), "+
			"or give --insecure-plaintext-keys for a trial (anyone who can read Redis can then mint tokens)")
	check(s.KeyReload >= time.Second, "--key-reload must be at least 1s")
	check(s.IdleTimeout >= time.Second, "--idle-timeout must be at least 1s")
	check((c.TLSCertFile == "") == (c.TLSKeyFile == ""), "--tls-cert-file and --tls-key-file go together: give both or neither")
	check(c.TLSClientCAFile == "" || c.TLSCertFile != "", "--tls-client-ca-file needs --tls-cert-file and --tls-key-file (client certificates are asked in a TLS handshake)")
	check(c.RedisCAFile == "" || c.RedisURL != "" || len(c.RedisAddrs) > 0, "--redis-ca-file needs --redis-url (rediss://) or --redis-addrs")
	check(c.RedisCAFile == "" || !strings.HasPrefix(c.RedisURL, "redis://"), "--redis-ca-file needs a rediss:// URL: redis:// is plaintext")
	if err := c.passwordPolicy().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--password-min-length: %w", err))
	}
	switch c.SigningAlg {
	case "EdDSA", "ES256", "RS256", "HS256":
	default:
		errs = append(errs, fmt.Errorf("--signing-alg %q: want EdDSA, ES256, RS256 or HS256", c.SigningAlg))
	}
	return errors.Join(errs...)
}

// passwordPolicy is the rule for passwords set here: the bootstrap user's
// and, through the server, every other.
func (c config) passwordPolicy() users.PasswordPolicy {
	return users.PasswordPolicy{MinLength: c.Server.PasswordMinLength}
}
