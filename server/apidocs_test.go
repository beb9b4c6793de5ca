package server_test

import (
	"net/http"
	"strings"
	"testing"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/server"
)

// TestDocsPage: with Config.APIDocs the HTTP port serves the Swagger UI
// page and its files at /docs/ under a CSP that allows no inline script or
// style; without it /docs is the JSON 404 of every unknown path. (The page
// rendering in Chromium is web's TestAPIDocs.)
func TestDocsPage(t *testing.T) {
	t.Parallel()
	on := startLiveServer(t, func(c *server.Config) { c.APIDocs = true })
	for path, ctype := range map[string]string{
		"/docs/":                            "text/html",
		"/docs/index.html":                  "text/html",
		"/docs/docs.js":                     "text/javascript",
		"/docs/vendor/swagger-ui-bundle.js": "text/javascript",
		"/docs/vendor/swagger-ui.css":       "text/css",
	} {
		a := on.do(t, call{method: http.MethodGet, path: path})
		if a.status != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %d %q", path, a.status, a.header.Get("Content-Type"))
		}
		csp := a.header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self';", "style-src 'self';", "connect-src 'self';", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: CSP %q lacks %s", path, csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
		if cc, vendor := a.header.Get("Cache-Control"), strings.HasPrefix(path, "/docs/vendor/"); vendor && cc != "public, max-age=300" || !vendor && cc != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q", path, cc)
		}
		if a.header.Get("X-Content-Type-Options") != "nosniff" || a.header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("GET %s: security headers missing: %v", path, a.header)
		}
	}
	for _, path := range []string{"/docs/nope.js", "/docs/vendor/", "/docs/vendor", "/docs/../openapi.json", "/docs/package.json"} {
		if a := on.do(t, call{method: http.MethodGet, path: path}); a.status != http.StatusNotFound || a.reason() != identityv1.ErrorReason_INVALID_REQUEST {
			t.Errorf("GET %s: %d %s, want 404 INVALID_REQUEST", path, a.status, a.reason())
		}
	}
	// /docs leads to the page, whose relative URLs need the slash.
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, on.base+"/docs", nil)
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != server.DocsPath {
		t.Errorf("GET /docs: %d to %q, want a redirect to %s", res.StatusCode, res.Header.Get("Location"), server.DocsPath)
	}

	off := startLiveServer(t, nil)
	for _, path := range []string{"/docs", "/docs/", "/docs/index.html", "/docs/docs.js"} {
		if a := off.do(t, call{method: http.MethodGet, path: path}); a.status != http.StatusNotFound || a.reason() != identityv1.ErrorReason_INVALID_REQUEST {
			t.Errorf("docs off: GET %s = %d %s, want the gateway's 404", path, a.status, a.reason())
		}
	}
}
