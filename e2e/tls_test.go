package e2e

import (
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testcerts"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testredis"
)

// startTLS runs identityd with the e2e defaults and TLS from set (mTLS on
// gRPC when mTLS), plus opts.
func startTLS(t *testing.T, set *testcerts.Set, mTLS bool, opts ...testidentityd.Option) *identityd {
	t.Helper()
	all := append([]testidentityd.Option{
		testidentityd.WithFlags(defaultFlags()),
		testidentityd.WithTLS(testidentityd.CertSetTLS(t, set, mTLS)),
	}, opts...)
	return &identityd{testidentityd.Start(t, all...)}
}

// servedSerial is the serial of the certificate a new connection to addr
// gets.
func servedSerial(d *identityd, addr string) (string, error) {
	cert, err := testidentityd.Handshake(addr, d.ClientTLS)
	if err != nil {
		return "", err
	}
	return cert.SerialNumber.String(), nil
}

func serial(c *x509.Certificate) string { return c.SerialNumber.String() }

// A renewed certificate written over the files is served to new
// connections on both ports without a restart; connections open before
// keep working; a bad renewal (a key that does not match) keeps the last
// good certificate and is logged.
func TestTLSCertificateReloadsWithoutRestart(t *testing.T) {
	t.Parallel()
	set := testcerts.NewSet(t)
	d := startTLS(t, set, true, testidentityd.WithEmbeddedStore())
	for _, addr := range []string{d.GRPCAddr, d.HTTPAddr} {
		if got, err := servedSerial(d, addr); err != nil || got != serial(set.Server.Leaf) {
			t.Fatalf("%s serves serial %s (%v), want %s", addr, got, err, serial(set.Server.Leaf))
		}
	}
	d.Login(t, d.Username, d.Password) // gRPC, over the harness's connection
	requireStatusOK(t, d.loginREST(t, d.Username, d.Password))

	renewed := set.CA.Server(t)
	renewed.WriteFiles(t, set.ServerCertFile, set.ServerKeyFile)
	for _, addr := range []string{d.GRPCAddr, d.HTTPAddr} {
		testidentityd.Eventually(t, 20*time.Second, func() error {
			got, err := servedSerial(d, addr)
			if err == nil && got != serial(renewed.Leaf) {
				err = fmt.Errorf("%s still serves serial %s", addr, got)
			}
			return err
		})
	}
	d.Login(t, d.Username, d.Password) // the connection opened before the renewal
	requireStatusOK(t, d.loginREST(t, d.Username, d.Password))
	if !strings.Contains(d.Log.String(), "TLS certificate reloaded") {
		t.Errorf("no reload in the log")
	}
	if n := strings.Count(d.Log.String(), "identityd listening"); n != 1 {
		t.Errorf("identityd started %d times, want once: the renewal needs no restart", n)
	}

	// A broken renewal: the key of another certificate.
	if err := os.WriteFile(set.ServerKeyFile, set.CA.Server(t).KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	testidentityd.Eventually(t, 20*time.Second, func() error {
		if got, err := servedSerial(d, d.GRPCAddr); err != nil || got != serial(renewed.Leaf) {
			t.Fatalf("after a broken renewal: serial %s (%v), want the last good %s", got, err, serial(renewed.Leaf))
		}
		if !strings.Contains(d.Log.String(), "keeping the last good certificate") {
			return fmt.Errorf("the broken renewal is not in the log yet")
		}
		return nil
	})
}

// Under mTLS, identityctl --server reaches the admin API with its client
// certificate and an admin's login; without the certificate it is refused.
func TestIdentityctlServerOverMTLS(t *testing.T) {
	t.Parallel()
	set := testcerts.NewSet(t)
	d := startTLS(t, set, true, testidentityd.WithEmbeddedStore())
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(d.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	ctl := func(args ...string) (string, error) {
		base := []string{"--server", d.GRPCAddr, "--user", d.Username, "--password-file", pwFile, "--timeout", "10s"}
		cmd := exec.Command(testidentityd.IdentityctlBinary(t), append(append(base, args...), "user", "list")...)
		cmd.Env = testidentityd.CleanEnv()
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := ctl("--tls-ca-file", set.CAFile, "--tls-cert-file", set.ClientCertFile, "--tls-key-file", set.ClientKeyFile)
	if err != nil || !strings.Contains(out, d.Username) {
		t.Fatalf("identityctl over mTLS: %v\n%s", err, out)
	}
	if out, err := ctl("--tls-ca-file", set.CAFile); err == nil {
		t.Errorf("identityctl under mTLS without a client certificate succeeded:\n%s", out)
	}
	if out, err := ctl(); err == nil {
		t.Errorf("identityctl in plaintext to a TLS port succeeded:\n%s", out)
	}
}

// identityd on a Redis that serves TLS with a private CA: rediss:// and
// --redis-ca-file, for identityd and identityctl alike.
func TestRedisOverTLS(t *testing.T) {
	t.Parallel()
	redisCerts := testcerts.NewSet(t)
	r := testredis.NewServer(t, testredis.WithTLS(redisCerts.ServerCertFile, redisCerts.ServerKeyFile, redisCerts.CAFile))
	d := &identityd{testidentityd.Start(t,
		testidentityd.WithFlags(defaultFlags()),
		testidentityd.WithRedisURL(r.TLSURL()),
		testidentityd.WithRedisCAFile(redisCerts.CAFile))}
	addUser(t, d, "rita", "rita-password-1", "reader") // identityctl --redis-url rediss://… --redis-ca-file
	pair := d.Login(t, "rita", "rita-password-1")
	if _, err := d.API.Verify(t.Context(), &identityv1.VerifyRequest{Token: pair.GetAccessToken()}); err != nil {
		t.Fatalf("Verify on a TLS Redis: %v", err)
	}
	d.Logout(t, pair)
	if out := d.Identityctl(t, "", "user", "list"); !strings.Contains(out, "rita") {
		t.Errorf("identityctl user list over TLS lacks rita:\n%s", out)
	}
}

func requireStatusOK(t *testing.T, r response) {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("%s", r)
	}
}
