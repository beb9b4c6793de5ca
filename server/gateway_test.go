package server_test

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/server"
)

// The errors the gateway and the HTTP layer raise themselves, before any
// handler runs, have the status of their errorTable row and the one error
// shape, ErrorInfo included. (CSRF_REJECTED, for cookie calls and CORS
// preflights, is covered by TestCSRFRejectsCookieCalls and TestCORS.)
func TestGatewayOwnErrors(t *testing.T) {
	t.Parallel()
	const limit = 4 << 10
	ls := startLiveServer(t, func(c *server.Config) { c.MaxBodyBytes, c.WebDemo = limit, true })
	big := `{"username":"` + strings.Repeat("a", 2*limit) + `","password":"x"}`
	ok := `{"username":"alice","password":"wonderland"}`
	json := http.Header{"Content-Type": {"application/json"}}
	for _, tc := range []struct {
		name   string
		c      call
		status int
		code   codes.Code
	}{
		{"truncated JSON", call{path: "/v1/login", body: `{"username":`, header: json}, http.StatusBadRequest, codes.InvalidArgument},
		{"wrong type", call{path: "/v1/login", body: `{"username":1}`, header: json}, http.StatusBadRequest, codes.InvalidArgument},
		{"unknown field", call{path: "/v1/login", body: `{"extra":1}`, header: json}, http.StatusBadRequest, codes.InvalidArgument},
		{"unknown path", call{method: http.MethodGet, path: "/v1/no-such-thing"}, http.StatusNotFound, codes.NotFound},
		{"unknown path, POST", call{path: "/v2/login", body: `{}`, header: json}, http.StatusNotFound, codes.NotFound},
		{"wrong method", call{method: http.MethodGet, path: "/v1/login"}, http.StatusMethodNotAllowed, codes.Unimplemented},
		{"wrong method on /v1/me", call{path: "/v1/me", body: `{}`, header: json}, http.StatusMethodNotAllowed, codes.Unimplemented},
		{"declared body over the limit", call{path: "/v1/login", body: big, header: json}, http.StatusRequestEntityTooLarge, codes.InvalidArgument},
		{"chunked body over the limit", call{path: "/v1/login", body: big, header: json, chunked: true}, http.StatusRequestEntityTooLarge, codes.InvalidArgument},
		// Paths that are not in canonical form are not redirected (an
		// HTML 307 from the HTTP mux): they name nothing.
		{"doubled slash", call{path: "//v1/login", body: ok, header: json}, http.StatusNotFound, codes.NotFound},
		{"doubled slash inside", call{path: "/v1//login", body: ok, header: json}, http.StatusNotFound, codes.NotFound},
		{"dot segment", call{path: "/v1/./login", body: ok, header: json}, http.StatusNotFound, codes.NotFound},
		{"dot-dot segment", call{method: http.MethodGet, path: "/demo/../v1/me"}, http.StatusNotFound, codes.NotFound},
		{"demo file that does not exist", call{method: http.MethodGet, path: "/demo/missing.js"}, http.StatusNotFound, codes.NotFound},
		{"demo directory that does not exist", call{method: http.MethodGet, path: "/demo/no/such/dir/"}, http.StatusNotFound, codes.NotFound},
	} {
		a := ls.do(t, tc.c)
		if a.status != tc.status || a.reason() != identityv1.ErrorReason_INVALID_REQUEST {
			t.Errorf("%s: %d %v, want %d INVALID_REQUEST (body %v)", tc.name, a.status, a.reason(), tc.status, a.body)
			continue
		}
		if a.body["code"] != float64(tc.code) || a.str("message") == "" {
			t.Errorf("%s: body not {code %d, message, details}: %v", tc.name, tc.code, a.body)
		}
	}
	// A body just within the limit, chunked, reaches the handler.
	if a := ls.do(t, call{path: "/v1/login", body: ok, header: json, chunked: true}); a.status != http.StatusOK {
		t.Errorf("chunked login within the limit: %d %v", a.status, a.body)
	}
}
