// Command identityd runs the identity service: gRPC on --grpc-addr, REST
// (grpc-gateway), JWKS, health and metrics on --http-addr. With no Redis
// configured it runs on an embedded in-memory store.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/identityd/identity/audit"
	"github.com/identityd/identity/internal/buildinfo"
	"github.com/identityd/identity/internal/tlsfiles"
	"github.com/identityd/identity/masterkey"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/ratelimit"
	"github.com/identityd/identity/server"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(exitCode(run(ctx, os.Args[1:], os.Stdout, os.Stderr), os.Stderr))
}

// exitCode reports err on stderr and returns the exit status: 0 for none
// (and for --help), 2 for a command line that does not parse, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	var ue *usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "identityd: %v\nRun 'identityd --help' for the flags.\n", err)
		return 2
	}
	fmt.Fprintln(stderr, "identityd:", err)
	return 1
}

func newLogger(c config, w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

// redisOptions are the go-redis universal client's options: one node for
// --redis-url, a cluster for --redis-addrs, a Sentinel-watched primary for
// --redis-addrs with --redis-sentinel-master. Calls are bounded by their
// context and never resent by go-redis, so a Lua rotation cannot run twice.
func redisOptions(c config) (*redis.UniversalOptions, error) {
	var opts *redis.UniversalOptions
	var err error
	if c.RedisSentinelMaster != "" {
		opts, err = tokenstore.SentinelClientOptions(c.RedisSentinelMaster, c.RedisAddrs)
	} else {
		opts, err = tokenstore.ClientOptions(c.RedisURL, c.RedisAddrs)
	}
	if err != nil {
		return nil, err
	}
	if c.RedisCAFile != "" {
		pool, err := tlsfiles.CertPool(c.RedisCAFile)
		if err != nil {
			return nil, fmt.Errorf("--redis-ca-file: %w", err)
		}
		if err := tokenstore.SetRootCAs(opts, pool); err != nil {
			return nil, err
		}
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = time.Second
	}
	if opts.ReadTimeout == 0 {
		opts.ReadTimeout = c.RedisTimeout
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = c.RedisTimeout
	}
	return opts, nil
}

// redisMode names the topology of c's Redis for the log.
func redisMode(c config) string {
	switch {
	case c.RedisSentinelMaster != "":
		return "sentinel"
	case len(c.RedisAddrs) > 0:
		return "cluster"
	}
	return "single"
}

// run is identityd without the process: --help goes to stdout, the log to
// stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseConfig(args, stdout)
	if errors.Is(err, errShowVersion) {
		_, err = io.WriteString(stdout, buildinfo.Read().String("identityd"))
		return err
	}
	if err != nil {
		return err
	}
	log, err := newLogger(c, stderr)
	if err != nil {
		return err
	}

	// go-redis logs each failed dial on its own: while Redis is down that
	// is a line per attempt. identityd says once what it waits for (see
	// waiting.go) and what fails (the feed, the health check); go-redis's
	// lines go to the debug level.
	redis.SetLogger(goRedisLog{log})

	tp, err := newTracerProvider(ctx, os.Getenv, log)
	if err != nil {
		return err
	}
	if tp != nil {
		// Deferred first, so run last: the spans still in the batch are
		// sent once the server has drained and the store is closed.
		defer shutdownTracing(tp, c.ShutdownTimeout, log)
	}

	var store tokenstore.Store
	var limiter ratelimit.Limiter
	// keyringName is the Redis key of the keyring, what a sealed keyring is
	// bound to; "" on the embedded store.
	var keyringName string
	var auditStream *audit.Stream
	var rs *tokenstore.Redis // nil on the embedded store
	storeOpts := []tokenstore.Option{
		tokenstore.WithIdleTTL(c.Server.RefreshIdleTTL),
		// Revocations must outlive every access token they revoke.
		tokenstore.WithRevocationRetention(c.Server.AccessTTL + c.Server.Leeway + time.Minute),
	}
	if c.RedisURL == "" && len(c.RedisAddrs) == 0 {
		log.Warn("using the embedded in-memory store: single instance, not durable; set --redis-url for production")
		store = tokenstore.NewMemory(storeOpts...)
		limiter = ratelimit.NewMemory()
	} else {
		opts, err := redisOptions(c)
		if err != nil {
			return err
		}
		rdb := tokenstore.NewClient(opts)
		defer rdb.Close()
		if tp != nil {
			if err := traceRedis(rdb, tp); err != nil {
				return err
			}
		}
		log.Info("using the Redis store", slog.String("mode", redisMode(c)), slog.Int("addrs", max(1, len(c.RedisAddrs))),
			slog.Int("wait_replicas", c.waitReplicas()), slog.Duration("wait_timeout", c.RedisWaitTimeout))
		// The revocation feed reads on a pool of its own: calls that
		// exhaust rdb's pool must not make Verify's revocation set stale.
		feed := tokenstore.NewClient(tokenstore.FeedClientOptions(opts))
		defer feed.Close()
		rs = tokenstore.NewRedis(rdb, append(storeOpts, tokenstore.WithReplicaWait(c.waitReplicas(), c.RedisWaitTimeout), tokenstore.WithFeedClient(feed))...)
		store, keyringName = rs, rs.KeyringKey()
		limiter = ratelimit.NewRedis(rdb)
		if c.AuditRedisStream != "" {
			auditStream = newAuditStream(c, rdb, log)
			// Deferred after rdb.Close, so run before it: what is queued
			// is written out while Redis is still open.
			defer closeAuditStream(auditStream, c.ShutdownTimeout)
		}
	}
	defer store.Close()

	hasher, err := password.New(password.WithWorkers(hashWorkers(c.HashWorkers, runtime.GOMAXPROCS(0))),
		password.WithWaitBudget(c.LoginWaitBudget))
	if err != nil {
		return err
	}
	serverTLS, err := loadTLS(c, log)
	if err != nil {
		return err
	}
	// Keys from --keys-dir need no store: a mistake there stops identityd
	// before it listens. Keys in the store are loaded once it answers.
	var keys *token.Manager
	if c.KeysDir != "" {
		if keys, err = loadKeys(ctx, c, store, keyringName, log); err != nil {
			return err
		}
	}
	grpcLis, err := net.Listen("tcp", c.GRPCAddr)
	if err != nil {
		return err
	}
	httpLis, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		grpcLis.Close()
		return err
	}
	if serverTLS == nil {
		for _, l := range []net.Listener{grpcLis, httpLis} {
			if !isLoopback(l.Addr()) {
				log.Warn("serving plaintext on a non-loopback address: tokens and passwords cross the network in the clear; set --tls-cert-file and --tls-key-file", slog.String("addr", l.Addr().String()))
			}
		}
	}
	log.Info("identityd listening",
		slog.String("grpc", grpcLis.Addr().String()),
		slog.String("http", httpLis.Addr().String()),
		slog.Bool("tls", serverTLS != nil),
		slog.Bool("client_certs", serverTLS != nil && serverTLS.ClientCAs != nil))
	// The ports are bound from here on; until the store answers, the
	// waiting server answers on them (see waiting.go).
	grpcPorts, httpPorts := newHandoff(grpcLis), newHandoff(httpLis)
	defer grpcPorts.Close()
	defer httpPorts.Close()
	waiting := serveWaiting(grpcPorts.next(), httpPorts.next(), serverTLS)

	// Each retried step logs its lines once, however many attempts it takes.
	onceLog := slog.New(newOnceHandler(log.Handler()))
	steps := []startStep{{"the store to answer", store.Ping}}
	if rs != nil {
		steps = append(steps, startStep{"Redis to answer CONFIG GET maxmemory-policy", func(ctx context.Context) error {
			return checkEviction(ctx, c, rs, onceLog)
		}})
	}
	if keys == nil {
		// Nothing is written to the store before the keys load: a wrong
		// master key stops identityd with the store as it found it.
		steps = append(steps, startStep{"the signing keys: the keyring cannot be read from the store yet", func(ctx context.Context) (err error) {
			keys, err = loadKeys(ctx, c, store, keyringName, onceLog)
			return err
		}})
	}
	steps = append(steps, startStep{"the store to take the bootstrap user", func(ctx context.Context) error {
		return bootstrap(ctx, c, store, hasher, onceLog)
	}})
	if err := waitForStore(ctx, log, startBackoff, steps); err != nil {
		waiting.stop(c.ShutdownTimeout)
		if ctx.Err() != nil {
			log.Info("identityd stopped before its store answered")
			return nil
		}
		return err
	}
	newCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	srv, err := server.New(newCtx, c.Server, server.Deps{
		Store:          store,
		Keys:           keys,
		Hasher:         hasher,
		Limiter:        limiter,
		Logger:         log,
		KeysFromDir:    c.KeysDir != "",
		TLS:            serverTLS,
		TracerProvider: tracerProvider(tp),
		AuditStream:    auditStream,
	})
	if err != nil {
		waiting.stop(c.ShutdownTimeout)
		return err
	}
	// New connections go to the server from now on; the waiting server's
	// clients reconnect to it.
	grpcServed, httpServed := grpcPorts.last(), httpPorts.last()
	waiting.stop(c.ShutdownTimeout)
	log.Info("identityd serving", slog.String("signing_alg", signingAlg(keys)))
	err = srv.Serve(ctx, grpcServed, httpServed, c.ShutdownTimeout)
	log.Info("identityd stopped")
	return err
}

