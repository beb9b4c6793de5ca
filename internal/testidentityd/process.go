package testidentityd

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/internal/tlsfiles"
	"github.com/identityd/identity/masterkey"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
)

// Option configures Start.
type Option func(*options)

type options struct {
	embedded     bool
	redis        *testredis.Server
	redisURL     string
	redisAddrs   []string // --redis-addrs: cluster seeds, or sentinels with sentinelMaster
	sentinel     string   // --redis-sentinel-master
	flags        map[string]string
	env          []string
	keysDir      string
	username     string
	password     string
	roles        []string
	readyTimeout time.Duration
	stopTimeout  time.Duration
	noReadyWait  bool
	tls          *TLS
	redisCAFile  string
	// masterKey is the key file's lines; nil: DefaultMasterKey.
	masterKey   []string
	noMasterKey bool
}

// WithFlags sets identityd flags (name without dashes → value), over
// identityd's own defaults and earlier WithFlags. Every flag is passed as
// --name=value, so boolean flags take "true" or "false".
func WithFlags(flags map[string]string) Option {
	return func(o *options) { maps.Copy(o.flags, flags) }
}

// WithFlag sets one flag, as WithFlags.
func WithFlag(name, value string) Option {
	return func(o *options) { o.flags[name] = value }
}

// WithEnv adds environment variables ("NAME=value") to identityd's. Its
// environment is otherwise the test's, less IDENTITY_*, REDIS_URL and OTEL_*.
func WithEnv(kv ...string) Option {
	return func(o *options) { o.env = append(o.env, kv...) }
}

// WithEmbeddedStore runs identityd on its in-memory store (no --redis-url).
func WithEmbeddedStore() Option {
	return func(o *options) { o.setStore(true, nil, "", nil, "") }
}

// WithRedis runs identityd on srv, for tests that share one Redis between
// instances or stop it under identityd. Without a store option, identityd
// gets a private redis-server of its own (testredis.NewServer).
func WithRedis(srv *testredis.Server) Option {
	return func(o *options) { o.setStore(false, srv, "", nil, "") }
}

// WithRedisURL runs identityd on the Redis at url, which the test owns.
func WithRedisURL(url string) Option {
	return func(o *options) { o.setStore(false, nil, url, nil, "") }
}

// WithRedisCluster runs identityd on the Redis Cluster c (--redis-addrs
// with every node as a seed).
func WithRedisCluster(c *testredis.Cluster) Option {
	return func(o *options) { o.setStore(false, nil, "", c.Addrs(), "") }
}

// WithRedisSentinel runs identityd on the primary the sentinels of s watch
// (--redis-addrs with the sentinels, --redis-sentinel-master).
func WithRedisSentinel(s *testredis.Sentinel) Option {
	return func(o *options) { o.setStore(false, nil, "", s.SentinelAddrs(), s.MasterName()) }
}

func (o *options) setStore(embedded bool, srv *testredis.Server, url string, addrs []string, sentinel string) {
	o.embedded, o.redis, o.redisURL, o.redisAddrs, o.sentinel = embedded, srv, url, addrs, sentinel
}

// WithKeysDir passes --keys-dir: identityd signs with the PEM keys in dir.
func WithKeysDir(dir string) Option {
	return func(o *options) { o.keysDir = dir }
}

// WithBootstrapUser names the bootstrap user (default "alice") and its
// password (default: a random one). An empty username starts identityd
// without one.
func WithBootstrapUser(username, pw string) Option {
	return func(o *options) { o.username, o.password = username, pw }
}

// WithBootstrapRoles sets the bootstrap user's roles (identityd's default:
// admin).
func WithBootstrapRoles(roles ...string) Option {
	return func(o *options) { o.roles = roles }
}

// WithTLS has identityd serve TLS with c's files (and require client
// certificates on gRPC with c.ClientCAFile); the harness, Client and HTTP
// reach it with c.Client. BaseURL is then https://.
func WithTLS(c TLS) Option {
	return func(o *options) { o.tls = &c }
}

// WithRedisCAFile passes --redis-ca-file (for a rediss:// store, see
// testredis.WithTLS); Store and Identityctl use it too.
func WithRedisCAFile(file string) Option {
	return func(o *options) { o.redisCAFile = file }
}

