package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/identityd/identity/internal/testidentityd"
)

// systemPython is Debian's interpreter, where python3-grpcio and
// python3-protobuf live (a pyenv python3 earlier on PATH has neither).
const systemPython = "/usr/bin/python3"

// testPythonClient generates the Python stubs from proto/ and runs
// clients/python/identity_client.py against a live identityd.
func testPythonClient(t *testing.T, d *identityd) {
	requirePythonToolchain(t)
	dir := filepath.Join(testidentityd.ModuleRoot(t), "clients", "python")
	stubs := t.TempDir()

	if out, err := exec.Command("bash", filepath.Join(dir, "generate.sh"), stubs).CombinedOutput(); err != nil {
		t.Fatalf("generate.sh: %v\n%s", err, out)
	}

	client := func(t *testing.T, addr, username, password string) (stdout, stderr string, code int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, systemPython, filepath.Join(dir, "identity_client.py"), "--addr", addr)
		cmd.Env = append(testidentityd.CleanEnv(),
			"PYTHONPATH="+stubs,
			"PYTHONDONTWRITEBYTECODE=1",
			"IDENTITY_USERNAME="+username,
			"IDENTITY_PASSWORD="+password,
		)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var exit *exec.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exit):
			code = exit.ExitCode()
		default:
			t.Fatalf("run identity_client.py: %v", err)
		}
		if strings.Contains(out.String()+errOut.String(), password) {
			t.Errorf("identity_client.py printed the password")
		}
		if strings.Contains(out.String()+errOut.String(), "eyJ") {
			t.Errorf("identity_client.py printed what looks like a JWT")
		}
		return out.String(), errOut.String(), code
	}

	t.Run("happy path", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, code := client(t, d.GRPCAddr, d.Username, d.Password)
		if code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		sid := `session_id=[^ \n]+`
		want := []string{
			`^login ok: ` + sid + ` token_type=Bearer expires_in=60$`,
			`^verify ok: subject=[^ ]+ username=` + d.Username + ` roles=admin ` + sid + `$`,
			`^whoami ok: subject=[^ ]+ username=` + d.Username + ` roles=admin ` + sid + `$`,
			`^refresh ok: rotated ` + sid + ` expires_in=60$`,
			`^verify refreshed ok: subject=[^ ]+ username=` + d.Username + ` roles=admin ` + sid + `$`,
			`^logout ok: ` + sid + `$`,
			`^verify after logout ok: rejected UNAUTHENTICATED TOKEN_REVOKED$`,
			`^all steps ok$`,
		}
		lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("want %d lines, got %d:\n%s\nstderr:\n%s", len(want), len(lines), stdout, stderr)
		}
		for i, re := range want {
			if !regexp.MustCompile(re).MatchString(lines[i]) {
				t.Errorf("line %d = %q, want match for %s", i+1, lines[i], re)
			}
		}
		// One session throughout: every session_id on the output is the same.
		ids := map[string]bool{}
		for _, m := range regexp.MustCompile(sid).FindAllString(stdout, -1) {
			ids[m] = true
		}
		if len(ids) != 1 {
			t.Errorf("the output names %d sessions, want 1:\n%s", len(ids), stdout)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		wrong := "wrong-" + d.Password
		d.Remember(wrong)
		stdout, stderr, code := client(t, d.GRPCAddr, d.Username, wrong)
		if code != 1 {
			t.Fatalf("exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		if !strings.Contains(stderr, "login failed: UNAUTHENTICATED INVALID_CREDENTIALS") {
			t.Errorf("stderr %q does not name the step, code and reason", stderr)
		}
	})

	t.Run("unreachable server", func(t *testing.T) {
		t.Parallel()
		stdout, stderr, code := client(t, testidentityd.FreeAddr(t), d.Username, d.Password)
		if code != 1 || !strings.Contains(stderr, "login failed: UNAVAILABLE") {
			t.Fatalf("exit %d, want 1 with UNAVAILABLE\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
	})
}

func requirePythonToolchain(t *testing.T) {
	t.Helper()
	const install = "apt-get install protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf"
	if _, err := os.Stat(systemPython); err != nil {
		testidentityd.SkipOrFail(t, "%s not found (%s)", systemPython, install)
	}
	if out, err := exec.Command(systemPython, "-c", "import grpc, google.protobuf").CombinedOutput(); err != nil {
		testidentityd.SkipOrFail(t, "%s cannot import grpc and protobuf (%s): %s", systemPython, install, bytes.TrimSpace(out))
	}
	for _, tool := range []string{"protoc", "grpc_python_plugin"} {
		if _, err := exec.LookPath(tool); err != nil {
			testidentityd.SkipOrFail(t, "%s not on PATH (%s)", tool, install)
		}
	}
}
