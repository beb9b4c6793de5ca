package server

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// The gateway reaches the service through its in-process channel, and
// only calls made through that channel have their gateway metadata (client
// address, refresh cookie, CSRF verdict) believed.
func TestGatewayMetadataTrustedOnlyInProcess(t *testing.T) {
	t.Parallel()
	bs := newBenchServer(t)
	rt := bs.login(t).GetRefreshToken()
	md := metadata.Pairs(mdRefreshCookie, rt, mdBrowser, "1", mdClientAddr, "203.0.113.7")

	// Through the channel: the cookie is the refresh token.
	ctx := metadata.NewOutgoingContext(t.Context(), md)
	tp, err := identityv1.NewIdentityServiceClient(bs.s.inproc).Refresh(ctx, &identityv1.RefreshRequest{})
	if err != nil || tp.GetRefreshToken() == "" {
		t.Fatalf("Refresh through the in-process channel with the cookie: %v, %v", tp, err)
	}

	// The same metadata arriving any other way is not believed, whatever
	// peer the call claims.
	for _, p := range []*peer.Peer{
		{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4242}},
		{Addr: fakeAddr("inproc")},
		{Addr: fakeAddr("bufconn")},
	} {
		ctx := peer.NewContext(metadata.NewIncomingContext(t.Context(), md), p)
		if fromGateway(ctx) {
			t.Errorf("peer %s/%s: taken for the gateway", p.Addr.Network(), p.Addr)
		}
		if got := clientAddr(ctx); got == "203.0.113.7" {
			t.Errorf("peer %s/%s: client address taken from metadata", p.Addr.Network(), p.Addr)
		}
		if tok, err := cookieToken(ctx); tok != "" || err != nil {
			t.Errorf("peer %s/%s: cookie token %q, %v; want none", p.Addr.Network(), p.Addr, tok, err)
		}
	}
}

type fakeAddr string

func (a fakeAddr) Network() string { return string(a) }
func (a fakeAddr) String() string  { return "0" }

// A REST call runs the gRPC server's interceptors: the metrics interceptor
// counts it, authn refuses /v1/me without a token.
func TestRESTRunsTheInterceptors(t *testing.T) {
	t.Parallel()
	bs := newBenchServer(t)
	at := bs.login(t).GetAccessToken()
	h := bs.s.HTTPHandler()
	post := func(path, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := post("/v1/verify", `{"token":"`+at+`"}`); w.Code != http.StatusOK {
		t.Fatalf("REST Verify: %d %s", w.Code, w.Body)
	}
	me := httptest.NewRecorder()
	h.ServeHTTP(me, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v1/me", nil))
	if me.Code != http.StatusUnauthorized {
		t.Errorf("GET /v1/me without a token: %d, want 401", me.Code)
	}
	m := httptest.NewRecorder()
	h.ServeHTTP(m, httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/metrics", nil))
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Verify",grpc_service="identity.v1.IdentityService",grpc_type="unary"} 1`,
		`grpc_server_handled_total{grpc_code="Unauthenticated",grpc_method="WhoAmI",grpc_service="identity.v1.IdentityService",grpc_type="unary"} 1`,
	} {
		if !strings.Contains(m.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
