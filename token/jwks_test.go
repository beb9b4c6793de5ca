package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// The authn path: a service fetches the JWKS, builds a KeySet and verifies
// tokens the server issued, with every asymmetric algorithm.
func TestJWKSRoundTripVerifies(t *testing.T) {
	t.Parallel()
	for _, alg := range []string{EdDSA, ES256, RS256} {
		t.Run(alg, func(t *testing.T) {
			t.Parallel()
			s := newSetup(t, alg)
			doc, err := JWKS(s.m.Published())
			if err != nil {
				t.Fatal(err)
			}
			ks, err := ParseJWKS(doc)
			if err != nil {
				t.Fatalf("ParseJWKS(%s): %v", doc, err)
			}
			v, err := NewVerifier(ks, WithClock(s.clock.Now))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Verify(s.issue(t, alice)); err != nil {
				t.Errorf("Verify with keys from the JWKS: %v", err)
			}
		})
	}
}

func TestJWKSDocument(t *testing.T) {
	t.Parallel()
	s, _ := multiSetup(t)
	doc, err := JWKS(s.m.Published())
	if err != nil {
		t.Fatal(err)
	}
	var set struct {
		Keys []map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{ // alg -> the members its JWK must have
		EdDSA: {"kty", "crv", "x", "kid", "alg", "use"},
		ES256: {"kty", "crv", "x", "y", "kid", "alg", "use"},
		RS256: {"kty", "n", "e", "kid", "alg", "use"},
	}
	if len(set.Keys) != len(want) {
		t.Fatalf("JWKS has %d keys, want %d (never the HS256 one): %s", len(set.Keys), len(want), doc)
	}
	for _, k := range set.Keys {
		members := want[k["alg"]]
		if len(k) != len(members) {
			t.Errorf("%s JWK has members %v, want exactly %v", k["alg"], k, members)
		}
		for _, m := range members {
			if k[m] == "" {
				t.Errorf("%s JWK lacks %q", k["alg"], m)
			}
		}
		if k["use"] != "sig" {
			t.Errorf("use = %q", k["use"])
		}
		// A private member (d, p, q, k...) must never appear.
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "k"} {
			if _, ok := k[private]; ok {
				t.Errorf("%s JWK publishes private member %q", k["alg"], private)
			}
		}
	}
	if strings.Contains(string(doc), `"oct"`) {
		t.Error("a symmetric key reached the JWKS")
	}
}

func TestParseJWKSRejects(t *testing.T) {
	t.Parallel()
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	good, err := NewJWKSet([]PublicKey{{ID: "ed", Alg: EdDSA, Key: edPub}})
	if err != nil {
		t.Fatal(err)
	}
	ed := good.Keys[0]
	rk, _ := rsa.GenerateKey(rand.Reader, 1024)
	small := JWK{Kty: "RSA", Kid: "small", Alg: RS256, Use: "sig",
		N: b64.EncodeToString(rk.N.Bytes()), E: "AQAB"}
	edit := func(f func(*JWK)) JWK { j := ed; f(&j); return j }
	doc := func(keys ...JWK) string {
		b, _ := json.Marshal(JWKSet{Keys: keys})
		return string(b)
	}

	tests := []struct {
		name    string
		doc     string
		wantErr bool
		wantIDs []string
	}{
		{"good", doc(ed), false, []string{"ed"}},
		{"unknown kty skipped", doc(ed, JWK{Kty: "XYZ", Kid: "x", Alg: "X1"}), false, []string{"ed"}},
		{"encryption key skipped", doc(ed, edit(func(j *JWK) { j.Kid, j.Use = "enc", "enc" })), false, []string{"ed"}},
		{"PS256 skipped", doc(ed, JWK{Kty: "RSA", Kid: "ps", Alg: "PS256", N: small.N, E: "AQAB"}), false, []string{"ed"}},
		{"Ed448 skipped", doc(ed, edit(func(j *JWK) { j.Kid, j.Crv = "ed448", "Ed448" })), false, []string{"ed"}},
		{"no use is fine", doc(edit(func(j *JWK) { j.Use = "" })), false, []string{"ed"}},

		{"oct key", doc(ed, JWK{Kty: "oct", Kid: "h", Alg: HS256}), true, nil},
		{"no kid", doc(edit(func(j *JWK) { j.Kid = "" })), true, nil},
		{"no alg", doc(edit(func(j *JWK) { j.Alg = "" })), true, nil},
		{"alg does not fit kty", doc(edit(func(j *JWK) { j.Alg = RS256 })), true, nil},
		{"duplicate kid", doc(ed, ed), true, nil},
		{"short x", doc(edit(func(j *JWK) { j.X = j.X[:20] })), true, nil},
		{"x not base64url", doc(edit(func(j *JWK) { j.X = strings.Repeat("+", 43) })), true, nil},
		{"EC point off the curve", doc(JWK{Kty: "EC", Crv: "P-256", Kid: "ec", Alg: ES256, X: b64.EncodeToString(make([]byte, 32)), Y: b64.EncodeToString(make([]byte, 32))}), true, nil},
		{"RSA 1024", doc(small), true, nil},
		{"only unknown keys", doc(JWK{Kty: "XYZ", Kid: "x", Alg: "X1"}), true, nil},
		{"empty set", `{"keys":[]}`, true, nil},
		{"not JSON", `{"keys":`, true, nil},
		{"too large", `{"keys":[],"pad":"` + strings.Repeat("a", maxJWKSSize) + `"}`, true, nil},
	}
	for _, tt := range tests {
		ks, err := ParseJWKS([]byte(tt.doc))
		if tt.wantErr {
			if err == nil {
				t.Errorf("%s: ParseJWKS succeeded with %v", tt.name, ks.Keys())
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := fmt.Sprint(publicIDs(ks.Keys())); got != fmt.Sprint(tt.wantIDs) {
			t.Errorf("%s: keys %s, want %v", tt.name, got, tt.wantIDs)
		}
	}
}

func publicIDs(keys []PublicKey) []string {
	var ids []string
	for _, k := range keys {
		ids = append(ids, k.ID)
	}
	return ids
}

func TestNewJWKSetRefusesWhatItCannotPublish(t *testing.T) {
	t.Parallel()
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for name, k := range map[string]PublicKey{
		"HMAC secret":   {ID: "h", Alg: HS256, Key: make([]byte, 32)},
		"mislabelled":   {ID: "e", Alg: ES256, Key: edPub},
		"unknown type":  {ID: "s", Alg: EdDSA, Key: "key"},
		"no key at all": {ID: "n", Alg: EdDSA},
	} {
		if _, err := JWKS([]PublicKey{k}); err == nil {
			t.Errorf("%s published", name)
		}
	}
	if _, err := NewKeySet(PublicKey{ID: "h", Alg: HS256, Key: make([]byte, 32)}); err == nil {
		t.Error("a KeySet accepted an HMAC secret")
	}
	ks, err := NewKeySet(PublicKey{ID: "e", Alg: EdDSA, Key: edPub})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := ks.Key("other"); ok {
		t.Error("KeySet found an unknown kid")
	}
	if key, alg, ok := ks.Key("e"); !ok || alg != EdDSA || !edPub.Equal(key) {
		t.Error("KeySet lost its key")
	}
	if _, err := NewKeySet(PublicKey{ID: "e", Alg: EdDSA, Key: edPub}, PublicKey{ID: "e", Alg: EdDSA, Key: edPub}); err == nil {
		t.Error("duplicate kid accepted")
	}
}
