// Package testcerts makes X.509 certificates for tests, in memory and on
// demand in files: a CA, server certificates for loopback (127.0.0.1, ::1,
// localhost) and client certificates, all ECDSA P-256, valid from an hour
// ago for a day unless an option says otherwise (Expired). NewSet makes the
// usual trio (CA, server, client) and writes it to a temporary directory.
//
// It is for tests only: the keys are made fresh per call and are fit to
// protect nothing.
package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority that signs the test's certificates.
type CA struct {
	Cert *x509.Certificate
	// PEM is Cert, PEM-encoded (what a CA file holds).
	PEM []byte
	key *ecdsa.PrivateKey
}

// Cert is a certificate and its private key.
type Cert struct {
	Leaf    *x509.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

// Option changes a certificate before it is signed.
type Option func(*x509.Certificate)

// Expired makes a certificate that expired an hour ago.
func Expired() Option {
	return func(c *x509.Certificate) {
		c.NotBefore = time.Now().Add(-2 * time.Hour)
		c.NotAfter = time.Now().Add(-time.Hour)
	}
}

// WithDNSNames replaces the certificate's DNS names.
func WithDNSNames(names ...string) Option {
	return func(c *x509.Certificate) { c.DNSNames = names }
}

// WithURI adds a URI SAN (a SPIFFE id, say).
func WithURI(raw string) Option {
	return func(c *x509.Certificate) {
		u, err := url.Parse(raw)
		if err != nil {
			panic("testcerts: WithURI: " + err.Error())
		}
		c.URIs = append(c.URIs, u)
	}
}

// NewCA makes a self-signed CA named name.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := template(t, name)
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("testcerts: CA: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, PEM: pemBlock("CERTIFICATE", der), key: key}
}

// Pool is a CertPool holding only ca.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// WriteFile writes ca's PEM to path and returns path.
func (ca *CA) WriteFile(t testing.TB, path string) string {
	t.Helper()
	writeFile(t, path, ca.PEM)
	return path
}

// Server signs a server certificate for localhost, 127.0.0.1 and ::1.
func (ca *CA) Server(t testing.TB, opts ...Option) *Cert {
	t.Helper()
	tmpl := template(t, "localhost")
	tmpl.DNSNames = []string{"localhost"}
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	return ca.sign(t, tmpl, opts)
}

// Client signs a client certificate with subject CN cn.
func (ca *CA) Client(t testing.TB, cn string, opts ...Option) *Cert {
	t.Helper()
	tmpl := template(t, cn)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return ca.sign(t, tmpl, opts)
}

func (ca *CA) sign(t testing.TB, tmpl *x509.Certificate, opts []Option) *Cert {
	t.Helper()
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	for _, o := range opts {
		o(tmpl)
	}
	key := newKey(t)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatalf("testcerts: sign %s: %v", tmpl.Subject.CommonName, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{
		Leaf:    leaf,
		CertPEM: pemBlock("CERTIFICATE", der),
		KeyPEM:  pemBlock("PRIVATE KEY", keyDER),
	}
}

// TLS is c as a tls.Certificate.
func (c *Cert) TLS(t testing.TB) tls.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// WriteFiles writes the certificate chain to certFile and the key to
// keyFile, replacing what they held (a renewal, as a test sees it).
func (c *Cert) WriteFiles(t testing.TB, certFile, keyFile string) {
	t.Helper()
	writeFile(t, certFile, c.CertPEM)
	writeFile(t, keyFile, c.KeyPEM)
}

// Set is what most TLS tests need: a CA, a server certificate and a client
// certificate (CN "test-service") signed by it, written to Dir.
type Set struct {
	CA     *CA
	Server *Cert
	Client *Cert
	Dir    string

	CAFile         string
	ServerCertFile string
	ServerKeyFile  string
	ClientCertFile string
	ClientKeyFile  string
}

// NewSet makes a Set in a new t.TempDir.
func NewSet(t testing.TB) *Set {
	t.Helper()
	ca := NewCA(t, "identity test CA")
	dir := t.TempDir()
	s := &Set{
		CA:             ca,
		Server:         ca.Server(t),
		Client:         ca.Client(t, "test-service"),
		Dir:            dir,
		CAFile:         filepath.Join(dir, "ca.pem"),
		ServerCertFile: filepath.Join(dir, "server.pem"),
		ServerKeyFile:  filepath.Join(dir, "server-key.pem"),
		ClientCertFile: filepath.Join(dir, "client.pem"),
		ClientKeyFile:  filepath.Join(dir, "client-key.pem"),
	}
	ca.WriteFile(t, s.CAFile)
	s.Server.WriteFiles(t, s.ServerCertFile, s.ServerKeyFile)
	s.Client.WriteFiles(t, s.ClientCertFile, s.ClientKeyFile)
	return s
}

// ClientConfig is a client's TLS configuration trusting s.CA, presenting
// s.Client's certificate when withCert is true.
func (s *Set) ClientConfig(t testing.TB, withCert bool) *tls.Config {
	t.Helper()
	c := &tls.Config{RootCAs: s.CA.Pool(), MinVersion: tls.VersionTLS12}
	if withCert {
		c.Certificates = []tls.Certificate{s.Client.TLS(t)}
	}
	return c
}

func template(t testing.TB, cn string) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// writeFile replaces path's content in one step (a rename), so a reader
// never sees half a file: the way a certificate renewal should be done.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
