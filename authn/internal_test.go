package authn

import (
	"encoding/base64"
	"strings"
	"testing"
)

// The cache and revocation-set rules are tested where they live, in
// internal/tokencheck.

func TestKidOf(t *testing.T) {
	t.Parallel()
	enc := base64.RawURLEncoding.EncodeToString
	for _, tc := range []struct{ tok, want string }{
		{enc([]byte(`{"alg":"EdDSA","kid":"k1","typ":"at+jwt"}`)) + ".e30.sig", "k1"},
		{enc([]byte(`{"alg":"EdDSA"}`)) + ".e30.sig", ""},
		{enc([]byte(`{"kid":7}`)) + ".e30.sig", ""},
		{"not-base64!.e30.sig", ""},
		{"no dots at all", ""},
		{enc([]byte(`{"kid":"`+strings.Repeat("k", 2000)+`"}`)) + ".x.y", ""},
	} {
		if got := kidOf(tc.tok); got != tc.want {
			t.Errorf("kidOf(%.30q…) = %q, want %q", tc.tok, got, tc.want)
		}
	}
}

func FuzzKidOf(f *testing.F) {
	f.Add("eyJraWQiOiJrMSJ9.e30.sig")
	f.Add("..")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		_ = kidOf(tok) // must not panic, whatever the input
	})
}
