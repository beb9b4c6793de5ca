// Command identityload is a closed-loop gRPC and REST load generator for a
// running identityd on this machine. It measures the service against the
// performance targets in BENCHMARKS.md side by side, in one run against one server: a no-op unary RPC
// (grpc.health.v1.Health/Check, which runs through the same interceptor
// chain), Verify, Refresh, Login, and Verify under a login flood, then the
// ratios between them and against a raw argon2id rate measured in-process.
// With -proto grpc,rest the no-op, Verify, Refresh and Login also run over
// the REST gateway (HTTP/1.1 keep-alive, same clients), each right after its
// gRPC run (rest.go says what the REST no-op is).
//
// It only talks to loopback (127.0.0.1, localhost, [::1]) and always stops by
// itself: every scenario is bounded by -d and/or -n. It is a measuring tool,
// not a test: nothing in it asserts a timing.
//
//	identityload -grpc 127.0.0.1:9090 -user alice -password-file /tmp/alice.pw -scenario all -c 32 -d 8s
//	identityload -proto grpc,rest -http 127.0.0.1:8080 -user alice -password-file /tmp/alice.pw -scenario noop,verify,refresh,login
//
// Start identityd for it with --login-rate-per-ip 0 (or a high limit): the
// login scenarios come from one address and would otherwise measure the
// rate limiter.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "identityload:", err)
		os.Exit(1)
	}
}

type config struct {
	addr         string
	clients      int
	duration     time.Duration
	requests     int64
	warmup       time.Duration
	scenario     string
	user         string
	passwordFile string
	conns        int
	tokens       int
	floodClients int
	hashWorkers  int
	timeout      time.Duration
	busyBackoff  time.Duration
	serverPID    int
	redisPID     int
	redisAddr    string
	watchers     int
	peer         string
	sessions     int
	serviceUser  string
	servicePWF   string
	protos       []string // "grpc", "rest": the protocols each scenario runs on, in this order
	httpAddr     string
	missTokens   int
	rssRequests  int64
	suite        bool
	identityd    string
	redisServer  string
	set          map[string]bool // the flags given on the command line
}

var scenarioNames = []string{"noop", "verify", "refresh", "login", "login-flood+verify"}

// extraScenarios run only when named: they need more than one server.
// verify-miss, ed25519, evalsha and rss are measured by -suite; they run
// alone when named too.
var extraScenarios = []string{"idle", "revocation", "verify-miss", "ed25519", "evalsha", "rss"}

