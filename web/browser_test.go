package web_test

// These tests run the client's own test suites from `go test ./...`, so the
// README's one test command (and CI) covers the browser side too:
//
//   - TestClientUnit: node --test test/unit/ (the client's queue, single
//     flight and tabs; the axios adapter with the real axios; the guide's
//     example; what the demo page says: devices, times, error sentences),
//   - TestClientTypes: tsc checks the JSDoc types of the client, the axios
//     adapter, the demo and the guide's example, and that the committed
//     declarations (identity-client.d.ts, identity-axios.d.ts) are current,
//   - TestIntegration: node --test test/integration/, axios through the
//     adapter against a real identityd (bearer mode) behind a counting
//     proxy,
//   - TestBrowser: node --test test/browser/, Playwright driving Debian's
//     Chromium against a real identityd and redis-server.
//
// The last two start identityd and Redis with internal/testidentityd and
// hand them to the node tests in TESTIDENTITYD_* environment variables.
// A missing node, npm, Chromium, go or redis-server skips them with the
// reason, except under CI=true, where it fails. node_modules (axios,
// playwright-core and typescript, pinned in package-lock.json) is installed
// with `npm ci` when absent (internal/testnpm; .ci/run does that
// beforehand), and a registry that does not answer skips them too, outside
// CI.
//
// TestAPIDocs opens the /docs page in Chromium (test/docs/) and
// TestDocsVendor checks that apidocs/vendor/ is the pinned swagger-ui-dist
// package's (apidocs/scripts/vendor.js --check).

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testnpm"
	"github.com/identityd/identity/web"
)

func TestMain(m *testing.M) { testidentityd.Main(m) }

// browserAccessTTL is identityd's --access-ttl for the browser tests; it
// must match ACCESS_TTL_MS in test/browser/demo.test.js (harness.js checks).
const browserAccessTTL = "3s"

func requireTool(t *testing.T, name string) string {
	t.Helper()
	return testidentityd.RequireTool(t, name)
}

// webPackages are web/'s pinned devDependencies the tests use.
var webPackages = []string{"axios", "playwright-core", "typescript"}

// requireNodeModules runs `npm ci` in web/ once if the pinned
// devDependencies are not installed yet; where the registry cannot be
// reached, it skips (fails under CI=true).
func requireNodeModules(t *testing.T) {
	t.Helper()
	testnpm.Install(t, ".", webPackages)
}

// run runs a command in web/ and fails t with its output if it fails.
func run(t *testing.T, timeout time.Duration, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// summary is the node test runner's closing counts, for the test log.
func summary(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "# ") && !strings.HasPrefix(l, "# Subtest") {
			keep = append(keep, strings.TrimPrefix(l, "# "))
		}
	}
	return strings.Join(keep, ", ")
}

func TestClientUnit(t *testing.T) {
	t.Parallel()
	node := requireTool(t, "node")
	requireNodeModules(t)
	out := run(t, 2*time.Minute, nil, node, "--test", "test/unit/")
	t.Log(summary(out))
}

func TestClientTypes(t *testing.T) {
	t.Parallel()
	node := requireTool(t, "node")
	requireNodeModules(t)
	run(t, 2*time.Minute, nil, node, "node_modules/typescript/bin/tsc", "-p", "tsconfig.json")
	run(t, 2*time.Minute, nil, node, "scripts/types.js", "--check")
}

// integrationAccessTTL is identityd's --access-ttl for the integration
// tests; test/integration/ checks TESTIDENTITYD_ACCESS_TTL against it.
const integrationAccessTTL = "3s"

func TestIntegration(t *testing.T) {
	t.Parallel()
	node := requireTool(t, "node")
	requireNodeModules(t)
	d := testidentityd.Start(t, testidentityd.WithFlags(map[string]string{
		"access-ttl":        integrationAccessTTL,
		"leeway":            "0s",
		"login-rate-per-ip": "100000",
	}))
	env := append(d.ScriptEnv(), "TESTIDENTITYD_ACCESS_TTL="+integrationAccessTTL)
	out := run(t, 3*time.Minute, env, node, "--test", "--test-concurrency=1", "test/integration/")
	t.Log(summary(out))
	if !strings.Contains(out, "# pass ") || strings.Contains(out, "# pass 0\n") || !strings.Contains(out, "# skipped 0\n") {
		t.Fatalf("the integration tests did not all run:\n%s", out)
	}
}

