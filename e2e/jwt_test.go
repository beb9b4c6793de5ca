package e2e

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// jwtParts is a compact JWS split and decoded, without any verification.
type jwtParts struct {
	raw       [3]string // the three base64url segments as sent
	header    map[string]any
	claims    map[string]any
	signature []byte
}

func decodeJWT(t testing.TB, token string) jwtParts {
	t.Helper()
	segs := strings.Split(token, ".")
	if len(segs) != 3 {
		t.Fatalf("access token is not a compact JWS (%d segments)", len(segs))
	}
	var p jwtParts
	copy(p.raw[:], segs)
	p.header = decodeSegment(t, segs[0], "header")
	p.claims = decodeSegment(t, segs[1], "payload")
	sig, err := base64.RawURLEncoding.DecodeString(segs[2])
	if err != nil {
		t.Fatalf("JWT signature is not base64url without padding: %v", err)
	}
	p.signature = sig
	return p
}

func decodeSegment(t testing.TB, seg, what string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatalf("JWT %s is not base64url without padding: %v", what, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("JWT %s is not a JSON object: %v", what, err)
	}
	return m
}

// encodeSegment is the base64url JSON of v, as a JWS segment.
func encodeSegment(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// looksLikeJWT reports whether s has the shape of a compact JWS with a JSON
// header: what a refresh token must never be.
func looksLikeJWT(s string) bool {
	segs := strings.Split(s, ".")
	if len(segs) != 3 {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(segs[0])
	if err != nil {
		return false
	}
	var m map[string]any
	return json.Unmarshal(b, &m) == nil
}

// jwk is one key of the published JWKS, with every member a key could carry
// so the test can check that no private one is there.
type jwk struct {
	Kid string `json:"kid"`
	Kty string `json:"kty"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	N   string `json:"n"`
	E   string `json:"e"`
	// Private members (RFC 7518 §6): must never be published.
	D  string `json:"d"`
	P  string `json:"p"`
	Q  string `json:"q"`
	DP string `json:"dp"`
	DQ string `json:"dq"`
	QI string `json:"qi"`
	K  string `json:"k"`
}

func (k jwk) private() bool {
	return k.D != "" || k.P != "" || k.Q != "" || k.DP != "" || k.DQ != "" || k.QI != "" || k.K != ""
}

func fetchJWKS(t testing.TB, d *identityd) []jwk {
	t.Helper()
	r := d.do(t, http.MethodGet, "/.well-known/jwks.json", nil, nil)
	if r.status != http.StatusOK {
		t.Fatalf("JWKS: %v", r)
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(r.body, &set); err != nil {
		t.Fatalf("JWKS is not a JWK Set (%v): %v", err, r)
	}
	if len(set.Keys) == 0 {
		t.Fatalf("JWKS has no keys: %v", r)
	}
	return set.Keys
}

// ed25519Key returns the published Ed25519 key with this kid.
func ed25519Key(t testing.TB, keys []jwk, kid string) ed25519.PublicKey {
	t.Helper()
	for _, k := range keys {
		if k.Kid != kid {
			continue
		}
		if k.Kty != "OKP" || k.Crv != "Ed25519" {
			t.Fatalf("key %q: kty %q crv %q, want OKP Ed25519", kid, k.Kty, k.Crv)
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			t.Fatalf("key %q: x is not a base64url Ed25519 public key (%d bytes, %v)", kid, len(x), err)
		}
		return ed25519.PublicKey(x)
	}
	t.Fatalf("JWKS has no key with kid %q", kid)
	return nil
}
