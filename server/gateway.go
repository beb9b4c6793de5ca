package server

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/identityd/identity/authn"
	identitygw "github.com/identityd/identity/gen/gateway/identity/v1"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// jsonMarshaler is the REST JSON: proto field names (snake_case, as in
// OAuth 2.0), every field present, and unknown request fields refused
// (protojson's, with the hot answers written by hand: restjson.go).
var jsonMarshaler = restMarshaler{&runtime.JSONPb{
	MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
	UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
}}

// newGateway returns the REST gateway, registered through a client of the
// in-process channel (grpc.go), so REST calls pass every interceptor exactly
// as gRPC calls do.
func (s *Server) newGateway(ctx context.Context) (http.Handler, error) {
	opts := []runtime.ServeMuxOption{
		runtime.WithMarshalerOption(runtime.MIMEWildcard, jsonMarshaler),
		// Only the Authorization header (which the gateway forwards by
		// itself) reaches the server: Grpc-Metadata-* and every other
		// header are dropped, so a caller cannot inject trusted metadata.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		// One annotator (each is a map the gateway then joins): the
		// client's address and user agent, and for browsers' cookie mode
		// (browser.go) the refresh cookie and the CSRF verdict.
		runtime.WithMetadata(func(_ context.Context, r *http.Request) metadata.MD {
			md := make(metadata.MD, 4)
			md[mdClientAddr] = []string{s.httpClientAddr(r)}
			md[mdUserAgent] = []string{r.UserAgent()}
			addBrowserMetadata(md, r)
			return md
		}),
		// Cookie mode: Set-Cookie out, and no refresh token in the JSON body.
		runtime.WithForwardResponseOption(s.setRefreshCookie),
		runtime.WithForwardResponseRewriter(stripRefreshToken),
		runtime.WithErrorHandler(s.writeError),
		runtime.WithRoutingErrorHandler(s.routingError),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithMiddlewares(recordRoute), // metrics.go: requests by route
	}
	if s.tracing != nil {
		// The HTTP span's traceparent, for the gRPC span (tracing.go).
		opts = append(opts, runtime.WithMetadata(traceMetadata))
	}
	mux := runtime.NewServeMux(opts...)
	if err := identitygw.RegisterIdentityServiceHandlerClient(ctx, mux, identityv1.NewIdentityServiceClient(s.inproc)); err != nil {
		return nil, err
	}
	return mux, nil
}

// httpClientAddr is the REST caller's address: the TCP peer, or the last
// X-Forwarded-For hop not in TrustedProxies when the peer is one of them.
func (s *Server) httpClientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	addr = addr.Unmap()
	if !s.trusted(addr) {
		return addr.String()
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		addr = hop.Unmap()
		if !s.trusted(addr) {
			break
		}
	}
	return addr.String()
}

func (s *Server) trusted(a netip.Addr) bool {
	for _, p := range s.cfg.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// writeError is the gateway's error handler, and the HTTP layer's: every
// REST error is written in one shape, google.rpc.Status JSON ({code,
// message, details}) with an identity ErrorInfo, built by restStatus
// (errors.go), with WWW-Authenticate on 401 and Retry-After on 429. m may
// be nil outside the gateway.
func (s *Server) writeError(ctx context.Context, _ *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	st, httpStatus := restStatus(r, err)
	info := errorInfo(st)
	h := w.Header()
	h.Del("Trailer")
	h.Del("Transfer-Encoding")
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if httpStatus == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	clearRefreshCookieOn(ctx, w, identityv1.ErrorReason(identityv1.ErrorReason_value[info.GetReason()]))
	if httpStatus == http.StatusTooManyRequests {
		if v := info.GetMetadata()[authn.MetadataRetryAfter]; v != "" {
			h.Set("Retry-After", v)
		} else {
			h.Set("Retry-After", "1")
		}
	}
	if m == nil {
		m = jsonMarshaler
	}
	body, merr := m.Marshal(st.Proto())
	if merr != nil {
		httpStatus = http.StatusInternalServerError
		body = []byte(`{"code":13,"message":"internal error","details":[]}`)
	}
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body)
}

// routingError answers unknown paths (404) and wrong methods (405) in the
// contract's error shape.
func (s *Server) routingError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	s.writeError(ctx, mux, m, w, r, routeError(httpStatus, r, nil))
}
