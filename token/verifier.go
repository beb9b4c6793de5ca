package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// KeySource finds the verification key a token's kid names. key is an
// ed25519.PublicKey (EdDSA), *ecdsa.PublicKey on P-256 (ES256),
// *rsa.PublicKey (RS256) or []byte (HS256); alg is the one algorithm that key
// may verify. ok is false for an unknown or retired kid.
//
// The Manager (server side) and KeySet (a parsed JWKS, authn side) implement
// it. A caching verifier can wrap one to notice misses and refetch the JWKS.
type KeySource interface {
	Key(kid string) (key any, alg string, ok bool)
}

// Verifier checks access tokens. It is safe for concurrent use and is meant
// to be built once: the golang-jwt parser inside is configured at
// construction and reused for every token.
type Verifier struct {
	keys    KeySource
	parser  *jwt.Parser
	keyfunc jwt.Keyfunc
	// maxLifetime bounds exp - iat (0: no bound).
	maxLifetime time.Duration
}

// NewVerifier returns a Verifier for tokens whose keys keys knows. It uses
// WithIssuer, WithAudience, WithLeeway, WithAccessTTL and WithClock; iss and
// aud are always checked (defaults "identity"), exp and iat are required.
// Told the access TTL, it also refuses a token that claims to live longer
// than the TTL plus the leeway; without WithAccessTTL it does not bound the
// lifetime, so a verifier that does not know the issuer's TTL accepts any.
func NewVerifier(keys KeySource, opts ...Option) (*Verifier, error) {
	if keys == nil {
		return nil, errors.New("token: nil KeySource")
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	v := &Verifier{keys: keys}
	if c.accessTTLSet {
		v.maxLifetime = c.accessTTL + c.leeway
	}
	v.keyfunc = v.lookup // bound once: a method value per call would allocate
	v.parser = jwt.NewParser(
		// The parser-wide list only keeps out what we never accept (none,
		// PS*, HS384...); the keyfunc then pins each token to the alg of
		// the key its kid names.
		jwt.WithValidMethods([]string{EdDSA, ES256, RS256, HS256}),
		jwt.WithIssuer(c.issuer),
		jwt.WithAudience(c.audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(c.leeway),
		jwt.WithTimeFunc(c.now),
		// Strict base64: a segment whose unused low bits are set decodes
		// to the same bytes in a lax decoder, a second spelling of the
		// same signature. (Line breaks, which even the strict decoder
		// skips, Verify refuses before parsing.)
		jwt.WithStrictDecoding(),
	)
	return v, nil
}

// Verify checks tok and returns its claims: ErrExpired if only its expiry
// failed, ErrInvalid (wrapped with the reason) for anything else. It does not
// check whether the session was revoked; that needs the store.
func (v *Verifier) Verify(tok string) (Claims, error) {
	// Refuse before any decoding: bounded work for any input. A JWT starts
	// with a base64url JSON object, "eyJ"; a refresh token starts with "rt1."
	// and is turned away here, without reaching the parser.
	if len(tok) > MaxTokenSize || !strings.HasPrefix(tok, "eyJ") || !compactJWS(tok) {
		return Claims{}, ErrInvalid
	}
	ac := accessClaims{maxLifetime: v.maxLifetime}
	t, err := v.parser.ParseWithClaims(tok, &ac, v.keyfunc)
	if err != nil {
		if onlyExpired(err) {
			return Claims{}, ErrExpired
		}
		return Claims{}, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	kid, _ := t.Header["kid"].(string) // the keyfunc required it
	return Claims{
		KeyID:     kid,
		Subject:   ac.Subject,
		Username:  ac.Username,
		Roles:     ac.Roles,
		SessionID: ac.SessionID,
		ID:        ac.ID,
		IssuedAt:  ac.IssuedAt.Time,
		ExpiresAt: ac.ExpiresAt.Time,
	}, nil
}

// compactJWS reports whether tok holds only base64url characters and dots,
// as a compact JWS does (RFC 7515 §7.1). Go's base64 decoders skip CR and
// LF, so without this a token with line breaks inserted in its signature
// would verify: one token, many spellings, each a different cache key.
func compactJWS(tok string) bool {
	for i := 0; i < len(tok); i++ {
		switch c := tok[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

var (
	errType     = errors.New("typ is not at+jwt")
	errCrit     = errors.New("crit header not supported")
	errNoKID    = errors.New("no kid")
	errKID      = errors.New("unknown kid")
	errAlg      = errors.New("alg does not match the key's")
	errKeyType  = errors.New("key does not suit its alg")
	errNoClaims = fmt.Errorf("%w: sub, sid, jti and iat are required", jwt.ErrTokenRequiredClaimMissing)
	errLifetime = errors.New("exp is further after iat than the access TTL plus the leeway")
	errTimeType = errors.New("exp, iat and nbf must be JSON numbers")
)

// lookup is the keyfunc: it runs after the header is decoded and before the
// signature is checked, so everything decided from the header is cheap.
func (v *Verifier) lookup(t *jwt.Token) (any, error) {
	typ, _ := t.Header["typ"].(string)
	if !isAccessTokenType(typ) {
		return nil, errType
	}
	// RFC 7515 §4.1.11: an extension we do not understand must be refused.
	if _, ok := t.Header["crit"]; ok {
		return nil, errCrit
	}
	kid, _ := t.Header["kid"].(string)
	if kid == "" {
		return nil, errNoKID
	}
	key, alg, ok := v.keys.Key(kid)
	if !ok {
		return nil, errKID
	}
	// The pin: a kid names one key and one alg. Comparing here is what stops
	// algorithm confusion (an HS256 token "signed" with a public key).
	if t.Method.Alg() != alg {
		return nil, errAlg
	}
	if !keySuitsAlg(key, alg) {
		return nil, errKeyType
	}
	return key, nil
}

// isAccessTokenType accepts "at+jwt" and "application/at+jwt" in any case,
// as RFC 9068 §2.1 and RFC 7515 §4.1.9 allow.
func isAccessTokenType(typ string) bool {
	typ, _ = strings.CutPrefix(strings.ToLower(typ), "application/")
	return typ == "at+jwt"
}

// keySuitsAlg guards against a KeySource that hands out a key of the wrong
// kind; golang-jwt checks the Go type, this also checks curve and size.
func keySuitsAlg(key any, alg string) bool {
	switch k := key.(type) {
	case ed25519.PublicKey:
		return alg == EdDSA && len(k) == ed25519.PublicKeySize
	case *ecdsa.PublicKey:
		return alg == ES256 && k.Curve == elliptic.P256()
	case *rsa.PublicKey:
		return alg == RS256 && k.N.BitLen() >= 2048
	case []byte:
		return alg == HS256 && len(k) >= 32
	}
	return false
}

// onlyExpired reports whether the claims failed only on exp. golang-jwt
// validates claims after the signature, so such a token is authentic; any
// other claim failure alongside makes it invalid, not merely expired.
func onlyExpired(err error) bool {
	if !errors.Is(err, jwt.ErrTokenInvalidClaims) || !errors.Is(err, jwt.ErrTokenExpired) {
		return false
	}
	for _, other := range []error{
		jwt.ErrTokenInvalidAudience,
		jwt.ErrTokenInvalidIssuer,
		jwt.ErrTokenNotValidYet,
		jwt.ErrTokenUsedBeforeIssued,
		jwt.ErrTokenRequiredClaimMissing,
		jwt.ErrInvalidType,
		jwt.ErrTokenInvalidSubject,
		jwt.ErrTokenInvalidId,
		errLifetime,
	} {
		if errors.Is(err, other) {
			return false
		}
	}
	return true
}

// accessClaims is the JSON shape of an access token's claims.
type accessClaims struct {
	jwt.RegisteredClaims
	SessionID string   `json:"sid,omitempty"`
	Roles     []string `json:"roles,omitempty"`
	Username  string   `json:"preferred_username,omitempty"`

	// maxLifetime is the Verifier's bound on exp - iat (0: none); not a
	// claim.
	maxLifetime time.Duration
}

// UnmarshalJSON decodes the claims, refusing a time claim that is not a
// JSON number: golang-jwt's NumericDate also takes a string of digits
// ("exp": "1700000000"), which RFC 7519 §2 does not allow. Every other
// claim's type is checked by its Go type (a string, a []string).
//
// The claims our issuers write take a fast path (decodeClaimsFast) that
// gives the same result; the rest come here.
func (c *accessClaims) UnmarshalJSON(b []byte) error {
	if decodeClaimsFast(b, c) {
		return nil
	}
	return c.unmarshalJSON(b)
}

func (c *accessClaims) unmarshalJSON(b []byte) error {
	type plain accessClaims // the same fields without this method
	// One pass: the outer fields take exp, iat and nbf from the embedded
	// claims (a shallower field wins in encoding/json).
	w := struct {
		*plain
		Exp json.RawMessage `json:"exp"`
		Iat json.RawMessage `json:"iat"`
		Nbf json.RawMessage `json:"nbf"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	for _, f := range []struct {
		raw json.RawMessage
		dst **jwt.NumericDate
	}{{w.Exp, &c.ExpiresAt}, {w.Iat, &c.IssuedAt}, {w.Nbf, &c.NotBefore}} {
		if len(f.raw) == 0 {
			continue // absent: the required ones are checked later
		}
		if f.raw[0] != '-' && (f.raw[0] < '0' || f.raw[0] > '9') {
			return errTimeType
		}
		d := new(jwt.NumericDate)
		if err := d.UnmarshalJSON(f.raw); err != nil {
			return err
		}
		*f.dst = d
	}
	return nil
}

// Validate adds the claims RFC 9068 and our revocation check need to the
// ones golang-jwt checks (exp, iss, aud), and the lifetime bound. golang-jwt
// calls it after the signature checked out.
func (c *accessClaims) Validate() error {
	if c.Subject == "" || c.SessionID == "" || c.ID == "" || c.IssuedAt == nil {
		return errNoClaims
	}
	if c.maxLifetime > 0 && c.ExpiresAt != nil && c.ExpiresAt.Sub(c.IssuedAt.Time) > c.maxLifetime {
		return errLifetime
	}
	return nil
}
