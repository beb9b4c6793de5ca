package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// The discovery document (/.well-known/openid-configuration, OpenID
// Connect Discovery 1.0 §3) is what a JWT verifier reads to find the
// issuer's keys: issuer, jwks_uri and the signing algorithms. identity is
// not an OAuth 2.0 authorization server nor an OpenID provider: it has no
// authorization, token or userinfo endpoint, so the document names none.
//
// Discovery 1.0 makes response_types_supported and subject_types_supported
// REQUIRED (for OpenID providers). They are present, with what is true of
// identity: subject_types_supported is ["public"] (sub is the user's
// stable id, the same for every relying party), and
// response_types_supported is [] because there is no authorization
// endpoint to ask for any response type. A made-up ["id_token"] would
// invite a relying party to start a login flow that cannot work; an empty
// list lets a strict parser find the field and a login library fail at
// once, with the reason in front of it.
//
// id_token_signing_alg_values_supported lists the algorithms of the keys
// in the JWKS: identity signs access tokens (RFC 9068), not ID tokens, but
// this is the field verifiers (go-oidc, jose-based middleware) read to pin
// the accepted algorithms.

// DiscoveryPath and JWKSPath are where the HTTP port serves them.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/.well-known/jwks.json"
)

// Discovery is the discovery document's JSON.
type Discovery struct {
	Issuer                           string   `json:"issuer"`
	JWKSURI                          string   `json:"jwks_uri"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	ClaimsSupported                  []string `json:"claims_supported"`
}

// claimsSupported are the claims of every access token (token package).
var claimsSupported = []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "roles", "preferred_username"}

func (s *Server) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	base, fixed := s.publicURL(r)
	algs := []string{}
	for _, k := range s.keys.Published() {
		if !slices.Contains(algs, k.Alg) {
			algs = append(algs, k.Alg)
		}
	}
	slices.Sort(algs)
	body, err := json.Marshal(Discovery{
		Issuer:                           s.cfg.Issuer,
		JWKSURI:                          base + JWKSPath,
		ResponseTypesSupported:           []string{},
		SubjectTypesSupported:            []string{"public"},
		IDTokenSigningAlgValuesSupported: algs,
		ClaimsSupported:                  claimsSupported,
	})
	if err != nil {
		s.writeError(r.Context(), nil, nil, w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	// As the JWKS: the algorithms change when a key of another alg is
	// rotated in, and that must reach caches before it signs. A document
	// built from the request's Host is for that client only: a shared
	// cache must not hand it to others.
	if fixed {
		w.Header().Set("Cache-Control", "public, max-age=60")
	} else {
		w.Header().Set("Cache-Control", "private, max-age=60")
	}
	_, _ = w.Write(body)
}

// publicURL is the base of the absolute URLs the documents hand out
// (jwks_uri): Config.PublicURL, else the issuer when it is an https URL
// (where discovery expects the document), else the scheme and Host of the
// request. fixed is false in the last case: the answer then depends on
// what the client sent.
func (s *Server) publicURL(r *http.Request) (base string, fixed bool) {
	if s.cfg.PublicURL != "" {
		return s.cfg.PublicURL, true
	}
	if u, err := ParsePublicURL(s.cfg.Issuer); err == nil && strings.HasPrefix(u, "https://") {
		return u, true
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host, false
}

// ParsePublicURL checks a public base URL (--public-url): http or https,
// a host, no user info, query or fragment. It returns it without a
// trailing slash, so paths append to it.
func ParsePublicURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%q: want an http:// or https:// URL", raw)
	case u.Host == "":
		return "", fmt.Errorf("%q: no host", raw)
	case u.User != nil:
		return "", errors.New("a public URL must not carry user info")
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return "", fmt.Errorf("%q: no query or fragment allowed", raw)
	}
	return strings.TrimRight(u.Scheme+"://"+u.Host+u.EscapedPath(), "/"), nil
}
