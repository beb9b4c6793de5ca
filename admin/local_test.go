package admin_test

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/identityd/identity/admin"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeHasher stands in for argon2id: these tests are about administration,
// not hashing. The "hash" is only ever compared, never shown.
type fakeHasher struct{}

func (fakeHasher) Hash(_ context.Context, pw string) (string, error) { return "fake$" + pw, nil }
func (fakeHasher) Check(_ context.Context, phc, pw string) (bool, error) {
	return phc != "" && phc == "fake$"+pw, nil
}

// fakeKeys is a key manager holding a list in memory.
type fakeKeys struct {
	keys    []admin.Key
	rotated int
}

func (k *fakeKeys) List(context.Context) ([]admin.Key, error) { return slices.Clone(k.keys), nil }

func (k *fakeKeys) Rotate(context.Context) ([]admin.Key, error) {
	k.rotated++
	for i := range k.keys {
		k.keys[i].Signing = false
		if k.keys[i].RetireAt.IsZero() {
			k.keys[i].RetireAt = t0.Add(time.Hour)
		}
	}
	k.keys = append(k.keys, admin.Key{ID: "k2", Alg: "EdDSA", CreatedAt: t0, ActiveAt: t0, Signing: true})
	return slices.Clone(k.keys), nil
}

type fixture struct {
	store    *tokenstore.Memory
	accounts *users.Service
	keys     *fakeKeys
	local    *admin.Local
	now      time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{now: t0}
	clock := func() time.Time { return f.now }
	f.store = tokenstore.NewMemory(tokenstore.WithClock(clock))
	t.Cleanup(func() { f.store.Close() })
	f.accounts = users.New(f.store, fakeHasher{}, clock, rand.Reader)
	f.keys = &fakeKeys{keys: []admin.Key{{ID: "k1", Alg: "EdDSA", CreatedAt: t0.Add(-time.Hour), ActiveAt: t0.Add(-time.Hour), Signing: true}}}
	f.local = admin.NewLocal(f.store, f.accounts, f.keys, admin.WithClock(clock), admin.WithIdleTTL(time.Hour))
	return f
}