func parseConfig(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("identityload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "grpc", "127.0.0.1:9090", "identityd gRPC address (loopback only; logins that set up the scenarios use it whatever -proto says)")
	fs.StringVar(&c.httpAddr, "http", "127.0.0.1:8080", "identityd HTTP (REST) address, for -proto rest (loopback only)")
	var protos string
	fs.StringVar(&protos, "proto", "grpc", "grpc, rest, or grpc,rest: the protocols noop, verify, refresh and login run on, side by side in one run (REST: HTTP/1.1 keep-alive, one connection per client; the login flood is gRPC only)")
	fs.IntVar(&c.clients, "c", 32, "concurrent clients (closed loop: each waits for its answer)")
	fs.DurationVar(&c.duration, "d", 8*time.Second, "measured duration of each scenario (0: bounded by -n only)")
	fs.Int64Var(&c.requests, "n", 0, "stop a scenario after this many requests (0: bounded by -d only)")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured run before each scenario")
	fs.StringVar(&c.scenario, "scenario", "all", "all, or a comma-separated list of "+strings.Join(scenarioNames, ", ")+", argon2 (the raw in-process rate alone; login measures it too), idle (Redis commands/s while nothing is sent), revocation (logout to a peer's local verifier)")
	fs.StringVar(&c.user, "user", "", "username to log in as (verify, refresh, login)")
	fs.StringVar(&c.passwordFile, "password-file", "", "file holding the user's password")
	fs.IntVar(&c.conns, "conns", 4, "gRPC connections the clients share")
	fs.IntVar(&c.tokens, "tokens", 64, "access tokens in the verify pool (one login each)")
	fs.IntVar(&c.floodClients, "flood-c", 0, "concurrent logins in the login flood (0: same as -c)")
	fs.IntVar(&c.hashWorkers, "hash-workers", max(1, runtime.NumCPU()-1), "workers for the raw argon2id rate: the server's --hash-workers (identityd's default: one less than the CPUs, at least 1)")
	fs.DurationVar(&c.busyBackoff, "busy-backoff", 50*time.Millisecond, "pause of a login client answered RESOURCE_EXHAUSTED (hasher busy) without a RetryInfo, before it tries again; the login flood never pauses")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "deadline of one RPC")
	fs.IntVar(&c.serverPID, "server-pid", 0, "identityd's process id: report its CPU time per request (Linux /proc)")
	fs.IntVar(&c.redisPID, "redis-pid", 0, "redis-server's process id: report its CPU time per request")
	fs.StringVar(&c.redisAddr, "redis", "", "the store's loopback host:port: report Redis commands per second of each scenario (idle needs it)")
	fs.IntVar(&c.watchers, "watchers", 0, "WatchRevocations streams held open (and drained) during every scenario")
	fs.StringVar(&c.peer, "peer", "", "a second identityd's gRPC address on the same store (revocation)")
	fs.IntVar(&c.sessions, "sessions", 200, "sessions logged out one by one (revocation)")
	fs.StringVar(&c.serviceUser, "service-user", "", "an account with the service role: WatchRevocations streams (-watchers, revocation) are opened as it")
	fs.StringVar(&c.servicePWF, "service-password-file", "", "file holding -service-user's password")
	fs.IntVar(&c.missTokens, "miss-tokens", 100_000, "distinct access tokens of verify-miss, each verified once (made by refresh chains before the first scenario)")
	fs.Int64Var(&c.rssRequests, "rss-requests", 1_000_000, "measured requests of rss (Verify and Refresh clients side by side, identityd's VmRSS sampled every second; needs -server-pid)")
	fs.BoolVar(&c.suite, "suite", false, "run the whole benchmark suite: start identityd (-identityd) on the embedded store and then on a private redis-server (-redis-server, AOF everysec), measure every figure beside its in-run ceiling, print one table with PASS/MISS per target; -grpc, -http, -user, -password-file, -server-pid, -redis and -redis-pid are then set by the suite")
	fs.StringVar(&c.identityd, "identityd", "identityd", "the identityd binary -suite starts")
	fs.StringVar(&c.redisServer, "redis-server", "redis-server", "the redis-server binary -suite starts (empty: skip the Redis half)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { c.set[f.Name] = true })
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if c.floodClients == 0 {
		c.floodClients = c.clients
	}
	for p := range strings.SplitSeq(protos, ",") {
		p = strings.TrimSpace(p)
		if p != "grpc" && p != "rest" {
			return c, fmt.Errorf("-proto %q: want grpc, rest, or grpc,rest", protos)
		}
		if !slices.Contains(c.protos, p) {
			c.protos = append(c.protos, p)
		}
	}
	switch {
	case c.duration <= 0 && c.requests <= 0:
		return c, errors.New("set -d or -n (or both): a run must stop by itself")
	case c.duration < 0 || c.requests < 0 || c.warmup < 0:
		return c, errors.New("-d, -n and -warmup must not be negative")
	case c.missTokens < 1 || c.rssRequests < 1:
		return c, errors.New("-miss-tokens and -rss-requests must be at least 1")
	case c.clients < 1 || c.conns < 1 || c.tokens < 1 || c.floodClients < 1 || c.hashWorkers < 1 || c.sessions < 1:
		return c, errors.New("-c, -conns, -tokens, -flood-c, -hash-workers and -sessions must be at least 1")
	case c.watchers < 0:
		return c, errors.New("-watchers must not be negative")
	case c.timeout <= 0:
		return c, errors.New("-timeout must be positive")
	}
	for _, a := range []string{c.addr, c.peer, c.redisAddr, c.httpAddr} {
		if a == "" {
			continue
		}
		if err := checkLoopback(a); err != nil {
			return c, err
		}
	}
	return c, nil
}

// checkLoopback refuses any target but this machine's loopback: the tool
// generates load and must not be pointed at someone else's service.
func checkLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("%q: want host:port", addr)
	}
	switch host {
	case "127.0.0.1", "localhost", "::1":
		return nil
	}
	return fmt.Errorf("%q: only 127.0.0.1, localhost or [::1] are allowed", addr)
}