// newAuditStream appends the audit events to --audit-redis-stream.
func newAuditStream(c config, rdb redis.UniversalClient, log *slog.Logger) *audit.Stream {
	log.Info("audit events also go to a Redis stream", slog.String("stream", c.AuditRedisStream), slog.Int("max_len", c.AuditStreamMaxLen))
	return audit.NewStream(rdb, c.AuditRedisStream, int64(c.AuditStreamMaxLen),
		audit.WithWriteTimeout(c.RedisTimeout), audit.WithLogger(log))
}

// closeAuditStream writes out the queued audit events, within timeout.
func closeAuditStream(s *audit.Stream, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s.Close(ctx)
}

// checkEviction refuses a Redis whose maxmemory-policy may evict the
// store's keys (a session, a user, the revocation stream, the keyring),
// unless --redis-allow-eviction says to go on with a warning. A Redis that
// refuses CONFIG (an ACL without it, a managed Redis) is let through with
// a warning: identityd cannot tell, the operator can.
func checkEviction(ctx context.Context, c config, rs *tokenstore.Redis, log *slog.Logger) error {
	policies, err := rs.MaxmemoryPolicies(ctx)
	if errors.Is(err, tokenstore.ErrUnavailable) {
		return err // retried: the store is not answering yet
	}
	if err != nil {
		log.Warn("cannot read Redis's maxmemory-policy; make sure it is noeviction, or keys identity needs may be evicted under memory pressure",
			slog.String("error", err.Error()))
		return nil
	}
	for _, addr := range slices.Sorted(maps.Keys(policies)) {
		policy := policies[addr]
		if !tokenstore.Evicts(policy) {
			continue
		}
		if !c.RedisAllowEviction {
			return fmt.Errorf("refusing to start: Redis at %s has maxmemory-policy %s, which evicts keys under memory pressure: "+
				"a session, a user or a revocation could vanish. Set maxmemory-policy noeviction on it (CONFIG SET maxmemory-policy noeviction, "+
				"and in redis.conf), or start with --redis-allow-eviction (IDENTITY_REDIS_ALLOW_EVICTION=true) to accept that", addr, policy)
		}
		log.Warn("--redis-allow-eviction: Redis's maxmemory-policy evicts keys under memory pressure; sessions, users or revocations may vanish; set maxmemory-policy noeviction",
			slog.String("addr", addr), slog.String("maxmemory_policy", policy))
	}
	return nil
}