// login stands in for identityd's Login: a session of the user.
func (f *fixture) login(t *testing.T, username string) tokenstore.Session {
	t.Helper()
	ctx := t.Context()
	u, err := f.accounts.ByName(ctx, username)
	if err != nil {
		t.Fatal(err)
	}
	id, err := tokenstore.NewSessionID(u.ID, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := tokenstore.Session{
		ID: id, UserID: u.ID, Nonce: "n",
		CreatedAt: f.now, RotatedAt: f.now, LastUsedAt: f.now,
		ExpiresAt: f.now.Add(90 * 24 * time.Hour),
	}
	if err := f.store.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) mustCreate(t *testing.T, name string, roles ...string) admin.User {
	t.Helper()
	u, err := f.local.CreateUser(t.Context(), name, "correct horse", roles)
	if err != nil {
		t.Fatalf("CreateUser(%q): %v", name, err)
	}
	return u
}

func TestCreateUser(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()

	// "é" decomposed: stored and answered in NFC.
	u, err := f.local.CreateUser(ctx, "re\u0301mi", "pw", []string{"ops", "admin", "ops"})
	if err != nil {
		t.Fatal(err)
	}
	if u.Username != "r\u00e9mi" {
		t.Errorf("Username = %q, want NFC %q", u.Username, "r\u00e9mi")
	}
	if !tokenstore.ValidUserID(u.ID) {
		t.Errorf("ID = %q, not a user id", u.ID)
	}
	if want := []string{"admin", "ops"}; !slices.Equal(u.Roles, want) {
		t.Errorf("Roles = %q, want %q (sorted, deduplicated)", u.Roles, want)
	}
	if u.Disabled || !u.CreatedAt.Equal(t0) {
		t.Errorf("Disabled = %v, CreatedAt = %v; want false, %v", u.Disabled, u.CreatedAt, t0)
	}
	if _, err := f.accounts.Authenticate(ctx, "rémi", "pw"); err != nil {
		t.Errorf("the new user cannot log in: %v", err)
	}

	noRoles := f.mustCreate(t, "bob")
	if noRoles.Roles == nil || len(noRoles.Roles) != 0 {
		t.Errorf("Roles = %#v, want an empty, non-nil list", noRoles.Roles)
	}
}

func TestCreateUserErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.mustCreate(t, "alice")
	tests := []struct {
		name, username, password string
		roles                    []string
		want                     error
		msg                      string
	}{
		{"duplicate", "alice", "pw", nil, tokenstore.ErrAlreadyExists, `user "alice" already exists`},
		{"duplicate after normalisation", "alice", "other", []string{"x"}, tokenstore.ErrAlreadyExists, `already exists`},
		{"empty username", "", "pw", nil, users.ErrInvalidUsername, "invalid username"},
		{"control character", "al\x00ice", "pw", nil, users.ErrInvalidUsername, `"al\x00ice"`},
		{"surrounding space", " alice", "pw", nil, users.ErrInvalidUsername, "invalid username"},
		{"empty password", "carol", "", nil, users.ErrInvalidPassword, "invalid password"},
		{"password too long", "carol", strings.Repeat("p", 1025), nil, users.ErrInvalidPassword, "1024 bytes"},
		{"bad role", "carol", "pw", []string{"ad min"}, users.ErrInvalidRole, "invalid role"},
		{"empty role", "carol", "pw", []string{""}, users.ErrInvalidRole, "invalid role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.local.CreateUser(t.Context(), tt.username, tt.password, tt.roles)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("message %q does not say %q", err, tt.msg)
			}
			if tt.password != "" && len(tt.password) > 3 && strings.Contains(err.Error(), tt.password) {
				t.Errorf("message %q holds the password", err)
			}
		})
	}
	us, err := f.local.ListUsers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(us) != 1 {
		t.Errorf("failed creations left users behind: %+v", us)
	}
}

func TestErrorMessageIsBounded(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	_, err := f.local.ListSessions(t.Context(), strings.Repeat("x", 200))
	if !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
	if len(err.Error()) > 120 {
		t.Errorf("message is %d bytes: a caller-supplied name must be cut short", len(err.Error()))
	}
}

func TestListUsers(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	us, err := f.local.ListUsers(ctx)
	if err != nil || len(us) != 0 {
		t.Fatalf("ListUsers on an empty store = %v, %v; want none", us, err)
	}
	for _, n := range []string{"carol", "alice", "bob"} {
		f.mustCreate(t, n)
	}
	us, err = f.local.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, u := range us {
		names = append(names, u.Username)
	}
	if want := []string{"alice", "bob", "carol"}; !slices.Equal(names, want) {
		t.Errorf("ListUsers = %q, want %q (ordered by username)", names, want)
	}
}

