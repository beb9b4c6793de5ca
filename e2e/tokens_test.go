package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc/codes"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// testJWKS: the published keys verify an access token with an independent
// JWT library, the token's kid names one of them, and nothing private is
// published.
func testJWKS(t *testing.T, d *identityd) {
	tp := d.login(t, d.Username, d.Password)

	r := d.do(t, http.MethodGet, "/.well-known/jwks.json", nil, nil)
	if ct := r.header.Get("Content-Type"); !strings.Contains(ct, "json") {
		t.Errorf("JWKS Content-Type = %q, want JSON", ct)
	}
	keys := fetchJWKS(t, d)
	kids := map[string]jwk{}
	for _, k := range keys {
		if k.private() {
			t.Errorf("JWKS key %q publishes private key material", k.Kid)
		}
		if k.Kid == "" || k.Kty == "" {
			t.Errorf("JWKS key without kid or kty: %+v", k)
		}
		if _, dup := kids[k.Kid]; dup {
			t.Errorf("JWKS kid %q appears twice", k.Kid)
		}
		kids[k.Kid] = k
	}
	kid, _ := decodeJWT(t, tp.AccessToken).header["kid"].(string)
	k, ok := kids[kid]
	if !ok {
		t.Fatalf("the token's kid %q is not in the JWKS (kids %v)", kid, slices.Collect(maps.Keys(kids)))
	}
	if k.Alg != "" && k.Alg != "EdDSA" || k.Use != "" && k.Use != "sig" {
		t.Errorf("signing key %q: alg %q use %q, want EdDSA and sig", kid, k.Alg, k.Use)
	}
	pub := ed25519Key(t, keys, kid)

	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"EdDSA"}),
		jwt.WithIssuer("identity"),
		jwt.WithAudience("identity"),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	)
	var claims jwt.MapClaims
	tok, err := parser.ParseWithClaims(tp.AccessToken, &claims, func(tok *jwt.Token) (any, error) {
		if tok.Header["typ"] != "at+jwt" {
			t.Errorf("typ %v, want at+jwt", tok.Header["typ"])
		}
		if tok.Header["kid"] != kid {
			t.Errorf("kid %v changed between reads", tok.Header["kid"])
		}
		return pub, nil
	})
	if err != nil || !tok.Valid {
		t.Fatalf("the access token does not verify with the JWKS key %q: %v", kid, err)
	}
	if claims["sid"] != tp.SessionID || claims["preferred_username"] != d.Username {
		t.Errorf("verified claims sid %v preferred_username %v, want %q %q", claims["sid"], claims["preferred_username"], tp.SessionID, d.Username)
	}

	// The same keys over gRPC.
	gk, err := d.API.GetPublicKeys(rpcContext(t), &identityv1.GetPublicKeysRequest{})
	if err != nil {
		t.Fatalf("gRPC GetPublicKeys: %v", err)
	}
	var grpcKids []string
	for _, k := range gk.GetKeys() {
		grpcKids = append(grpcKids, k.GetKid())
		if k.GetKid() == kid && k.GetX() != kids[kid].X {
			t.Errorf("GetPublicKeys and the JWKS disagree on key %q", kid)
		}
	}
	slices.Sort(grpcKids)
	if httpKids := slices.Sorted(maps.Keys(kids)); !slices.Equal(grpcKids, httpKids) {
		t.Errorf("GetPublicKeys kids %v, JWKS kids %v", grpcKids, httpKids)
	}
}

