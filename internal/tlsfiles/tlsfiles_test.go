package tlsfiles_test

import (
	"bytes"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/identityd/identity/internal/testcerts"
	"github.com/identityd/identity/internal/tlsfiles"
)

// clock is a test clock the check interval is measured by.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// logLines collects what the KeyPair logs.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}
func (l *logLines) Count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

// touch dates both files at mtime: file times are coarse (a few ms), and a
// renewal written right after the first pair could otherwise look unchanged.
func touch(t *testing.T, mtime time.Time, files ...string) {
	t.Helper()
	for _, f := range files {
		if err := os.Chtimes(f, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

func serial(c *x509.Certificate) string { return c.SerialNumber.String() }

func TestKeyPairReloadsWhenTheFilesChange(t *testing.T) {
	set := testcerts.NewSet(t)
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	var log logLines
	kp, err := tlsfiles.LoadKeyPair(set.ServerCertFile, set.ServerKeyFile,
		tlsfiles.WithClock(clk.Now), tlsfiles.WithCheckInterval(2*time.Second),
		tlsfiles.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	current := func() string {
		t.Helper()
		c, err := kp.GetCertificate(nil)
		if err != nil || c == nil || c.Leaf == nil {
			t.Fatalf("GetCertificate: %v, %v", c, err)
		}
		return serial(c.Leaf)
	}
	first := serial(set.Server.Leaf)
	if got := current(); got != first {
		t.Fatalf("serial %s, want the loaded one %s", got, first)
	}

	// A renewal: new pair, written in place.
	renewed := set.CA.Server(t)
	renewed.WriteFiles(t, set.ServerCertFile, set.ServerKeyFile)
	touch(t, time.Now().Add(time.Minute), set.ServerCertFile, set.ServerKeyFile)
	clk.Advance(time.Second)
	if got := current(); got != first {
		t.Errorf("within the check interval: serial %s, want still %s (no look at the files)", got, first)
	}
	clk.Advance(time.Second)
	if got := current(); got != serial(renewed.Leaf) {
		t.Fatalf("after the interval: serial %s, want the renewed %s", got, serial(renewed.Leaf))
	}
	if n := log.Count("TLS certificate reloaded"); n != 1 {
		t.Errorf("%d reload lines, want 1:\n%s", n, log.buf.String())
	}

	// A bad read (a key that does not match) keeps the last good pair and
	// is logged once, however often it is seen.
	other := set.CA.Server(t)
	if err := os.WriteFile(set.ServerKeyFile, other.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	touch(t, time.Now().Add(2*time.Minute), set.ServerKeyFile)
	for range 3 {
		clk.Advance(2 * time.Second)
		if got := current(); got != serial(renewed.Leaf) {
			t.Fatalf("after a bad read: serial %s, want the last good %s", got, serial(renewed.Leaf))
		}
	}
	if n := log.Count("could not be read"); n != 1 {
		t.Errorf("%d failure lines for one bad state, want 1:\n%s", n, log.buf.String())
	}

	// Missing files: the same.
	if err := os.Remove(set.ServerCertFile); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		clk.Advance(2 * time.Second)
		if got := current(); got != serial(renewed.Leaf) {
			t.Fatalf("cert file missing: serial %s, want the last good %s", got, serial(renewed.Leaf))
		}
	}
	if n := log.Count("could not be read"); n != 2 {
		t.Errorf("%d failure lines for two bad states, want 2:\n%s", n, log.buf.String())
	}

	// Good files again: loaded at the next look.
	other.WriteFiles(t, set.ServerCertFile, set.ServerKeyFile)
	touch(t, time.Now().Add(3*time.Minute), set.ServerCertFile, set.ServerKeyFile)
	clk.Advance(2 * time.Second)
	if got := current(); got != serial(other.Leaf) {
		t.Fatalf("after the repair: serial %s, want %s", got, serial(other.Leaf))
	}
	if c, _ := kp.GetClientCertificate(nil); c == nil || serial(c.Leaf) != serial(other.Leaf) {
		t.Errorf("GetClientCertificate gives another pair than GetCertificate")
	}
}

func TestLoadKeyPairRefusesABadPair(t *testing.T) {
	set := testcerts.NewSet(t)
	tests := []struct {
		name, cert, key string
	}{
		{"key of another certificate", set.ServerCertFile, set.ClientKeyFile},
		{"missing cert", filepath.Join(set.Dir, "nope.pem"), set.ServerKeyFile},
		{"missing key", set.ServerCertFile, filepath.Join(set.Dir, "nope.pem")},
		{"not PEM", set.ServerCertFile, writeTemp(t, "garbage")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tlsfiles.LoadKeyPair(tc.cert, tc.key); err == nil {
				t.Fatal("loaded; want an error")
			}
		})
	}
}

func TestCertPool(t *testing.T) {
	set := testcerts.NewSet(t)
	pool, err := tlsfiles.CertPool(set.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := set.Server.Leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"}); err != nil {
		t.Errorf("the pool does not verify a certificate of its CA: %v", err)
	}
	if _, err := tlsfiles.CertPool(writeTemp(t, "no certificate here\n")); err == nil {
		t.Error("a file without a certificate gave a pool; want an error")
	}
	if _, err := tlsfiles.CertPool(filepath.Join(set.Dir, "missing.pem")); err == nil {
		t.Error("a missing file gave a pool; want an error")
	}
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "file.pem")
	if err := os.WriteFile(f, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
