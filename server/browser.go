package server

// Browsers on the REST gateway. Three parts, all decided here:
//
//   - Cookie mode. A request with the header "X-Identity-Client: browser"
//     gets its refresh token only as the cookie __Host-identity_refresh
//     (HttpOnly, Secure, SameSite=Strict, Path=/), never in the JSON body,
//     and Refresh and Logout take the token from that cookie when the body
//     has none. Page JavaScript (and so an XSS) can never read it.
//   - CSRF. A call authenticated by the cookie (Refresh or Logout with no
//     token in the body) needs that same header, which a cross-site form or
//     a "simple" fetch cannot send, and an Origin that is on the allowlist
//     or is the server's own. Otherwise: 403, reason CSRF_REJECTED.
//   - CORS, for the allowlisted origins only.
//
// The cookie travels to the gRPC handler as gateway metadata, and the
// server believes that metadata only on calls that come through the
// gateway's in-process channel (fromGateway; as it does for the client
// address, see clientAddr): a gRPC client on the network cannot set it, and
// the gateway forwards no request header as metadata but Authorization.

import (
	"context"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

const (
	// HeaderClient set to ClientBrowser selects cookie mode. It is not a
	// CORS-safelisted header, so a cross-origin page can only send it after
	// a preflight that the server answers for allowlisted origins alone.
	HeaderClient  = "X-Identity-Client"
	ClientBrowser = "browser"

	// RefreshCookie holds the refresh token in cookie mode. The __Host-
	// prefix makes the browser refuse it unless it is Secure, has Path=/
	// and no Domain: no subdomain can set or overwrite it.
	RefreshCookie = "__Host-identity_refresh"
)

// CORS answers. Preflights are cached for ten minutes (Chromium caps the
// cache at two hours, Firefox at a day).
const (
	corsAllowMethods  = "GET, POST"
	corsAllowHeaders  = "Authorization, Content-Type, " + HeaderClient
	corsExposeHeaders = "WWW-Authenticate, Retry-After"
	corsMaxAge        = "600"
)

// Metadata the gateway adds for the gRPC handlers (trusted only on calls
// through the gateway's in-process channel).
const (
	mdBrowser       = "x-identity-browser"        // "1": cookie mode
	mdRefreshCookie = "x-identity-refresh-cookie" // the cookie's token, CSRF check passed
	mdCSRFRejected  = "x-identity-csrf-rejected"  // "1": a cookie came, CSRF check failed
)

// browserRequest is what browserGate learnt of one REST request; the
// gateway's hooks read it from the request context.
type browserRequest struct {
	cookieMode bool   // HeaderClient: browser
	cookie     string // the refresh cookie's value; "" if none
	csrfOK     bool   // cookie mode and the Origin is allowed or our own
}

type browserKey struct{}

func browserFrom(ctx context.Context) browserRequest {
	b, _ := ctx.Value(browserKey{}).(browserRequest)
	return b
}

// NormalizeOrigin checks that s is a web origin (scheme://host[:port], no
// path, query or user) and returns it as a browser sends it in the Origin
// header: lower case, without the scheme's default port.
func NormalizeOrigin(s string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("origin %q: %w", s, err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", fmt.Errorf("origin %q: want http:// or https://", s)
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return "", fmt.Errorf("origin %q: want scheme://host[:port] and nothing else", s)
	}
	host := strings.ToLower(u.Host)
	if p := u.Port(); (scheme == "http" && p == "80") || (scheme == "https" && p == "443") {
		host = strings.TrimSuffix(host, ":"+p)
	}
	return scheme + "://" + host, nil
}

// browserGate sits in front of the gateway: it answers CORS preflights,
// adds CORS headers for allowlisted origins, and records for the gateway's
// hooks whether the request is in cookie mode and passes the CSRF check.
func (s *Server) browserGate(next http.Handler) (http.Handler, error) {
	allowed := make(map[string]bool, len(s.cfg.AllowedOrigins))
	for _, o := range s.cfg.AllowedOrigins {
		n, err := NormalizeOrigin(o)
		if err != nil {
			return nil, err
		}
		allowed[n] = true
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		listed := origin != "" && allowed[origin]
		if listed {
			h.Set("Access-Control-Allow-Origin", origin)
			h.Set("Access-Control-Allow-Credentials", "true")
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		}
		if r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if !listed {
				// No CORS headers: the browser refuses the request.
				s.writeError(r.Context(), nil, nil, w, r, errOriginNotAllowed)
				return
			}
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		b := browserRequest{cookieMode: strings.EqualFold(r.Header.Get(HeaderClient), ClientBrowser)}
		if c, err := r.Cookie(RefreshCookie); err == nil {
			b.cookie = c.Value
		}
		b.csrfOK = b.cookieMode && origin != "" && (listed || origin == ownOrigin(r))
		if b.cookie != "" && !b.csrfOK && cookieAuthenticated(r) && crossSiteSendable(r) {
			// Refused before the body is read: a form's body is no JSON,
			// and the gateway would answer 400 for it instead of 403.
			s.writeError(r.Context(), nil, nil, w, r, errCSRFRejected)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), browserKey{}, b)))
	}), nil
}

