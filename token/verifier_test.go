package token

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// allAlgs is every algorithm the package signs with.
var allAlgs = []string{EdDSA, ES256, RS256, HS256}

// multiSetup returns a setup whose keyring holds one key of each algorithm
// (EdDSA signing, the others published ahead), for cross-algorithm attacks.
func multiSetup(t *testing.T) (*setup, map[string]Key) {
	t.Helper()
	s := newSetup(t, EdDSA)
	for _, alg := range allAlgs[1:] {
		if _, err := LoadOrCreate(t.Context(), s.store, alg, WithClock(s.clock.Now)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.m.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	byAlg := map[string]Key{}
	for _, k := range s.store.ring(t).Keys {
		byAlg[k.Alg] = k
	}
	if len(byAlg) != 4 {
		t.Fatalf("keyring has algs %v, want all four", byAlg)
	}
	return s, byAlg
}

func header(alg, kid string) map[string]any {
	return map[string]any{"alg": alg, "typ": "at+jwt", "kid": kid}
}

func TestRoundTripEveryAlgorithm(t *testing.T) {
	t.Parallel()
	for _, alg := range allAlgs {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			s := newSetup(t, alg)
			tok, exp, err := s.iss.Issue(alice, s.clock.Now(), time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if want := t0.Add(DefaultAccessTTL); !exp.Equal(want) {
				t.Errorf("expiry = %v, want %v", exp, want)
			}
			got, err := s.ver.Verify(tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := alice
			want.ID, want.IssuedAt, want.ExpiresAt = got.ID, t0, exp
			if sk, _ := s.m.SigningKey(); got.KeyID != sk.ID {
				t.Errorf("KeyID = %q, want the signing key's kid %q", got.KeyID, sk.ID)
			}
			if got.Subject != want.Subject || got.Username != want.Username || got.SessionID != want.SessionID ||
				!slices.Equal(got.Roles, want.Roles) || !got.IssuedAt.Equal(t0) || !got.ExpiresAt.Equal(exp) || len(got.ID) != 22 {
				t.Errorf("claims = %+v, want %+v", got, want)
			}
			h, _ := segments(t, tok)
			if h["alg"] != alg {
				t.Errorf("alg = %v, want %s", h["alg"], alg)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	s, keys := multiSetup(t)
	ed := keys[EdDSA]
	edPub := ed.Private.(ed25519.PrivateKey).Public().(ed25519.PublicKey)
	rs := keys[RS256]
	rsaDER, err := x509.MarshalPKIXPublicKey(&rs.Private.(*rsa.PrivateKey).PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER})
	jwks, err := JWKS(s.m.Published())
	if err != nil {
		t.Fatal(err)
	}
	_, strangerKey, _ := ed25519.GenerateKey(rand.Reader)
	valid := forge(t, jwt.SigningMethodEdDSA, ed.Private, header(EdDSA, ed.ID), baseClaims())

	// swapPayload keeps valid's header and signature around other claims.
	swapPayload := func(claims map[string]any) string {
		other := forge(t, jwt.SigningMethodEdDSA, strangerKey, header(EdDSA, ed.ID), claims)
		p := strings.Split(valid, ".")
		return p[0] + "." + strings.Split(other, ".")[1] + "." + p[2]
	}
	refresh := s.m.Refresh().Encode(alice.SessionID, 3, "AAAAAAAAAAAAAAAAAAAAAA")
	edHS := func(key []byte) string {
		return forge(t, jwt.SigningMethodHS256, key, header(HS256, ed.ID), baseClaims())
	}
	edClaims := func(edits map[string]any) string {
		return forge(t, jwt.SigningMethodEdDSA, ed.Private, header(EdDSA, ed.ID), with(baseClaims(), edits))
	}
	edHeader := func(edits map[string]any) string {
		return forge(t, jwt.SigningMethodEdDSA, ed.Private, with(header(EdDSA, ed.ID), edits), baseClaims())
	}

	tests := []struct {
		name string
		tok  string
		want error // nil: accepted
	}{
		{"valid", valid, nil},
		{"typ application/at+jwt", edHeader(map[string]any{"typ": "application/at+jwt"}), nil},
		{"typ in upper case", edHeader(map[string]any{"typ": "AT+JWT"}), nil},
		{"expired within leeway", edClaims(map[string]any{"exp": t0.Add(-29 * time.Second).Unix()}), nil},

		{"alg none", forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, header("none", ed.ID), baseClaims()), ErrInvalid},
		{"alg none, no signature", strings.TrimSuffix(valid, strings.Split(valid, ".")[2]), ErrInvalid},
		{"HS256 keyed with the Ed25519 public key", edHS(edPub), ErrInvalid},
		{"HS256 keyed with the JWKS document", edHS(jwks), ErrInvalid},
		{"HS256 keyed with the RSA public key DER", forge(t, jwt.SigningMethodHS256, rsaDER, header(HS256, rs.ID), baseClaims()), ErrInvalid},
		{"HS256 keyed with the RSA public key PEM", forge(t, jwt.SigningMethodHS256, rsaPEM, header(HS256, rs.ID), baseClaims()), ErrInvalid},
		{"RS256 by the RSA key under the EdDSA kid", forge(t, jwt.SigningMethodRS256, rs.Private, header(RS256, ed.ID), baseClaims()), ErrInvalid},
		{"ES256 by the EC key under the HS256 kid", forge(t, jwt.SigningMethodES256, keys[ES256].Private, header(ES256, keys[HS256].ID), baseClaims()), ErrInvalid},
		{"PS256 with the RSA key", forge(t, jwt.SigningMethodPS256, rs.Private, header("PS256", rs.ID), baseClaims()), ErrInvalid},
		{"edited claims", swapPayload(with(baseClaims(), map[string]any{"sub": "u_root"})), ErrInvalid},
		{"edited roles", swapPayload(with(baseClaims(), map[string]any{"roles": []string{"admin", "root"}})), ErrInvalid},
		{"signed by a stranger", forge(t, jwt.SigningMethodEdDSA, strangerKey, header(EdDSA, ed.ID), baseClaims()), ErrInvalid},
		{"truncated signature", valid[:len(valid)-4], ErrInvalid},
		{"four segments", valid + ".e30", ErrInvalid},
		{"wrong iss", edClaims(map[string]any{"iss": "evil"}), ErrInvalid},
		{"no iss", edClaims(map[string]any{"iss": nil}), ErrInvalid},
		{"wrong aud", edClaims(map[string]any{"aud": "billing"}), ErrInvalid},
		{"aud list without us", edClaims(map[string]any{"aud": []string{"a", "b"}}), ErrInvalid},
		{"no aud", edClaims(map[string]any{"aud": nil}), ErrInvalid},
		{"typ JWT", edHeader(map[string]any{"typ": "JWT"}), ErrInvalid},
		{"no typ", edHeader(map[string]any{"typ": nil}), ErrInvalid},
		{"typ rt+jwt", edHeader(map[string]any{"typ": "rt+jwt"}), ErrInvalid},
		{"crit header", edHeader(map[string]any{"crit": []string{"exp"}}), ErrInvalid},
		{"unknown kid", edHeader(map[string]any{"kid": "nope"}), ErrInvalid},
		{"no kid", edHeader(map[string]any{"kid": nil}), ErrInvalid},
		{"no exp", edClaims(map[string]any{"exp": nil}), ErrInvalid},
		{"exp as a string", edClaims(map[string]any{"exp": "tomorrow"}), ErrInvalid},
		{"expired beyond leeway", edClaims(map[string]any{"exp": t0.Add(-31 * time.Second).Unix()}), ErrExpired},
		{"exp in the year 3000", edClaims(map[string]any{"exp": time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()}), ErrInvalid},
		{"lifetime a second beyond the TTL and leeway", edClaims(map[string]any{"exp": t0.Add(DefaultAccessTTL + DefaultLeeway + time.Second).Unix()}), ErrInvalid},
		{"lifetime of the TTL and leeway", edClaims(map[string]any{"exp": t0.Add(DefaultAccessTTL + DefaultLeeway).Unix()}), nil},
		{"iat an hour back: a lifetime beyond the TTL", edClaims(map[string]any{"iat": t0.Add(-time.Hour).Unix()}), ErrInvalid},
		{"overlong lifetime, expired too", edClaims(map[string]any{"iat": t0.Add(-48 * time.Hour).Unix(), "exp": t0.Add(-time.Hour).Unix()}), ErrInvalid},
		{"expired and wrong iss", edClaims(map[string]any{"exp": t0.Add(-time.Hour).Unix(), "iss": "evil"}), ErrInvalid},
		{"expired and no sid", edClaims(map[string]any{"exp": t0.Add(-time.Hour).Unix(), "sid": nil}), ErrInvalid},
		{"nbf in the future", edClaims(map[string]any{"nbf": t0.Add(time.Minute).Unix()}), ErrInvalid},
		{"iat in the future", edClaims(map[string]any{"iat": t0.Add(time.Minute).Unix()}), ErrInvalid},
		{"no sid", edClaims(map[string]any{"sid": nil}), ErrInvalid},
		{"no sub", edClaims(map[string]any{"sub": nil}), ErrInvalid},
		{"no jti", edClaims(map[string]any{"jti": nil}), ErrInvalid},
		{"no iat", edClaims(map[string]any{"iat": nil}), ErrInvalid},
		{"refresh token", refresh, ErrInvalid},
		{"empty", "", ErrInvalid},
		{"garbage", "eyJhbGciOiJFZERTQSJ9.!!!.!!!", ErrInvalid},
		{"oversized", valid + strings.Repeat("A", MaxTokenSize), ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := s.ver.Verify(tt.tok)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Verify = %v, want success", err)
				}
				if c.Subject != alice.Subject || c.SessionID != alice.SessionID {
					t.Errorf("claims = %+v", c)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			t.Logf("rejected: %v", err)
			if tt.want == ErrInvalid && errors.Is(err, ErrExpired) {
				t.Errorf("Verify = %v: both invalid and expired", err)
			}
			if c.Subject != "" || c.SessionID != "" {
				t.Errorf("rejected token still returned claims %+v", c)
			}
		})
	}
}

// Every key of one alg signs a token under the kid of every key of another
// alg: the verifier must refuse them all, whatever the key types.
func TestVerifyPinsAlgorithmPerKey(t *testing.T) {
	t.Parallel()
	s, keys := multiSetup(t)
	methods := map[string]jwt.SigningMethod{
		EdDSA: jwt.SigningMethodEdDSA, ES256: jwt.SigningMethodES256,
		RS256: jwt.SigningMethodRS256, HS256: jwt.SigningMethodHS256,
	}
	for _, signer := range allAlgs {
		for _, named := range allAlgs {
			tok := forge(t, methods[signer], keys[signer].Private, header(signer, keys[named].ID), baseClaims())
			_, err := s.ver.Verify(tok)
			if signer == named && err != nil {
				t.Errorf("%s key under its own kid: %v", signer, err)
			}
			if signer != named && !errors.Is(err, ErrInvalid) {
				t.Errorf("%s token under the %s kid: err = %v, want ErrInvalid", signer, named, err)
			}
		}
	}
}

func TestVerifyLeeway(t *testing.T) {
	t.Parallel()
	s := newSetup(t, EdDSA)
	tok := s.issue(t, alice) // exp = t0+15m
	strict, err := NewVerifier(s.m, WithClock(s.clock.Now), WithLeeway(0))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		v        *Verifier
		at       time.Time
		want     error
		wantName string
	}{
		{"default, just before exp", s.ver, t0.Add(15*time.Minute - time.Second), nil, "ok"},
		{"default, 30s after exp", s.ver, t0.Add(15*time.Minute + 29*time.Second), nil, "ok"},
		{"default, 31s after exp", s.ver, t0.Add(15*time.Minute + 31*time.Second), ErrExpired, "expired"},
		{"no leeway, at exp", strict, t0.Add(15 * time.Minute), ErrExpired, "expired"},
		{"no leeway, before exp", strict, t0.Add(15*time.Minute - time.Second), nil, "ok"},
		{"no leeway, 1s before iat", strict, t0.Add(-time.Second), ErrInvalid, "invalid"},
		{"default, 20s before iat", s.ver, t0.Add(-20 * time.Second), nil, "ok"},
	}
	for _, tt := range tests {
		s.clock.Set(tt.at)
		_, err := tt.v.Verify(tok)
		if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: Verify = %v, want %s", tt.name, err, tt.wantName)
		}
	}
}

// A token is accepted in exactly one spelling: the one the issuer signed.
// Base64url segments that decode to the same bytes in another spelling
// (padding bits set, line breaks, padding characters) are refused, for
// every algorithm, as are claims of the wrong JSON type.
func TestVerifyRefusesMalleatedTokens(t *testing.T) {
	t.Parallel()
	s, keys := multiSetup(t)
	methods := map[string]jwt.SigningMethod{
		EdDSA: jwt.SigningMethodEdDSA, ES256: jwt.SigningMethodES256,
		RS256: jwt.SigningMethodRS256, HS256: jwt.SigningMethodHS256,
	}
	// lowBitFlipped flips the least significant bit of the segment's last
	// character: for each of our signature sizes it is a padding bit, so a
	// lax decoder reads the same bytes.
	lowBitFlipped := func(seg string) string {
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
		i := strings.IndexByte(alphabet, seg[len(seg)-1])
		return seg[:len(seg)-1] + string(alphabet[i^1])
	}
	for _, alg := range allAlgs {
		k := keys[alg]
		valid := forge(t, methods[alg], k.Private, header(alg, k.ID), baseClaims())
		if _, err := s.ver.Verify(valid); err != nil {
			t.Fatalf("%s: the untouched token: %v", alg, err)
		}
		p := strings.Split(valid, ".")
		signed := p[0] + "." + p[1]
		claims := func(edits map[string]any) string {
			return forge(t, methods[alg], k.Private, header(alg, k.ID), with(baseClaims(), edits))
		}
		tests := []struct{ name, tok string }{
			{"signature's last character, padding bit flipped", signed + "." + lowBitFlipped(p[2])},
			{"CR LF inside the signature", signed + "." + p[2][:10] + "\r\n" + p[2][10:]},
			{"LF at the end of the signature", valid + "\n"},
			{"CR inside the payload", p[0] + "." + p[1][:5] + "\r" + p[1][5:] + "." + p[2]},
			{"padding characters after the signature", valid + "=="},
			{"a space inside the signature", signed + "." + p[2][:10] + " " + p[2][10:]},
			{"a tab before the signature", signed + ".\t" + p[2]},
			{"exp as a string", claims(map[string]any{"exp": fmt.Sprint(t0.Add(time.Minute).Unix())})},
			{"iat as a string", claims(map[string]any{"iat": fmt.Sprint(t0.Unix())})},
			{"nbf as a boolean", claims(map[string]any{"nbf": true})},
			{"roles as a string", claims(map[string]any{"roles": "admin"})},
			{"roles holding a number", claims(map[string]any{"roles": []any{"admin", 7}})},
			{"roles as an object", claims(map[string]any{"roles": map[string]any{"admin": true}})},
			{"sid as a number", claims(map[string]any{"sid": 42})},
			{"sid as an array", claims(map[string]any{"sid": []string{alice.SessionID}})},
			{"sub as a number", claims(map[string]any{"sub": 1})},
			{"jti as an object", claims(map[string]any{"jti": map[string]any{}})},
			{"preferred_username as an array", claims(map[string]any{"preferred_username": []string{"alice"}})},
			{"aud as a number", claims(map[string]any{"aud": 1})},
			{"claims as an array", p[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`["identity"]`)) + "." + p[2]},
		}
		for _, tt := range tests {
			t.Run(alg+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				if c, err := s.ver.Verify(tt.tok); !errors.Is(err, ErrInvalid) {
					t.Errorf("Verify = %+v, %v; want ErrInvalid", c, err)
				}
			})
		}
	}
}

