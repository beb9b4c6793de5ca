package token

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/identityd/identity/internal/jsonesc"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// SigningKeys supplies the key to sign with; the Manager implements it.
type SigningKeys interface {
	SigningKey() (SigningKey, error)
}

// Issuer mints access tokens. It is safe for concurrent use.
//
// Issue is on the path of every login and refresh, so it does not build
// tokens with golang-jwt's generic encoder (a header map and the claims
// through encoding/json's reflection, each call): the header of a key is
// constant and encoded once per key, and the fixed claim set is appended
// as JSON by hand, byte for byte what encoding/json writes for the same
// claims (issuer_test.go holds both to it, and has golang-jwt parse every
// token). golang-jwt still signs with every algorithm but EdDSA, which is
// signed here directly over the reused buffer, and it verifies all of them.
type Issuer struct {
	keys SigningKeys
	cfg  config
	// header is the encoded header segment of the last key used.
	header atomic.Pointer[headerSegment]
	// prefix is `{"iss":<issuer>,"sub":`; audience `,"aud":[<audience>],"exp":`.
	prefix, audience []byte
}

type headerSegment struct {
	kid, alg string
	seg      []byte // base64url of {"alg":…,"kid":…,"typ":"at+jwt"}
}

// NewIssuer returns an Issuer signing with keys' current key. It uses
// WithIssuer, WithAudience, WithAccessTTL and WithRandom.
func NewIssuer(keys SigningKeys, opts ...Option) (*Issuer, error) {
	if keys == nil {
		return nil, errors.New("token: nil SigningKeys")
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	i := &Issuer{keys: keys, cfg: c}
	i.prefix = appendJSONString(append([]byte(nil), `{"iss":`...), c.issuer)
	i.prefix = append(i.prefix, `,"sub":`...)
	i.audience = appendJSONString(append([]byte(nil), `,"aud":[`...), c.audience)
	i.audience = append(i.audience, `],"exp":`...)
	return i, nil
}

// issueBuffer is one Issue's scratch space, reused through issueBuffers:
// the claims JSON, the token being built, the jti's random bytes.
type issueBuffer struct {
	claims []byte
	token  []byte
	jti    [jtiBytes]byte
}

const jtiBytes = 16 // 128 bits, 22 base64url characters

var issueBuffers = sync.Pool{New: func() any { return new(issueBuffer) }}

// Issue signs an access token for c at now and returns it with its expiry.
// c.Subject and c.SessionID are required; c.ID, c.IssuedAt and c.ExpiresAt
// are ignored (a fresh jti; iat = nbf = now). The token lives for the access
// TTL, but never past notAfter when that is not zero: pass the session's
// absolute expiry, so no access token outlives its session.
//
// Times are whole seconds in a JWT, so now is truncated to the second; the
// returned expiry is exactly the token's exp.
func (i *Issuer) Issue(c Claims, now, notAfter time.Time) (string, time.Time, error) {
	if c.Subject == "" || c.SessionID == "" {
		return "", time.Time{}, errors.New("token: issue: subject and session id are required")
	}
	now = now.Truncate(time.Second)
	exp := now.Add(i.cfg.accessTTL)
	if !notAfter.IsZero() && notAfter.Before(exp) {
		exp = notAfter.Truncate(time.Second)
		if !exp.After(now) {
			return "", time.Time{}, ErrSessionEnded
		}
	}
	key, err := i.keys.SigningKey()
	if err != nil {
		return "", time.Time{}, err
	}
	header, err := i.headerFor(key)
	if err != nil {
		return "", time.Time{}, err
	}
	buf := issueBuffers.Get().(*issueBuffer)
	defer issueBuffers.Put(buf)
	if _, err := io.ReadFull(i.cfg.rand, buf.jti[:]); err != nil {
		return "", time.Time{}, fmt.Errorf("token: jti: %w", err)
	}
	buf.claims = i.appendClaims(buf.claims[:0], c, now, exp, buf.jti[:])

	t := append(buf.token[:0], header...)
	t = append(t, '.')
	t = base64.RawURLEncoding.AppendEncode(t, buf.claims)
	var sig []byte
	switch priv := key.Private.(type) {
	case ed25519.PrivateKey:
		if key.Alg != EdDSA || len(priv) != ed25519.PrivateKeySize {
			return "", time.Time{}, fmt.Errorf("token: sign: an Ed25519 key for %q", key.Alg)
		}
		sig = ed25519.Sign(priv, t)
	default:
		method := jwt.GetSigningMethod(key.Alg)
		if method == nil {
			return "", time.Time{}, fmt.Errorf("token: unsupported algorithm %q", key.Alg)
		}
		if sig, err = method.Sign(string(t), key.Private); err != nil {
			return "", time.Time{}, fmt.Errorf("token: sign: %w", err)
		}
	}
	t = append(t, '.')
	t = base64.RawURLEncoding.AppendEncode(t, sig)
	buf.token = t
	return string(t), exp, nil
}

// headerFor is the encoded header segment for key, made once per key.
func (i *Issuer) headerFor(key SigningKey) ([]byte, error) {
	if h := i.header.Load(); h != nil && h.kid == key.ID && h.alg == key.Alg {
		return h.seg, nil
	}
	if jwt.GetSigningMethod(key.Alg) == nil {
		return nil, fmt.Errorf("token: unsupported algorithm %q", key.Alg)
	}
	// The map's keys are written sorted, as golang-jwt writes its header.
	b, err := json.Marshal(map[string]string{"alg": key.Alg, "kid": key.ID, "typ": "at+jwt"})
	if err != nil {
		return nil, fmt.Errorf("token: header: %w", err)
	}
	h := &headerSegment{kid: key.ID, alg: key.Alg, seg: base64.RawURLEncoding.AppendEncode(nil, b)}
	i.header.Store(h)
	return h.seg, nil
}

// appendClaims appends the claims JSON of an access token: the fields of
// accessClaims in their order, as encoding/json writes them (omitempty
// included: iss, sub, aud, exp, nbf, iat and jti are never empty here; sid
// neither; roles and preferred_username may be).
func (i *Issuer) appendClaims(b []byte, c Claims, iat, exp time.Time, jti []byte) []byte {
	b = append(b, i.prefix...)
	b = appendJSONString(b, c.Subject)
	b = append(b, i.audience...)
	b = strconv.AppendInt(b, exp.Unix(), 10)
	b = append(b, `,"nbf":`...)
	b = strconv.AppendInt(b, iat.Unix(), 10)
	b = append(b, `,"iat":`...)
	b = strconv.AppendInt(b, iat.Unix(), 10)
	b = append(b, `,"jti":"`...)
	b = base64.RawURLEncoding.AppendEncode(b, jti) // nothing to escape
	b = append(b, `","sid":`...)
	b = appendJSONString(b, c.SessionID)
	if len(c.Roles) > 0 {
		b = append(b, `,"roles":[`...)
		for n, r := range c.Roles {
			if n > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, r)
		}
		b = append(b, ']')
	}
	if c.Username != "" {
		b = append(b, `,"preferred_username":`...)
		b = appendJSONString(b, c.Username)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string exactly as encoding/json
// writes it (with its default HTML escaping): `"` and `\` escaped, control
// characters as \n, \r, \t or \u00XX (\b and \f too), <, > and & as
// \u003c, \u003e and \u0026, U+2028 and U+2029 escaped, and each byte of
// invalid UTF-8 as \ufffd.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			b = jsonesc.AppendByte(b, c)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
