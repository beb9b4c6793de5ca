package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/identityd/identity/authn"
	identitygw "github.com/identityd/identity/gen/gateway/identity/v1"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// newGateway returns the REST gateway, registered through a gRPC client
// connection to this server (over the in-process listener), so REST calls
// pass every interceptor exactly as gRPC calls do.
func (s *Server) newGateway(ctx context.Context) (http.Handler, error) {
	conn, err := grpc.NewClient("passthrough:///identity-inproc",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return s.inproc.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	)
	if err != nil {
		return nil, err
	}
	s.gwConn = conn
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}),
		// Only the Authorization header (which the gateway forwards by
		// itself) reaches the server: Grpc-Metadata-* and every other
		// header are dropped, so a caller cannot inject trusted metadata.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithOutgoingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithMetadata(func(_ context.Context, r *http.Request) metadata.MD {
			return metadata.Pairs(mdClientAddr, s.httpClientAddr(r))
		}),
		// Cookie mode for browsers (browser.go): the refresh cookie in,
		// Set-Cookie out, and no refresh token in the JSON body.
		runtime.WithMetadata(browserMetadata),
		runtime.WithForwardResponseOption(s.setRefreshCookie),
		runtime.WithForwardResponseRewriter(stripRefreshToken),
		runtime.WithErrorHandler(s.writeError),
		runtime.WithRoutingErrorHandler(s.routingError),
		runtime.WithDisableHTTPMethodOverride(),
	)
	if err := identitygw.RegisterIdentityServiceHandler(ctx, mux, conn); err != nil {
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

// writeError writes every REST error in one shape: google.rpc.Status JSON
// ({code, message, details}) with an identity ErrorInfo, the HTTP status of
// the code, WWW-Authenticate on 401 and Retry-After on 429.
func (s *Server) writeError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	httpStatus := 0
	var hs *runtime.HTTPStatusError
	if errors.As(err, &hs) {
		httpStatus = hs.HTTPStatus
		err = hs.Err
	}
	st := status.Convert(err)
	if st.Code() == codes.InvalidArgument && strings.Contains(st.Message(), "request body too large") {
		httpStatus = http.StatusRequestEntityTooLarge
		st = status.New(codes.InvalidArgument, "request body larger than the limit")
	}
	info := errorInfo(st)
	if info == nil {
		// An error the gateway raised itself (bad JSON, wrong types,
		// unknown fields) or a transport failure: give it the same shape.
		reason, msg := identityv1.ErrorReason_INVALID_REQUEST, st.Message()
		switch st.Code() {
		case codes.InvalidArgument, codes.NotFound, codes.Unimplemented, codes.OutOfRange:
			msg = "invalid request: " + msg
		default:
			reason, msg = identityv1.ErrorReason_INTERNAL, "internal error"
		}
		st = status.Convert(authn.Error(st.Code(), reason, msg))
		info = errorInfo(st)
	}
	if httpStatus == 0 {
		httpStatus = runtime.HTTPStatusFromCode(st.Code())
	}
	h := w.Header()
	h.Del("Trailer")
	h.Del("Transfer-Encoding")
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if httpStatus == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
	}
	clearRefreshCookieOn(ctx, w, info)
	if httpStatus == http.StatusTooManyRequests {
		if v := info.GetMetadata()[authn.MetadataRetryAfter]; v != "" {
			h.Set("Retry-After", v)
		} else {
			h.Set("Retry-After", "1")
		}
	}
	body, merr := m.Marshal(st.Proto())
	if merr != nil {
		httpStatus = http.StatusInternalServerError
		body = []byte(`{"code":13,"message":"internal error","details":[]}`)
	}
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body)
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == authn.Domain {
			return info
		}
	}
	return nil
}

// routingError answers unknown paths (404) and wrong methods (405) in the
// contract's error shape.
func (s *Server) routingError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	var err error
	switch httpStatus {
	case http.StatusNotFound:
		err = authn.Error(codes.NotFound, identityv1.ErrorReason_INVALID_REQUEST, "no such path: "+r.URL.Path)
	case http.StatusMethodNotAllowed:
		err = authn.Error(codes.Unimplemented, identityv1.ErrorReason_INVALID_REQUEST, "method "+r.Method+" not allowed on "+r.URL.Path)
	default:
		err = authn.Error(codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, http.StatusText(httpStatus))
	}
	s.writeError(ctx, mux, m, w, r, &runtime.HTTPStatusError{HTTPStatus: httpStatus, Err: err})
}