func TestUpdateUser(t *testing.T) {
	t.Parallel()
	ptr := func(b bool) *bool { return &b }
	str := func(s string) *string { return &s }
	roles := func(r ...string) *[]string { return &r }
	tests := []struct {
		name         string
		change       users.Change
		wantDisabled bool
		wantRoles    []string
		wantPassword string
		wantRevoked  bool
	}{
		{"disable", users.Change{Disabled: ptr(true)}, true, []string{"ops"}, "old", true},
		{"enable", users.Change{Disabled: ptr(false)}, false, []string{"ops"}, "old", false},
		{"password", users.Change{Password: str("new")}, false, []string{"ops"}, "new", true},
		// A role change ends the sessions: no token keeps the old roles.
		{"roles", users.Change{Roles: roles("b", "a")}, false, []string{"a", "b"}, "old", true},
		{"clear roles", users.Change{Roles: roles()}, false, []string{}, "old", true},
		{"nothing", users.Change{}, false, []string{"ops"}, "old", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			ctx := t.Context()
			if _, err := f.local.CreateUser(ctx, "alice", "old", []string{"ops"}); err != nil {
				t.Fatal(err)
			}
			f.login(t, "alice")
			f.login(t, "alice")

			u, err := f.local.UpdateUser(ctx, "alice", tt.change)
			if err != nil {
				t.Fatal(err)
			}
			if u.Disabled != tt.wantDisabled || !slices.Equal(u.Roles, tt.wantRoles) || u.Roles == nil {
				t.Errorf("user = %+v, want disabled %v, roles %q", u, tt.wantDisabled, tt.wantRoles)
			}
			ss, err := f.local.ListSessions(ctx, "alice")
			if err != nil {
				t.Fatal(err)
			}
			if revoked := len(ss) == 0; revoked != tt.wantRevoked {
				t.Errorf("%d sessions left; want revoked = %v", len(ss), tt.wantRevoked)
			}
			if !tt.wantDisabled {
				if _, err := f.accounts.Authenticate(ctx, "alice", tt.wantPassword); err != nil {
					t.Errorf("cannot log in with %q: %v", tt.wantPassword, err)
				}
			} else if _, err := f.accounts.Authenticate(ctx, "alice", tt.wantPassword); !errors.Is(err, users.ErrBadCredentials) {
				t.Errorf("disabled user logs in: err = %v", err)
			}
		})
	}
}

func TestUpdateUserErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.mustCreate(t, "alice")
	empty := ""
	bad := []string{"no spaces"}
	tests := []struct {
		name     string
		username string
		change   users.Change
		want     error
		msg      string
	}{
		{"unknown user", "bob", users.Change{}, tokenstore.ErrNotFound, `user "bob" not found`},
		{"empty username", "", users.Change{}, users.ErrInvalidUsername, "invalid username"},
		{"empty password", "alice", users.Change{Password: &empty}, users.ErrInvalidPassword, "invalid password"},
		{"bad role", "alice", users.Change{Roles: &bad}, users.ErrInvalidRole, "invalid role"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.local.UpdateUser(t.Context(), tt.username, tt.change)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v, want %v saying %q", err, tt.want, tt.msg)
			}
		})
	}
}