// goRedisLog puts go-redis's own log lines in identityd's log, at debug.
type goRedisLog struct{ log *slog.Logger }

func (l goRedisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), slog.String("source", "go-redis"))
}

// loadTLS reads --tls-cert-file and --tls-key-file (and the client CAs),
// or returns nil for plaintext. The pair is re-read when its files change
// (tlsfiles.KeyPair): a renewed certificate needs no restart. The client
// CA file is read once, at start.
func loadTLS(c config, log *slog.Logger) (*server.TLS, error) {
	if c.TLSCertFile == "" {
		return nil, nil
	}
	kp, err := tlsfiles.LoadKeyPair(c.TLSCertFile, c.TLSKeyFile, tlsfiles.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("--tls-cert-file/--tls-key-file: %w", err)
	}
	t := &server.TLS{GetCertificate: kp.GetCertificate}
	if c.TLSClientCAFile != "" {
		if t.ClientCAs, err = tlsfiles.CertPool(c.TLSClientCAFile); err != nil {
			return nil, fmt.Errorf("--tls-client-ca-file: %w", err)
		}
	}
	return t, nil
}

// isLoopback reports whether a listener's address is a loopback one (an
// unspecified address, 0.0.0.0 or ::, is every interface: not loopback).
func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// hashWorkers is how many argon2id hashes run at once: the flag's value,
// or by default one less than the CPUs Go runs on (at least one). A hash
// holds its CPU for tens of milliseconds, and Go does not take a CPU back
// from a running goroutine for up to 10 ms: with every CPU hashing, a login
// flood raised Verify's p99 twelvefold on 2 CPUs, against a target of 3×
// (BENCHMARKS.md). One CPU left free keeps Verify's latency within that, for
// a lower peak login rate (half of it on 2 CPUs, a quarter less on 4).
func hashWorkers(flag, procs int) int {
	if flag > 0 {
		return flag
	}
	return max(1, procs-1)
}