// cookieAuthenticated reports whether r is a call the refresh cookie can
// authenticate: the REST bindings of Refresh and Logout (identity.proto).
func cookieAuthenticated(r *http.Request) bool {
	return r.Method == http.MethodPost && (r.URL.Path == "/v1/refresh" || r.URL.Path == "/v1/logout")
}

// crossSiteSendable reports whether a page of another origin could have
// sent r's body without a CORS preflight (Fetch, "CORS-safelisted request
// header"): no Content-Type, or a form's (urlencoded, multipart) or
// text/plain. Such a request carrying the cookie but failing the CSRF check
// is a cross-site form post, refused whatever its body says; a body that
// declares JSON took a preflight (or came from no browser at all) and is
// read as usual, so a refresh token in it works with a stray cookie.
func crossSiteSendable(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return true // what a browser would not send: refuse it
	}
	switch mt {
	case "application/x-www-form-urlencoded", "multipart/form-data", "text/plain":
		return true
	}
	return false
}

// ownOrigin is the origin the request was sent to. The browser sets both
// Host and Origin, so Origin == ownOrigin means a same-origin page (the
// demo): always allowed. Behind a TLS-terminating proxy the scheme differs;
// list the public origin in AllowedOrigins there.
func ownOrigin(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + strings.ToLower(r.Host)
}

// addBrowserMetadata adds the gateway's metadata for cookie mode to md.
func addBrowserMetadata(md metadata.MD, r *http.Request) {
	b := browserFrom(r.Context())
	if b.cookieMode {
		md[mdBrowser] = []string{"1"}
	}
	if b.cookie != "" {
		if b.csrfOK {
			md[mdRefreshCookie] = []string{b.cookie}
		} else {
			md[mdCSRFRejected] = []string{"1"}
		}
	}
}

// setRefreshCookie is the gateway's forward-response option: in cookie mode
// a TokenPair's refresh token goes into the cookie (stripRefreshToken then
// takes it out of the body) and a Logout clears the cookie.
func (s *Server) setRefreshCookie(ctx context.Context, w http.ResponseWriter, m proto.Message) error {
	if !browserFrom(ctx).cookieMode {
		return nil
	}
	switch m := m.(type) {
	case *identityv1.TokenPair:
		if m.GetRefreshToken() == "" {
			return nil
		}
		maxAge := s.cfg.RefreshIdleTTL
		if exp := m.GetRefreshTokenExpiresAt(); exp != nil {
			maxAge = exp.AsTime().Sub(s.now())
		}
		http.SetCookie(w, refreshCookie(m.GetRefreshToken(), maxAge))
	case *identityv1.LogoutResponse:
		http.SetCookie(w, refreshCookie("", 0))
	}
	return nil
}

