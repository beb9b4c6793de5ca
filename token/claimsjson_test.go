package token

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// claimsOf is the claims segment of a token, decoded.
func claimsOf(t testing.TB, tok string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzClaimsFast holds decodeClaimsFast to encoding/json's decoding of the
// same claims (accessClaims.unmarshalJSON): whatever the fast path accepts
// is valid JSON that the full decoder accepts too, with the same claims.
// Seeds: every token our issuer writes for hostileClaims (the fast path
// takes the plain ones and leaves the escaped ones), golang-jwt's own
// encoding of the same claims, and near misses.
func FuzzClaimsFast(f *testing.F) {
	s := newSetup(f, EdDSA)
	for _, c := range hostileClaims {
		f.Add(claimsOf(f, s.issue(f, c)))
	}
	for _, seed := range []string{
		`{}`,
		`{"iss":"a","aud":"x","exp":1,"iat":0}`,
		`{"aud":[],"roles":[]}`,
		`{"aud":["a","b"],"roles":["r"]}`,
		`{"exp":1700000000.5}`,
		`{"exp":"1700000000"}`,
		`{"exp":null}`,
		`{"exp":-1}`,
		`{"exp":1e9}`,
		`{"sub":"a","sub":"b"}`,
		`{"SUB":"a"}`,
		`{"sub":"a","other":1}`,
		`{"sub":"a\u0062"}`,
		`{ "sub":"a"}`,
		`{"sub":"a"}x`,
		`{"sub":"a",}`,
		`{"roles":["a",1]}`,
		`{"aud":null}`,
		`{"exp":999999999999999}`,
		`{"exp":9999999999999999}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast := accessClaims{maxLifetime: 7}
		if !decodeClaimsFast(b, &fast) {
			if !reflect.DeepEqual(fast, accessClaims{maxLifetime: 7}) {
				t.Fatalf("refused %q but wrote %+v", b, fast)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		slow := accessClaims{maxLifetime: 7}
		if err := slow.unmarshalJSON(b); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", b, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q:\nfast %+v\nslow %+v", b, fast, slow)
		}
	})
}

// TestClaimsFastTakesIssuedTokens: the tokens our issuer writes for plain
// claims take the fast path (else it saves nothing), and escaped ones fall
// back.
func TestClaimsFastTakesIssuedTokens(t *testing.T) {
	s := newSetup(t, EdDSA)
	for _, c := range hostileClaims[:4] {
		var ac accessClaims
		if b := claimsOf(t, s.issue(t, c)); !decodeClaimsFast(b, &ac) {
			t.Errorf("fast path refused our own %s", b)
		}
	}
	var ac accessClaims
	if b := claimsOf(t, s.issue(t, hostileClaims[4])); decodeClaimsFast(b, &ac) {
		t.Errorf("fast path took escaped claims %s", b)
	}
}