// WithMasterKey gives identityd a master-key file of these lines (base64
// keys, the first seals) instead of DefaultMasterKey.
func WithMasterKey(lines ...string) Option {
	return func(o *options) { o.masterKey, o.noMasterKey = lines, false }
}

// WithoutMasterKey starts identityd on Redis without IDENTITY_MASTER_KEY_FILE:
// it then refuses to start unless given --insecure-plaintext-keys.
func WithoutMasterKey() Option {
	return func(o *options) { o.masterKey, o.noMasterKey = nil, true }
}

// WithStopTimeout is how long Stop waits after SIGTERM before it kills
// identityd and fails the test (default 5s).
func WithStopTimeout(d time.Duration) Option {
	return func(o *options) { o.stopTimeout = d }
}

// WithoutReadyWait makes Start (and Restart) return as soon as identityd
// holds its ports (its "identityd listening" line), ready or not: for tests
// of a start with the store unreachable. WaitReady then waits for it to
// serve.
func WithoutReadyWait() Option {
	return func(o *options) { o.noReadyWait = true }
}

// Process is one identityd process on loopback ports.
type Process struct {
	// Client is a connection to GRPCAddr, closed when the test ends; it
	// reconnects by itself across Restart.
	Client
	GRPCAddr string // host:port
	HTTPAddr string // host:port
	BaseURL  string // http://HTTPAddr, or https:// under WithTLS
	// HTTP is a client of BaseURL (under WithTLS: trusting its CA).
	HTTP *http.Client
	// ClientTLS is the harness's TLS client configuration (WithTLS); nil
	// on plaintext.
	ClientTLS *tls.Config
	// RedisURL is the store's URL; empty on the embedded store, a
	// cluster or Sentinel.
	RedisURL string
	// RedisAddrs are the cluster's seeds or the sentinels' addresses, and
	// SentinelMaster the sentinels' name of the primary (WithRedisCluster,
	// WithRedisSentinel).
	RedisAddrs     []string
	SentinelMaster string
	// RedisCAFile is WithRedisCAFile's file.
	RedisCAFile string
	// Redis is the private redis-server Start made, or the one given with
	// WithRedis; nil otherwise.
	Redis *testredis.Server
	// Username and Password are the bootstrap user's.
	Username string
	Password string
	// MasterKeyFile is identityd's IDENTITY_MASTER_KEY_FILE and MasterKeys
	// its keys; "" and nil on the embedded store, with a keys directory or
	// WithoutMasterKey.
	MasterKeyFile string
	MasterKeys    *masterkey.Keys
	// Log holds identityd's stdout and stderr, across restarts.
	Log *LockedBuffer

	t           testing.TB
	bin         string
	args        []string // without the listen addresses
	env         []string
	stopTimeout time.Duration
	noReadyWait bool

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	secrets []string
}

// listeningLine is what identityd logs once it holds both ports: a /readyz
// answer before it could come from another process that took the port.
// servingLine is what it logs once it serves (its store answered and its
// keys loaded); until then it answers as a service without its store.
const (
	listeningLine = "identityd listening"
	servingLine   = "identityd serving"
)

// refreshTokenPattern finds a refresh token in a log.
var refreshTokenPattern = regexp.MustCompile(`rt1\.[A-Za-z0-9_-]{8,}\.`)

// Start builds identityd if needed, starts it for the duration of t and
// waits until it serves. When t ends it is stopped and its log checked: a
// panic or data race in it, a refresh token, or a secret registered with
// Remember (the bootstrap password is) fails t, and a failed t gets the
// log's tail.
func Start(t testing.TB, opts ...Option) *Process {
	t.Helper()
	p, o := prepare(t, opts)
	t.Cleanup(p.finish)
	var err error
	for range 3 { // a probed free port can be taken before identityd binds it
		p.GRPCAddr, p.HTTPAddr = FreeAddr(t), FreeAddr(t)
		p.BaseURL = p.client().scheme() + p.HTTPAddr
		var exited bool
		if exited, err = p.launch(o.readyTimeout); err == nil || !exited {
			break
		}
	}
	if err != nil {
		t.Fatalf("testidentityd: start identityd: %v", err)
	}
	p.Client = newClient(Dial(t, p.GRPCAddr, p.DialOption()))
	return p
}

