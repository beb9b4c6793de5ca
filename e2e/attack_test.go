package e2e

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// TestAttackCatalogue is the regression suite of what an attacker tries,
// each case named after the attempt, run against a real identityd on both
// stores: the forged access tokens of testForgedAccessTokens and the
// malformed requests, plus the cases below. Every attempt must get the
// contract's refusal, never a 5xx, and leave the real session working.
func TestAttackCatalogue(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"redis", "embedded"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			d := startIdentityd(t, opts{embedded: store == "embedded"})
			for _, tc := range []struct {
				name string
				run  func(*testing.T, *identityd)
			}{
				{"forged access tokens", testForgedAccessTokens},
				{"token confusion", testTokenConfusion},
				{"hostile inputs", testHostileInputs},
			} {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.run(t, d)
				})
			}
		})
	}
}

// testTokenConfusion: tokens used where another kind belongs, and edited
// refresh tokens, are refused as invalid, never as theft and never
// accepted.
func testTokenConfusion(t *testing.T, d *identityd) {
	tp := d.login(t, d.Username, d.Password)
	header := func(h map[string]any) string { return encodeSegment(t, h) }
	valid := decodeJWT(t, tp.AccessToken)
	sig := valid.raw[2]
	for _, alg := range []string{"NONE", "nOnE", "none ", "HS512", "RS256", "ES256", "PS256"} {
		h := map[string]any{"alg": alg, "typ": "at+jwt", "kid": valid.header["kid"]}
		d.requireTokenRejected(t, header(h)+"."+valid.raw[1]+"."+sig, "TOKEN_INVALID")
	}
	for name, edit := range map[string]func(map[string]any){
		"kid path traversal":   func(h map[string]any) { h["kid"] = "../../../../dev/null" },
		"kid SQL":              func(h map[string]any) { h["kid"] = "x' OR '1'='1" },
		"jku to an attacker":   func(h map[string]any) { h["jku"] = "http://127.0.0.1:1/jwks.json" },
		"x5u to an attacker":   func(h map[string]any) { h["x5u"] = "http://127.0.0.1:1/cert.pem" },
		"crit extension":       func(h map[string]any) { h["crit"] = []string{"exp"} },
		"typ refresh":          func(h map[string]any) { h["typ"] = "rt+jwt" },
		"no typ":               func(h map[string]any) { delete(h, "typ") },
		"header not an object": nil,
	} {
		t.Run(name, func(t *testing.T) {
			if edit == nil {
				d.requireTokenRejected(t, encodeSegment(t, []string{"EdDSA"})+"."+valid.raw[1]+"."+sig, "TOKEN_INVALID")
				return
			}
			h := map[string]any{}
			for k, v := range valid.header {
				h[k] = v
			}
			edit(h)
			d.requireTokenRejected(t, header(h)+"."+valid.raw[1]+"."+sig, "TOKEN_INVALID")
		})
	}
	for _, p := range protocols {
		// An access token as a refresh token: refused, the session intact.
		_, f := d.refreshVia(t, p, tp.AccessToken)
		requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
		f = d.logoutVia(t, p, tp.AccessToken, true)
		requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
	}
	// A refresh token with any one character changed is another, unknown
	// token: invalid, not reuse (which would revoke the real session).
	rt := tp.RefreshToken
	for _, i := range []int{0, len(rt) / 3, len(rt) / 2, len(rt) - 1} {
		b := []byte(rt)
		b[i] ^= 1
		_, f := d.refreshVia(t, viaREST, string(b))
		requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
	}
	for _, forged := range []string{rt + "A", strings.TrimSuffix(rt, rt[len(rt)-2:]), "rt1." + strings.Repeat("A", 60), "rt2" + rt[3:]} {
		_, f := d.refreshVia(t, viaREST, forged)
		requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
	}
	if _, f := d.verifyVia(t, viaGRPC, tp.AccessToken); f != nil {
		t.Fatalf("after the confusion attempts the real session is refused: %v", f)
	}
	if _, f := d.refreshVia(t, viaGRPC, tp.RefreshToken); f != nil {
		t.Fatalf("after the confusion attempts the real refresh token is refused: %v", f)
	}
}