// loadKeys reads the signing keys from --keys-dir, or from the store,
// making them on first start (every instance then signs with the same keys).
// In Redis (keyringName set) the keyring is sealed under the master key,
// unless --insecure-plaintext-keys said otherwise.
func loadKeys(ctx context.Context, c config, store tokenstore.Store, keyringName string, log *slog.Logger) (*token.Manager, error) {
	// The publish-ahead only concerns the Manager: it dates the keys that
	// rotations through this instance (AdminService.RotateKeys, the
	// --key-rotation schedule) add.
	opts := append(c.Server.TokenOptions(nil, nil), token.WithPublishAhead(c.KeyPublishAhead), token.WithLogger(log))
	if c.KeysDir != "" {
		log.Info("loading signing keys from directory", slog.String("dir", c.KeysDir))
		if c.MasterKeys != nil {
			log.Warn("IDENTITY_MASTER_KEY_FILE is not used: the signing keys are the files of --keys-dir")
		}
		keys, err := token.LoadDir(c.KeysDir, opts...)
		if err != nil {
			return nil, err
		}
		// The keys decide the algorithm; a --signing-alg that says
		// otherwise is a mistake to report, not a wish to ignore (the log
		// would claim one algorithm while tokens carry another).
		k, err := keys.SigningKey()
		if err != nil {
			return nil, err
		}
		if c.SigningAlgGiven && k.Alg != c.SigningAlg {
			return nil, fmt.Errorf("--signing-alg (IDENTITY_SIGNING_ALG) is %s, but the signing key in --keys-dir %s (%s.pem) is %s: set --signing-alg %s, or leave it unset to follow the keys",
				c.SigningAlg, c.KeysDir, k.ID, k.Alg, k.Alg)
		}
		return keys, nil
	}
	switch {
	case keyringName == "":
		if c.MasterKeys != nil {
			log.Info("IDENTITY_MASTER_KEY_FILE is not used: the embedded store keeps the signing keys in memory only")
		}
	case c.MasterKeys != nil:
		opts = append(opts, token.WithSealing(token.Sealing{Sealer: c.MasterKeys, Name: keyringName}))
		log.Info("the keyring in Redis is sealed under the master key",
			slog.String("master_key", c.MasterKeys.ID()), slog.Any("accepted_master_keys", c.MasterKeys.IDs()))
	default:
		log.Warn("--insecure-plaintext-keys: the signing keys and the refresh-token secret are stored in Redis in the clear; " +
			"anyone who can read Redis can mint tokens. Set IDENTITY_MASTER_KEY_FILE for production")
	}
	keys, err := token.LoadOrCreate(ctx, store, c.SigningAlg, opts...)
	switch {
	case errors.Is(err, token.ErrKeyringSealed):
		return nil, fmt.Errorf("refusing to start: %w; set IDENTITY_MASTER_KEY_FILE to the file it was sealed with (nothing was changed)", err)
	case errors.Is(err, masterkey.ErrUnknownKey) || errors.Is(err, masterkey.ErrOpen):
		return nil, fmt.Errorf("refusing to start: %w; is IDENTITY_MASTER_KEY_FILE the file the other instances use? (nothing was changed)", err)
	case err != nil:
		return nil, err
	}
	if k, err := keys.SigningKey(); err == nil && k.Alg != c.SigningAlg {
		// LoadOrCreate rotated in a key of the configured alg; it signs
		// once it has been published for --key-publish-ahead.
		log.Info("the store's signing key has another algorithm: a key of the configured one was added and takes over after --key-publish-ahead",
			slog.String("signing_alg", k.Alg), slog.String("configured_alg", c.SigningAlg), slog.Duration("publish_ahead", c.KeyPublishAhead))
	}
	return keys, nil
}