// browserDemoUsers are the users TestBrowser adds for the demo's account
// tests in test/browser/demo.test.js, one per test, in the order they use them.
var browserDemoUsers = []string{"bob", "carol", "dave", "erin"}

// randomSecret is a password for a test user.
func randomSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 18)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestBrowser(t *testing.T) {
	t.Parallel()
	node := requireTool(t, "node")
	chromium := os.Getenv("CHROMIUM_PATH")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		testidentityd.SkipOrFail(t, "web: no Chromium at %s (apt-get install chromium): %v", chromium, err)
	}
	requireNodeModules(t)

	// identityd (built from this tree) with a private redis-server; the
	// node tests serve the allowlisted origin's page on this port. The
	// harness fails the test if the bootstrap password or a refresh token
	// reaches identityd's log.
	allowedOrigin := fmt.Sprintf("http://localhost:%d", testidentityd.FreePort(t))
	d := testidentityd.Start(t, testidentityd.WithFlags(map[string]string{
		"access-ttl":        browserAccessTTL,
		"leeway":            "0s",
		"web-demo":          "true",
		"allowed-origins":   allowedOrigin,
		"login-rate-per-ip": "100000",
	}))
	// The demo's account tests (devices, sign out elsewhere, password
	// changes, its rate limit) each get a user of their own, so alice's
	// sessions and password stay as the other tests expect.
	demoPassword, newPassword := randomSecret(t), randomSecret(t)
	d.Remember(demoPassword, newPassword)
	for _, u := range browserDemoUsers {
		d.Identityctl(t, demoPassword+"\n", "user", "add", u, "--password-stdin")
	}
	env := append(d.ScriptEnv(),
		"TESTIDENTITYD_ACCESS_TTL="+browserAccessTTL,
		"TESTIDENTITYD_ALLOWED_ORIGIN="+allowedOrigin,
		"TESTIDENTITYD_DEMO_USERS="+strings.Join(browserDemoUsers, ","),
		"TESTIDENTITYD_DEMO_PASSWORD="+demoPassword,
		"TESTIDENTITYD_DEMO_NEW_PASSWORD="+newPassword,
		"CHROMIUM_PATH="+chromium,
	)
	out := run(t, 4*time.Minute, env, node, "--test", "--test-concurrency=1", "test/browser/")
	t.Log(summary(out))
	if !strings.Contains(out, "# pass ") || strings.Contains(out, "# pass 0\n") {
		t.Fatalf("the browser tests ran no test:\n%s", out)
	}
	for _, shot := range []string{"demo-signed-in.png", "demo-signed-out.png", "demo-devices.png", "demo-devices-phone.png",
		"demo-signed-out-remotely-phone.png", "demo-signed-out-everywhere-else.png", "demo-password-wrong.png",
		"demo-password-changed.png", "demo-password-rate-limited-phone.png"} {
		if fi, err := os.Stat(filepath.Join("test-results", shot)); err != nil || fi.Size() == 0 {
			t.Errorf("screenshot %s not saved: %v", shot, err)
		}
	}
}

// TestDemoFS checks what identityd embeds and serves at /demo/.
func TestDemoFS(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"index.html", "demo.js", "format.js", "demo.css", "identity-client.js"} {
		if b, err := fs.ReadFile(web.DemoFS(), name); err != nil || len(b) == 0 {
			t.Errorf("DemoFS %s: %v", name, err)
		}
	}
	for _, bad := range []string{"../web.go", "/index.html", "demo/index.html", "web.go", "nope.js"} {
		if _, err := web.DemoFS().Open(bad); err == nil {
			t.Errorf("DemoFS opened %q", bad)
		}
	}
	html, _ := fs.ReadFile(web.DemoFS(), "index.html")
	for _, id := range []string{"username", "password", "login", "status", "notice", "call", "calls", "logout", "logout-all",
		"account", "sessions", "sessions-refresh", "sessions-error", "sessions-done", "revoke-others",
		"password-form", "current-password", "new-password", "change-password", "password-error", "password-done"} {
		if !strings.Contains(string(html), `id="`+id+`"`) {
			t.Errorf("index.html lacks #%s (the page's test contract)", id)
		}
	}
	if strings.Contains(string(html), "<script>") || strings.Contains(string(html), "onclick=") {
		t.Error("index.html has inline script: the page's CSP forbids it")
	}
	if strings.Contains(string(html), " style=") || strings.Contains(string(html), "<style") {
		t.Error("index.html has inline style: the page's CSP forbids it")
	}
	// The DOM is built with createElement and textContent: HTML from
	// strings is what Trusted Types refuses (and where an XSS would start).
	for _, name := range []string{"demo.js", "format.js"} {
		js, _ := fs.ReadFile(web.DemoFS(), name)
		for _, sink := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
			if strings.Contains(string(js), sink) {
				t.Errorf("%s uses %s", name, sink)
			}
		}
	}
}

