package testidentityd

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestSecretsIn holds secretsIn to the plain answer, a strings.Contains per
// secret, on logs and secrets drawn from a small alphabet so that partial
// matches, shared suffixes, overlaps and matches at either end of the log
// are common.
func TestSecretsIn(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "ab."[r.IntN(3)]
		}
		return string(b)
	}
	for round := range 300 {
		log := word(r.IntN(400))
		var secrets []string
		for range r.IntN(12) {
			switch n := r.IntN(14); {
			case n < 6 && len(log) > 12:
				// A piece of the log, so that some secrets are in it.
				at := r.IntN(len(log) - 12)
				secrets = append(secrets, log[at:at+8+r.IntN(5)])
			default:
				secrets = append(secrets, word(n))
			}
		}
		var want []int
		for i, s := range secrets {
			if len(s) >= 8 && strings.Contains(log, s) {
				want = append(want, i)
			}
		}
		if got := secretsIn(log, secrets); !slices.Equal(got, want) {
			t.Fatalf("round %d: secretsIn(%q, %q) = %v, want %v", round, log, secrets, got, want)
		}
	}
}

// TestSecretsInManyTokens: 40,000 tokens that share their first 36 bytes
// (as JWTs share a header) against a 4 MB log that holds two of them.
func TestSecretsInManyTokens(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	const header = "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9."
	secrets := make([]string, 40000)
	for i := range secrets {
		b := make([]byte, 80)
		for j := range b {
			b[j] = byte('A' + r.IntN(26))
		}
		secrets[i] = header + string(b)
	}
	var log strings.Builder
	for log.Len() < 4<<20 {
		log.WriteString(`level=WARN msg="store unavailable" method=/identity.v1.IdentityService/Refresh` + "\n")
	}
	log.WriteString("token=" + secrets[123] + "\n" + secrets[39999])
	if got := secretsIn(log.String(), secrets); !slices.Equal(got, []int{123, 39999}) {
		t.Fatalf("found %v, want [123 39999]", got)
	}
}