// signingAlg is the algorithm tokens are signed with now.
func signingAlg(keys *token.Manager) string {
	k, err := keys.SigningKey()
	if err != nil {
		return "none"
	}
	return k.Alg
}

// bootstrap creates IDENTITY_BOOTSTRAP_USER if it does not exist yet, with
// the password policy every other account has.
func bootstrap(ctx context.Context, c config, store tokenstore.Store, hasher *password.Hasher, log *slog.Logger) error {
	if c.BootstrapUser == "" {
		return nil
	}
	svc := users.New(store, hasher, time.Now, rand.Reader, users.WithPasswordPolicy(c.passwordPolicy()))
	// An existing user is left alone, whatever the policy says of the
	// password in the environment now: a restart of an identityd whose
	// bootstrap user was made under a laxer policy must still start.
	_, err := svc.ByName(ctx, c.BootstrapUser)
	if err == nil {
		err = tokenstore.ErrAlreadyExists
	} else if errors.Is(err, tokenstore.ErrNotFound) {
		_, err = svc.Create(ctx, c.BootstrapUser, c.BootstrapPassword, c.BootstrapRoles)
	}
	switch {
	case errors.Is(err, tokenstore.ErrAlreadyExists):
		log.Info("bootstrap user already exists", slog.String("username", c.BootstrapUser))
		return nil
	case errors.Is(err, users.ErrPasswordTooWeak):
		return fmt.Errorf("bootstrap user: the password of IDENTITY_BOOTSTRAP_PASSWORD_FILE (or IDENTITY_BOOTSTRAP_PASSWORD) is refused: %w", err)
	case err != nil:
		return fmt.Errorf("bootstrap user: %w", err)
	}
	log.Info("bootstrap user created", slog.String("username", c.BootstrapUser), slog.Any("roles", c.BootstrapRoles))
	return nil
}
