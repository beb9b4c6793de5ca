package testidentityd

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/identityd/identity/internal/testcerts"
	"github.com/identityd/identity/internal/tlsfiles"
	"github.com/identityd/identity/server"
)

// TLS has identity serve TLS (WithTLS, InProcessTLS), and says how the
// harness reaches it.
type TLS struct {
	CertFile string // --tls-cert-file
	KeyFile  string // --tls-key-file
	// ClientCAFile is --tls-client-ca-file: the gRPC port then requires
	// client certificates signed by it.
	ClientCAFile string
	// Client is the harness's own side (the readiness check, Client,
	// HTTP): the CA it trusts and, under mTLS, the certificate it shows.
	Client *tls.Config
}

// CertSetTLS serves set's server certificate; with mTLS the gRPC port
// requires client certificates of set's CA, and the harness shows set's
// client certificate.
func CertSetTLS(t testing.TB, set *testcerts.Set, mTLS bool) TLS {
	t.Helper()
	c := TLS{CertFile: set.ServerCertFile, KeyFile: set.ServerKeyFile, Client: set.ClientConfig(t, mTLS)}
	if mTLS {
		c.ClientCAFile = set.CAFile
	}
	return c
}

// flags are identityd's flags for c.
func (c *TLS) flags() map[string]string {
	f := map[string]string{"tls-cert-file": c.CertFile, "tls-key-file": c.KeyFile}
	if c.ClientCAFile != "" {
		f["tls-client-ca-file"] = c.ClientCAFile
	}
	return f
}

// serverTLS builds the server's TLS from c's files as cmd/identityd's run
// does (keep them in step).
func (c *TLS) serverTLS() (*server.TLS, error) {
	kp, err := tlsfiles.LoadKeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, err
	}
	st := &server.TLS{GetCertificate: kp.GetCertificate}
	if c.ClientCAFile != "" {
		if st.ClientCAs, err = tlsfiles.CertPool(c.ClientCAFile); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// clientSide is what the harness dials with: c.Client, or plaintext for a
// nil c.
type clientSide struct{ tls *tls.Config }

func (c clientSide) scheme() string {
	if c.tls != nil {
		return "https://"
	}
	return "http://"
}

func (c clientSide) creds() credentials.TransportCredentials {
	if c.tls != nil {
		return credentials.NewTLS(c.tls)
	}
	return insecure.NewCredentials()
}

func (c clientSide) dialOption() grpc.DialOption { return grpc.WithTransportCredentials(c.creds()) }

// httpClient is a client of its own (never http.DefaultClient's shared
// transport) trusting the test CA.
func (c clientSide) httpClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if c.tls != nil {
		tr.TLSClientConfig = c.tls.Clone()
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// Handshake opens a TLS connection to addr (either port) with cfg, as an
// HTTP/2 client would, and returns the server's certificate. It waits for
// the server's first bytes, so a refusal the server sends after the
// handshake (TLS 1.3 checks the client's certificate then) is its error
// too: a tls.AlertError from the server, or the client's own verification
// error (*tls.CertificateVerificationError, wrapping the x509 error).
func Handshake(addr string, cfg *tls.Config) (*x509.Certificate, error) {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return nil, err
	}
	return conn.ConnectionState().PeerCertificates[0], nil
}
