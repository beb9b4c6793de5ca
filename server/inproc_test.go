package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

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

type ctxProbeKey struct{}

// probeHealth answers Check with what its context holds.
type probeHealth struct {
	healthpb.UnimplementedHealthServer
}

func (probeHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if ctx.Value(ctxProbeKey{}) != nil {
		return nil, status.Error(codes.FailedPrecondition, "a value of the caller's context reached the handler")
	}
	if !fromGateway(ctx) {
		return nil, status.Error(codes.FailedPrecondition, "not marked as a gateway call")
	}
	if _, ok := ctx.Deadline(); !ok {
		return nil, status.Error(codes.FailedPrecondition, "the caller's deadline was lost")
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if err := grpc.SetHeader(ctx, metadata.Pairs("x-seen", strings.Join(md.Get("x-sent"), ","))); err != nil {
		return nil, err
	}
	if err := grpc.SetTrailer(ctx, metadata.Pairs("x-method", grpc.ServerTransportStreamFromContext(ctx).Method())); err != nil {
		return nil, err
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// The in-process channel runs the interceptors outermost first, hands the
// handler the caller's deadline and metadata but none of its context
// values, and returns what the handler set as header and trailer.
func TestInprocChannel(t *testing.T) {
	t.Parallel()
	var order []string
	mark := func(name string) grpc.UnaryServerInterceptor {
		return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			order = append(order, name+" "+info.FullMethod)
			return h(ctx, req)
		}
	}
	ch := newInprocChannel(&healthpb.Health_ServiceDesc, probeHealth{}, mark("outer"), mark("inner"))
	ctx, cancel := context.WithTimeout(context.WithValue(t.Context(), ctxProbeKey{}, "secret"), time.Minute)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-sent", "hello")
	var header, trailer metadata.MD
	resp, err := healthpb.NewHealthClient(ch).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check: %v, %v", resp, err)
	}
	if got := header.Get("x-seen"); len(got) != 1 || got[0] != "hello" {
		t.Errorf("header x-seen = %q, want [hello]", got)
	}
	if got := trailer.Get("x-method"); len(got) != 1 || got[0] != healthpb.Health_Check_FullMethodName {
		t.Errorf("trailer x-method = %q, want [%s]", got, healthpb.Health_Check_FullMethodName)
	}
	want := []string{"outer " + healthpb.Health_Check_FullMethodName, "inner " + healthpb.Health_Check_FullMethodName}
	if !slices.Equal(order, want) {
		t.Errorf("interceptors ran %q, want %q", order, want)
	}
	// Streams are not carried.
	if _, err := healthpb.NewHealthClient(ch).Watch(ctx, &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("Watch: %v, want Unimplemented", err)
	}
}

// recordingStats records what a stats handler is told.
type recordingStats struct {
	events []string
}

type statsTagKey struct{}

func (r *recordingStats) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	r.events = append(r.events, "tag "+info.FullMethodName+" "+strings.Join(md.Get("traceparent"), ","))
	return context.WithValue(ctx, statsTagKey{}, true)
}

func (r *recordingStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	tagged := ctx.Value(statsTagKey{}) != nil
	switch s := s.(type) {
	case *stats.Begin:
		r.events = append(r.events, fmt.Sprintf("begin client=%v tagged=%v", s.Client, tagged))
	case *stats.End:
		r.events = append(r.events, fmt.Sprintf("end tagged=%v error=%v", tagged, status.Code(s.Error)))
	}
}

func (r *recordingStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (r *recordingStats) HandleConn(context.Context, stats.ConnStats) {}

// A stats handler on the channel (tracing's) tags each call with the
// gateway's metadata in its context, and sees it begin and end.
func TestInprocChannelStatsHandler(t *testing.T) {
	t.Parallel()
	rec := &recordingStats{}
	ch := newInprocChannel(&healthpb.Health_ServiceDesc, probeHealth{}).withStatsHandler(rec)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", "00-abc-def-01")
	if _, err := healthpb.NewHealthClient(ch).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"tag " + healthpb.Health_Check_FullMethodName + " 00-abc-def-01",
		"begin client=false tagged=true",
		"end tagged=true error=OK",
	}
	if !slices.Equal(rec.events, want) {
		t.Errorf("stats events %q, want %q", rec.events, want)
	}
}