// testHostileInputs: bodies and fields built to break a parser or a hash.
func testHostileInputs(t *testing.T, d *identityd) {
	json := http.Header{"Content-Type": {"application/json"}}
	login := func(body string) response {
		return d.do(t, http.MethodPost, "/v1/login", strings.NewReader(body), json)
	}
	for _, tc := range []struct {
		name, body string
		want       []statusReason
	}{
		{"password of 0 bytes", `{"username":"alice","password":""}`, []statusReason{{400, "INVALID_REQUEST"}}},
		{"password of 1024 bytes, wrong", `{"username":"alice","password":"` + strings.Repeat("p", 1024) + `"}`, []statusReason{{401, "INVALID_CREDENTIALS"}}},
		{"password of 1025 bytes", `{"username":"alice","password":"` + strings.Repeat("p", 1025) + `"}`, []statusReason{{400, "INVALID_REQUEST"}}},
		{"password of 1 MiB", `{"username":"alice","password":"` + strings.Repeat("p", 1<<20) + `"}`, []statusReason{{413, "INVALID_REQUEST"}, {400, "INVALID_REQUEST"}}},
		{"username with a NUL", `{"username":"ali\u0000ce","password":"x"}`, []statusReason{{400, "INVALID_REQUEST"}, {401, "INVALID_CREDENTIALS"}}},
		{"username with a bidi override", `{"username":"\u202ealice","password":"x"}`, []statusReason{{400, "INVALID_REQUEST"}, {401, "INVALID_CREDENTIALS"}}},
		{"username of 1 MiB", `{"username":"` + strings.Repeat("u", 1<<20) + `","password":"x"}`, []statusReason{{413, "INVALID_REQUEST"}, {400, "INVALID_REQUEST"}}},
		{"invalid UTF-8", "{\"username\":\"\xff\xfe\",\"password\":\"x\"}", []statusReason{{400, "INVALID_REQUEST"}}},
		{"deeply nested JSON", strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000), []statusReason{{400, "INVALID_REQUEST"}}},
		{"deeply nested array", `{"username":` + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + `}`, []statusReason{{400, "INVALID_REQUEST"}}},
		{"duplicate keys", `{"username":"nobody","username":"alice","password":"x"}`, []statusReason{{400, "INVALID_REQUEST"}, {401, "INVALID_CREDENTIALS"}}},
		{"number as username", `{"username":1e400,"password":"x"}`, []statusReason{{400, "INVALID_REQUEST"}}},
		{"not JSON", `username=alice&password=x`, []statusReason{{400, "INVALID_REQUEST"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requireErrorIn(t, login(tc.body), tc.want...)
		})
	}
	t.Run("gRPC password of 1 MiB", func(t *testing.T) {
		_, err := d.API.Login(rpcContext(t), &identityv1.LoginRequest{Username: "alice", Password: strings.Repeat("p", 1<<20)})
		requireStatusError(t, err, codes.InvalidArgument, "INVALID_REQUEST")
	})
	t.Run("client address spoofed through the gateway", func(t *testing.T) {
		// Metadata only the gateway may set cannot be sent from outside:
		// the call is answered as any other (here: wrong password).
		h := http.Header{"Content-Type": {"application/json"},
			"Grpc-Metadata-X-Identity-Client-Addr": {"10.0.0.1"}, "X-Forwarded-For": {"10.0.0.2"}}
		r := d.do(t, http.MethodPost, "/v1/login", bytes.NewReader([]byte(`{"username":"alice","password":"wrong-pw"}`)), h)
		requireError(t, r, http.StatusUnauthorized, "INVALID_CREDENTIALS")
	})
	// None of it hurt the service.
	tp := d.login(t, d.Username, d.Password)
	if _, f := d.verifyVia(t, viaREST, tp.AccessToken); f != nil {
		t.Fatalf("after the hostile inputs a fresh login does not verify: %v", f)
	}
}
