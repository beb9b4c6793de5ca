package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"sort"
)

// PublicKey is a published verification key.
type PublicKey struct {
	ID  string
	Alg string
	// Key is an ed25519.PublicKey, *ecdsa.PublicKey or *rsa.PublicKey.
	Key crypto.PublicKey
}

// JWK is one key of a JWKS (RFC 7517, RFC 8037 for OKP); fields that do not
// apply to the key type are empty. It mirrors identity.v1.PublicKey field for
// field, so the server maps it to protobuf one to one.
type JWK struct {
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	X   string `json:"x,omitempty"`
	Y   string `json:"y,omitempty"`
	N   string `json:"n,omitempty"`
	E   string `json:"e,omitempty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

// JWKSet is a JWK Set document.
type JWKSet struct {
	Keys []JWK `json:"keys"`
}

// NewJWKSet converts public keys to their JWK form, in order.
func NewJWKSet(keys []PublicKey) (JWKSet, error) {
	set := JWKSet{Keys: make([]JWK, 0, len(keys))}
	for _, k := range keys {
		j, err := toJWK(k)
		if err != nil {
			return JWKSet{}, err
		}
		set.Keys = append(set.Keys, j)
	}
	return set, nil
}

// JWKS returns the JSON JWK Set for keys, as served at
// /.well-known/jwks.json.
func JWKS(keys []PublicKey) ([]byte, error) {
	set, err := NewJWKSet(keys)
	if err != nil {
		return nil, err
	}
	return json.Marshal(set)
}

var (
	b64 = base64.RawURLEncoding
	// b64Strict refuses non-zero trailing bits, so each value has exactly
	// one encoding.
	b64Strict = base64.RawURLEncoding.Strict()
)

func toJWK(k PublicKey) (JWK, error) {
	j := JWK{Kid: k.ID, Alg: k.Alg, Use: "sig"}
	switch p := k.Key.(type) {
	case ed25519.PublicKey:
		j.Kty, j.Crv, j.X = "OKP", "Ed25519", b64.EncodeToString(p)
	case *ecdsa.PublicKey:
		if p.Curve != elliptic.P256() {
			return JWK{}, fmt.Errorf("token: key %q: ECDSA key is not on P-256", k.ID)
		}
		pt, err := p.Bytes() // 0x04 || X || Y, each 32 bytes
		if err != nil {
			return JWK{}, fmt.Errorf("token: key %q: %w", k.ID, err)
		}
		j.Kty, j.Crv, j.X, j.Y = "EC", "P-256", b64.EncodeToString(pt[1:33]), b64.EncodeToString(pt[33:])
	case *rsa.PublicKey:
		j.Kty, j.N = "RSA", b64.EncodeToString(p.N.Bytes())
		j.E = b64.EncodeToString(big.NewInt(int64(p.E)).Bytes())
	default:
		return JWK{}, fmt.Errorf("token: key %q: cannot publish a %T", k.ID, k.Key)
	}
	if algFor(j.Kty, j.Crv) != k.Alg {
		return JWK{}, fmt.Errorf("token: key %q: a %s key cannot be %q", k.ID, j.Kty, k.Alg)
	}
	return j, nil
}

// algFor is the one alg we accept for each key type: a JWK whose alg says
// otherwise is refused rather than guessed at.
func algFor(kty, crv string) string {
	switch {
	case kty == "OKP" && crv == "Ed25519":
		return EdDSA
	case kty == "EC" && crv == "P-256":
		return ES256
	case kty == "RSA":
		return RS256
	}
	return ""
}

// KeySet is a fixed set of public keys, typically a fetched JWKS; it is a
// KeySource for a Verifier outside the identity server. Immutable: to pick up
// a new JWKS, build a new KeySet and swap it in.
type KeySet struct {
	keys map[string]PublicKey
}

// NewKeySet returns a KeySet holding keys; kids must be unique.
func NewKeySet(keys ...PublicKey) (*KeySet, error) {
	s := &KeySet{keys: make(map[string]PublicKey, len(keys))}
	for _, k := range keys {
		if _, dup := s.keys[k.ID]; dup {
			return nil, fmt.Errorf("token: duplicate kid %q", k.ID)
		}
		if k.ID == "" || !keySuitsAlg(k.Key, k.Alg) || k.Alg == HS256 {
			return nil, fmt.Errorf("token: key %q: not a usable %q public key", k.ID, k.Alg)
		}
		s.keys[k.ID] = k
	}
	return s, nil
}

// Key implements KeySource.
func (s *KeySet) Key(kid string) (any, string, bool) {
	k, ok := s.keys[kid]
	return k.Key, k.Alg, ok
}

// Keys returns the set's keys ordered by kid.
func (s *KeySet) Keys() []PublicKey {
	out := make([]PublicKey, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// maxJWKSSize bounds ParseJWKS: a real set is a few KiB.
const maxJWKSSize = 1 << 20

// ParseJWKS parses a JWK Set document (as fetched from
// /.well-known/jwks.json) into a KeySet. See KeySetFromJWKs for what is kept.
func ParseJWKS(b []byte) (*KeySet, error) {
	if len(b) > maxJWKSSize {
		return nil, errors.New("token: JWKS too large")
	}
	var set JWKSet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("token: JWKS: %w", err)
	}
	return KeySetFromJWKs(set.Keys)
}

// KeySetFromJWKs builds a KeySet from JWKs (from ParseJWKS, or from the
// GetPublicKeys RPC). As RFC 7517 §5 asks, keys of a type or algorithm we do
// not know, and keys whose use is not "sig", are skipped, so a future key
// type does not break old verifiers. These are errors, because they mean
// the publisher is broken or compromised: a symmetric ("oct") key, a key
// without kid or alg, an alg that does not fit the key type, a duplicate kid,
// malformed key material, and a set with no usable key.
func KeySetFromJWKs(jwks []JWK) (*KeySet, error) {
	var keys []PublicKey
	for _, j := range jwks {
		if j.Kty == "oct" {
			return nil, fmt.Errorf("token: JWKS key %q: symmetric keys must never be published", j.Kid)
		}
		if j.Kid == "" || j.Alg == "" {
			return nil, fmt.Errorf("token: JWKS key of type %q without kid or alg", j.Kty)
		}
		if j.Use != "" && j.Use != "sig" {
			continue
		}
		want := algFor(j.Kty, j.Crv)
		if want == "" || (j.Alg != EdDSA && j.Alg != ES256 && j.Alg != RS256) {
			continue // unknown kty/crv, or an alg we do not verify (PS256...)
		}
		if j.Alg != want {
			return nil, fmt.Errorf("token: JWKS key %q: alg %q does not fit a %s %s key", j.Kid, j.Alg, j.Kty, j.Crv)
		}
		pub, err := fromJWK(j)
		if err != nil {
			return nil, fmt.Errorf("token: JWKS key %q: %w", j.Kid, err)
		}
		keys = append(keys, PublicKey{ID: j.Kid, Alg: j.Alg, Key: pub})
	}
	if len(keys) == 0 {
		return nil, errors.New("token: JWKS has no usable key")
	}
	return NewKeySet(keys...)
}

func fromJWK(j JWK) (crypto.PublicKey, error) {
	dec := b64Strict
	switch j.Kty {
	case "OKP":
		x, err := dec.DecodeString(j.X)
		if err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 x")
		}
		return ed25519.PublicKey(x), nil
	case "EC":
		x, errX := dec.DecodeString(j.X)
		y, errY := dec.DecodeString(j.Y)
		if errX != nil || errY != nil || len(x) != 32 || len(y) != 32 {
			return nil, errors.New("bad P-256 x or y")
		}
		// ParseUncompressedPublicKey also checks the point is on the curve.
		return ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	case "RSA":
		n, errN := dec.DecodeString(j.N)
		e, errE := dec.DecodeString(j.E)
		if errN != nil || errE != nil || len(e) == 0 || len(e) > 4 || len(n) == 0 || n[0] == 0 {
			return nil, errors.New("bad RSA n or e")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		// The upper bound keeps a hostile JWKS from making each verify slow.
		if pub.N.BitLen() < 2048 || pub.N.BitLen() > 8192 || pub.E < 3 || pub.E%2 == 0 {
			return nil, errors.New("RSA key not within 2048..8192 bits or with a bad exponent")
		}
		return pub, nil
	}
	return nil, fmt.Errorf("unsupported kty %q", j.Kty)
}
