package authn

import (
	"crypto/tls"
	"errors"

	"google.golang.org/grpc/credentials"

	"github.com/identityd/identity/internal/tlsfiles"
)

// TLSConfig is a client's TLS configuration for reaching identity: the
// server's certificate is checked against the PEM CA certificates in
// caFile, or the system's roots when caFile is empty; certFile and keyFile
// (both or neither) are the client certificate identity asks for when it
// requires them (its --tls-client-ca-file). That certificate is read again
// when its files change, as identity's own is, so a renewal needs no
// restart. TLS 1.2 or later. Use it for the JWKS over https
// (WithHTTPClient); for gRPC, TLSCredentials.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("authn: a client certificate needs both its certificate and its key file")
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := tlsfiles.CertPool(caFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = pool
	}
	if certFile != "" {
		kp, err := tlsfiles.LoadKeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		c.GetClientCertificate = kp.GetClientCertificate
	}
	return c, nil
}

// TLSCredentials is TLSConfig as gRPC transport credentials, for dialing
// identity: grpc.NewClient(addr, grpc.WithTransportCredentials(creds)).
// Both verifiers take a connection the caller dials, so this is all their
// TLS takes. Under identity's mTLS, the client certificate also lets the
// verifiers open the revocation stream without a ServiceAccount.
func TLSCredentials(caFile, certFile, keyFile string) (credentials.TransportCredentials, error) {
	c, err := TLSConfig(caFile, certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(c), nil
}
