package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// testMalformedRequests: whatever a client sends, every REST endpoint
// answers a 4xx with the one error shape (ErrorInfo included), never a 5xx.
func testMalformedRequests(t *testing.T, d *identityd) {

	const mib = 1 << 20
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	endpoints := []struct {
		path      string
		field     string // a required string field of the request
		wrongType string // a body with a field of the wrong JSON type
	}{
		{"/v1/login", "username", `{"username":1,"password":"x"}`},
		{"/v1/refresh", "refresh_token", `{"refresh_token":["x"]}`},
		{"/v1/logout", "refresh_token", `{"refresh_token":"x","all_sessions":"yes"}`},
		{"/v1/verify", "token", `{"token":{"a":1}}`},
	}
	for _, ep := range endpoints {
		bigJSON := `{"` + ep.field + `":"` + strings.Repeat("a", 2*mib) + `"}`
		cases := []struct {
			name    string
			body    func() io.Reader
			header  http.Header
			allowed []statusReason
		}{
			{"truncated JSON", text(`{"a":`), jsonCT, invalidRequest},
			{"wrong type", text(ep.wrongType), jsonCT, invalidRequest},
			{"unknown field only", text(`{"no_such_field":1}`), jsonCT, invalidRequest},
			{"not JSON", text(`hello`), http.Header{"Content-Type": {"text/plain"}}, invalidRequest},
			{"form body", text(`username=alice&password=x`), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, invalidRequest},
			{"empty body", text(``), jsonCT, invalidRequest},
			{"JSON null", text(`null`), jsonCT, invalidRequest},
			{"JSON array", text(`[]`), jsonCT, invalidRequest},
			{"invalid UTF-8", text(`{"` + ep.field + "\":\"\xff\xfe\"}"), jsonCT, invalidRequest},
			{"2 MiB body", text(bigJSON), jsonCT, []statusReason{{413, "INVALID_REQUEST"}}},
			// Without Content-Length the size is known only while reading.
			{"2 MiB chunked body", func() io.Reader { return io.MultiReader(strings.NewReader(bigJSON)) }, jsonCT,
				[]statusReason{{413, "INVALID_REQUEST"}}},
		}
		for _, c := range cases {
			t.Run(ep.path+" "+c.name, func(t *testing.T) {
				t.Parallel()
				r := d.do(t, http.MethodPost, ep.path, c.body(), c.header)
				requireErrorIn(t, r, c.allowed...)
			})
		}
	}

	routing := []struct{ method, path string }{
		{http.MethodGet, "/v1/no-such-thing"},
		{http.MethodPost, "/v1/no-such-thing"},
		{http.MethodGet, "/v2/login"},
		{http.MethodGet, "/v1/login/extra"},
	}
	for _, rt := range routing {
		t.Run("unknown path "+rt.method+" "+rt.path, func(t *testing.T) {
			t.Parallel()
			requireError(t, d.do(t, rt.method, rt.path, nil, nil), http.StatusNotFound, "INVALID_REQUEST")
		})
	}

	wrongMethod := []struct{ method, path string }{
		{http.MethodGet, "/v1/login"},
		{http.MethodPut, "/v1/refresh"},
		{http.MethodDelete, "/v1/logout"},
		{http.MethodGet, "/v1/verify"},
		{http.MethodPost, "/v1/me"},
		{http.MethodPatch, "/v1/me"},
	}
	for _, wm := range wrongMethod {
		t.Run("wrong method "+wm.method+" "+wm.path, func(t *testing.T) {
			t.Parallel()
			r := d.do(t, wm.method, wm.path, strings.NewReader(`{}`), jsonCT)
			requireError(t, r, http.StatusMethodNotAllowed, "INVALID_REQUEST")
		})
	}

	t.Run("gRPC oversized fields", func(t *testing.T) {
		t.Parallel()
		// A field far past any sane size but inside the message limit.
		_, err := d.API.Login(rpcContext(t), &identityv1.LoginRequest{Username: strings.Repeat("u", 512<<10), Password: "x"})
		if f := grpcFailure(t, err); f == nil ||
			!(f.code == codes.InvalidArgument && f.reason == "INVALID_REQUEST" ||
				f.code == codes.Unauthenticated && f.reason == "INVALID_CREDENTIALS") {
			t.Errorf("Login with a 512 KiB username: want INVALID_REQUEST or INVALID_CREDENTIALS, got %v", f)
		}
		// Past the gRPC default message size: refused by the transport.
		_, err = d.API.Verify(rpcContext(t), &identityv1.VerifyRequest{Token: strings.Repeat("t", 5<<20)})
		if c := status.Code(err); c != codes.ResourceExhausted && c != codes.InvalidArgument {
			t.Errorf("Verify with a 5 MiB token: want RESOURCE_EXHAUSTED or INVALID_ARGUMENT, got %v", err)
		}
	})
}

var invalidRequest = []statusReason{{400, "INVALID_REQUEST"}}

func text(s string) func() io.Reader {
	return func() io.Reader { return strings.NewReader(s) }
}
