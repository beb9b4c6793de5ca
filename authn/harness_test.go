package authn_test

import (
	"crypto/rand"
	"maps"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/identityd/identity/authn"
	"github.com/identityd/identity/internal/testidentityd"
)

// identity for these tests comes from internal/testidentityd: a real
// identityd process with a private Redis (startIdentityd, for the
// scenarios of integration_test.go), or the real server in this process
// on the embedded store (testidentityd.StartInProcess, for the remote
// verifier's tests and the benchmarks, without the cost of a process).

func TestMain(m *testing.M) { testidentityd.Main(m) }

// startIdentityd runs identityd with a private Redis and the bootstrap
// user "alice" (role admin), with flags over these defaults.
func startIdentityd(t testing.TB, flags map[string]string) *testidentityd.Process {
	t.Helper()
	all := map[string]string{
		"access-ttl":           "5m",
		"login-rate-per-ip":    "0",
		"refresh-grace":        "1s",
		"shutdown-timeout":     "10s",
		"log-level":            "debug",
		"key-publish-ahead":    "1m",
		"refresh-idle-ttl":     "1h",
		"refresh-absolute-ttl": "2h",
	}
	maps.Copy(all, flags)
	return testidentityd.Start(t, testidentityd.WithFlags(all))
}

// asService gives a verifier the credentials identity asks of a revocation
// stream: a service account made for the test in d's store.
func asService(t testing.TB, d *testidentityd.Process) authn.VerifierOption {
	t.Helper()
	return asServiceOn(t, d, d.Conn)
}

// asServiceOn is asService logging in over conn.
func asServiceOn(t testing.TB, d *testidentityd.Process, conn grpc.ClientConnInterface) authn.VerifierOption {
	t.Helper()
	name := "svc-" + strings.ToLower(rand.Text()[:10])
	pw := testidentityd.AddUser(t, d.Store(t), name, "", authn.ServiceRole)
	return authn.WithWatchCredentials(authn.NewServiceAccount(conn, name, pw))
}
