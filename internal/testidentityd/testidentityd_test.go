package testidentityd_test

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/masterkey"
	"github.com/identityd/identity/server"
	"github.com/identityd/identity/tokenstore"
)

func TestMain(m *testing.M) { testidentityd.Main(m) }

func TestProcessOnPrivateRedis(t *testing.T) {
	t.Parallel()
	d := testidentityd.Start(t, testidentityd.WithFlag("access-ttl", "2m"))
	if d.Redis == nil || d.RedisURL != d.Redis.URL() {
		t.Fatalf("no private Redis: %q, %v", d.RedisURL, d.Redis)
	}
	pair := d.Login(t, d.Username, d.Password)
	if got := pair.GetExpiresIn(); got != 120 {
		t.Errorf("expires_in %d, want 120 (--access-ttl=2m)", got)
	}
	bobPW := testidentityd.AddUser(t, d.Store(t), "bob", "", "reader")
	d.Remember(bobPW)
	bob := d.Login(t, "bob", bobPW)

	// Same ports, same store: the sessions survive, the client reconnects.
	grpcAddr, httpAddr := d.GRPCAddr, d.HTTPAddr
	d.Restart()
	if d.GRPCAddr != grpcAddr || d.HTTPAddr != httpAddr {
		t.Fatalf("restarted on %s/%s, want %s/%s", d.GRPCAddr, d.HTTPAddr, grpcAddr, httpAddr)
	}
	if _, err := d.API.Verify(t.Context(), &identityv1.VerifyRequest{Token: bob.GetAccessToken()}); err != nil {
		t.Fatalf("Verify after restart: %v", err)
	}
	d.Logout(t, pair)
	if n := strings.Count(d.Log.String(), "identityd listening"); n != 2 {
		t.Errorf("the log holds %d starts, want both", n)
	}
	if p := d.Problems(); len(p) > 0 {
		t.Errorf("problems: %q", p)
	}
}

func TestProcessEmbeddedStoreAndScriptEnv(t *testing.T) {
	t.Parallel()
	d := testidentityd.Start(t, testidentityd.WithEmbeddedStore(),
		testidentityd.WithBootstrapUser("carol", "pw-carol-is-long"), testidentityd.WithBootstrapRoles("reader"))
	if d.RedisURL != "" || d.Redis != nil {
		t.Fatalf("embedded store, yet Redis %q", d.RedisURL)
	}
	pair := d.Login(t, "carol", "pw-carol-is-long")
	who, err := d.API.Verify(t.Context(), &identityv1.VerifyRequest{Token: pair.GetAccessToken()})
	if err != nil || strings.Join(who.GetRoles(), ",") != "reader" {
		t.Fatalf("Verify: %v, %v; want role reader", who, err)
	}
	resp, err := http.Get(d.JWKSURL())
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %v %v", d.JWKSURL(), resp, err)
	}
	resp.Body.Close()
	env := strings.Join(d.ScriptEnv(), "\n")
	for _, want := range []string{"TESTIDENTITYD_HTTP_ADDR=" + d.HTTPAddr, "TESTIDENTITYD_GRPC_ADDR=" + d.GRPCAddr, "TESTIDENTITYD_PASSWORD=pw-carol-is-long"} {
		if !strings.Contains(env, want) {
			t.Errorf("ScriptEnv lacks %s:\n%s", want, env)
		}
	}
	d.Stop()
	d.Stop() // a second Stop does nothing
}

func TestProcessSharesARedis(t *testing.T) {
	t.Parallel()
	r := testredis.NewServer(t)
	a := testidentityd.Start(t, testidentityd.WithRedis(r))
	b := testidentityd.Start(t, testidentityd.WithRedisURL(r.URL()), testidentityd.WithBootstrapUser("alice", a.Password))
	pair := a.Login(t, a.Username, a.Password)
	if _, err := b.API.Verify(t.Context(), &identityv1.VerifyRequest{Token: pair.GetAccessToken()}); err != nil {
		t.Fatalf("b does not accept a's token: %v", err)
	}
	out := a.Identityctl(t, "", "user", "list")
	if !strings.Contains(out, "alice") {
		t.Errorf("identityctl user list: %q", out)
	}
}

