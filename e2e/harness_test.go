package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testredis"
)

// The process machinery (build, ports, Redis, readiness, stop, log checks)
// is internal/testidentityd's; this file only says how e2e runs identityd.

func TestMain(m *testing.M) { testidentityd.Main(m) }

// opts describe one identityd run. Flags not named keep the defaults below.
type opts struct {
	embedded bool                   // no --redis-url: the in-memory store
	redis    *testredis.Server      // use this Redis; nil starts a private one
	cluster  *testredis.Cluster     // or this Redis Cluster
	sentinel *testredis.Sentinel    // or this Sentinel-watched primary
	redisURL string                 // or the Redis at this URL (the test owns it)
	flags    map[string]string      // flag name (no dashes) → value, over the defaults
	notReady bool                   // return once identityd holds its ports, ready or not
	username string                 // bootstrap user; default "alice"
	password string                 // bootstrap password; default random
	extra    []testidentityd.Option // more harness options (a master key of its own, …)
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
		"login-failures-per-user": "100",
		// The default, named: the shared server's tests count on it.
		"login-failures-per-user-address": "10",
	}
}

// identityd is one running server process; client_test.go gives it the
// REST and gRPC calls the tests make. The harness checks its log when the
// test ends: no panic, no refresh token, and no secret passed to Remember
// (the bootstrap password, the tokens and passwords the tests use).
type identityd struct {
	*testidentityd.Process
}

// startIdentityd runs identityd for the duration of t (a private Redis
// included unless o says otherwise) and dumps its log if t fails.
func startIdentityd(t *testing.T, o opts) *identityd {
	t.Helper()
	flags := defaultFlags()
	maps.Copy(flags, o.flags)
	options := []testidentityd.Option{testidentityd.WithFlags(flags)}
	switch {
	case o.embedded:
		options = append(options, testidentityd.WithEmbeddedStore())
	case o.redis != nil:
		options = append(options, testidentityd.WithRedis(o.redis))
	case o.cluster != nil:
		options = append(options, testidentityd.WithRedisCluster(o.cluster))
	case o.sentinel != nil:
		options = append(options, testidentityd.WithRedisSentinel(o.sentinel))
	case o.redisURL != "":
		options = append(options, testidentityd.WithRedisURL(o.redisURL))
	}
	if o.notReady {
		options = append(options, testidentityd.WithoutReadyWait())
	}
	if o.username == "" {
		o.username = "alice"
	}
	options = append(options, testidentityd.WithBootstrapUser(o.username, o.password))
	return &identityd{testidentityd.Start(t, append(options, o.extra...)...)}
}

// addUser creates a user in d's Redis store with identityctl.
func addUser(t *testing.T, d *identityd, username, password, role string) {
	t.Helper()
	d.Remember(password)
	out := d.Identityctl(t, password+"\n", "user", "add", username, "--password-stdin", "--role", role)
	if strings.Contains(out, password) {
		t.Errorf("identityctl user add printed the password")
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func rpcContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}