// testForgedAccessTokens: every forgery is TOKEN_INVALID on Verify and
// WhoAmI, REST and gRPC, and none of them disturbs the real session.
func testForgedAccessTokens(t *testing.T, d *identityd) {
	tp := d.login(t, d.Username, d.Password)
	other := d.login(t, d.Username, d.Password)
	valid := decodeJWT(t, tp.AccessToken)
	kid, _ := valid.header["kid"].(string)
	keys := fetchJWKS(t, d)
	pub := ed25519Key(t, keys, kid)

	header := func(edit func(h map[string]any)) string {
		h := maps.Clone(valid.header)
		edit(h)
		return encodeSegment(t, h)
	}
	payload := func(edit func(c map[string]any)) string {
		c := maps.Clone(valid.claims)
		edit(c)
		return encodeSegment(t, c)
	}
	sig := valid.raw[2]
	withAlg := func(alg string) func(map[string]any) {
		return func(h map[string]any) { h["alg"] = alg }
	}
	hs256 := func(key []byte) string {
		input := header(withAlg("HS256")) + "." + valid.raw[1]
		s, err := jwt.SigningMethodHS256.Sign(input, key)
		if err != nil {
			t.Fatal(err)
		}
		return input + "." + base64.RawURLEncoding.EncodeToString(s)
	}
	_, attackerKey, _ := ed25519.GenerateKey(rand.Reader)
	signOwn := func(h string) string {
		input := h + "." + valid.raw[1]
		return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(attackerKey, []byte(input)))
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemKey := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})
	jwkJSON, _ := json.Marshal(keys[0])

	forgeries := []struct{ name, token string }{
		{"alg none, no signature", header(withAlg("none")) + "." + valid.raw[1] + "."},
		{"alg none, signature kept", header(withAlg("none")) + "." + valid.raw[1] + "." + sig},
		{"alg None", header(withAlg("None")) + "." + valid.raw[1] + "."},
		{"no alg", header(func(h map[string]any) { delete(h, "alg") }) + "." + valid.raw[1] + "." + sig},
		{"HS256 keyed with the raw public key", hs256(pub)},
		{"HS256 keyed with the JWK x string", hs256([]byte(keys[0].X))},
		{"HS256 keyed with the PEM public key", hs256(pemKey)},
		{"HS256 keyed with the JWK JSON", hs256(jwkJSON)},
		{"roles edited, signature kept", valid.raw[0] + "." + payload(func(c map[string]any) {
			c["roles"] = []string{"admin", "superuser"}
		}) + "." + sig},
		{"username edited, signature kept", valid.raw[0] + "." + payload(func(c map[string]any) {
			c["preferred_username"] = "root"
		}) + "." + sig},
		{"exp extended, signature kept", valid.raw[0] + "." + payload(func(c map[string]any) {
			c["exp"] = claimInt(t, valid.claims, "exp") + 86400
		}) + "." + sig},
		{"unknown kid, signature kept", header(func(h map[string]any) { h["kid"] = "no-such-key" }) + "." + valid.raw[1] + "." + sig},
		{"typ JWT, signature kept", header(func(h map[string]any) { h["typ"] = "JWT" }) + "." + valid.raw[1] + "." + sig},
		{"signed by another Ed25519 key under the real kid", signOwn(valid.raw[0])},
		{"signed by a key embedded in the header (jwk)", signOwn(header(func(h map[string]any) {
			h["jwk"] = map[string]string{"kty": "OKP", "crv": "Ed25519",
				"x": base64.RawURLEncoding.EncodeToString(attackerKey.Public().(ed25519.PublicKey))}
		}))},
		{"another token's signature", valid.raw[0] + "." + valid.raw[1] + "." + decodeJWT(t, other.AccessToken).raw[2]},
		{"signature truncated", valid.raw[0] + "." + valid.raw[1] + "." + sig[:len(sig)-4]},
		{"signature missing", valid.raw[0] + "." + valid.raw[1] + "."},
		{"refresh token as access token", tp.RefreshToken},
		{"garbage", "garbage"},
		{"three garbage segments", "a.b.c"},
		{"five segments (JWE shape)", "a.b.c.d.e"},
	}
	t.Run("group", func(t *testing.T) {
		for _, f := range forgeries {
			t.Run(f.name, func(t *testing.T) {
				t.Parallel()
				d.requireTokenRejected(t, f.token, "TOKEN_INVALID")
			})
		}

		t.Run("oversized token", func(t *testing.T) {
			t.Parallel()
			huge := strings.Repeat("a", 64<<10)
			requireErrorIn(t, d.verifyREST(t, huge), statusReason{400, "INVALID_REQUEST"}, statusReason{401, "TOKEN_INVALID"})
		})

		t.Run("empty token", func(t *testing.T) {
			t.Parallel()
			// A missing required field is INVALID_REQUEST (docs/api.md, Errors).
			requireError(t, d.verifyREST(t, ""), http.StatusBadRequest, "INVALID_REQUEST")
			_, err := d.API.Verify(rpcContext(t), &identityv1.VerifyRequest{})
			requireStatusError(t, err, codes.InvalidArgument, "INVALID_REQUEST")
		})

		// WhoAmI without a usable Authorization header: no credentials (RFC 6750
		// §3.1 answers those with 401 too).
		for name, h := range map[string]http.Header{
			"no Authorization":      nil,
			"empty bearer":          {"Authorization": {"Bearer "}},
			"Basic scheme":          {"Authorization": {"Basic YWxpY2U6cGFzc3dvcmQ="}},
			"token without scheme":  {"Authorization": {tp.AccessToken}},
			"Grpc-Metadata smuggle": {"Grpc-Metadata-Authorization": {"Bearer " + tp.AccessToken}},
			"Grpc-Metadata beside a bad Authorization": {
				"Authorization":               {"Bearer garbage"},
				"Grpc-Metadata-Authorization": {"Bearer " + tp.AccessToken},
			},
			"Grpc-Metadata gateway header smuggle": {"Grpc-Metadata-Grpcgateway-Authorization": {"Bearer " + tp.AccessToken}},
		} {
			t.Run("GET /v1/me "+name, func(t *testing.T) {
				t.Parallel()
				requireError(t, d.do(t, http.MethodGet, "/v1/me", nil, h), http.StatusUnauthorized, "TOKEN_INVALID")
			})
		}
		t.Run("gRPC WhoAmI without metadata", func(t *testing.T) {
			t.Parallel()
			_, err := d.API.WhoAmI(rpcContext(t), &identityv1.WhoAmIRequest{})
			requireStatusError(t, err, codes.Unauthenticated, "TOKEN_INVALID")
		})
	})

	// None of that revoked or confused the real session. The forgeries can
	// outlast the harness's one-minute access TTL on a busy machine, so the
	// session proves itself with its refresh token (refused if anything
	// above had revoked it), and the fresh access token must verify.
	fresh := d.refresh(t, tp.RefreshToken)
	id, f := d.verifyVia(t, viaREST, fresh.AccessToken)
	if f != nil || id.SessionID != tp.SessionID || id.Username != d.Username {
		t.Errorf("after the forgeries the real session's fresh token gives %+v %v", id, f)
	}
}