// On Redis the harness gives identityd a master key, which identityctl
// gets too; StoredKeyring opens the keyring with it.
func TestProcessSealsTheKeyring(t *testing.T) {
	t.Parallel()
	d := testidentityd.Start(t)
	if d.MasterKeyFile == "" || d.MasterKeys == nil {
		t.Fatal("no master key for a Redis-backed identityd")
	}
	raw, err := d.Store(t).Keyring(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if id, ok := masterkey.SealedBy(raw); !ok || id != d.MasterKeys.ID() {
		t.Fatalf("the keyring in Redis is not sealed under the harness's master key (%q, %t)", id, ok)
	}
	ring := d.StoredKeyring(t)
	out := d.Identityctl(t, "", "key", "list")
	if len(ring.Keys) != 1 || !strings.Contains(out, ring.Keys[0].ID) {
		t.Errorf("identityctl key list %q does not show the stored key", out)
	}
	if !strings.Contains(d.Log.String(), d.MasterKeys.ID()) {
		t.Error("identityd does not log which master key seals")
	}
	if e := testidentityd.Start(t, testidentityd.WithEmbeddedStore()); e.MasterKeyFile != "" {
		t.Error("a master key for the embedded store")
	}
}

func TestStartRefused(t *testing.T) {
	t.Parallel()
	log := testidentityd.StartRefused(t, testidentityd.WithoutMasterKey())
	if !strings.Contains(log, "IDENTITY_MASTER_KEY_FILE") {
		t.Errorf("identityd refused without saying why:\n%s", log)
	}
}

// TestProblems checks the log checks without a process.
func TestProblems(t *testing.T) {
	t.Parallel()
	p := &testidentityd.Process{Log: &testidentityd.LockedBuffer{}}
	p.Remember("s3cr3t-token-value", "short")
	if got := p.Problems(); len(got) != 0 {
		t.Fatalf("problems in an empty log: %q", got)
	}
	fmt.Fprintln(p.Log, `level=INFO msg=x token=s3cr3t-token-value`)
	fmt.Fprintln(p.Log, `level=INFO msg=y short rt1.AAAAAAAAAAAA.BBBB`)
	fmt.Fprintln(p.Log, `panic: boom`)
	got := strings.Join(p.Problems(), "\n")
	for _, want := range []string{"a secret", "a refresh token", `"panic:"`} {
		if !strings.Contains(got, want) {
			t.Errorf("problems %q lack %q", got, want)
		}
	}
	if strings.Contains(got, "short") || strings.Contains(got, "s3cr3t-token-value") {
		t.Errorf("a problem quotes the secret, or a short one was checked: %q", got)
	}
}

func TestInProcess(t *testing.T) {
	t.Parallel()
	for name, store := range map[string][]testidentityd.InProcessOption{
		"embedded": nil,
		"redis":    {testidentityd.InProcessRedisURL(testredis.URL(t))},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var logs testidentityd.LockedBuffer
			s := testidentityd.StartInProcess(t, append(store,
				testidentityd.InProcessConfig(func(c *server.Config) { c.AccessTTL = time.Minute }),
				testidentityd.InProcessLogger(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))...)
			// Fresh names: the Redis may be shared with other tests.
			user := "u" + strings.ToLower(rand.Text()[:10])
			pw := testidentityd.AddUser(t, s.Store, user, "", "reader")
			pair := s.Login(t, user, pw)
			if pair.GetExpiresIn() != 60 {
				t.Errorf("expires_in %d, want 60 (configured)", pair.GetExpiresIn())
			}
			resp, err := http.Get(s.JWKSURL())
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s: %v %v", s.JWKSURL(), resp, err)
			}
			resp.Body.Close()
			s.Logout(t, pair)
			if _, err := s.API.Verify(t.Context(), &identityv1.VerifyRequest{Token: pair.GetAccessToken()}); err == nil {
				t.Error("Verify after logout: no error")
			}
			if !strings.Contains(logs.String(), "finished call") {
				t.Errorf("the server did not log through the given logger:\n%s", logs.String())
			}
			if rs, ok := s.Store.(*tokenstore.Redis); ok {
				raw, err := rs.Keyring(t.Context())
				if id, sealed := masterkey.SealedBy(raw); err != nil || !sealed || s.MasterKeys == nil || id != s.MasterKeys.ID() {
					t.Errorf("the in-process server's keyring in Redis is not sealed (%v)", err)
				}
			}
		})
	}
}

func TestEventually(t *testing.T) {
	t.Parallel()
	n := 0
	testidentityd.Eventually(t, 5*time.Second, func() error {
		if n++; n < 5 {
			return errors.New("not yet")
		}
		return nil
	})
	ft := &fatalT{TB: t}
	testidentityd.Eventually(ft, 10*time.Millisecond, func() error { return errors.New("never") })
	if !strings.Contains(ft.msg, "never") {
		t.Errorf("Eventually that never holds: %q, want a failure with the last error", ft.msg)
	}
}

// fatalT records Fatalf instead of ending the test.
type fatalT struct {
	testing.TB
	msg string
}

func (f *fatalT) Fatalf(format string, args ...any) { f.msg = fmt.Sprintf(format, args...) }

// TestSkipOrFail: a missing prerequisite skips, and fails under CI=true
// (in a child process, since a failing test cannot be observed from
// inside).
func TestSkipOrFail(t *testing.T) {
	if os.Getenv("TESTIDENTITYD_CHILD") == "1" {
		testidentityd.RequireTool(t, "no-such-tool-here")
		t.Fatal("RequireTool returned for a missing tool")
	}
	t.Setenv("CI", "")
	var skipped bool
	t.Run("skip", func(t *testing.T) {
		defer func() { skipped = t.Skipped() }()
		testidentityd.RequireTool(t, "no-such-tool-here")
	})
	if !skipped {
		t.Error("a missing tool did not skip the test")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestSkipOrFail$", "-test.v")
	cmd.Env = append(os.Environ(), "TESTIDENTITYD_CHILD=1", "CI=true")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || !strings.Contains(string(out), "CI=true: failing instead of skipping") {
		t.Fatalf("under CI=true a missing tool: %v\n%s", err, out)
	}
}
