package token

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkVerifyEdDSA and BenchmarkRawJWTVerifyEdDSA verify the same token;
// their ratio is what the Verifier adds to golang-jwt plus Ed25519.
func BenchmarkVerifyEdDSA(b *testing.B) {
	s := newSetup(b, EdDSA)
	tok := s.issue(b, alice)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.ver.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRawJWTVerifyEdDSA(b *testing.B) {
	s := newSetup(b, EdDSA)
	tok := s.issue(b, alice)
	k, err := s.m.SigningKey()
	if err != nil {
		b.Fatal(err)
	}
	pub := k.Private.(ed25519.PrivateKey).Public()
	keyfunc := func(*jwt.Token) (any, error) { return pub, nil }
	now := s.clock.Now
	b.ReportAllocs()
	for b.Loop() {
		var c jwt.RegisteredClaims
		if _, err := jwt.ParseWithClaims(tok, &c, keyfunc,
			jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithTimeFunc(now)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIssue(b *testing.B) {
	for _, alg := range []string{EdDSA, ES256, RS256, HS256} {
		b.Run(alg, func(b *testing.B) {
			s := newSetup(b, alg)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.iss.Issue(alice, t0, time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeRefresh(b *testing.B) {
	r, err := NewRefresh([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		b.Fatal(err)
	}
	tok := r.Encode(sessionID, 12, "AAAAAAAAAAAAAAAAAAAAAA")
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := r.Decode(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRawEd25519Sign is the signature alone over a token's signing
// input (header and claims of alice's token): the floor of
// BenchmarkIssue/EdDSA.
func BenchmarkRawEd25519Sign(b *testing.B) {
	s := newSetup(b, EdDSA)
	tok := s.issue(b, alice)
	input := []byte(tok[:strings.LastIndexByte(tok, '.')])
	k, err := s.m.SigningKey()
	if err != nil {
		b.Fatal(err)
	}
	priv := k.Private.(ed25519.PrivateKey)
	b.ReportAllocs()
	for b.Loop() {
		ed25519.Sign(priv, input)
	}
}
