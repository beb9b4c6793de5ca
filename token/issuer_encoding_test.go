package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// hostileClaims need every kind of JSON escape in the strings the issuer
// writes: quotes, backslashes, control characters, HTML characters (which
// encoding/json escapes), U+2028/U+2029, non-ASCII and astral runes.
var hostileClaims = []Claims{
	alice,
	{Subject: "u", SessionID: "s.s"}, // no roles, no username: both omitted
	{Subject: "u", SessionID: "s.s", Roles: []string{}, Username: ""},
	{Subject: "u", SessionID: "s.s", Roles: []string{""}},
	{Subject: `u"1\`, SessionID: `s"\.x`, Username: `al"ice\`, Roles: []string{`"admin"`, `a\"b`, `\`}},
	{Subject: "u", SessionID: "s.s", Username: "tab\there\nnew\rline\b\f\x00\x01\x1f\x7f", Roles: []string{"\x00"}},
	{Subject: "u", SessionID: "s.s", Username: "<script>&amp;</script>", Roles: []string{"a<b", "c>d", "e&f"}},
	{Subject: "u", SessionID: "s.s", Username: "line\u2028para\u2029", Roles: []string{"\u2028"}},
	{Subject: "ü", SessionID: "s.s", Username: "zoë 名前 🔑", Roles: []string{"rôle", "役割", "😀", "\ufeff", "\ufffd"}},
}

// oldToken is the token golang-jwt's own encoder makes for the same
// claims, times, jti and key: what Issue made before it encoded tokens by
// hand.
func oldToken(t *testing.T, iss *Issuer, key SigningKey, c Claims, iat, exp time.Time, jti string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(key.Alg), &accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    iss.cfg.issuer,
			Subject:   c.Subject,
			Audience:  jwt.ClaimStrings{iss.cfg.audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(iat),
			IssuedAt:  jwt.NewNumericDate(iat),
			ID:        jti,
		},
		SessionID: c.SessionID,
		Roles:     c.Roles,
		Username:  c.Username,
	})
	tok.Header["typ"] = "at+jwt"
	tok.Header["kid"] = key.ID
	s, err := tok.SignedString(key.Private)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func publicKey(t *testing.T, k SigningKey) any {
	t.Helper()
	switch p := k.Private.(type) {
	case ed25519.PrivateKey, *ecdsa.PrivateKey, *rsa.PrivateKey:
		return p.(crypto.Signer).Public()
	case []byte:
		return p
	}
	t.Fatalf("key type %T", k.Private)
	return nil
}

// TestIssueEncodingMatchesGolangJWT: for every algorithm and every claim
// set above, the token Issue writes has the header and claims segments
// golang-jwt's encoder writes, byte for byte (and the whole token for the
// deterministic signatures), and golang-jwt parses it back to equal claims.
func TestIssueEncodingMatchesGolangJWT(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{EdDSA, ES256, RS256, HS256} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			s := newSetup(t, alg, WithIssuer(`iss "<&>"`), WithAudience("aud\u2028ü"))
			key, err := s.m.SigningKey()
			if err != nil {
				t.Fatal(err)
			}
			pub := publicKey(t, key)
			now := t0.Add(1500 * time.Millisecond) // iat is truncated to t0+1s
			s.clock.Set(now)
			for _, c := range hostileClaims {
				tok, exp, err := s.iss.Issue(c, now, time.Time{})
				if err != nil {
					t.Fatalf("Issue(%+v): %v", c, err)
				}
				var ac accessClaims
				parsed, err := jwt.ParseWithClaims(tok, &ac, func(*jwt.Token) (any, error) { return pub, nil },
					jwt.WithValidMethods([]string{alg}), jwt.WithTimeFunc(s.clock.Now),
					jwt.WithIssuer(`iss "<&>"`), jwt.WithAudience("aud\u2028ü"), jwt.WithExpirationRequired())
				if err != nil {
					t.Fatalf("golang-jwt cannot parse the token of %+v: %v", c, err)
				}
				if parsed.Header["typ"] != "at+jwt" || parsed.Header["kid"] != key.ID || parsed.Header["alg"] != alg {
					t.Errorf("header %v", parsed.Header)
				}
				iat := now.Truncate(time.Second)
				if ac.Subject != c.Subject || ac.SessionID != c.SessionID || ac.Username != c.Username ||
					!slices.Equal(ac.Roles, c.Roles) && !(len(ac.Roles) == 0 && len(c.Roles) == 0) ||
					!ac.IssuedAt.Equal(iat) || !ac.NotBefore.Equal(iat) || !ac.ExpiresAt.Equal(exp) ||
					len(ac.ID) != 22 {
					t.Errorf("claims of %+v came back as %+v", c, ac)
				}
				old := oldToken(t, s.iss, key, c, iat, exp, ac.ID)
				np, op := strings.Split(tok, "."), strings.Split(old, ".")
				if np[0] != op[0] {
					t.Errorf("header segment %q, golang-jwt writes %q", decode(t, np[0]), decode(t, op[0]))
				}
				if np[1] != op[1] {
					t.Errorf("claims segment\n %s\ngolang-jwt writes\n %s", decode(t, np[1]), decode(t, op[1]))
				}
				if alg != ES256 && tok != old { // ECDSA signatures are randomised
					t.Errorf("%s token differs from golang-jwt's in its signature", alg)
				}
			}
		})
	}
}

func decode(t *testing.T, seg string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The key's header is encoded once, and again when the signing key changes.
func TestIssueHeaderFollowsKeyRotation(t *testing.T) {
	t.Parallel()
	s := newSetup(t, EdDSA, WithPublishAhead(0))
	first := s.issue(t, alice)
	if err := s.m.Rotate(t.Context(), s.clock.Now()); err != nil {
		t.Fatal(err)
	}
	s.clock.Advance(time.Second)
	second := s.issue(t, alice)
	h1, _ := segments(t, first)
	h2, _ := segments(t, second)
	key, err := s.m.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	if h1["kid"] == h2["kid"] || h2["kid"] != key.ID {
		t.Errorf("kid after rotation %v (before %v), signing key %s", h2["kid"], h1["kid"], key.ID)
	}
	if _, err := s.ver.Verify(second); err != nil {
		t.Errorf("token of the new key: %v", err)
	}
}

// FuzzAppendJSONString: appendJSONString writes what encoding/json writes
// for any string, valid UTF-8 or not.
func FuzzAppendJSONString(f *testing.F) {
	for _, c := range hostileClaims {
		f.Add(c.Username)
		f.Add(c.Subject)
	}
	f.Add("\xff\xfe a\xc3")
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("appendJSONString(%q) = %s, encoding/json: %s", s, got, want)
		}
		if utf8.ValidString(s) {
			var back string
			if err := json.Unmarshal(appendJSONString(nil, s), &back); err != nil || back != s {
				t.Fatalf("%q came back as %q, %v", s, back, err)
			}
		}
	})
}
