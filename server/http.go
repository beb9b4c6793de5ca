package server

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
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
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	if s.cfg.WebDemo {
		mux.Handle("GET /demo/", demoHandler())
		mux.Handle("GET /demo", http.RedirectHandler("/demo/", http.StatusMovedPermanently))
	}
	api, err := s.browserGate(s.limitBody(gw))
	if err != nil {
		return err
	}
	mux.Handle("/", api)
	s.http = securityHeaders(mux)
	return nil
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		// JSON answers load nothing; the demo page sets its own policy.
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			// Token responses must never be cached (RFC 6749 §5.1).
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// limitBody answers 413 for a declared oversized body before the gateway
// reads it, and caps the reader for chunked bodies (the gateway then fails
// decoding with "request body too large", which writeError maps to 413).
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.cfg.MaxBodyBytes {
			err := authn.Error(codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST,
				"request body larger than "+strconv.FormatInt(s.cfg.MaxBodyBytes, 10)+" bytes")
			s.writeError(r.Context(), nil, &runtime.JSONPb{}, w, r,
				&runtime.HTTPStatusError{HTTPStatus: http.StatusRequestEntityTooLarge, Err: err})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

func (s *Server) serveJWKS(w http.ResponseWriter, r *http.Request) {
	body, err := s.keys.JWKS()
	if err != nil {
		s.writeError(r.Context(), nil, &runtime.JSONPb{}, w, r, toStatus(err))
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
