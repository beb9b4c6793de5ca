package testnpm_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testnpm"
)

// helperDir, set by TestInstallWithoutRegistry for the test binary it
// starts, makes TestInstallHelper call Install on that directory.
const helperDir = "TESTNPM_HELPER_DIR"

// TestInstallHelper is TestInstallWithoutRegistry's child: it does nothing
// in a plain run.
func TestInstallHelper(t *testing.T) {
	dir := os.Getenv(helperDir)
	if dir == "" {
		t.Skip("run by TestInstallWithoutRegistry")
	}
	testnpm.Install(t, dir, []string{"jose"})
	t.Log("installed")
}

// TestInstallWithoutRegistry runs Install in a child test process whose npm
// is pointed at a closed loopback port (and an empty cache): outside CI the
// test is skipped, saying why; under CI=true it fails. Nothing is
// installed either way.
func TestInstallWithoutRegistry(t *testing.T) {
	t.Parallel()
	testidentityd.RequireTool(t, "npm")
	closed := testidentityd.FreeAddr(t) // nothing listens there
	for _, tc := range []struct {
		ci       string
		wantExit bool
		want     []string
	}{
		{"", false, []string{"--- SKIP: TestInstallHelper", "does not answer here"}},
		{"false", false, []string{"--- SKIP: TestInstallHelper", "does not answer here"}},
		{"true", true, []string{"--- FAIL: TestInstallHelper", "does not answer here", "CI=true: failing instead of skipping"}},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			for _, f := range []string{"package.json", "package-lock.json"} {
				b, err := os.ReadFile(filepath.Join("testdata", "pkg", f))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestInstallHelper$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(),
				helperDir+"="+dir,
				"CI="+tc.ci,
				"npm_config_registry=http://"+closed+"/",
				"npm_config_cache="+filepath.Join(dir, "cache"),
				"npm_config_update_notifier=false",
			)
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				t.Fatalf("run the child: %v", err)
			}
			if (err != nil) != tc.wantExit {
				t.Errorf("child's exit: %v, want failure %t", err, tc.wantExit)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("the child's output lacks %q:\n%s", w, out)
				}
			}
			if testnpm.Installed(dir, []string{"jose"}) {
				t.Error("jose was installed from a closed port")
			}
		})
	}
}

func TestInstalled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "node_modules", "@grpc", "grpc-js"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "node_modules", "@grpc", "grpc-js", "package.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		want []string
		ok   bool
	}{
		{nil, true},
		{[]string{"@grpc/grpc-js"}, true},
		{[]string{"@grpc/grpc-js", "jose"}, false},
		{[]string{"@grpc"}, false},
	} {
		if got := testnpm.Installed(dir, tc.want); got != tc.ok {
			t.Errorf("Installed(%q) = %t, want %t", tc.want, got, tc.ok)
		}
	}
}
