package authn_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// This file runs identityd as a real process against a private Redis, as
// the e2e package does (same approach, kept here so authn's tests do not
// depend on e2e's internals): the binary is built once per test binary,
// on first use, from this module.

var identitydBin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if identitydBin.dir != "" {
		os.RemoveAll(identitydBin.dir)
	}
	os.Exit(code)
}

func buildIdentityd(t testing.TB) string {
	t.Helper()
	identitydBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "authn-identityd-")
		if err != nil {
			identitydBin.err = err
			return
		}
		identitydBin.dir = dir
		goBin, err := exec.LookPath("go")
		if err != nil {
			goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		}
		out := filepath.Join(dir, "identityd")
		cmd := exec.Command(goBin, "build", "-o", out, "github.com/identityd/identity/cmd/identityd")
		if b, err := cmd.CombinedOutput(); err != nil {
			identitydBin.err = fmt.Errorf("go build cmd/identityd: %v\n%s", err, b)
			return
		}
		identitydBin.path = out
	})
	if identitydBin.err != nil {
		t.Fatal(identitydBin.err)
	}
	return identitydBin.path
}

// identityd is one identityd process on loopback ports with its own Redis.
type identityd struct {
	t        testing.TB
	grpcAddr string
	httpAddr string
	redis    *testredis.Server
	args     []string
	env      []string
	password string // of the bootstrap user "alice" (role admin)

	conn *grpc.ClientConn
	api  identityv1.IdentityServiceClient

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	log    *lockedBuffer
}

func startIdentityd(t testing.TB, flags map[string]string) *identityd {
	t.Helper()
	bin := buildIdentityd(t)
	d := &identityd{t: t, redis: testredis.NewServer(t), password: "pw-" + rand.Text(), log: &lockedBuffer{}}
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(d.password), 0o600); err != nil {
		t.Fatal(err)
	}
	all := map[string]string{
		"access-ttl":           "5m",
		"login-rate-per-ip":    "0",
		"refresh-grace":        "1s",
		"shutdown-timeout":     "10s",
		"log-level":            "debug",
		"key-publish-ahead":    "1m",
		"redis-url":            d.redis.URL(),
		"refresh-idle-ttl":     "1h",
		"refresh-absolute-ttl": "2h",
	}
	maps.Copy(all, flags)
	for _, k := range slices.Sorted(maps.Keys(all)) {
		d.args = append(d.args, "--"+k, all[k])
	}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IDENTITY_") && !strings.HasPrefix(kv, "REDIS_URL=") {
			d.env = append(d.env, kv)
		}
	}
	d.env = append(d.env, "IDENTITY_BOOTSTRAP_USER=alice", "IDENTITY_BOOTSTRAP_PASSWORD_FILE="+pwFile)

	var err error
	for range 3 { // a probed free port may be taken before identityd binds it
		d.grpcAddr, d.httpAddr = freeAddr(t), freeAddr(t)
		if err = d.launch(bin); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("identityd log (tail):\n%s", d.log.tail(8<<10))
		}
	})
	d.conn = dial(t, d.grpcAddr)
	d.api = identityv1.NewIdentityServiceClient(d.conn)
	return d
}

func (d *identityd) launch(bin string) error {
	cmd := exec.Command(bin, append([]string{"--grpc-addr", d.grpcAddr, "--http-addr", d.httpAddr}, d.args...)...)
	cmd.Env = d.env
	cmd.Stdout, cmd.Stderr = d.log, d.log
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	d.mu.Lock()
	d.cmd, d.exited = cmd, exited
	d.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("identityd exited during start:\n%s", d.log.tail(4<<10))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.httpAddr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.stop()
	return fmt.Errorf("identityd not ready within 20s:\n%s", d.log.tail(4<<10))
}

// stop sends SIGTERM and waits; identityd must exit within 5s, even with
// revocation streams open (it ends them when it shuts down).
func (d *identityd) stop() {
	d.t.Helper()
	d.mu.Lock()
	cmd, exited := d.cmd, d.exited
	d.cmd = nil
	d.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-exited
		d.t.Errorf("identityd did not exit within 5s of SIGTERM")
	}
}

// restart starts identityd again on the same ports and Redis.
func (d *identityd) restart() {
	d.t.Helper()
	d.stop()
	bin := buildIdentityd(d.t)
	var err error
	for range 20 {
		if err = d.launch(bin); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.t.Fatalf("restart identityd: %v", err)
}

func (d *identityd) jwksURL() string { return "http://" + d.httpAddr + "/.well-known/jwks.json" }

func (d *identityd) login(t testing.TB, username, pw string) *identityv1.TokenPair {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	pair, err := d.api.Login(ctx, &identityv1.LoginRequest{Username: username, Password: pw})
	if err != nil {
		t.Fatalf("login %s: %v", username, err)
	}
	return pair
}

func (d *identityd) logout(t testing.TB, pair *identityv1.TokenPair) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := d.api.Logout(ctx, &identityv1.LogoutRequest{RefreshToken: pair.GetRefreshToken()}); err != nil {
		t.Fatalf("logout: %v", err)
	}
}

// store returns the session store identityd uses, for the test to act on
// it directly (as identityctl --redis-url does).
func (d *identityd) store(t testing.TB) tokenstore.Store {
	t.Helper()
	opts, err := tokenstore.ClientOptions(d.redis.URL(), nil) // as identityd builds it
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewUniversalClient(opts)
	s := tokenstore.NewRedis(rdb)
	t.Cleanup(func() { s.Close(); rdb.Close() })
	return s
}

// addUser creates a user straight in identityd's store, with cheap hash
// parameters (they travel with the hash, so identityd's logins of this
// user are cheap too: tests log in hundreds of times).
func (d *identityd) addUser(t testing.TB, name string, roles ...string) string {
	t.Helper()
	hasher, err := password.New(password.WithParams(tinyHash))
	if err != nil {
		t.Fatal(err)
	}
	pw := "pw-" + rand.Text()
	if _, err := users.New(d.store(t), hasher, time.Now, rand.Reader).Create(t.Context(), name, pw, roles); err != nil {
		t.Fatal(err)
	}
	return pw
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return s
}

var errNotYet = errors.New("not yet")
