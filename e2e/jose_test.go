package e2e

import (
	"path/filepath"
	"testing"

	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testnpm"
)

// TestNodeJose runs clients/node-verify's tests (node --test) against a
// real identityd: a Node.js service with jose finds the keys through the
// discovery document (createRemoteJWKSet on its jwks_uri), verifies an
// identity access token with jwtVerify (issuer, audience, typ at+jwt) and
// refuses an edited one. Without node or npm, or when the npm registry
// `npm ci` installs jose from does not answer, it skips with the reason,
// except under CI=true, where it fails (internal/testnpm). (A Python
// counterpart with PyJWT waits for a reachable PyPI.)
func TestNodeJose(t *testing.T) {
	t.Parallel()
	node := testidentityd.RequireTool(t, "node")
	dir := filepath.Join(testidentityd.ModuleRoot(t), "clients", "node-verify")
	testnpm.Install(t, dir, []string{"jose"})

	const audience = "node-e2e"
	d := startIdentityd(t, opts{embedded: true, flags: map[string]string{"audience": audience, "issuer": "identity-e2e"}})
	runNodeTests(t, node, dir, d, "TESTIDENTITYD_AUDIENCE="+audience)
}
