package testidentityd

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// EnvBinDir names a directory holding already built identityd and
// identityctl binaries to test instead of building them from this tree
// (E2E_BIN_DIR, its former name, is read too).
const EnvBinDir = "TESTIDENTITYD_BIN_DIR"

// binaries are built at most once per test binary, on first use, into one
// temporary directory that Main removes.
var bins struct {
	mu  sync.Mutex
	dir string
	// built maps a command ("identityd", "identityctl") to its build.
	built map[string]*build
}

type build struct {
	once    sync.Once
	path    string
	err     error
	missing bool // the package does not exist in this tree: skip, not fail
}

// Main runs the tests of a package that uses this harness and removes the
// binaries it built. Call it from TestMain:
//
//	func TestMain(m *testing.M) { testidentityd.Main(m) }
//
// Without it the tests still run, and the binaries stay in a directory
// named testidentityd-* under the system's temporary directory.
func Main(m *testing.M) {
	code := m.Run()
	bins.mu.Lock()
	dir := bins.dir
	bins.mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// IdentitydBinary returns the path of the identityd binary, building it on
// first use. A tree without cmd/identityd, or a machine without the go
// command, skips t (fails it under CI=true); a build error fails it.
func IdentitydBinary(t testing.TB) string {
	t.Helper()
	return binary(t, "identityd")
}

// IdentityctlBinary is IdentitydBinary for cmd/identityctl.
func IdentityctlBinary(t testing.TB) string {
	t.Helper()
	return binary(t, "identityctl")
}

func binary(t testing.TB, name string) string {
	t.Helper()
	bins.mu.Lock()
	if bins.built == nil {
		bins.built = map[string]*build{}
	}
	b := bins.built[name]
	if b == nil {
		b = &build{}
		bins.built[name] = b
	}
	bins.mu.Unlock()
	b.once.Do(func() { b.path, b.missing, b.err = buildCommand(name) })
	switch {
	case b.missing:
		SkipOrFail(t, "testidentityd: %v", b.err)
	case b.err != nil:
		t.Fatalf("testidentityd: %v", b.err)
	}
	return b.path
}

// ModuleRoot is the root directory of this module (for tests that read
// files elsewhere in the tree).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	goBin, _ := goCommand()
	root, err := moduleRoot(goBin)
	if err != nil {
		t.Fatalf("testidentityd: %v", err)
	}
	return root
}

// buildCommand runs `go build ./cmd/<name>` in the module root, or finds
// the binary in EnvBinDir.
func buildCommand(name string) (path string, missing bool, err error) {
	if dir := prebuiltDir(); dir != "" {
		path = filepath.Join(dir, name)
		if _, err := os.Stat(path); err != nil {
			return "", true, fmt.Errorf("no %s in %s=%s: %w", name, EnvBinDir, dir, err)
		}
		return path, false, nil
	}
	goBin, err := goCommand()
	if err != nil {
		return "", true, err
	}
	root, err := moduleRoot(goBin)
	if err != nil {
		return "", false, err
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", name)); err != nil {
		return "", true, fmt.Errorf("cmd/%s does not exist in %s", name, root)
	}
	dir, err := buildDir()
	if err != nil {
		return "", false, err
	}
	path = filepath.Join(dir, name)
	cmd := exec.Command(goBin, "build", "-o", path, "./cmd/"+name)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", false, fmt.Errorf("go build ./cmd/%s: %v\n%s", name, err, out)
	}
	return path, false, nil
}

func prebuiltDir() string {
	if dir := os.Getenv(EnvBinDir); dir != "" {
		return dir
	}
	return os.Getenv("E2E_BIN_DIR")
}

func buildDir() (string, error) {
	bins.mu.Lock()
	defer bins.mu.Unlock()
	if bins.dir == "" {
		dir, err := os.MkdirTemp("", "testidentityd-")
		if err != nil {
			return "", err
		}
		bins.dir = dir
	}
	return bins.dir, nil
}

// goCommand finds the go command: on PATH (go test puts its own
// toolchain's bin first there), else in $GOROOT.
func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no go command on PATH or in $GOROOT to build identityd with")
}

// moduleRoot is the directory of the go.mod of the test's working
// directory (the package under test), from `go env GOMOD`, else found by
// walking up.
func moduleRoot(goBin string) (string, error) {
	if goBin == "" {
		goBin = "go"
	}
	if out, err := exec.Command(goBin, "env", "GOMOD").Output(); err == nil {
		if mod := strings.TrimSpace(string(out)); mod != "" && mod != os.DevNull {
			return filepath.Dir(mod), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the test's directory")
		}
		dir = parent
	}
}
