package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// TLS is what the server serves TLS with, on both ports. Without it
// (Deps.TLS nil) both are plaintext, which is for loopback only.
type TLS struct {
	// GetCertificate returns the server's certificate for a handshake;
	// identityd's (tlsfiles.KeyPair) reads its files again when they
	// change, so a renewal needs no restart.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// ClientCAs, when set, makes the gRPC port require a client
	// certificate signed by one of them (mTLS). The HTTP port never asks
	// for one: browsers have none.
	ClientCAs *x509.CertPool
}

// httpConfig is the HTTP port's TLS: TLS 1.2 or later, Go's default
// cipher suites and curves.
func (t *TLS) httpConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: t.GetCertificate}
}

// grpcConfig is the gRPC port's TLS: the HTTP port's, plus client
// certificates when ClientCAs is set.
func (t *TLS) grpcConfig() *tls.Config {
	c := t.httpConfig()
	if t.ClientCAs != nil {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = t.ClientCAs
	}
	return c
}

// HTTPConfig and GRPCConfig are the TLS configurations of the two ports,
// for a server that answers on them before this one does (identityd's,
// while it waits for its store).
func (t *TLS) HTTPConfig() *tls.Config { return t.httpConfig() }
func (t *TLS) GRPCConfig() *tls.Config { return t.grpcConfig() }

// ClientCertName returns the identity in the client certificate the gRPC
// port verified for this call (mTLS): its first URI SAN (a SPIFFE id, for
// instance), else its first DNS SAN, else its subject CN, else its serial
// number. ok is false when the call came without a verified certificate
// (plaintext, TLS without client CAs, the REST gateway).
func ClientCertName(ctx context.Context) (name string, ok bool) {
	p, _ := peer.FromContext(ctx)
	if p == nil {
		return "", false
	}
	info, isTLS := p.AuthInfo.(credentials.TLSInfo)
	if !isTLS || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	leaf := info.State.VerifiedChains[0][0]
	switch {
	case len(leaf.URIs) > 0:
		return leaf.URIs[0].String(), true
	case len(leaf.DNSNames) > 0:
		return leaf.DNSNames[0], true
	case leaf.Subject.CommonName != "":
		return leaf.Subject.CommonName, true
	}
	return "serial:" + leaf.SerialNumber.Text(16), true
}

// certifiedWatcher lets a caller with a verified client certificate open
// WatchRevocations without a token: the operator issued that certificate
// to a service, which is what the stream's service role stands for.
// Everything else keeps its token rules.
func certifiedWatcher(ctx context.Context, fullMethod string) bool {
	if fullMethod != identityv1.IdentityService_WatchRevocations_FullMethodName {
		return false
	}
	_, ok := ClientCertName(ctx)
	return ok
}