// TestAPIDocs opens /docs on a real identityd started with --api-docs in
// Chromium (test/docs/docs.test.js: every operation of /openapi.json
// rendered, no CSP violation, "Try it out" logs in), and checks that an
// identityd without the flag answers /docs with the JSON 404 of every
// unknown path.
func TestAPIDocs(t *testing.T) {
	t.Parallel()
	node := requireTool(t, "node")
	chromium := os.Getenv("CHROMIUM_PATH")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		testidentityd.SkipOrFail(t, "web: no Chromium at %s (apt-get install chromium): %v", chromium, err)
	}
	requireNodeModules(t)

	off := testidentityd.Start(t, testidentityd.WithEmbeddedStore())
	for _, p := range []string{"/docs", "/docs/", "/docs/index.html", "/docs/vendor/swagger-ui-bundle.js"} {
		res, err := http.Get(off.BaseURL + p)
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Details []struct {
				Reason string `json:"reason"`
			} `json:"details"`
		}
		err = json.NewDecoder(res.Body).Decode(&body)
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound || err != nil || len(body.Details) != 1 || body.Details[0].Reason != "INVALID_REQUEST" {
			t.Errorf("without --api-docs, GET %s = %d %+v (%v), want 404 INVALID_REQUEST", p, res.StatusCode, body, err)
		}
	}

	d := testidentityd.Start(t, testidentityd.WithEmbeddedStore(), testidentityd.WithFlags(map[string]string{
		"api-docs":          "true",
		"login-rate-per-ip": "100000",
	}))
	env := append(d.ScriptEnv(), "CHROMIUM_PATH="+chromium)
	out := run(t, 4*time.Minute, env, node, "--test", "test/docs/")
	t.Log(summary(out))
	if !strings.Contains(out, "# pass 1\n") || !strings.Contains(out, "# skipped 0\n") {
		t.Fatalf("the docs test did not run:\n%s", out)
	}
	if fi, err := os.Stat(filepath.Join("test-results", "docs.png")); err != nil || fi.Size() == 0 {
		t.Errorf("screenshot docs.png not saved: %v", err)
	}
}

// TestDocsVendor checks that apidocs/vendor/, which identityd embeds, is
// byte for byte what the pinned swagger-ui-dist package holds
// (apidocs/scripts/vendor.js --check, after `npm ci --ignore-scripts`).
func TestDocsVendor(t *testing.T) {
	t.Parallel()
	node := requireTool(t, "node")
	testnpm.Install(t, "apidocs", []string{"swagger-ui-dist"}, "--ignore-scripts")
	t.Log(run(t, time.Minute, nil, node, "apidocs/scripts/vendor.js", "--check"))
}

// TestDocsFS checks what identityd embeds and serves at /docs/.
func TestDocsFS(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"index.html", "docs.js", "vendor/swagger-ui-bundle.js", "vendor/swagger-ui.css", "vendor/LICENSE", "vendor/VERSION"} {
		if b, err := fs.ReadFile(web.DocsFS(), name); err != nil || len(b) == 0 {
			t.Errorf("DocsFS %s: %v", name, err)
		}
	}
	for _, bad := range []string{"package.json", "scripts/vendor.js", "node_modules", "../web.go"} {
		if _, err := web.DocsFS().Open(bad); err == nil {
			t.Errorf("DocsFS opened %q", bad)
		}
	}
	html, _ := fs.ReadFile(web.DocsFS(), "index.html")
	if inline := regexp.MustCompile(`<script>|<style|\s(on[a-z]+|style)=`).FindString(string(html)); inline != "" {
		t.Errorf("index.html has %q: the page's CSP forbids inline script and style", inline)
	}
	for _, src := range []string{`src="vendor/swagger-ui-bundle.js"`, `src="docs.js"`, `href="vendor/swagger-ui.css"`} {
		if !strings.Contains(string(html), src) {
			t.Errorf("index.html does not load %s", src)
		}
	}
}