func (p *Process) client() clientSide { return clientSide{p.ClientTLS} }

// DialOption is the transport the harness reaches GRPCAddr with: TLS with
// ClientTLS under WithTLS, plaintext otherwise.
func (p *Process) DialOption() grpc.DialOption { return p.client().dialOption() }

// StartRefused runs identityd with opts as Start would, for a test of a
// configuration it must refuse: it waits for identityd to exit and returns
// its output. It fails t if identityd serves instead, exits with status 0,
// has not exited within the ready timeout, or shows a remembered secret
// (the master key, the bootstrap password) in its output.
func StartRefused(t testing.TB, opts ...Option) string {
	t.Helper()
	p, o := prepare(t, opts)
	p.GRPCAddr, p.HTTPAddr = FreeAddr(t), FreeAddr(t)
	p.BaseURL = p.client().scheme() + p.HTTPAddr
	cmd := exec.Command(p.bin, append([]string{"--grpc-addr=" + p.GRPCAddr, "--http-addr=" + p.HTTPAddr}, p.args...)...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = p.Log, p.Log
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(o.readyTimeout):
		cmd.Process.Kill()
		<-done
		t.Fatalf("testidentityd: identityd did not exit within %v; log:\n%s", o.readyTimeout, p.Log.Tail(8<<10))
	}
	log := p.Log.String()
	switch {
	case strings.Contains(log, servingLine):
		t.Errorf("testidentityd: identityd started where it must refuse to; log:\n%s", p.Log.Tail(8<<10))
	case err == nil:
		t.Errorf("testidentityd: identityd exited with status 0 where it must refuse to start; log:\n%s", p.Log.Tail(8<<10))
	}
	for _, problem := range p.Problems() {
		t.Errorf("testidentityd: identityd: %s", problem)
	}
	return log
}

// prepare builds the Process that Start and StartRefused run: its store,
// flags, environment and files, not yet its ports.
func prepare(t testing.TB, opts []Option) (*Process, options) {
	t.Helper()
	o := options{
		flags:        map[string]string{},
		username:     "alice",
		readyTimeout: 20 * time.Second,
		stopTimeout:  5 * time.Second,
	}
	for _, opt := range opts {
		opt(&o)
	}
	p := &Process{
		Username:    o.username,
		Password:    o.password,
		RedisCAFile: o.redisCAFile,
		Log:         &LockedBuffer{},
		t:           t,
		bin:         IdentitydBinary(t),
		stopTimeout: o.stopTimeout,
		noReadyWait: o.noReadyWait,
	}
	switch {
	case o.embedded:
	case len(o.redisAddrs) > 0:
		p.RedisAddrs, p.SentinelMaster = o.redisAddrs, o.sentinel
		p.args = append(p.args, p.storeArgs()...)
	case o.redisURL != "":
		p.RedisURL = o.redisURL
	default:
		if o.redis == nil {
			o.redis = testredis.NewServer(t)
		}
		p.Redis, p.RedisURL = o.redis, o.redis.URL()
	}
	if p.RedisURL != "" {
		p.args = append(p.args, p.storeArgs()...)
	}
	if o.keysDir != "" {
		p.args = append(p.args, "--keys-dir="+o.keysDir)
	}
	if o.redisCAFile != "" {
		p.args = append(p.args, "--redis-ca-file="+o.redisCAFile)
	}
	if o.tls != nil {
		p.ClientTLS = o.tls.Client
		for name, v := range o.tls.flags() {
			if _, set := o.flags[name]; !set {
				o.flags[name] = v
			}
		}
	}
	p.HTTP = p.client().httpClient()
	for _, name := range slices.Sorted(maps.Keys(o.flags)) {
		p.args = append(p.args, "--"+name+"="+o.flags[name])
	}
	p.env = CleanEnv()
	if p.Username != "" {
		if p.Password == "" {
			p.Password = RandomPassword()
		}
		pwFile := filepath.Join(t.TempDir(), "bootstrap-password")
		if err := os.WriteFile(pwFile, []byte(p.Password), 0o600); err != nil {
			t.Fatal(err)
		}
		p.env = append(p.env, "IDENTITY_BOOTSTRAP_USER="+p.Username, "IDENTITY_BOOTSTRAP_PASSWORD_FILE="+pwFile)
		if o.roles != nil {
			p.env = append(p.env, "IDENTITY_BOOTSTRAP_ROLES="+strings.Join(o.roles, ","))
		}
		p.secrets = append(p.secrets, p.Password)
	}
	// On Redis the keyring is sealed under a master key, as identityd
	// requires: the binary-wide default unless the test gives its own (so
	// instances sharing a Redis share a key too).
	if (p.RedisURL != "" || len(p.RedisAddrs) > 0) && o.keysDir == "" && !o.noMasterKey {
		lines := o.masterKey
		if lines == nil {
			lines = []string{DefaultMasterKey()}
		}
		p.MasterKeyFile = WriteMasterKeyFile(t, lines...)
		keys, err := masterkey.LoadFile(p.MasterKeyFile)
		if err != nil {
			t.Fatalf("testidentityd: master key: %v", err)
		}
		p.MasterKeys = keys
		p.env = append(p.env, "IDENTITY_MASTER_KEY_FILE="+p.MasterKeyFile)
		p.secrets = append(p.secrets, lines...)
	}
	p.env = append(p.env, o.env...)
	return p, o
}

