package e2e

import (
	"strings"
	"testing"

	"github.com/identityd/identity/internal/testredis"
)

// TestRedisTopologies runs identityd on a Redis Cluster (--redis-addrs)
// and on a Sentinel-watched primary (--redis-addrs with
// --redis-sentinel-master): login, refresh, logout and identityctl work the
// same as on one node.
func TestRedisTopologies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		store func(t *testing.T, o *opts)
	}{
		{"cluster", func(t *testing.T, o *opts) { o.cluster = testredis.SharedCluster(t) }},
		{"sentinel", func(t *testing.T, o *opts) { o.sentinel = testredis.SharedSentinel(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// A bootstrap user of its own: the topology is shared.
			o := opts{username: "boot-" + randomHex(6)}
			tc.store(t, &o)
			d := startIdentityd(t, o)
			if !strings.Contains(d.Log.String(), "mode="+tc.name) {
				t.Errorf("identityd did not log mode=%s", tc.name)
			}
			tp := d.login(t, d.Username, d.Password)
			next := d.refresh(t, tp.RefreshToken)
			requireSuccess(t, second(d.verifyVia(t, viaGRPC, next.AccessToken)))
			requireSuccess(t, d.logoutVia(t, viaREST, next.RefreshToken, false))
			d.requireTokenRejected(t, next.AccessToken, "TOKEN_REVOKED")
			if out := d.Identityctl(t, "", "user", "list"); !strings.Contains(out, d.Username) {
				t.Errorf("identityctl user list on the %s does not list %s:\n%s", tc.name, d.Username, out)
			}
		})
	}
}
