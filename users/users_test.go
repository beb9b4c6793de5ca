package users_test

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/identityd/identity/password"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// countingHasher wraps a real (cheap) argon2id hasher and counts Check
// calls, so tests can see that every failure path costs one hash.
type countingHasher struct {
	h      *password.Hasher
	checks atomic.Int32
}

func (c *countingHasher) Hash(ctx context.Context, pw string) (string, error) {
	return c.h.Hash(ctx, pw)
}

func (c *countingHasher) Check(ctx context.Context, phc, pw string) (bool, error) {
	c.checks.Add(1)
	return c.h.Check(ctx, phc, pw)
}

func (c *countingHasher) NeedsRehash(phc string) bool { return c.h.NeedsRehash(phc) }

func cheapHasher(t *testing.T) *password.Hasher {
	t.Helper()
	h, err := password.New(password.WithParams(password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func newService(t *testing.T) (*users.Service, *countingHasher, tokenstore.Store) {
	t.Helper()
	ch := &countingHasher{h: cheapHasher(t)}
	store := tokenstore.NewMemory()
	return users.New(store, ch, time.Now, rand.Reader), ch, store
}

// Passwords the policy accepts.
const (
	strongPW = "correct horse battery staple"
	rightPW  = "the right horse battery"
)

// longPassword is a strong password of exactly n bytes.
func longPassword(n int) string {
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(rand.Text())
	}
	return b.String()[:n]
}

func TestNormalizeUsername(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"alice", "alice", true},
		{"Zoë", "Zoë", true},
		{"Zoe\u0308", "Zoë", true}, // decomposed form becomes NFC
		{"a b", "a b", true},
		{"", "", false},
		{" alice", "", false},
		{"alice ", "", false},
		{"ali\x00ce", "", false},
		{"ali\nce", "", false},
		{"ali\u200bce", "", false}, // zero-width space (Cf)
		{"ali\u202ece", "", false}, // bidi override (Cf)
		{"\xff\xfe", "", false},    // not UTF-8
		{strings.Repeat("a", users.MaxUsernameLength), strings.Repeat("a", users.MaxUsernameLength), true},
		{strings.Repeat("a", users.MaxUsernameLength+1), "", false},
	}
	for _, tc := range tests {
		got, err := users.NormalizeUsername(tc.in)
		if tc.ok != (err == nil) || got != tc.want {
			t.Errorf("NormalizeUsername(%q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, users.ErrInvalidUsername) {
			t.Errorf("NormalizeUsername(%q) error %v is not ErrInvalidUsername", tc.in, err)
		}
	}
}

func TestCreateAndAuthenticate(t *testing.T) {
	t.Parallel()
	svc, _, _ := newService(t)
	ctx := t.Context()
	u, err := svc.Create(ctx, "Zoe\u0308", "correct horse battery", []string{"reader", "admin", "reader"})
	if err != nil {
		t.Fatal(err)
	}
	if u.Username != "Zoë" || strings.Join(u.Roles, ",") != "admin,reader" {
		t.Fatalf("Create = %+v: want NFC name and sorted unique roles", u)
	}
	if _, err := svc.Create(ctx, "Zoë", "another horse battery", nil); !errors.Is(err, tokenstore.ErrAlreadyExists) {
		t.Fatalf("Create of the same name in another normal form: %v, want ErrAlreadyExists", err)
	}
	got, err := svc.Authenticate(ctx, "Zoë", "correct horse battery")
	if err != nil || got.ID != u.ID {
		t.Fatalf("Authenticate = %+v, %v", got, err)
	}
}

func TestCreateRejectsBadInput(t *testing.T) {
	t.Parallel()
	svc, _, _ := newService(t)
	ctx := t.Context()
	tests := []struct {
		name, user, pw string
		roles          []string
		want           error
	}{
		{"empty username", "", strongPW, nil, users.ErrInvalidUsername},
		{"control char", "a\tb", strongPW, nil, users.ErrInvalidUsername},
		{"empty password", "bob", "", nil, users.ErrInvalidPassword},
		{"password too long", "bob", strings.Repeat("x", password.MaxLength+1), nil, users.ErrInvalidPassword},
		{"password not UTF-8", "bob", strongPW + "\xff", nil, users.ErrInvalidPassword},
		{"password too short", "bob", "Xq7#", nil, users.ErrPasswordTooWeak},
		{"common password", "bob", "password1", nil, users.ErrPasswordTooWeak},
		{"password built on the username", "bob", "bob12345", nil, users.ErrPasswordTooWeak},
		{"bad role", "bob", strongPW, []string{"a b"}, users.ErrInvalidRole},
		{"empty role", "bob", strongPW, []string{""}, users.ErrInvalidRole},
	}
	for _, tc := range tests {
		if _, err := svc.Create(ctx, tc.user, tc.pw, tc.roles); !errors.Is(err, tc.want) {
			t.Errorf("%s: Create error %v, want %v", tc.name, err, tc.want)
		}
	}
	// A password of exactly MaxLength bytes is accepted, never truncated.
	long := longPassword(password.MaxLength)
	if _, err := svc.Create(ctx, "carol", long, nil); err != nil {
		t.Fatalf("Create with a %d-byte password: %v", password.MaxLength, err)
	}
	if _, err := svc.Authenticate(ctx, "carol", long[:len(long)-1]); !errors.Is(err, users.ErrBadCredentials) {
		t.Fatalf("Authenticate with the password cut by one byte: %v, want ErrBadCredentials", err)
	}
}

// Every credential failure is the same error (ErrBadCredentials, which
// the finer one for the audit trail wraps) and costs exactly one hash.
func TestAuthenticateFailuresLookAlike(t *testing.T) {
	t.Parallel()
	svc, h, _ := newService(t)
	ctx := t.Context()
	if _, err := svc.Create(ctx, "alice", rightPW, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(ctx, "dave", rightPW, nil); err != nil {
		t.Fatal(err)
	}
	disabled := true
	if _, err := svc.Update(ctx, "dave", users.Change{Disabled: &disabled}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, user, pw string
		why            error
	}{
		{"wrong password", "alice", "wrong", users.ErrWrongPassword},
		{"unknown user", "mallory", rightPW, users.ErrUnknownUser},
		{"disabled user", "dave", rightPW, users.ErrDisabled},
		{"disabled user, wrong password", "dave", "wrong", users.ErrWrongPassword},
		{"username with a control character", "ali\x00ce", rightPW, users.ErrUnknownUser},
		{"empty password", "alice", "", users.ErrWrongPassword},
		{"over-long password", "alice", strings.Repeat("x", password.MaxLength+10), users.ErrWrongPassword},
	}
	for _, tc := range tests {
		before := h.checks.Load()
		_, err := svc.Authenticate(ctx, tc.user, tc.pw)
		if !errors.Is(err, users.ErrBadCredentials) || !errors.Is(err, tc.why) {
			t.Errorf("%s: Authenticate error %v, want ErrBadCredentials as %v", tc.name, err, tc.why)
		}
		if n := h.checks.Load() - before; n != 1 {
			t.Errorf("%s: %d password checks, want exactly 1", tc.name, n)
		}
	}
}

func TestUpdateRevokesSessionsOnDisableRolesAndPasswordChange(t *testing.T) {
	t.Parallel()
	svc, _, store := newService(t)
	ctx := t.Context()
	u, err := svc.Create(ctx, "erin", "old horse battery", nil)
	if err != nil {
		t.Fatal(err)
	}
	newSession := func() string {
		t.Helper()
		sid, err := tokenstore.NewSessionID(u.ID, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		cur, err := store.UserByID(ctx, u.ID) // under the user's current credential epoch
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now().Truncate(time.Millisecond)
		err = store.CreateSession(ctx, tokenstore.Session{ID: sid, UserID: u.ID, Nonce: "n", CreatedAt: now, RotatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(time.Hour), Epoch: cur.Epoch})
		if err != nil {
			t.Fatal(err)
		}
		return sid
	}

	sid := newSession()
	enabled := false
	if _, err := svc.Update(ctx, "erin", users.Change{Disabled: &enabled}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Session(ctx, sid); err != nil {
		t.Fatalf("enabling an enabled user must not end sessions: %v", err)
	}
	roles := []string{"admin"}
	if _, err := svc.Update(ctx, "erin", users.Change{Roles: &roles}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Session(ctx, sid); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("session after a role change: %v, want ErrNotFound (no token may keep the old roles)", err)
	}
	sid = newSession()

	weak := "erin2024"
	if _, err := svc.Update(ctx, "erin", users.Change{Password: &weak}); !errors.Is(err, users.ErrPasswordTooWeak) {
		t.Fatalf("Update to a password built on the username: %v, want ErrPasswordTooWeak", err)
	}
	if _, err := store.Session(ctx, sid); err != nil {
		t.Fatalf("a refused password change must not end sessions: %v", err)
	}
	pw := "new horse battery"
	if _, err := svc.Update(ctx, "erin", users.Change{Password: &pw}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Session(ctx, sid); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("session after a password change: %v, want ErrNotFound", err)
	}
	if _, err := svc.Authenticate(ctx, "erin", pw); err != nil {
		t.Fatalf("Authenticate with the new password: %v", err)
	}

	sid = newSession()
	disabled := true
	if _, err := svc.Update(ctx, "erin", users.Change{Disabled: &disabled}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Session(ctx, sid); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("session after disabling: %v, want ErrNotFound", err)
	}
	if _, err := svc.Update(ctx, "nobody", users.Change{Disabled: &disabled}); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("Update of an unknown user: %v, want ErrNotFound", err)
	}
}
