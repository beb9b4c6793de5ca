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

// TestNodeGRPCClient runs clients/node's tests (node --test) against a real
// identityd over gRPC: @grpc/grpc-js with the proto files loaded at run
// time logs in, verifies, refreshes and logs out, then sees the session's
// tokens refused with the reasons read from the ErrorInfo trailer
// (TOKEN_REVOKED, REFRESH_TOKEN_INVALID); a wrong password, a forged token,
// an empty request and an address nobody listens on get theirs. Without
// node or npm, or when the npm registry `npm ci` installs from does not
// answer, it skips with the reason, except under CI=true, where it fails
// (internal/testnpm).
func TestNodeGRPCClient(t *testing.T) {
	t.Parallel()
	node := testidentityd.RequireTool(t, "node")
	dir := filepath.Join(testidentityd.ModuleRoot(t), "clients", "node")
	testnpm.Install(t, dir, []string{"@grpc/grpc-js", "@grpc/proto-loader", "protobufjs"})

	d := startIdentityd(t, opts{embedded: true})
	out := runNodeTests(t, node, dir, d, "TESTIDENTITYD_UNREACHABLE_ADDR="+testidentityd.FreeAddr(t))
	if !strings.Contains(out, "# skipped 0\n") {
		t.Fatalf("some node tests were skipped:\n%s", out)
	}
}

// runNodeTests runs `node --test test/` in dir against d (its addresses in
// the environment, with env), fails t unless every test ran and passed or
// when the output holds d's password, and returns the output.
func runNodeTests(t *testing.T, node, dir string, d *identityd, env ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "test/")
	cmd.Dir = dir
	cmd.Env = append(append(testidentityd.CleanEnv(), d.ScriptEnv()...), env...)
	cmd.WaitDelay = 10 * time.Second
	b, err := cmd.CombinedOutput()
	out := string(b)
	if err != nil {
		t.Fatalf("node --test test/: %v\n%s", err, out)
	}
	if !strings.Contains(out, "# pass ") || strings.Contains(out, "# pass 0\n") {
		t.Fatalf("the node tests ran no test:\n%s", out)
	}
	if strings.Contains(out, d.Password) {
		t.Error("the node tests printed the password")
	}
	return out
}
