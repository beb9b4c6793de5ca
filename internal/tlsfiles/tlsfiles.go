// Package tlsfiles loads TLS material from PEM files: a certificate and key
// pair that is read again when its files change, so a renewed certificate
// needs no restart, and pools of CA certificates. identityd serves its
// ports with a KeyPair; identityctl, authn.TLSCredentials and the Redis
// client options read CA files and client certificates through it.
//
// It does not make certificates, and it does not decide who may connect:
// that is the tls.Config the caller builds around it.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// DefaultCheckInterval is how often, at most, a KeyPair looks at its files.
// A look is two stat calls made during a handshake; the files are read only
// when their modification time or size changed.
const DefaultCheckInterval = 2 * time.Second

// KeyPair is a certificate and its key, from two PEM files (the certificate
// file may hold the chain after the leaf). Its GetCertificate and
// GetClientCertificate plug into a tls.Config. At most once per check
// interval a handshake looks at the files; when their modification time or
// size changed, the pair is read again. A read that fails (a half-written
// renewal, a key that does not match) keeps the last good pair and is
// logged once per state of the files; the next change is tried again.
// It is safe for concurrent use.
type KeyPair struct {
	certFile, keyFile string
	interval          time.Duration
	now               func() time.Time
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	loaded  stamp     // the files as they were when cert was read
	failing bool      // the last read failed, and was logged...
	failed  stamp     // ...with the files as they were then
	checked time.Time // the last look at the files
}

// stamp is what a look at the files sees.
type stamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// Option configures LoadKeyPair.
type Option func(*KeyPair)

// WithCheckInterval sets how often, at most, the files are looked at
// (default DefaultCheckInterval).
func WithCheckInterval(d time.Duration) Option { return func(k *KeyPair) { k.interval = d } }

// WithClock sets the clock the check interval is measured by.
func WithClock(now func() time.Time) Option { return func(k *KeyPair) { k.now = now } }

// WithLogger is where reloads and failed reads are logged (default:
// nowhere).
func WithLogger(l *slog.Logger) Option { return func(k *KeyPair) { k.log = l } }

// LoadKeyPair reads certFile and keyFile. It fails when they do not hold a
// matching certificate and key: a server must not start without one.
func LoadKeyPair(certFile, keyFile string, opts ...Option) (*KeyPair, error) {
	k := &KeyPair{
		certFile: certFile,
		keyFile:  keyFile,
		interval: DefaultCheckInterval,
		now:      time.Now,
		log:      slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(k)
	}
	st, err := k.stat()
	if err != nil {
		return nil, err
	}
	cert, err := k.read()
	if err != nil {
		return nil, err
	}
	k.cert, k.loaded, k.checked = cert, st, k.now()
	return k, nil
}

// Certificate returns the current pair, after looking at the files if a
// check is due.
func (k *KeyPair) Certificate() *tls.Certificate {
	k.mu.Lock()
	defer k.mu.Unlock()
	if now := k.now(); now.Sub(k.checked) >= k.interval {
		k.checked = now
		k.reloadIfChanged()
	}
	return k.cert
}

// GetCertificate is for tls.Config.GetCertificate (servers).
func (k *KeyPair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return k.Certificate(), nil
}

// GetClientCertificate is for tls.Config.GetClientCertificate (clients of
// a server that asks for a certificate).
func (k *KeyPair) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return k.Certificate(), nil
}

// reloadIfChanged reads the files again if they changed since the current
// pair was read. k.mu is held.
func (k *KeyPair) reloadIfChanged() {
	// Stat before reading: a change after the stat then shows as another
	// change at the next look, never as content newer than its stamp.
	st, err := k.stat()
	if err == nil && st == k.loaded {
		return
	}
	var cert *tls.Certificate
	if err == nil {
		cert, err = k.read()
	}
	if err != nil {
		if !k.failing || st != k.failed {
			k.failing, k.failed = true, st
			k.log.Error("TLS certificate files could not be read: keeping the last good certificate",
				slog.String("cert_file", k.certFile), slog.String("key_file", k.keyFile), slog.String("error", err.Error()))
		}
		return
	}
	k.cert, k.loaded, k.failing = cert, st, false
	k.log.Info("TLS certificate reloaded",
		slog.String("cert_file", k.certFile),
		slog.String("subject", cert.Leaf.Subject.String()),
		slog.String("serial", cert.Leaf.SerialNumber.Text(16)),
		slog.Time("not_after", cert.Leaf.NotAfter))
}

func (k *KeyPair) stat() (stamp, error) {
	c, err := os.Stat(k.certFile)
	if err != nil {
		return stamp{}, err
	}
	kf, err := os.Stat(k.keyFile)
	if err != nil {
		return stamp{}, err
	}
	return stamp{certMod: c.ModTime(), keyMod: kf.ModTime(), certSize: c.Size(), keySize: kf.Size()}, nil
}

func (k *KeyPair) read() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return nil, fmt.Errorf("certificate %s, key %s: %w", k.certFile, k.keyFile, err)
	}
	return &cert, nil
}

// CertPool reads a PEM file of CA certificates into a pool. A file with
// no certificate in it is an error, not an empty pool that trusts nothing.
func CertPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s: %w", file, errNoCertificate)
	}
	return pool, nil
}

var errNoCertificate = errors.New("no PEM certificate in the file")