// launch starts identityd on p's addresses and waits until it serves. On
// failure it says whether identityd exited during the start (so another
// try may succeed) and leaves no process running.
func (p *Process) launch(timeout time.Duration) (exited bool, err error) {
	args := append([]string{"--grpc-addr=" + p.GRPCAddr, "--http-addr=" + p.HTTPAddr}, p.args...)
	logFrom := len(p.Log.String())
	cmd := exec.Command(p.bin, args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = p.Log, p.Log
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return false, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, done
	p.mu.Unlock()

	err = p.waitReady(timeout, logFrom, done, p.noReadyWait)
	if err == nil {
		return false, nil
	}
	select {
	case <-done:
		exited = true
	default:
	}
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	cmd.Process.Kill()
	<-done
	return exited, fmt.Errorf("%v\n--- identityd %s: log (tail) ---\n%s", err, strings.Join(args, " "), p.Log.Tail(8<<10))
}

// WaitReady waits until identityd serves (/readyz 200, gRPC health
// SERVING), and fails t if it does not within timeout or exits.
func (p *Process) WaitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	if err := p.waitReady(timeout, 0, exited, false); err != nil {
		t.Fatalf("testidentityd: %v\n--- identityd log (tail) ---\n%s", err, p.Log.Tail(8<<10))
	}
}

// waitReady waits until identityd logged that it listens (it holds the
// ports) and, unless listeningOnly, /readyz answers 200 and gRPC health
// says SERVING.
func (p *Process) waitReady(timeout time.Duration, logFrom int, exited <-chan struct{}, listeningOnly bool) error {
	conn, err := grpc.NewClient(p.GRPCAddr, p.DialOption())
	if err != nil {
		return err
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	ready := func(ctx context.Context) error {
		if !strings.Contains(p.Log.String()[logFrom:], listeningLine) {
			return fmt.Errorf("no %q in its log yet", listeningLine)
		}
		if listeningOnly {
			return nil
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.BaseURL+"/readyz", nil)
		resp, err := p.HTTP.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /readyz: %s", resp.Status)
		}
		h, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return fmt.Errorf("gRPC health: %w", err)
		}
		if h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("gRPC health: %v", h.GetStatus())
		}
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-exited:
			return errorf("identityd exited during start")
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := ready(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errorf("identityd not ready within %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop ends identityd: SIGTERM, and SIGKILL if it has not exited within the
// stop timeout (which fails the test, as does finding that it had exited
// on its own). Stopping a stopped identityd does nothing.
func (p *Process) Stop() {
	p.t.Helper()
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		p.t.Errorf("testidentityd: identityd exited on its own before the test stopped it (%v)", cmd.ProcessState)
		return
	default:
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(p.stopTimeout):
		// SIGQUIT first: Go's runtime writes every goroutine's stack to
		// the log, which the failure then shows: where it hung.
		before := len(p.Log.String())
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		dump := p.Log.String()[before:]
		if len(dump) > 64<<10 {
			dump = dump[:64<<10] + "\n…"
		}
		p.t.Errorf("testidentityd: identityd did not exit within %v of SIGTERM; its goroutines at SIGQUIT:\n%s", p.stopTimeout, dump)
	}
}

// Terminate sends identityd SIGTERM and waits up to timeout for it to
// exit, for a test of the shutdown itself: it returns how identityd
// exited, or nil (and fails the test) if it had to be killed. The harness
// does not stop it again.
func (p *Process) Terminate(timeout time.Duration) *os.ProcessState {
	p.t.Helper()
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		p.t.Errorf("testidentityd: Terminate: identityd is not running")
		return nil
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return cmd.ProcessState
	case <-time.After(timeout):
		cmd.Process.Kill()
		<-exited
		p.t.Errorf("testidentityd: identityd did not exit within %v of SIGTERM; killed", timeout)
		return nil
	}
}

