package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "test/")
	cmd.Dir = dir
	cmd.Env = append(append(testidentityd.CleanEnv(), d.ScriptEnv()...), "TESTIDENTITYD_AUDIENCE="+audience)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test test/: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "# pass ") || strings.Contains(string(out), "# pass 0\n") {
		t.Fatalf("the node tests ran no test:\n%s", out)
	}
	if strings.Contains(string(out), d.Password) {
		t.Error("the node tests printed the password")
	}
}
