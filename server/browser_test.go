package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/server"
)

const appOrigin = "https://app.example.com"

// liveServer is a whole Server on loopback ports (the embedded store, the
// user alice), for tests of what the REST and gRPC sides answer.
type liveServer struct {
	base string // http://127.0.0.1:port
	grpc *grpc.ClientConn
}

func startLiveServer(t *testing.T, mutate func(*server.Config)) *liveServer {
	t.Helper()
	s := testidentityd.StartInProcess(t, testidentityd.InProcessConfig(func(c *server.Config) {
		c.LoginRatePerIP = server.DefaultConfig().LoginRatePerIP
		c.AllowedOrigins = []string{appOrigin}
		if mutate != nil {
			mutate(c)
		}
	}))
	testidentityd.AddUser(t, s.Store, "alice", "wonderland")
	return &liveServer{base: s.BaseURL, grpc: s.Conn}
}

type call struct {
	method  string
	path    string
	body    string
	origin  string
	browser bool   // X-Identity-Client: browser
	cookie  string // refresh cookie value
	header  http.Header
	chunked bool // send the body without Content-Length
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	cookie *http.Cookie // the refresh cookie set by the answer, if any
}

// reason is the identity ErrorInfo reason of the error body,
// ERROR_REASON_UNSPECIFIED if it has none (or an unknown one).
func (a answer) reason() identityv1.ErrorReason {
	details, _ := a.body["details"].([]any)
	for _, d := range details {
		if m, ok := d.(map[string]any); ok && m["domain"] == authn.Domain {
			r, _ := m["reason"].(string)
			return identityv1.ErrorReason(identityv1.ErrorReason_value[r])
		}
	}
	return identityv1.ErrorReason_ERROR_REASON_UNSPECIFIED
}

func (a answer) str(field string) string {
	s, _ := a.body[field].(string)
	return s
}

func (ls *liveServer) do(t *testing.T, c call) answer {
	t.Helper()
	if c.method == "" {
		c.method = http.MethodPost
	}
	var body io.Reader = strings.NewReader(c.body)
	if c.chunked {
		body = io.MultiReader(body) // a reader of unknown length
	}
	req, err := http.NewRequestWithContext(t.Context(), c.method, ls.base+c.path, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range c.header {
		req.Header[k] = vs
	}
	if c.origin != "" {
		req.Header.Set("Origin", c.origin)
	}
	if c.browser {
		req.Header.Set(server.HeaderClient, server.ClientBrowser)
	}
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: server.RefreshCookie, Value: c.cookie})
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header}
	if len(raw) > 0 && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("%s %s: body %q: %v", c.method, c.path, raw, err)
		}
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == server.RefreshCookie {
			a.cookie = ck
		}
	}
	return a
}

const aliceLogin = `{"username":"alice","password":"wonderland"}`

// browserLogin logs alice in in cookie mode and returns the cookie's token.
func (ls *liveServer) browserLogin(t *testing.T) string {
	t.Helper()
	a := ls.do(t, call{path: "/v1/login", body: aliceLogin, browser: true, origin: ls.base})
	if a.status != http.StatusOK || a.cookie == nil {
		t.Fatalf("cookie-mode login: %d, cookie %v, body %v", a.status, a.cookie, a.body)
	}
	return a.cookie.Value
}

func TestCookieModeLogin(t *testing.T) {
	t.Parallel()
	ls := startLiveServer(t, nil)

	a := ls.do(t, call{path: "/v1/login", body: aliceLogin, browser: true})
	if a.status != http.StatusOK {
		t.Fatalf("status %d, body %v", a.status, a.body)
	}
	if got := a.str("refresh_token"); got != "" {
		t.Errorf("cookie mode: body has refresh_token %.10q…", got)
	}
	if a.str("access_token") == "" || a.str("session_id") == "" {
		t.Errorf("body lacks access_token or session_id: %v", a.body)
	}
	c := a.cookie
	if c == nil {
		t.Fatalf("no %s cookie; Set-Cookie: %q", server.RefreshCookie, a.header.Values("Set-Cookie"))
	}
	if !strings.HasPrefix(c.Value, "rt1.") || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
		t.Errorf("cookie attributes: %q", c.Raw)
	}
	idle := server.DefaultConfig().RefreshIdleTTL
	if maxAge := time.Duration(c.MaxAge) * time.Second; maxAge > idle || maxAge < idle-time.Minute {
		t.Errorf("cookie Max-Age %v, want the refresh lifetime %v", maxAge, idle)
	}
	if got := a.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}

	// Without the header: the OAuth-style body, and no cookie.
	a = ls.do(t, call{path: "/v1/login", body: aliceLogin})
	if a.status != http.StatusOK || a.str("refresh_token") == "" || a.cookie != nil {
		t.Errorf("bearer login: status %d, refresh_token in body %t, cookie %v", a.status, a.str("refresh_token") != "", a.cookie)
	}
}

