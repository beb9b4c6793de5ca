package token

import (
	"errors"
	"strings"
	"testing"
)

func FuzzVerify(f *testing.F) {
	s := newSetup(f, EdDSA)
	valid := s.issue(f, alice)
	f.Add(valid)
	f.Add(s.m.Refresh().Encode(sessionID, 1, "AAAAAAAAAAAAAAAAAAAAAA"))
	f.Add("")
	f.Add("eyJ.eyJ.")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	parts := strings.Split(valid, ".")
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + ".e30." + parts[2])
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.ver.Verify(tok)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired) {
				t.Fatalf("Verify error %v is neither ErrInvalid nor ErrExpired", err)
			}
			return
		}
		// Only our own key can have signed an accepted token.
		if c.Subject == "" || c.SessionID == "" || c.ID == "" {
			t.Fatalf("accepted token with claims %+v", c)
		}
	})
}

func FuzzDecodeRefresh(f *testing.F) {
	r, err := NewRefresh([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(r.Encode(sessionID, 7, "AAAAAAAAAAAAAAAAAAAAAA"))
	f.Add(r.Encode("s", 0, "_-_-_-_-_-_-_-_-_-_-_w"))
	f.Add("rt1.....")
	f.Add("rt1.a.01.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		sid, gen, nonce, err := r.Decode(tok)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode error %v is not ErrInvalid", err)
			}
			return
		}
		// One spelling per token: what decodes re-encodes to itself.
		if again := r.Encode(sid, gen, nonce); again != tok {
			t.Fatalf("Decode accepted %q, which re-encodes as %q", tok, again)
		}
	})
}

func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a","alg":"EdDSA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","kid":"b","alg":"ES256"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"oct","k":"AAAA","kid":"c","alg":"HS256"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"d","alg":"RS256"}]}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		ks, err := ParseJWKS(doc)
		if err != nil {
			return
		}
		// Whatever was accepted must be publishable again, unchanged.
		again, err := JWKS(ks.Keys())
		if err != nil {
			t.Fatalf("accepted keys do not re-encode: %v", err)
		}
		if _, err := ParseJWKS(again); err != nil {
			t.Fatalf("re-encoded JWKS does not parse: %v", err)
		}
	})
}
