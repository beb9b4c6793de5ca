// Package testidentityd runs identity for tests, the one way every test
// package does it.
//
// Start runs the real identityd as a process: cmd/identityd (and, on
// demand, cmd/identityctl) is built once per test binary, started on free
// loopback ports against a private redis-server (internal/testredis), the
// embedded store or a given Redis (with a master-key file, as identityd
// requires on Redis: DefaultMasterKey unless the test gives its own), and
// waited for until /readyz and gRPC health say it serves; StartRefused runs
// it where it must refuse to start. Its output is kept in a LockedBuffer; when it ends
// the harness reports what went wrong while it ran (an exit nobody asked
// for, a panic or a data race in its log, a secret the test registered with
// Remember appearing there). StartInProcess builds a server.Server in the
// test binary on loopback listeners instead, for tests that need the real
// handlers without the cost of a process.
//
// Beside them are the small helpers those tests share: FreeAddr, Eventually,
// Dial, Login/Logout, AddUser and the skip rule (SkipOrFail: a missing
// prerequisite skips the test with the reason, except under CI=true, where
// it fails).
//
// It is for tests only: not a supervisor for identityd, not a fixture
// loader, and nothing here is imported by production code.
package testidentityd

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/masterkey"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// InCI reports whether the tests run under CI=true, where a missing
// prerequisite fails a test instead of skipping it.
func InCI() bool { return os.Getenv("CI") == "true" }

// SkipOrFail skips t for a missing prerequisite, except under CI=true,
// where it fails t: CI must run every test.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf(format+" (CI=true: failing instead of skipping)", args...)
	}
	t.Skipf(format, args...)
}

// RequireTool returns the path of the program name on PATH, or skips t
// (fails it under CI=true) when there is none.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(t, "testidentityd: %s not on PATH: %v", name, err)
	}
	return p
}

// FreeAddr returns a loopback address ("127.0.0.1:port") that was free a
// moment ago. Another process may take it before the caller binds it:
// Start retries with new ports when identityd cannot listen.
func FreeAddr(t testing.TB) string {
	t.Helper()
	addr, err := freeAddr()
	if err != nil {
		t.Fatalf("testidentityd: free port: %v", err)
	}
	return addr
}

// FreePort is FreeAddr's port.
func FreePort(t testing.TB) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(FreeAddr(t))
	p, _ := strconv.Atoi(port)
	return p
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// LockedBuffer collects a process's (or a logger's) output while tests
// read it.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail is the last n bytes, marked with "…" when cut, for failure messages.
func (b *LockedBuffer) Tail(n int) string {
	s := b.String()
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

// Eventually polls cond until it returns nil, and fails t with cond's last
// error if that has not happened within timeout. The timeout only bounds
// the wait for something the test expects to happen; what the condition
// checks is up to the test, and it must not be a wall-clock margin (a
// fixed sleep or deadline that a loaded machine overruns). The first polls follow each other closely (1 ms),
// later ones back off to 50 ms.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	interval := time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", timeout, err)
			return // when t is not a *testing.T, Fatalf may return
		}
		time.Sleep(interval)
		interval = min(2*interval, 50*time.Millisecond)
	}
}

// Dial returns a plaintext gRPC client connection to addr, closed when t
// ends. It does not connect until first used.
func Dial(t testing.TB, addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatalf("testidentityd: dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Client is a gRPC client of one identity, process or in-process.
type Client struct {
	Conn *grpc.ClientConn
	API  identityv1.IdentityServiceClient
}

func newClient(conn *grpc.ClientConn) Client {
	return Client{Conn: conn, API: identityv1.NewIdentityServiceClient(conn)}
}

// Login logs username in over gRPC and fails t unless it succeeds. Like a
// real client, it waits and tries again when identity refuses the login
// as too many at once (RESOURCE_EXHAUSTED with a retry delay): on a busy
// machine a burst of logins outgrows the hashing wait budget, and that
// refusal is the service working, not the test's subject.
func (c Client) Login(t testing.TB, username, pw string) *identityv1.TokenPair {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		pair, err := c.API.Login(ctx, &identityv1.LoginRequest{Username: username, Password: pw})
		cancel()
		if err == nil {
			return pair
		}
		wait, busy := retryDelay(err)
		if !busy || time.Now().Add(wait).After(deadline) {
			t.Fatalf("login %s: %v", username, err)
		}
		time.Sleep(wait)
	}
}

// retryDelay says whether err is identity's "too many logins at once"
// refusal, and how long it asks the client to wait.
func retryDelay(err error) (time.Duration, bool) {
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		return 0, false
	}
	wait := 100 * time.Millisecond
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
			wait = ri.GetRetryDelay().AsDuration()
		}
	}
	return wait, true
}

// Logout ends pair's session over gRPC and fails t unless it succeeds.
func (c Client) Logout(t testing.TB, pair *identityv1.TokenPair) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := c.API.Logout(ctx, &identityv1.LogoutRequest{RefreshToken: pair.GetRefreshToken()}); err != nil {
		t.Fatalf("logout: %v", err)
	}
}

// CheapHash are argon2id parameters that make logins cheap in tests. The
// parameters travel with each stored hash, so identity checks a password
// hashed with them at their cost. An identityd whose own parameters differ
// (a process: OWASP's) rehashes it at the user's first login, so later
// logins of that user cost a full hash; the in-process server hashes with
// CheapHash itself and never does.
var CheapHash = password.Params{Memory: 8, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// AddUser creates a user straight in store (as `identityctl --redis-url
// … user add` does, but hashed with CheapHash) and returns its password:
// pw, or a random one when pw is empty.
func AddUser(t testing.TB, store tokenstore.Store, name, pw string, roles ...string) string {
	t.Helper()
	hasher, err := password.New(password.WithParams(CheapHash))
	if err != nil {
		t.Fatal(err)
	}
	if pw == "" {
		pw = RandomPassword()
	}
	if _, err := users.New(store, hasher, time.Now, rand.Reader).Create(t.Context(), name, pw, roles); err != nil {
		t.Fatalf("testidentityd: create user %s: %v", name, err)
	}
	return pw
}

// RandomPassword is a fresh password for a test user.
func RandomPassword() string { return "pw-" + rand.Text() }

// CleanEnv is the test's environment without anything that would configure
// identityd or identityctl behind the flags' back (IDENTITY_*, REDIS_URL,
// and OTEL_*, which would turn tracing on).
func CleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "IDENTITY_") || strings.HasPrefix(kv, "REDIS_URL=") || strings.HasPrefix(kv, "OTEL_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// DefaultMasterKey is the master key (base64 of 32 bytes, the form of
// `openssl rand -base64 32`) that Start and StartInProcess seal the keyring
// in Redis with unless told otherwise. It is fixed, not random, so that
// every identityd of every test binary sharing a Redis (REDIS_URL) opens the
// keyring the others sealed; it is a test key, known to anyone who reads
// this file.
func DefaultMasterKey() string {
	sum := sha256.Sum256([]byte("testidentityd: the default master key of tests"))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// WriteMasterKeyFile writes a master-key file of lines (the first seals) in
// a directory of t's and returns its path.
func WriteMasterKeyFile(t testing.TB, lines ...string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(f, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// NewMasterKey returns a fresh master key, base64.
func NewMasterKey() string {
	b := make([]byte, masterkey.Size)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func errorf(format string, args ...any) error { return fmt.Errorf("testidentityd: "+format, args...) }