// stripRefreshToken is the gateway's response rewriter: in cookie mode the
// refresh token never appears in a JSON body.
func stripRefreshToken(ctx context.Context, m proto.Message) (any, error) {
	if tp, ok := m.(*identityv1.TokenPair); ok && browserFrom(ctx).cookieMode {
		tp = proto.CloneOf(tp)
		tp.RefreshToken = ""
		return tp, nil
	}
	return m, nil
}

// clearRefreshCookieOn clears the cookie in cookie mode when the error says
// its token is dead, so the browser stops sending it.
func clearRefreshCookieOn(ctx context.Context, w http.ResponseWriter, reason identityv1.ErrorReason) {
	if !browserFrom(ctx).cookieMode {
		return
	}
	switch reason {
	case identityv1.ErrorReason_REFRESH_TOKEN_INVALID, identityv1.ErrorReason_REFRESH_TOKEN_REUSED:
		http.SetCookie(w, refreshCookie("", 0))
	}
}

// refreshCookie is the refresh cookie holding token for maxAge; an empty
// token or a non-positive maxAge deletes it.
func refreshCookie(token string, maxAge time.Duration) *http.Cookie {
	c := &http.Cookie{
		Name:     RefreshCookie,
		Value:    token,
		Path:     "/",
		HttpOnly: true,
		Secure:   true,
		SameSite: http.SameSiteStrictMode,
		MaxAge:   int(maxAge / time.Second),
	}
	if token == "" || c.MaxAge <= 0 {
		c.Value, c.MaxAge = "", -1 // Max-Age=0: delete now
	}
	return c
}

var errNoRefreshCookie = fmt.Errorf("no refresh cookie: %w", errRefreshTokenInvalid)

// browserUnaryInterceptor gives Refresh and Logout the refresh token from
// the cookie when the body has none, or refuses them with CSRF_REJECTED
// when a cookie came without passing the CSRF check. It reads only the
// gateway's metadata, and only on calls through the in-process channel.
func browserUnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	switch r := req.(type) {
	case *identityv1.RefreshRequest:
		if r.GetRefreshToken() == "" {
			tok, err := cookieToken(ctx)
			if err != nil {
				return nil, err
			}
			if tok != "" {
				r = proto.CloneOf(r)
				r.RefreshToken = tok
				req = r
			}
		}
	case *identityv1.LogoutRequest:
		if r.GetRefreshToken() == "" {
			tok, err := cookieToken(ctx)
			if err != nil {
				return nil, err
			}
			if tok != "" {
				r = proto.CloneOf(r)
				r.RefreshToken = tok
				req = r
			}
		}
	}
	return handler(ctx, req)
}

// cookieToken is the refresh token the gateway took from the cookie, ""
// when the call did not come through the gateway or has no cookie (and is
// not in cookie mode: the handler then asks for refresh_token).
func cookieToken(ctx context.Context) (string, error) {
	if !fromGateway(ctx) {
		return "", nil
	}
	if v := metadata.ValueFromIncomingContext(ctx, mdCSRFRejected); len(v) > 0 {
		return "", errCSRFRejected
	}
	if v := metadata.ValueFromIncomingContext(ctx, mdRefreshCookie); len(v) == 1 && v[0] != "" {
		return v[0], nil
	}
	if v := metadata.ValueFromIncomingContext(ctx, mdBrowser); len(v) > 0 {
		// Cookie mode without a cookie: there is no session to use.
		return "", errNoRefreshCookie
	}
	return "", nil
}

// fromGateway reports whether the call came through the gateway's
// in-process channel (s.inproc, inproc.go), which marks the handler's
// context under a key of this package: a context value, which no call from
// the network can carry, unlike metadata or a peer address.
func fromGateway(ctx context.Context) bool {
	return ctx.Value(gatewayCallKey{}) != nil
}
