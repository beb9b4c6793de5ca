package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
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

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testredis"
)

// binaries built once by TestMain.
var bins struct {
	dir         string
	identityd   string
	identityctl string // empty when cmd/identityctl is absent or did not build
	ctlErr      error  // why identityctl is unavailable, if it is
	err         error  // identityd could not be built
	missing     bool   // cmd/identityd does not exist yet
}

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, "e2e:", err)
			return 1
		}
		defer os.RemoveAll(dir)
		buildBinaries(dir)

		return m.Run()
	}()
	os.Exit(code)
}

func buildBinaries(dir string) {
	bins.dir = dir
	if prebuilt := os.Getenv("E2E_BIN_DIR"); prebuilt != "" {
		bins.identityd = filepath.Join(prebuilt, "identityd")
		if _, bins.err = os.Stat(bins.identityd); bins.err != nil {
			return
		}
		bins.identityctl = filepath.Join(prebuilt, "identityctl")
		if _, bins.ctlErr = os.Stat(bins.identityctl); bins.ctlErr != nil {
			bins.identityctl = ""
		}
		return
	}
	root, err := moduleRoot()
	if err != nil {
		bins.err = err
		return
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	build := func(pkg string) (string, error) {
		out := filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command(goBin, "build", "-o", out, "./"+pkg)
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build ./%s: %v\n%s", pkg, err, b)
		}
		return out, nil
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "identityd")); err != nil {
		bins.missing = true
		bins.err = errors.New("cmd/identityd does not exist yet")
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { bins.identityd, bins.err = build("cmd/identityd") })
	wg.Go(func() {
		if _, err := os.Stat(filepath.Join(root, "cmd", "identityctl")); err != nil {
			bins.ctlErr = errors.New("cmd/identityctl does not exist yet")
			return
		}
		bins.identityctl, bins.ctlErr = build("cmd/identityctl")
	})
	wg.Wait()
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the e2e directory")
		}
		dir = parent
	}
}

func inCI() bool { return os.Getenv("CI") == "true" }

// skipOrFail skips a test for a missing prerequisite, except under CI=true,
// where a missing prerequisite is a failure (DESIGN.md, Running).
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if inCI() {
		t.Fatalf(format+" (CI=true: failing instead of skipping)", args...)
	}
	t.Skipf(format, args...)
}

func requireIdentityd(t testing.TB) {
	t.Helper()
	switch {
	case bins.missing:
		skipOrFail(t, "e2e: %v", bins.err)
	case bins.err != nil:
		t.Fatalf("e2e: %v", bins.err)
	}
}

// opts describe one identityd run. Flags not named keep the defaults below.
type opts struct {
	embedded bool              // no --redis-url: the in-memory store
	redis    *testredis.Server // use this Redis; nil starts a private one
	flags    map[string]string // flag name (no dashes) → value, over the defaults
	username string            // bootstrap user; default "alice"
	password string            // bootstrap password; default random
}

func defaultFlags() map[string]string {
	return map[string]string{
		"access-ttl":              "1m",
		"refresh-grace":           "1s",
		"refresh-idle-ttl":        "1h",
		"refresh-absolute-ttl":    "2h",
		"leeway":                  "0s",
		"issuer":                  "identity",
		"audience":                "identity",
		"login-rate-per-ip":       "100000",
		"login-failures-per-user": "10",
	}
}

// identityd is one running server process and clients for it.
type identityd struct {
	grpcAddr string
	httpAddr string
	baseURL  string
	redisURL string // empty on the embedded store
	username string
	password string
	flags    map[string]string

	cmd    *exec.Cmd
	exited chan struct{}
	stderr *lockedBuffer
	tmpDir string
	conn   *grpc.ClientConn
	api    identityv1.IdentityServiceClient

	mu      sync.Mutex
	stopped bool
	secrets []string // passwords and tokens that must never appear in its log
}

// startIdentityd runs identityd for the duration of t (a private Redis
// included unless o says otherwise) and dumps its stderr if t fails.
func startIdentityd(t *testing.T, o opts) *identityd {
	t.Helper()
	requireIdentityd(t)
	redisURL := ""
	if !o.embedded {
		if o.redis == nil {
			o.redis = testredis.NewServer(t)
		}
		redisURL = o.redis.URL()
	}
	d, err := launch(o, redisURL)
	if err != nil {
		t.Fatalf("start identityd: %v", err)
	}
	t.Cleanup(func() {
		for _, p := range d.stop() {
			t.Errorf("identityd: %s", p)
		}
		if t.Failed() {
			t.Logf("identityd stderr (tail):\n%s", d.stderrTail())
		}
	})
	return d
}

