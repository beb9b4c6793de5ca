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
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

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
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "identityd:", err)
		os.Exit(1)
	}
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

func run(ctx context.Context, args []string, stderr io.Writer) error {
	c, err := parseConfig(args, stderr)
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

	var store tokenstore.Store
	var limiter ratelimit.Limiter
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
		log.Info("using the Redis store", slog.String("mode", redisMode(c)), slog.Int("addrs", max(1, len(c.RedisAddrs))))
		store = tokenstore.NewRedis(rdb, storeOpts...)
		limiter = ratelimit.NewRedis(rdb)
	}
	defer store.Close()

	hasher, err := password.New(password.WithWorkers(hashWorkers(c.HashWorkers, runtime.GOMAXPROCS(0))))
	if err != nil {
		return err
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
	log.Info("identityd listening",
		slog.String("grpc", grpcLis.Addr().String()),
		slog.String("http", httpLis.Addr().String()),
		slog.String("signing_alg", c.SigningAlg))
	// The ports are bound from here on; until the store answers, the
	// waiting server answers on them (see waiting.go).
	grpcPorts, httpPorts := newHandoff(grpcLis), newHandoff(httpLis)
	defer grpcPorts.Close()
	defer httpPorts.Close()
	waiting := serveWaiting(grpcPorts.next(), httpPorts.next())

	var keys *token.Manager
	err = waitForStore(ctx, log, startBackoff, []startStep{
		{"the store to answer", store.Ping},
		{"the signing keys: the keyring cannot be read from the store yet", func(ctx context.Context) (err error) {
			keys, err = loadKeys(ctx, c, store, log)
			return err
		}},
		{"the store to take the bootstrap user", func(ctx context.Context) error {
			return bootstrap(ctx, c, store, hasher, log)
		}},
	})
	if err != nil {
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
		Store:       store,
		Keys:        keys,
		Hasher:      hasher,
		Limiter:     limiter,
		Logger:      log,
		KeysFromDir: c.KeysDir != "",
	})
	if err != nil {
		waiting.stop(c.ShutdownTimeout)
		return err
	}
	// New connections go to the server from now on; the waiting server's
	// clients reconnect to it.
	grpcServed, httpServed := grpcPorts.next(), httpPorts.next()
	waiting.stop(c.ShutdownTimeout)
	err = srv.Serve(ctx, grpcServed, httpServed, c.ShutdownTimeout)
	log.Info("identityd stopped")
	return err
}

// goRedisLog puts go-redis's own log lines in identityd's log, at debug.
type goRedisLog struct{ log *slog.Logger }

func (l goRedisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), slog.String("source", "go-redis"))
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
func loadKeys(ctx context.Context, c config, store tokenstore.Store, log *slog.Logger) (*token.Manager, error) {
	// The publish-ahead only concerns the Manager: it dates the keys that
	// rotations through this instance (AdminService.RotateKeys, the
	// --key-rotation schedule) add.
	opts := append(c.Server.TokenOptions(nil, nil), token.WithPublishAhead(c.KeyPublishAhead))
	if c.KeysDir != "" {
		log.Info("loading signing keys from directory", slog.String("dir", c.KeysDir))
		return token.LoadDir(c.KeysDir, opts...)
	}
	return token.LoadOrCreate(ctx, store, c.SigningAlg, opts...)
}

// bootstrap creates IDENTITY_BOOTSTRAP_USER if it does not exist yet.
func bootstrap(ctx context.Context, c config, store tokenstore.Store, hasher *password.Hasher, log *slog.Logger) error {
	if c.BootstrapUser == "" {
		return nil
	}
	svc := users.New(store, hasher, time.Now, rand.Reader)
	_, err := svc.Create(ctx, c.BootstrapUser, c.BootstrapPassword, c.BootstrapRoles)
	switch {
	case errors.Is(err, tokenstore.ErrAlreadyExists):
		log.Info("bootstrap user already exists", slog.String("username", c.BootstrapUser))
		return nil
	case err != nil:
		return fmt.Errorf("bootstrap user: %w", err)
	}
	log.Info("bootstrap user created", slog.String("username", c.BootstrapUser), slog.Any("roles", c.BootstrapRoles))
	return nil
}