func TestSessions(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	alice := f.mustCreate(t, "alice")
	f.mustCreate(t, "bob")
	s1 := f.login(t, "alice")
	f.now = f.now.Add(time.Minute)
	s2 := f.login(t, "alice")
	bobs := f.login(t, "bob")

	ss, err := f.local.ListSessions(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 2 || ss[0].ID != s1.ID || ss[1].ID != s2.ID {
		t.Fatalf("ListSessions = %+v, want %s then %s", ss, s1.ID, s2.ID)
	}
	got := ss[1]
	if got.UserID != alice.ID || got.Generation != 0 || !got.CreatedAt.Equal(s2.CreatedAt) || !got.LastUsedAt.Equal(s2.LastUsedAt) {
		t.Errorf("session = %+v, want user %s, created and used at %v", got, alice.ID, s2.CreatedAt)
	}
	// WithIdleTTL(1h): the session ends an hour after its last use, long
	// before its absolute end.
	if want := s2.LastUsedAt.Add(time.Hour); !got.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %v, want the idle expiry %v", got.ExpiresAt, want)
	}

	// Revoke one session: it goes, with a revocation event dated now.
	f.now = f.now.Add(time.Minute)
	_, cursor, _, err := f.store.Revocations(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.local.RevokeSession(ctx, s1.ID); err != nil {
		t.Fatal(err)
	}
	ss, _ = f.local.ListSessions(ctx, "alice")
	if len(ss) != 1 || ss[0].ID != s2.ID {
		t.Errorf("after RevokeSession: %+v, want only %s", ss, s2.ID)
	}
	evs, _, _, err := f.store.Revocations(ctx, cursor, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].SessionID != s1.ID || !evs[0].RevokedAt.Equal(f.now) {
		t.Errorf("revocations = %+v, want %s revoked at %v", evs, s1.ID, f.now)
	}

	err = f.local.RevokeSession(ctx, s1.ID)
	if !errors.Is(err, tokenstore.ErrNotFound) || !strings.Contains(err.Error(), "not found") {
		t.Errorf("revoking twice: err = %v, want ErrNotFound", err)
	}
	for _, id := range []string{"", "nope", alice.ID, s1.ID + "x"} {
		if err := f.local.RevokeSession(ctx, id); !errors.Is(err, admin.ErrInvalidSessionID) {
			t.Errorf("RevokeSession(%q): err = %v, want ErrInvalidSessionID", id, err)
		}
	}

	// Revoke all of alice's: bob keeps his.
	f.login(t, "alice")
	n, err := f.local.RevokeUserSessions(ctx, "alice")
	if err != nil || n != 2 {
		t.Errorf("RevokeUserSessions = %d, %v; want 2", n, err)
	}
	if ss, _ := f.local.ListSessions(ctx, "alice"); len(ss) != 0 {
		t.Errorf("alice still has %d sessions", len(ss))
	}
	if ss, _ := f.local.ListSessions(ctx, "bob"); len(ss) != 1 || ss[0].ID != bobs.ID {
		t.Errorf("bob's sessions = %+v, want %s untouched", ss, bobs.ID)
	}
	if n, err := f.local.RevokeUserSessions(ctx, "alice"); err != nil || n != 0 {
		t.Errorf("RevokeUserSessions again = %d, %v; want 0, nil", n, err)
	}

	for _, call := range []func() error{
		func() error { _, err := f.local.ListSessions(ctx, "carol"); return err },
		func() error { _, err := f.local.RevokeUserSessions(ctx, "carol"); return err },
	} {
		if err := call(); !errors.Is(err, tokenstore.ErrNotFound) || !strings.Contains(err.Error(), `user "carol" not found`) {
			t.Errorf("unknown user: err = %v", err)
		}
	}
}

func TestAbsoluteExpiryWithoutIdleTTL(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.local = admin.NewLocal(f.store, f.accounts, nil, admin.WithClock(func() time.Time { return f.now }))
	f.mustCreate(t, "alice")
	s := f.login(t, "alice")
	ss, err := f.local.ListSessions(t.Context(), "alice")
	if err != nil || len(ss) != 1 {
		t.Fatalf("ListSessions = %v, %v", ss, err)
	}
	if !ss[0].ExpiresAt.Equal(s.ExpiresAt) {
		t.Errorf("ExpiresAt = %v, want the absolute end %v", ss[0].ExpiresAt, s.ExpiresAt)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	ks, err := f.local.ListKeys(ctx)
	if err != nil || len(ks) != 1 || ks[0].ID != "k1" || !ks[0].Signing {
		t.Fatalf("ListKeys = %+v, %v; want k1 signing", ks, err)
	}
	ks, err = f.local.RotateKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.keys.rotated != 1 || len(ks) != 2 || ks[1].ID != "k2" || !ks[1].Signing || ks[0].RetireAt.IsZero() {
		t.Errorf("RotateKeys = %+v (rotations %d); want k1 retiring and k2 signing", ks, f.keys.rotated)
	}

	none := admin.NewLocal(f.store, f.accounts, nil)
	if _, err := none.ListKeys(ctx); !errors.Is(err, admin.ErrNoKeys) {
		t.Errorf("ListKeys without a key manager: err = %v, want ErrNoKeys", err)
	}
	if _, err := none.RotateKeys(ctx); !errors.Is(err, admin.ErrNoKeys) {
		t.Errorf("RotateKeys without a key manager: err = %v, want ErrNoKeys", err)
	}
}