func TestCookieModeRefreshAndLogout(t *testing.T) {
	t.Parallel()
	ls := startLiveServer(t, nil)
	rt := ls.browserLogin(t)

	// Same-origin page (the demo): allowed with no configuration.
	a := ls.do(t, call{path: "/v1/refresh", body: `{}`, browser: true, origin: ls.base, cookie: rt})
	if a.status != http.StatusOK || a.cookie == nil || a.cookie.Value == rt || a.cookie.MaxAge <= 0 {
		t.Fatalf("refresh from the cookie: status %d, cookie %v, body %v", a.status, a.cookie, a.body)
	}
	if a.str("refresh_token") != "" || a.str("access_token") == "" {
		t.Errorf("refresh body: %v", a.body)
	}
	rotated := a.cookie.Value

	// An allowlisted origin, with CORS headers; an empty body works too.
	a = ls.do(t, call{path: "/v1/refresh", browser: true, origin: appOrigin, cookie: rotated})
	if a.status != http.StatusOK || a.cookie == nil {
		t.Fatalf("refresh from %s: status %d, body %v", appOrigin, a.status, a.body)
	}
	if got := a.header.Get("Access-Control-Allow-Origin"); got != appOrigin {
		t.Errorf("Access-Control-Allow-Origin %q", got)
	}
	rotated = a.cookie.Value

	// Logout clears the cookie, and the session is gone.
	a = ls.do(t, call{path: "/v1/logout", body: `{"all_sessions":false}`, browser: true, origin: ls.base, cookie: rotated})
	if a.status != http.StatusOK || a.cookie == nil || a.cookie.MaxAge >= 0 || a.cookie.Value != "" {
		t.Fatalf("logout: status %d, cookie %v", a.status, a.cookie)
	}
	a = ls.do(t, call{path: "/v1/refresh", body: `{}`, browser: true, origin: ls.base, cookie: rotated})
	if a.status != http.StatusUnauthorized || a.reason() != identityv1.ErrorReason_REFRESH_TOKEN_INVALID {
		t.Fatalf("refresh after logout: %d %s", a.status, a.reason())
	}
	if a.cookie == nil || a.cookie.MaxAge >= 0 {
		t.Errorf("a dead refresh cookie should be cleared: %v", a.cookie)
	}

	// Cookie mode with no cookie at all: no session.
	a = ls.do(t, call{path: "/v1/refresh", body: `{}`, browser: true, origin: ls.base})
	if a.status != http.StatusUnauthorized || a.reason() != identityv1.ErrorReason_REFRESH_TOKEN_INVALID || a.header.Get("WWW-Authenticate") == "" {
		t.Errorf("refresh without cookie: %d %s %q", a.status, a.reason(), a.header.Get("WWW-Authenticate"))
	}
}

