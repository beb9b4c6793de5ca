package users_test

import (
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/identityd/identity/users"
)

// FuzzNormalizeUsername holds NormalizeUsername to its rules for any
// input: an accepted name is valid UTF-8 in NFC, within the length limit,
// without control or format characters or surrounding spaces, and
// normalising it again changes nothing; an input holding a control
// character is never accepted; every refusal is ErrInvalidUsername.
// Seeds beyond these are in testdata/fuzz/FuzzNormalizeUsername.
func FuzzNormalizeUsername(f *testing.F) {
	for _, s := range []string{"alice", "Zoe\u0308", "a b", " alice", "ali\x00ce", "ali\u200bce", "\xff", "Å", "\u212b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, err := users.NormalizeUsername(name)
		if err != nil {
			if !errors.Is(err, users.ErrInvalidUsername) {
				t.Fatalf("NormalizeUsername(%q) error %v is not ErrInvalidUsername", name, err)
			}
			if n != "" {
				t.Fatalf("NormalizeUsername(%q) refused the name yet returned %q", name, n)
			}
			return
		}
		if strings.ContainsFunc(name, unicode.IsControl) {
			t.Fatalf("NormalizeUsername(%q) accepted a control character: %q", name, n)
		}
		switch {
		case n == "" || !utf8.ValidString(n) || len(n) > users.MaxUsernameLength:
			t.Fatalf("NormalizeUsername(%q) = %q: empty, not UTF-8 or too long", name, n)
		case !norm.NFC.IsNormalString(n):
			t.Fatalf("NormalizeUsername(%q) = %q, not in NFC", name, n)
		case strings.ContainsFunc(n, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError }):
			t.Fatalf("NormalizeUsername(%q) = %q holds a control or format character", name, n)
		case strings.TrimSpace(n) != n:
			t.Fatalf("NormalizeUsername(%q) = %q has surrounding space", name, n)
		}
		again, err := users.NormalizeUsername(n)
		if err != nil || again != n {
			t.Fatalf("not idempotent: NormalizeUsername(%q) = %q, but NormalizeUsername(%q) = %q, %v", name, n, n, again, err)
		}
	})
}
