package users_test

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/identityd/identity/password"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

func TestPasswordPolicy(t *testing.T) {
	t.Parallel()
	const (
		ok      = ""
		short   = "at least 8 characters"
		guessed = "too common or too easy to guess"
	)
	tests := []struct {
		name, user, pw string
		want           string // ok, or a piece of the message
	}{
		{"passphrase", "alice", "correct horse battery staple", ok},
		{"README example", "alice", "down-the-rabbit-hole", ok},
		{"eight random characters", "alice", "h4Tz!pQ2", ok},
		{"seven random characters", "alice", "h4Tz!pQ", short},
		{"empty-ish", "alice", "x", short},
		// Characters are code points: 7 of them in 15 bytes is too short.
		{"multibyte, counted in characters", "alice", "äöüß漢字ñ", short},
		{"common password", "alice", "password1", guessed},
		{"common with symbols", "alice", "Password1!", guessed},
		{"keyboard walk", "alice", "qwertyuiop", guessed},
		{"digit sequence", "alice", "1234567890", guessed},
		{"repetition", "alice", "abcabcabcabc", guessed},
		{"date", "alice", "1987-06-12", guessed},
		{"a dictionary word", "alice", "wonderland", guessed},
		{"l33t word", "alice", "p4ssw0rd!", guessed},
		{"the username", "qorvathin", "qorvathin", guessed},
		{"built on the username", "qorvathin", "qorvathin2024", guessed},
		{"built on another's username", "bob", "qorvathin2024", ok},
		{"alice for alice", "alice", "alice123", guessed},
		{"a part of the username", "mira.qorvathin", "qorvathin2024", guessed},
		{"the service's name", "bob", "identity2024", guessed},
		{"a strong beginning, any tail", "alice", "correct horse battery staple" + strings.Repeat("a", 200), ok},
		// Only the first 32 characters are scored (zxcvbn's cost grows
		// fast with length): a long password that starts weak is refused.
		{"a weak beginning, a strong tail", "alice", strings.Repeat("a", 40) + "correct horse battery staple", guessed},
	}
	p := users.DefaultPasswordPolicy()
	for _, tc := range tests {
		err := p.Check(tc.pw, tc.user)
		switch {
		case tc.want == ok && err != nil:
			t.Errorf("%s: Check(%q, %q) = %v, want nil", tc.name, tc.pw, tc.user, err)
		case tc.want != ok && !errors.Is(err, users.ErrPasswordTooWeak):
			t.Errorf("%s: Check(%q, %q) = %v, want ErrPasswordTooWeak", tc.name, tc.pw, tc.user, err)
		case tc.want != ok && !strings.Contains(err.Error(), tc.want):
			t.Errorf("%s: Check(%q, %q) = %q, want it to say %q", tc.name, tc.pw, tc.user, err, tc.want)
		case err != nil && strings.Contains(err.Error(), tc.pw):
			t.Errorf("%s: the error %q repeats the password", tc.name, err)
		}
	}
}

func TestPasswordPolicyMinLength(t *testing.T) {
	t.Parallel()
	p := users.PasswordPolicy{MinLength: 15}
	if err := p.Check("h4Tz!pQ2-vN3x&R", "alice"); err != nil { // 15
		t.Errorf("15 characters with MinLength 15: %v", err)
	}
	err := p.Check("h4Tz!pQ2-vN3x&", "alice") // 14
	if !errors.Is(err, users.ErrPasswordTooWeak) || !strings.Contains(err.Error(), "at least 15 characters") {
		t.Errorf("14 characters with MinLength 15: %v, want ErrPasswordTooWeak saying at least 15 characters", err)
	}
	for _, n := range []int{0, -1, 1025} {
		if err := (users.PasswordPolicy{MinLength: n}).Validate(); err == nil {
			t.Errorf("Validate accepts MinLength %d", n)
		}
	}
	for _, n := range []int{1, 8, 15, 1024} {
		if err := (users.PasswordPolicy{MinLength: n}).Validate(); err != nil {
			t.Errorf("Validate(MinLength %d): %v", n, err)
		}
	}
}

// The policy runs where a password is chosen, never at login: a password
// set before the policy (or under a laxer one) still logs in.
func TestPolicyIsNotAppliedAtLogin(t *testing.T) {
	t.Parallel()
	svc, _, store := newService(t)
	ctx := t.Context()
	// Set a weak password the way an older identity could have: straight
	// into the store.
	weak := "wonderland"
	hash, err := cheapHasher(t).Hash(ctx, weak)
	if err != nil {
		t.Fatal(err)
	}
	u, err := svc.Create(ctx, "old", strongPW, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.UpdateUser(ctx, u.ID, func(u tokenstore.User) (tokenstore.User, error) {
		u.PasswordHash = hash
		return u, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Authenticate(ctx, "old", weak); err != nil {
		t.Fatalf("login with a password set before the policy: %v", err)
	}
}

func TestServiceTakesItsPolicy(t *testing.T) {
	t.Parallel()
	svc := users.New(tokenstore.NewMemory(), cheapHasher(t), time.Now, rand.Reader,
		users.WithPasswordPolicy(users.PasswordPolicy{MinLength: 20}))
	ctx := t.Context()
	if _, err := svc.Create(ctx, "bob", "correct horse table", nil); !errors.Is(err, users.ErrPasswordTooWeak) { // 19
		t.Fatalf("Create with 19 characters, MinLength 20: %v, want ErrPasswordTooWeak", err)
	}
	if _, err := svc.Create(ctx, "bob", "correct horse battery staple", nil); err != nil {
		t.Fatal(err)
	}
	pw := "correct horse stable" // 20
	if _, err := svc.Update(ctx, "bob", users.Change{Password: &pw}); err != nil {
		t.Fatalf("Update to 20 characters, MinLength 20: %v", err)
	}
	pw = "correct horse table" // 19
	if _, err := svc.Update(ctx, "bob", users.Change{Password: &pw}); !errors.Is(err, users.ErrPasswordTooWeak) {
		t.Fatalf("Update to 19 characters, MinLength 20: %v, want ErrPasswordTooWeak", err)
	}
}

func TestCreateAcceptsLongestPassword(t *testing.T) {
	t.Parallel()
	svc, _, _ := newService(t)
	pw := longPassword(password.MaxLength)
	if _, err := svc.Create(t.Context(), "long", pw, nil); err != nil {
		t.Fatalf("Create with a %d-byte password: %v", len(pw), err)
	}
	if _, err := svc.Authenticate(t.Context(), "long", pw); err != nil {
		t.Fatalf("Authenticate with the %d-byte password: %v", len(pw), err)
	}
}

// BenchmarkPasswordPolicy is the policy's worst case found: l33t symbols
// make zxcvbn try every substitution, and its cost grows steeply with the
// length scored (scoredRunes bounds it).
func BenchmarkPasswordPolicy(b *testing.B) {
	p := users.DefaultPasswordPolicy()
	for _, c := range []struct{ name, pw string }{
		{"passphrase", "correct horse battery staple"},
		{"random-1024", longPassword(password.MaxLength)},
		{"leet-1024", strings.Repeat("4@8(<{[1!|0$5+7%23690", 49)[:password.MaxLength]},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				_ = p.Check(c.pw, "alice")
			}
		})
	}
}