func TestCSRFRejectsCookieCalls(t *testing.T) {
	t.Parallel()
	ls := startLiveServer(t, nil)
	rt := ls.browserLogin(t)

	for _, tc := range []struct {
		name string
		c    call
	}{
		{"no X-Identity-Client", call{origin: ls.base}},
		{"origin not allowed", call{browser: true, origin: "https://evil.example"}},
		{"sibling port", call{browser: true, origin: strings.Replace(ls.base, "127.0.0.1:", "127.0.0.1:1", 1)}},
		{"no Origin", call{browser: true}},
		{"null Origin", call{browser: true, origin: "null"}},
		{"wrong header value", call{origin: ls.base, header: http.Header{server.HeaderClient: {"curl"}}}},
	} {
		for _, path := range []string{"/v1/refresh", "/v1/logout"} {
			c := tc.c
			c.path, c.body, c.cookie = path, `{}`, rt
			a := ls.do(t, c)
			if a.status != http.StatusForbidden || a.reason() != identityv1.ErrorReason_CSRF_REJECTED {
				t.Errorf("%s %s: %d %q, want 403 %s", tc.name, path, a.status, a.reason(), identityv1.ErrorReason_CSRF_REJECTED)
			}
			if a.body["code"] != float64(codes.PermissionDenied) || a.str("message") == "" {
				t.Errorf("%s %s: body not in the error shape: %v", tc.name, path, a.body)
			}
			if a.cookie != nil {
				t.Errorf("%s %s: a rejected call touched the cookie: %v", tc.name, path, a.cookie)
			}
		}
	}

	// A cross-site form (or a "simple" fetch) can send the cookie with a
	// body it chooses but only these content types, or none: refused for
	// the cookie before the body is read, whatever the body holds.
	for _, tc := range []struct{ contentType, body string }{
		{"", "all_sessions=true"},
		{"application/x-www-form-urlencoded", "all_sessions=true"},
		{"multipart/form-data; boundary=b", "--b\r\nContent-Disposition: form-data; name=\"all_sessions\"\r\n\r\ntrue\r\n--b--\r\n"},
		{"text/plain", `{"all_sessions":true}`},
		{"text/plain;charset=UTF-8", `{"refresh_token":"","all_sessions":true}`},
	} {
		for _, path := range []string{"/v1/refresh", "/v1/logout"} {
			c := call{path: path, body: tc.body, origin: "https://evil.example", cookie: rt, header: http.Header{}}
			if tc.contentType != "" {
				c.header.Set("Content-Type", tc.contentType)
			}
			a := ls.do(t, c)
			if a.status != http.StatusForbidden || a.reason() != identityv1.ErrorReason_CSRF_REJECTED || a.cookie != nil {
				t.Errorf("cross-site %s to %s: %d %q (cookie set: %v), want 403 %s", tc.contentType, path, a.status, a.reason(), a.cookie != nil, identityv1.ErrorReason_CSRF_REJECTED)
			}
		}
	}

	// None of that ended or rotated the session: the cookie still works.
	a := ls.do(t, call{path: "/v1/refresh", body: `{}`, browser: true, origin: ls.base, cookie: rt})
	if a.status != http.StatusOK {
		t.Fatalf("refresh after the rejected calls: %d %s", a.status, a.reason())
	}

	// A token in a JSON body is not cookie-authenticated: whoever sends it
	// holds it, so no CSRF check applies (the stray cookie is ignored).
	bearer := ls.do(t, call{path: "/v1/login", body: aliceLogin})
	a = ls.do(t, call{path: "/v1/refresh", body: `{"refresh_token":"` + bearer.str("refresh_token") + `"}`,
		origin: "https://evil.example", cookie: "stray", header: http.Header{"Content-Type": {"application/json"}}})
	if a.status != http.StatusOK || a.str("refresh_token") == "" {
		t.Errorf("body-token refresh with a stray cookie: %d %s", a.status, a.reason())
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	ls := startLiveServer(t, nil)
	preflight := func(origin string) answer {
		return ls.do(t, call{method: http.MethodOptions, path: "/v1/refresh", origin: origin, header: http.Header{
			"Access-Control-Request-Method":  {"POST"},
			"Access-Control-Request-Headers": {"content-type,x-identity-client"},
		}})
	}

	a := preflight(appOrigin)
	want := map[string]string{
		"Access-Control-Allow-Origin":      appOrigin,
		"Access-Control-Allow-Credentials": "true",
		"Access-Control-Allow-Methods":     "GET, POST",
		"Access-Control-Allow-Headers":     "Authorization, Content-Type, X-Identity-Client",
		"Access-Control-Max-Age":           "600",
		"Access-Control-Expose-Headers":    "WWW-Authenticate, Retry-After",
	}
	if a.status != http.StatusNoContent {
		t.Errorf("preflight from %s: %d", appOrigin, a.status)
	}
	for k, v := range want {
		if got := a.header.Get(k); got != v {
			t.Errorf("preflight %s = %q, want %q", k, got, v)
		}
	}
	if !varies(a.header, "Origin") {
		t.Errorf("preflight Vary %q lacks Origin", a.header.Values("Vary"))
	}

	for _, origin := range []string{"https://evil.example", "http://app.example.com", "https://app.example.com:8443", "null"} {
		a = preflight(origin)
		if a.status != http.StatusForbidden || a.reason() != identityv1.ErrorReason_CSRF_REJECTED {
			t.Errorf("preflight from %s: %d %s, want 403", origin, a.status, a.reason())
		}
		if cors := corsHeaders(a.header); len(cors) > 0 {
			t.Errorf("preflight from %s got CORS headers %v", origin, cors)
		}
	}

	// Actual requests: CORS headers for the listed origin only, errors too.
	a = ls.do(t, call{method: http.MethodGet, path: "/v1/me", origin: appOrigin})
	if a.status != http.StatusUnauthorized || a.header.Get("Access-Control-Allow-Origin") != appOrigin ||
		a.header.Get("Access-Control-Expose-Headers") != want["Access-Control-Expose-Headers"] {
		t.Errorf("GET /v1/me from %s: %d, headers %v", appOrigin, a.status, corsHeaders(a.header))
	}
	a = ls.do(t, call{method: http.MethodGet, path: "/v1/me", origin: "https://evil.example"})
	if cors := corsHeaders(a.header); len(cors) > 0 || !varies(a.header, "Origin") {
		t.Errorf("GET /v1/me from evil: CORS headers %v, Vary %q", cors, a.header.Values("Vary"))
	}
}

func TestCookieMetadataCannotBeInjected(t *testing.T) {
	t.Parallel()
	ls := startLiveServer(t, nil)
	rt := ls.browserLogin(t)
	client := identityv1.NewIdentityServiceClient(ls.grpc)

	// A direct gRPC caller setting the gateway's metadata gets nothing from it.
	ctx := metadata.AppendToOutgoingContext(t.Context(), server.MDRefreshCookie, rt, server.MDBrowser, "1")
	_, err := client.Refresh(ctx, &identityv1.RefreshRequest{})
	if status.Code(err) != codes.InvalidArgument || authn.Reason(err) != identityv1.ErrorReason_INVALID_REQUEST {
		t.Errorf("gRPC Refresh with injected cookie metadata: %v, want INVALID_ARGUMENT (refresh_token required)", err)
	}
	ctx = metadata.AppendToOutgoingContext(t.Context(), server.MDCSRFRejected, "1")
	bearer := ls.do(t, call{path: "/v1/login", body: aliceLogin})
	if _, err := client.Refresh(ctx, &identityv1.RefreshRequest{RefreshToken: bearer.str("refresh_token")}); err != nil {
		t.Errorf("gRPC Refresh with a body token and injected CSRF metadata: %v", err)
	}

	// Nor can a REST caller, by header: only Authorization becomes metadata.
	a := ls.do(t, call{path: "/v1/refresh", body: `{}`, header: http.Header{
		"Grpc-Metadata-X-Identity-Refresh-Cookie": {rt},
		"X-Identity-Refresh-Cookie":               {rt},
		"Grpc-Metadata-X-Identity-Browser":        {"1"},
	}})
	if a.status != http.StatusBadRequest || a.reason() != identityv1.ErrorReason_INVALID_REQUEST {
		t.Errorf("REST refresh with metadata headers: %d %s, want 400 INVALID_REQUEST", a.status, a.reason())
	}

	// The cookie is still good (nothing above used it).
	if a := ls.do(t, call{path: "/v1/refresh", body: `{}`, browser: true, origin: ls.base, cookie: rt}); a.status != http.StatusOK {
		t.Errorf("refresh with the cookie: %d %s", a.status, a.reason())
	}
}

func TestDemoPage(t *testing.T) {
	t.Parallel()
	on := startLiveServer(t, func(c *server.Config) { c.WebDemo = true })
	for path, ctype := range map[string]string{
		"/demo/":                   "text/html",
		"/demo/demo.js":            "text/javascript",
		"/demo/identity-client.js": "text/javascript",
		"/demo/demo.css":           "text/css",
	} {
		a := on.do(t, call{method: http.MethodGet, path: path})
		if a.status != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %d %q", path, a.status, a.header.Get("Content-Type"))
		}
		csp := a.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
		if a.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no X-Content-Type-Options", path)
		}
	}
	if a := on.do(t, call{method: http.MethodGet, path: "/demo/nope.js"}); a.status != http.StatusNotFound {
		t.Errorf("GET /demo/nope.js: %d", a.status)
	}

	off := startLiveServer(t, nil)
	if a := off.do(t, call{method: http.MethodGet, path: "/demo/"}); a.status != http.StatusNotFound || a.reason() != identityv1.ErrorReason_INVALID_REQUEST {
		t.Errorf("demo off: GET /demo/ = %d %s, want the gateway's 404", a.status, a.reason())
	}
}

func TestSecurityHeadersEverywhere(t *testing.T) {
	t.Parallel()
	ls := startLiveServer(t, nil)
	for _, c := range []call{
		{method: http.MethodGet, path: "/healthz"},
		{method: http.MethodGet, path: "/.well-known/jwks.json"},
		{path: "/v1/login", body: aliceLogin},
		{path: "/v1/login", body: `{`},
		{method: http.MethodGet, path: "/nope"},
	} {
		a := ls.do(t, c)
		if a.header.Get("X-Content-Type-Options") != "nosniff" || a.header.Get("Content-Security-Policy") == "" || a.header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s %s: security headers missing: %v", c.method, c.path, a.header)
		}
	}
}

func varies(h http.Header, name string) bool {
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), name) {
				return true
			}
		}
	}
	return false
}

func corsHeaders(h http.Header) map[string]string {
	out := map[string]string{}
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			out[k] = h.Get(k)
		}
	}
	return out
}
