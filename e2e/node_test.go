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
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "test/")
	cmd.Dir = dir
	cmd.Env = append(append(testidentityd.CleanEnv(), d.ScriptEnv()...), "TESTIDENTITYD_UNREACHABLE_ADDR="+testidentityd.FreeAddr(t))
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test test/: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "# pass ") || strings.Contains(string(out), "# pass 0\n") || !strings.Contains(string(out), "# skipped 0\n") {
		t.Fatalf("the node tests did not all run:\n%s", out)
	}
	if strings.Contains(string(out), d.Password) {
		t.Error("the node tests printed the password")
	}
}