// The lifetime bound is the TTL the verifier is told, plus its leeway; a
// verifier not told the TTL (one that does not know the issuer's setting)
// does not bound it.
func TestVerifyBoundsLifetimeByTheTTL(t *testing.T) {
	t.Parallel()
	s, keys := multiSetup(t)
	ed := keys[EdDSA]
	lifetime := func(d time.Duration) string {
		return forge(t, jwt.SigningMethodEdDSA, ed.Private, header(EdDSA, ed.ID), with(baseClaims(), map[string]any{"exp": t0.Add(d).Unix()}))
	}
	verifier := func(opts ...Option) *Verifier {
		v, err := NewVerifier(s.m, append(opts, WithClock(s.clock.Now))...)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	hour, untold := verifier(WithAccessTTL(time.Hour), WithLeeway(0)), verifier()
	tests := []struct {
		name string
		v    *Verifier
		tok  string
		want error
	}{
		{"TTL 1h: a 1h token", hour, lifetime(time.Hour), nil},
		{"TTL 1h: a 1h1s token", hour, lifetime(time.Hour + time.Second), ErrInvalid},
		{"TTL 1h: a token to the year 3000", hour, lifetime(time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC).Sub(t0)), ErrInvalid},
		{"not told the TTL: a 2h token", untold, lifetime(2 * time.Hour), nil},
	}
	for _, tt := range tests {
		if _, err := tt.v.Verify(tt.tok); (tt.want == nil) != (err == nil) || !errors.Is(err, tt.want) {
			t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestNewVerifierRefusesUnsafeConfig(t *testing.T) {
	t.Parallel()
	ks, err := NewKeySet()
	if err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string][]Option{
		"empty issuer":    {WithIssuer("")},
		"empty audience":  {WithAudience("")},
		"negative leeway": {WithLeeway(-time.Second)},
		"huge leeway":     {WithLeeway(MaxLeeway + time.Second)},
		"nil clock":       {WithClock(nil)},
	} {
		if _, err := NewVerifier(ks, opts...); err == nil {
			t.Errorf("%s: NewVerifier succeeded", name)
		}
	}
	if _, err := NewVerifier(nil); err == nil {
		t.Error("nil KeySource accepted")
	}
}

func TestVerifierChecksConfiguredIssuerAndAudience(t *testing.T) {
	t.Parallel()
	s := newSetup(t, EdDSA, WithIssuer("https://id.example"), WithAudience("api"))
	tok := s.issue(t, alice)
	if _, err := s.ver.Verify(tok); err != nil {
		t.Fatalf("Verify with matching config: %v", err)
	}
	for name, opts := range map[string][]Option{
		"default issuer and audience": nil,
		"other audience":              {WithIssuer("https://id.example"), WithAudience("billing")},
		"other issuer":                {WithIssuer("https://evil.example"), WithAudience("api")},
	} {
		v, err := NewVerifier(s.m, append(opts, WithClock(s.clock.Now))...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Verify = %v, want ErrInvalid", name, err)
		}
	}
}

// A KeySource that hands out a key of the wrong kind for its alg must not
// make the verifier accept anything.
type lyingSource struct {
	key any
	alg string
}

func (l lyingSource) Key(string) (any, string, bool) { return l.key, l.alg, true }

func TestVerifyRefusesMismatchedKeyFromSource(t *testing.T) {
	t.Parallel()
	// golang-jwt would verify HMAC with any []byte; a 10-byte key is
	// guessable, so the verifier refuses it whatever the source says.
	short := []byte("0123456789")
	v, err := NewVerifier(lyingSource{key: short, alg: HS256}, WithClock(newClock(t0).Now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(forge(t, jwt.SigningMethodHS256, short, header(HS256, "k"), baseClaims())); !errors.Is(err, ErrInvalid) {
		t.Errorf("HS256 with a 10-byte key: Verify = %v, want ErrInvalid", err)
	}

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		key  any
		alg  string
		want bool
	}{
		{edPub, EdDSA, true},
		{edPub, ES256, false},
		{ed25519.PublicKey(edPub[:31]), EdDSA, false},
		{&p384.PublicKey, ES256, false},
		{p384.PublicKey, ES256, false}, // a value, not a pointer
		{make([]byte, 32), HS256, true},
		{make([]byte, 32), EdDSA, false},
		{short, HS256, false},
		{"a string", HS256, false},
		{nil, EdDSA, false},
	}
	for i, tt := range tests {
		if got := keySuitsAlg(tt.key, tt.alg); got != tt.want {
			t.Errorf("%d: keySuitsAlg(%T, %s) = %v, want %v", i, tt.key, tt.alg, got, tt.want)
		}
	}
}