// loopbackDialer dials like net.Dialer but drops a connection whose peer is
// not a loopback address (localhost resolving elsewhere).
func loopbackDialer(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		conn.Close()
		return nil, fmt.Errorf("%s resolved to %s, which is not loopback", addr, conn.RemoteAddr())
	}
	return conn, nil
}

func readPassword(c config) (string, error) {
	if c.passwordFile == "" {
		return "", errors.New("-password-file is required for the verify, refresh and login scenarios")
	}
	b, err := os.ReadFile(c.passwordFile)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	if c.suite {
		return runSuite(ctx, c, stdout, stderr)
	}
	names, err := scenarios(c.scenario)
	if err != nil {
		return err
	}
	_, err = runScenarios(ctx, c, names, stdout)
	return err
}

// runScenarios runs the named scenarios against the server c names and
// prints a line per figure and the ratios. It returns the loader, whose
// results -suite reads.
func runScenarios(ctx context.Context, c config, names []string, stdout io.Writer) (*loader, error) {
	var err error
	l := &loader{cfg: c, out: stdout}
	if slices.ContainsFunc(names, func(n string) bool { return n != "argon2" }) {
		if slices.ContainsFunc(names, func(n string) bool { return n != "argon2" && n != "noop" && n != "idle" && n != "evalsha" }) {
			if c.user == "" {
				return nil, errors.New("-user is required for the verify, refresh and login scenarios")
			}
			if l.password, err = readPassword(c); err != nil {
				return nil, err
			}
		}
		for range c.conns {
			conn, err := grpc.NewClient("passthrough:///"+c.addr,
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithContextDialer(loopbackDialer))
			if err != nil {
				return nil, err
			}
			defer conn.Close()
			l.conns = append(l.conns, conn)
			l.apis = append(l.apis, identityv1.NewIdentityServiceClient(conn))
		}
	}
	if slices.Contains(c.protos, "rest") || slices.Contains(names, "verify-miss") {
		// verify-miss reads identityd's cache counters from /metrics.
		l.rest = newRESTClient(c.httpAddr, c.clients)
		defer l.rest.close()
	}
	fmt.Fprintf(stdout, "# identityload %s -proto %s -c %d -conns %d -d %s -n %d -warmup %s; GOMAXPROCS %d, NumCPU %d, %s\n",
		c.addr, strings.Join(c.protos, ","), c.clients, c.conns, c.duration, c.requests, c.warmup, runtime.GOMAXPROCS(0), runtime.NumCPU(),
		time.Now().UTC().Format(time.RFC3339))
	return l, l.runAll(ctx, names)
}

// scenarios parses -scenario: "all", or a comma-separated list of
// scenario names and "argon2".
func scenarios(flag string) ([]string, error) {
	if flag == "all" {
		return scenarioNames, nil
	}
	var names []string
	for n := range strings.SplitSeq(flag, ",") {
		n = strings.TrimSpace(n)
		if !slices.Contains(scenarioNames, n) && !slices.Contains(extraScenarios, n) && n != "argon2" {
			return nil, fmt.Errorf("-scenario %q: want all, or a comma-separated list of %s, argon2, %s", flag, strings.Join(scenarioNames, ", "), strings.Join(extraScenarios, ", "))
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names, nil
}
