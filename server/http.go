package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// buildHTTP assembles the HTTP port: the gateway for /v1/, and beside it
// the JWKS, liveness, readiness and metrics endpoints.
func (s *Server) buildHTTP(ctx context.Context) error {
	gw, err := s.newGateway(ctx)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", s.serveJWKS)
	mux.HandleFunc("GET "+DiscoveryPath, s.serveDiscovery)
	openAPI, err := serveOpenAPI()
	if err != nil {
		return err
	}
	mux.HandleFunc("GET "+OpenAPIPath, openAPI)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	if s.cfg.WebDemo {
		mux.Handle("GET /demo/", demoHandler(s.notFound))
		mux.Handle("GET /demo", http.RedirectHandler("/demo/", http.StatusMovedPermanently))
	}
	if s.cfg.APIDocs {
		mux.Handle("GET "+DocsPath, docsHandler(s.notFound))
		mux.Handle("GET /docs", http.RedirectHandler(DocsPath, http.StatusMovedPermanently))
	}
	api, err := s.browserGate(s.limitBody(gw))
	if err != nil {
		return err
	}
	mux.Handle("/", api)
	s.http = s.countHTTP(SecurityHeaders(s.canonicalPaths(mux)))
	if s.tracing != nil {
		s.http = s.tracing.httpHandler(s.http)
	}
	return nil
}

// canonicalPaths answers a path that is not in canonical form ("//v1/login",
// "/v1/./login", "/demo/../x") with the JSON 404 every unknown path gets.
// The mux would redirect it to the cleaned path with an HTML body, and a
// client following the redirect would send its body (a password) to a URL
// it did not name.
func (s *Server) canonicalPaths(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.EscapedPath(); r.Method != http.MethodConnect && p != cleanPath(p) {
			s.notFound(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cleanPath is the path net/http's ServeMux would redirect p to (its own
// cleanPath): path.Clean, keeping a trailing slash.
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if strings.HasSuffix(p, "/") && np != "/" {
		np += "/"
	}
	return np
}

// notFound is the answer for a path that names nothing: 404, INVALID_REQUEST,
// in the error shape of every REST error.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.writeError(r.Context(), nil, nil, w, r, routeError(http.StatusNotFound, r, nil))
}

// The values SecurityHeaders sets, shared by every answer.
var (
	hdrNosniff    = []string{"nosniff"}[:1:1]
	hdrNoReferrer = []string{"no-referrer"}[:1:1]
	hdrDeny       = []string{"DENY"}[:1:1]
	hdrCSPNone    = []string{"default-src 'none'; frame-ancestors 'none'"}[:1:1]
	hdrNoStore    = []string{"no-store"}[:1:1]
)

// SecurityHeaders sets the headers every answer of identityd carries (also
// those of cmd/identityd's server that answers while the store is away).
func SecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The keys are canonical and the values shared (header.Set would
		// allocate one slice per header per request); a later Set or Del
		// replaces a slice, never writes into it, and Add appends past
		// its full capacity, so onto a copy.
		h := w.Header()
		h["X-Content-Type-Options"] = hdrNosniff
		h["Referrer-Policy"] = hdrNoReferrer
		h["X-Frame-Options"] = hdrDeny
		// JSON answers load nothing; the demo page sets its own policy.
		h["Content-Security-Policy"] = hdrCSPNone
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			// Token responses must never be cached (RFC 6749 §5.1).
			h["Cache-Control"] = hdrNoStore
		}
		next.ServeHTTP(w, r)
	})
}

// limitBody caps REST request bodies at MaxBodyBytes (413). A body that
// declares its size is refused before the gateway reads it. A chunked one
// is cut off by http.MaxBytesReader while the gateway decodes it, and the
// gateway reports that as a decode error (INVALID_ARGUMENT) that has lost
// the *http.MaxBytesError, so cappedBody records that the limit was hit and
// the error handler answers 413 from that record (bodyLimitHit).
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.cfg.MaxBodyBytes {
			s.writeError(r.Context(), nil, nil, w, r, bodyTooLarge(s.cfg.MaxBodyBytes))
			return
		}
		r.Body = &cappedBody{ReadCloser: http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes), limit: s.cfg.MaxBodyBytes, sized: r.ContentLength >= 0}
		next.ServeHTTP(w, r)
	})
}

func bodyTooLarge(limit int64) error {
	return &clientError{errBodyTooLarge, "request body larger than " + strconv.FormatInt(limit, 10) + " bytes"}
}

// cappedBody is a request body behind http.MaxBytesReader that remembers
// whether a read went past the limit.
type cappedBody struct {
	io.ReadCloser
	limit    int64
	sized    bool // it declared its length (within limit): reading it all never hits the cap
	exceeded bool
}

func (b *cappedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var tooLarge *http.MaxBytesError
	if err != nil && errors.As(err, &tooLarge) {
		b.exceeded = true
	}
	return n, err
}

// bodyLimitHit reports whether reading r's body went past limitBody's cap.
// The gateway hands its error handler the request limitBody passed on
// (with another context, the same Body).
func bodyLimitHit(r *http.Request) (limit int64, hit bool) {
	if b, ok := r.Body.(*cappedBody); ok && b.exceeded {
		return b.limit, true
	}
	return 0, false
}

func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	body, err := s.keys.JWKS()
	if err != nil {
		s.writeError(r.Context(), nil, nil, w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	// Short enough that a rotated-in key (published a while before it
	// signs) reaches caches in time.
	w.Header().Set("Cache-Control", "public, max-age=60")
	_, _ = w.Write(body)
}

func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := s.store.Ping(ctx); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("store unavailable\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}
