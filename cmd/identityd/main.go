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

// redisClient builds the go-redis universal client: one node for
// --redis-url, a cluster for --redis-addrs. Calls are bounded by their
// context and never resent by go-redis, so a Lua rotation cannot run twice.
func redisClient(c config) (redis.UniversalClient, error) {
	opts, err := tokenstore.ClientOptions(c.RedisURL, c.RedisAddrs)
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
	return redis.NewUniversalClient(opts), nil
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
		rdb, err := redisClient(c)
		if err != nil {
			return err
		}
		log.Info("using the Redis store", slog.Int("seeds", max(1, len(c.RedisAddrs))))
		store = tokenstore.NewRedis(rdb, storeOpts...)
		limiter = ratelimit.NewRedis(rdb)
	}
	defer store.Close()

	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	keys, err := loadKeys(startCtx, c, store, log)
	if err != nil {
		return err
	}
	hasher, err := password.New(password.WithWorkers(hashWorkers(c.HashWorkers, runtime.GOMAXPROCS(0))),
		password.WithWaitBudget(c.LoginWaitBudget))
	if err != nil {
		return err
	}
	if err := bootstrap(startCtx, c, store, hasher, log); err != nil {
		return err
	}
	srv, err := server.New(startCtx, c.Server, server.Deps{
		Store:       store,
		Keys:        keys,
		Hasher:      hasher,
		Limiter:     limiter,
		Logger:      log,
		KeysFromDir: c.KeysDir != "",
	})
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
	err = srv.Serve(ctx, grpcLis, httpLis, c.ShutdownTimeout)
	log.Info("identityd stopped")
	return err
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