// PID is the running identityd's process id (0 when it is stopped).
func (p *Process) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Restart stops identityd and starts it again on the same ports, flags and
// store, and waits until it serves.
func (p *Process) Restart() {
	p.t.Helper()
	p.Stop()
	var err error
	// The ports were ours a moment ago; another process may hold one
	// briefly, so try a few times.
	for range 20 {
		var exited bool
		if exited, err = p.launch(20 * time.Second); err == nil || !exited {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("testidentityd: restart identityd: %v", err)
	}
}

// Remember registers secrets (passwords, tokens) that must never appear in
// identityd's log; the log is checked when the test ends. Secrets shorter
// than 8 bytes are not checked (they would match by chance).
func (p *Process) Remember(secrets ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.secrets = append(p.secrets, secrets...)
}

// Problems lists what is wrong in identityd's log so far: a panic, a data
// race, a refresh token, a remembered secret.
func (p *Process) Problems() []string {
	p.mu.Lock()
	secrets := slices.Clone(p.secrets)
	p.mu.Unlock()
	log := p.Log.String()
	var problems []string
	for _, i := range secretsIn(log, secrets) {
		// Named by its place and size: the failure output must not hold a
		// piece of the secret either.
		problems = append(problems, fmt.Sprintf("a secret (#%d of those remembered, %d bytes) appears in its log", i+1, len(secrets[i])))
	}
	if refreshTokenPattern.MatchString(log) {
		problems = append(problems, "a refresh token appears in its log")
	}
	for _, bad := range []string{"panic:", "DATA RACE"} {
		if strings.Contains(log, bad) {
			problems = append(problems, fmt.Sprintf("its log contains %q", bad))
		}
	}
	return problems
}

// secretsIn returns the indexes, in order, of the secrets (those of 8 bytes
// or more) that occur in log. It reads log once, whatever the number of
// secrets: a load test remembers tens of thousands of tokens and its log
// runs to megabytes, where a strings.Contains per secret took minutes.
// Each secret is filed under its last 8 bytes (a JWT's first bytes are
// the header every token shares; its last are the signature's); every
// 8-byte window of the log that files a secret is compared with that
// secret in full.
func secretsIn(log string, secrets []string) []int {
	const k = 8
	bySuffix := make(map[string][]int)
	for i, s := range secrets {
		if len(s) >= k {
			bySuffix[s[len(s)-k:]] = append(bySuffix[s[len(s)-k:]], i)
		}
	}
	found := make(map[int]bool)
	if len(bySuffix) > 0 {
		for end := k; end <= len(log); end++ {
			for _, i := range bySuffix[log[end-k:end]] {
				if strings.HasSuffix(log[:end], secrets[i]) {
					found[i] = true
				}
			}
		}
	}
	return slices.Sorted(maps.Keys(found))
}

// finish runs when the test ends: stop, check the log, show its tail if
// the test failed.
func (p *Process) finish() {
	p.Stop()
	for _, problem := range p.Problems() {
		p.t.Errorf("testidentityd: identityd: %s", problem)
	}
	if p.t.Failed() {
		p.t.Logf("identityd log (tail):\n%s", p.Log.Tail(16<<10))
	}
}

// JWKSURL is identityd's JWKS endpoint.
func (p *Process) JWKSURL() string { return p.BaseURL + "/.well-known/jwks.json" }

// storeArgs are the flags that name identityd's Redis, for identityd and
// identityctl alike.
func (p *Process) storeArgs() []string {
	switch {
	case p.SentinelMaster != "":
		return []string{"--redis-addrs=" + strings.Join(p.RedisAddrs, ","), "--redis-sentinel-master=" + p.SentinelMaster}
	case len(p.RedisAddrs) > 0:
		return []string{"--redis-addrs=" + strings.Join(p.RedisAddrs, ",")}
	case p.RedisURL != "":
		return []string{"--redis-url=" + p.RedisURL}
	}
	return nil
}

// Store opens identityd's Redis store for the test to act on directly, as
// `identityctl --redis-url` does; closed when t ends.
func (p *Process) Store(t testing.TB) tokenstore.Store {
	t.Helper()
	var opts *redis.UniversalOptions
	var err error
	switch { // as identityd builds it
	case p.SentinelMaster != "":
		opts, err = tokenstore.SentinelClientOptions(p.SentinelMaster, p.RedisAddrs)
	case len(p.RedisAddrs) > 0:
		opts, err = tokenstore.ClientOptions("", p.RedisAddrs)
	case p.RedisURL != "":
		opts, err = tokenstore.ClientOptions(p.RedisURL, nil)
	default:
		t.Fatal("testidentityd: Store needs a Redis-backed identityd")
	}
	if err != nil {
		t.Fatal(err)
	}
	if p.RedisCAFile != "" {
		pool, err := tlsfiles.CertPool(p.RedisCAFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := tokenstore.SetRootCAs(opts, pool); err != nil {
			t.Fatal(err)
		}
	}
	rdb := tokenstore.NewClient(opts)
	s := tokenstore.NewRedis(rdb)
	t.Cleanup(func() { s.Close(); rdb.Close() })
	return s
}

// StoredKeyring opens the keyring in identityd's Redis with its master key
// (or in the clear, without one): the real signing keys and refresh secret,
// for tests that check they are nowhere else.
func (p *Process) StoredKeyring(t testing.TB) token.Keyring {
	t.Helper()
	store, ok := p.Store(t).(*tokenstore.Redis)
	if !ok {
		t.Fatal("testidentityd: StoredKeyring needs a Redis store")
	}
	raw, err := store.Keyring(t.Context())
	if err != nil || raw == nil {
		t.Fatalf("testidentityd: read the keyring: %v (present: %t)", err, raw != nil)
	}
	s := token.Sealing{Name: store.KeyringKey()}
	if p.MasterKeys != nil {
		s.Sealer = p.MasterKeys
	}
	ring, err := s.Open(raw)
	if err != nil {
		t.Fatalf("testidentityd: open the keyring: %v", err)
	}
	return ring
}

// Identityctl runs `identityctl --redis-url <the store> args...` (or the
// cluster's or sentinels' flags) with stdin as its input and returns its
// combined output; an error exit fails t. It has identityd's master key
// (IDENTITY_MASTER_KEY_FILE).
func (p *Process) Identityctl(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	storeArgs := p.storeArgs()
	if storeArgs == nil {
		t.Fatal("testidentityd: Identityctl needs a Redis-backed identityd")
	}
	global := storeArgs
	if p.RedisCAFile != "" {
		global = append(global, "--redis-ca-file", p.RedisCAFile)
	}
	cmd := exec.Command(IdentityctlBinary(t), append(global, args...)...)
	cmd.Env = CleanEnv()
	if p.MasterKeyFile != "" {
		cmd.Env = append(cmd.Env, "IDENTITY_MASTER_KEY_FILE="+p.MasterKeyFile)
	}
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("identityctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ScriptEnv describes p to a script the test runs (node, python, a shell):
// TESTIDENTITYD_BIN, _GRPC_ADDR, _HTTP_ADDR, _BASE_URL, _REDIS_URL,
// _USERNAME and _PASSWORD.
func (p *Process) ScriptEnv() []string {
	return []string{
		"TESTIDENTITYD_BIN=" + p.bin,
		"TESTIDENTITYD_GRPC_ADDR=" + p.GRPCAddr,
		"TESTIDENTITYD_HTTP_ADDR=" + p.HTTPAddr,
		"TESTIDENTITYD_BASE_URL=" + p.BaseURL,
		"TESTIDENTITYD_REDIS_URL=" + p.RedisURL,
		"TESTIDENTITYD_USERNAME=" + p.Username,
		"TESTIDENTITYD_PASSWORD=" + p.Password,
	}
}