func launch(o opts, redisURL string) (*identityd, error) {
	if o.username == "" {
		o.username = "alice"
	}
	if o.password == "" {
		o.password = "pw-" + randomHex(12)
	}
	flags := defaultFlags()
	maps.Copy(flags, o.flags)

	var lastErr error
	for range 3 { // a probed free port can be taken before identityd binds it
		d, err := launchOnce(o, redisURL, flags)
		if err == nil {
			return d, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

func launchOnce(o opts, redisURL string, flags map[string]string) (*identityd, error) {
	tmp, err := os.MkdirTemp("", "e2e-identityd-")
	if err != nil {
		return nil, err
	}
	pwFile := filepath.Join(tmp, "bootstrap-password")
	if err := os.WriteFile(pwFile, []byte(o.password), 0o600); err != nil {
		return nil, err
	}
	grpcPort, err1 := freePort()
	httpPort, err2 := freePort()
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	d := &identityd{
		grpcAddr: fmt.Sprintf("127.0.0.1:%d", grpcPort),
		httpAddr: fmt.Sprintf("127.0.0.1:%d", httpPort),
		redisURL: redisURL,
		username: o.username,
		password: o.password,
		flags:    flags,
		exited:   make(chan struct{}),
		stderr:   &lockedBuffer{},
		tmpDir:   tmp,
		secrets:  []string{o.password},
	}
	d.baseURL = "http://" + d.httpAddr

	args := []string{"--grpc-addr", d.grpcAddr, "--http-addr", d.httpAddr}
	if redisURL != "" {
		args = append(args, "--redis-url", redisURL)
	}
	for _, name := range slices.Sorted(maps.Keys(flags)) {
		args = append(args, "--"+name, flags[name])
	}
	d.cmd = exec.Command(bins.identityd, args...)
	d.cmd.Env = append(cleanEnv(),
		"IDENTITY_BOOTSTRAP_USER="+o.username,
		"IDENTITY_BOOTSTRAP_PASSWORD_FILE="+pwFile,
	)
	d.cmd.Stdout = d.stderr // nothing is expected on stdout; keep it with the log
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	go func() { d.cmd.Wait(); close(d.exited) }()

	err = d.waitReady(20 * time.Second)
	if err == nil {
		// A /readyz answer from another process that took the port would
		// look the same; this one must still be running.
		select {
		case <-d.exited:
			err = fmt.Errorf("identityd exited right after /readyz answered (%v)", d.cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err != nil {
		d.stop()
		return nil, fmt.Errorf("%v\n--- identityd %s stderr ---\n%s", err, strings.Join(args, " "), d.stderrTail())
	}
	d.conn, err = grpc.NewClient(d.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		d.stop()
		return nil, err
	}
	d.api = identityv1.NewIdentityServiceClient(d.conn)
	return d, nil
}

// cleanEnv is the test's environment without anything that would configure
// identityd behind the flags' back.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "IDENTITY_") || strings.HasPrefix(kv, "REDIS_URL=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func (d *identityd) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			return fmt.Errorf("identityd exited during start (%v)", d.cmd.ProcessState)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.baseURL+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			last = resp.Status
			if resp.StatusCode == http.StatusOK {
				cancel()
				return nil
			}
		} else {
			last = err.Error()
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("GET /readyz not 200 after %v (last: %s)", timeout, last)
}

// stop ends the process and reports what went wrong while it ran: an exit
// before it was asked to stop (a crash), or a secret in its log.
func (d *identityd) stop() (problems []string) {
	d.mu.Lock()
	if d.stopped {
		d.mu.Unlock()
		return nil
	}
	d.stopped = true
	secrets := slices.Clone(d.secrets)
	d.mu.Unlock()

	select {
	case <-d.exited:
		problems = append(problems, fmt.Sprintf("exited on its own before the tests stopped it (%v)", d.cmd.ProcessState))
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(5 * time.Second):
			problems = append(problems, "did not exit within 5s of SIGTERM; killed")
			d.cmd.Process.Kill()
			<-d.exited
		}
	}
	if d.conn != nil {
		d.conn.Close()
	}
	os.RemoveAll(d.tmpDir)

	log := d.stderr.String()
	for _, s := range secrets {
		if len(s) >= 8 && strings.Contains(log, s) {
			problems = append(problems, fmt.Sprintf("a secret (password or token, %d bytes, starting %.6q) appears in its log", len(s), s))
		}
	}
	for _, bad := range []string{"panic:", "DATA RACE"} {
		if strings.Contains(log, bad) {
			problems = append(problems, fmt.Sprintf("its log contains %q", bad))
		}
	}
	return problems
}

// remember records a secret that must never reach identityd's log.
func (d *identityd) remember(secrets ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.secrets = append(d.secrets, secrets...)
}

func (d *identityd) stderrTail() string {
	const max = 16 << 10
	s := d.stderr.String()
	if len(s) > max {
		s = "…" + s[len(s)-max:]
	}
	return s
}

// addUser creates a user in d's Redis store: with identityctl when it is
// built, otherwise by running a second identityd on the same store with the
// user as its bootstrap user (which gives it the role "admin" instead).
func addUser(t *testing.T, d *identityd, username, password, role string) {
	t.Helper()
	if d.redisURL == "" {
		t.Fatal("addUser needs a Redis-backed identityd")
	}
	d.remember(password)
	if bins.identityctl != "" {
		cmd := exec.Command(bins.identityctl, "--redis-url", d.redisURL, "user", "add", username, "--password-stdin", "--role", role)
		cmd.Env = cleanEnv()
		cmd.Stdin = strings.NewReader(password + "\n")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("identityctl user add %s: %v\n%s", username, err, out)
		}
		if bytes.Contains(out, []byte(password)) {
			t.Errorf("identityctl user add printed the password")
		}
		return
	}
	t.Logf("identityctl unavailable (%v): creating %q as bootstrap user of a second identityd", bins.ctlErr, username)
	helper, err := launch(opts{username: username, password: password, flags: d.flags}, d.redisURL)
	if err != nil {
		t.Fatalf("second identityd to create %s: %v", username, err)
	}
	for _, p := range helper.stop() {
		t.Errorf("second identityd: %s", p)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// lockedBuffer collects a process's output while tests read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// eventually polls cond every interval until it returns nil or timeout
// passes, and returns cond's last error.
func eventually(timeout, interval time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(interval)
	}
}

func rpcContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}
