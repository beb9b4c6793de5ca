package tokenstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"

	"github.com/redis/go-redis/v9"
)

// SetRootCAs makes the client o describes check the Redis server's
// certificate against pool (a private CA's) instead of the system's roots.
// A rediss:// URL keeps the rest of its TLS settings (the server name);
// cluster seed addresses and sentinels' addresses, which have no URL to ask
// for TLS, get TLS with pool (go-redis then speaks TLS to the sentinels and
// to the primary alike). A redis:// URL is an error: the CA would silently
// go unused.
func SetRootCAs(o *redis.UniversalOptions, pool *x509.CertPool) error {
	switch {
	case o.TLSConfig != nil:
		o.TLSConfig = o.TLSConfig.Clone()
	case o.IsClusterMode, o.MasterName != "":
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	default:
		return errors.New("--redis-ca-file needs a rediss:// URL (TLS) or --redis-addrs")
	}
	o.TLSConfig.RootCAs = pool
	return nil
}
