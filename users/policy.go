package users

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/trustelem/zxcvbn"
)

// ErrPasswordTooWeak: a new password the policy refuses (too short, or
// too easy to guess). The error wrapping it says which, in words meant for
// the person choosing the password; it never repeats the password.
var ErrPasswordTooWeak = errors.New("password too weak")

// DefaultMinPasswordLength is the policy's default minimum, in characters
// (Unicode code points): NIST SP 800-63B Rev. 4's floor where a password
// is one factor among others, and Django's and Ory Kratos' default. Where
// the password is the only factor, NIST asks 15.
const DefaultMinPasswordLength = 8

// MinGuesses is how many guesses zxcvbn must estimate a new password
// takes: 10^8, where its score 3 ("safely unguessable") begins, and what
// 8 random characters reach. That refuses the passwords on its frequency
// lists (30,000 common and leaked ones, names, English words) and what is
// made of them, keyboard walks, dates, repeats and sequences, their l33t
// spellings, and passwords built on the username. (Score 3 itself starts
// 5 guesses higher, which would refuse every 8-character password.)
const MinGuesses = 1e8

// scoredRunes is how much of a password zxcvbn looks at. Its matching
// grows much faster than the length (a 64-character password of l33t
// symbols takes over half a second, a 128-character random one seconds;
// at 32 the worst found costs about one argon2id hash,
// BenchmarkPasswordPolicy), and a password whose first 32 characters
// already need 10^8 guesses is strong enough. A longer one is judged by
// its first 32 characters, so a long password that starts weak is refused.
const scoredRunes = 32

// PasswordPolicy decides whether a new password may be set: at least
// MinLength characters and not easy to guess. It has no composition rules
// (no "one digit, one symbol"), as NIST SP 800-63B asks. It runs when a
// password is chosen (Create, Update), never at login: a password set
// under an older policy still logs in.
type PasswordPolicy struct {
	// MinLength in characters (Unicode code points, not bytes).
	MinLength int
}

// DefaultPasswordPolicy is the policy New applies unless told otherwise.
func DefaultPasswordPolicy() PasswordPolicy {
	return PasswordPolicy{MinLength: DefaultMinPasswordLength}
}

// Validate reports whether p is a usable policy.
func (p PasswordPolicy) Validate() error {
	if p.MinLength < 1 || p.MinLength > maxPasswordRunes {
		return fmt.Errorf("users: password minimum length %d not in 1..%d", p.MinLength, maxPasswordRunes)
	}
	return nil
}

// maxPasswordRunes: a password is at most password.MaxLength bytes, so
// never more characters than that.
const maxPasswordRunes = 1024

// Check returns nil if pw may be set for the account named username, or
// an error wrapping ErrPasswordTooWeak (or ErrInvalidPassword for a
// password that is not UTF-8: no client could send it to log in) that
// says why. It does not check the byte length limits (validPassword does).
func (p PasswordPolicy) Check(pw, username string) error {
	if !utf8.ValidString(pw) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidPassword)
	}
	if utf8.RuneCountInString(pw) < p.MinLength {
		return fmt.Errorf("%w: it must have at least %d characters", ErrPasswordTooWeak, p.MinLength)
	}
	scored := pw
	if utf8.RuneCountInString(scored) > scoredRunes {
		scored = string([]rune(scored)[:scoredRunes])
	}
	if zxcvbn.PasswordStrength(scored, userInputs(username)).Guesses < MinGuesses {
		return fmt.Errorf("%w: it is too common or too easy to guess "+
			"(a common password, a word or name, a keyboard pattern, a date, a repetition, or built on the username); "+
			"a few unrelated words make a strong one", ErrPasswordTooWeak)
	}
	return nil
}

// userInputs are the words a password must not be built on: the username,
// its parts ("alice.smith" gives "alice" and "smith") and the service's
// own name.
func userInputs(username string) []string {
	in := []string{"identity", "identityd"}
	if username == "" {
		return in
	}
	in = append(in, strings.ToLower(username))
	parts := strings.FieldsFunc(strings.ToLower(username), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	if len(parts) > 1 {
		in = append(in, parts...)
	}
	return in
}
