package server

import (
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/identityd/identity/admin"
	"github.com/identityd/identity/audit"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// plainHasher keeps these tests about the AdminService, not argon2id.
type plainHasher struct{}

func (plainHasher) Hash(_ context.Context, pw string) (string, error) { return "plain$" + pw, nil }
func (plainHasher) Check(_ context.Context, phc, pw string) (bool, error) {
	return phc != "" && phc == "plain$"+pw, nil
}
func (plainHasher) NeedsRehash(string) bool { return false }

type staticKeys []admin.Key

func (k staticKeys) List(context.Context) ([]admin.Key, error)   { return k, nil }
func (k staticKeys) Rotate(context.Context) ([]admin.Key, error) { return k, nil }

var adminT0 = time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)

// adminTestPW passes the password policy.
const adminTestPW = "correct horse battery staple"

type adminFixture struct {
	srv      identityv1.AdminServiceServer
	store    *tokenstore.Memory
	accounts *users.Service
}

func newAdminFixture(t *testing.T) *adminFixture {
	t.Helper()
	clock := func() time.Time { return adminT0 }
	store := tokenstore.NewMemory(tokenstore.WithClock(clock))
	t.Cleanup(func() { store.Close() })
	accounts := users.New(store, plainHasher{}, clock, rand.Reader)
	keys := staticKeys{
		{ID: "old", Alg: "EdDSA", CreatedAt: adminT0.Add(-time.Hour), ActiveAt: adminT0.Add(-time.Hour), RetireAt: adminT0.Add(time.Hour)},
		{ID: "new", Alg: "EdDSA", CreatedAt: adminT0, ActiveAt: adminT0, Signing: true},
	}
	a := admin.NewLocal(store, accounts, keys, admin.WithClock(clock))
	return &adminFixture{srv: newAdminServer(a, func(context.Context, audit.Event, error) {}), store: store, accounts: accounts}
}

func (f *adminFixture) session(t *testing.T, username string) string {
	t.Helper()
	u, err := f.accounts.ByName(t.Context(), username)
	if err != nil {
		t.Fatal(err)
	}
	id, err := tokenstore.NewSessionID(u.ID, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	err = f.store.CreateSession(t.Context(), tokenstore.Session{
		ID: id, UserID: u.ID, Nonce: "n", CreatedAt: adminT0, RotatedAt: adminT0, LastUsedAt: adminT0,
		ExpiresAt: adminT0.Add(24 * time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestAdminServerUsers(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	ctx := t.Context()

	u, err := f.srv.CreateUser(ctx, &identityv1.CreateUserRequest{Username: "alice", Password: adminTestPW, Roles: []string{"admin"}})
	if err != nil {
		t.Fatal(err)
	}
	if u.GetUsername() != "alice" || u.GetId() == "" || !slices.Equal(u.GetRoles(), []string{"admin"}) || u.GetDisabled() ||
		!u.GetCreatedAt().AsTime().Equal(adminT0) {
		t.Errorf("CreateUser = %v", u)
	}

	if _, err := f.srv.CreateUser(ctx, &identityv1.CreateUserRequest{Username: "bob", Password: adminTestPW}); err != nil {
		t.Fatal(err)
	}
	list, err := f.srv.ListUsers(ctx, &identityv1.ListUsersRequest{})
	if err != nil || len(list.GetUsers()) != 2 || list.GetUsers()[0].GetUsername() != "alice" || list.GetUsers()[1].GetUsername() != "bob" {
		t.Fatalf("ListUsers = %v, %v", list, err)
	}

	sid := f.session(t, "alice")
	disabled := true
	u, err = f.srv.UpdateUser(ctx, &identityv1.UpdateUserRequest{Username: "alice", Disabled: &disabled})
	if err != nil || !u.GetDisabled() || !slices.Equal(u.GetRoles(), []string{"admin"}) {
		t.Fatalf("disable: %v, %v", u, err)
	}
	if _, err := f.store.Session(ctx, sid); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Errorf("disabling kept the session: %v", err)
	}

	// set_roles with no roles clears them; roles without set_roles is
	// refused rather than ignored.
	u, err = f.srv.UpdateUser(ctx, &identityv1.UpdateUserRequest{Username: "alice", SetRoles: true})
	if err != nil || len(u.GetRoles()) != 0 || !u.GetDisabled() {
		t.Errorf("clear roles: %v, %v", u, err)
	}
	_, err = f.srv.UpdateUser(ctx, &identityv1.UpdateUserRequest{Username: "alice", Roles: []string{"admin"}})
	if code := status.Code(toStatus(err)); code != codes.InvalidArgument || !strings.Contains(err.Error(), "set_roles") {
		t.Errorf("roles without set_roles: %v (code %v)", err, code)
	}

	pw := "a brand new horse battery"
	enabled := false
	if _, err := f.srv.UpdateUser(ctx, &identityv1.UpdateUserRequest{Username: "alice", Password: &pw, Disabled: &enabled}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.accounts.Authenticate(ctx, "alice", pw); err != nil {
		t.Errorf("new password does not work: %v", err)
	}
}

func TestAdminServerSessions(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	ctx := t.Context()
	if _, err := f.srv.CreateUser(ctx, &identityv1.CreateUserRequest{Username: "alice", Password: adminTestPW}); err != nil {
		t.Fatal(err)
	}
	s1, s2 := f.session(t, "alice"), f.session(t, "alice")

	resp, err := f.srv.ListSessions(ctx, &identityv1.ListSessionsRequest{Username: "alice"})
	if err != nil || len(resp.GetSessions()) != 2 {
		t.Fatalf("ListSessions = %v, %v", resp, err)
	}
	got := resp.GetSessions()[0]
	if !slices.Contains([]string{s1, s2}, got.GetSessionId()) || got.GetSubject() == "" ||
		!got.GetCreatedAt().AsTime().Equal(adminT0) || !got.GetLastUsedAt().AsTime().Equal(adminT0) ||
		!got.GetExpiresAt().AsTime().Equal(adminT0.Add(24*time.Hour)) {
		t.Errorf("session = %v", got)
	}

	if _, err := f.srv.RevokeSession(ctx, &identityv1.RevokeSessionRequest{SessionId: s1}); err != nil {
		t.Fatal(err)
	}
	_, err = f.srv.RevokeSession(ctx, &identityv1.RevokeSessionRequest{SessionId: s1})
	if !errors.Is(err, tokenstore.ErrNotFound) || status.Code(toStatus(err)) != codes.NotFound {
		t.Errorf("revoking twice: %v", err)
	}
	n, err := f.srv.RevokeUserSessions(ctx, &identityv1.RevokeUserSessionsRequest{Username: "alice"})
	if err != nil || n.GetRevoked() != 1 {
		t.Errorf("RevokeUserSessions = %v, %v; want 1", n, err)
	}
}

func TestAdminServerKeys(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	for name, call := range map[string]func() (*identityv1.ListKeysResponse, error){
		"ListKeys": func() (*identityv1.ListKeysResponse, error) {
			return f.srv.ListKeys(t.Context(), &identityv1.ListKeysRequest{})
		},
		"RotateKeys": func() (*identityv1.ListKeysResponse, error) {
			return f.srv.RotateKeys(t.Context(), &identityv1.RotateKeysRequest{})
		},
	} {
		resp, err := call()
		if err != nil || len(resp.GetKeys()) != 2 {
			t.Fatalf("%s = %v, %v", name, resp, err)
		}
		old, cur := resp.GetKeys()[0], resp.GetKeys()[1]
		if old.GetKid() != "old" || old.GetSigning() || !old.GetRetireAt().AsTime().Equal(adminT0.Add(time.Hour)) {
			t.Errorf("%s: old key = %v", name, old)
		}
		if cur.GetKid() != "new" || !cur.GetSigning() || cur.GetRetireAt() != nil || cur.GetAlg() != "EdDSA" ||
			!cur.GetActiveAt().AsTime().Equal(adminT0) {
			t.Errorf("%s: current key = %v (retire_at must be unset)", name, cur)
		}
	}
}

// TestAdminServerValidates checks that bad input never reaches the store
// and comes back as INVALID_ARGUMENT, NOT_FOUND or ALREADY_EXISTS through
// the server's one error mapping.
func TestAdminServerValidates(t *testing.T) {
	t.Parallel()
	f := newAdminFixture(t)
	ctx := t.Context()
	if _, err := f.srv.CreateUser(ctx, &identityv1.CreateUserRequest{Username: "alice", Password: adminTestPW}); err != nil {
		t.Fatal(err)
	}
	empty := ""
	long := strings.Repeat("p", 1025)
	tests := []struct {
		name string
		call func() error
		is   error
		code codes.Code
	}{
		{"create: empty username", func() error {
			_, err := f.srv.CreateUser(ctx, &identityv1.CreateUserRequest{Password: adminTestPW})
			return err
		}, users.ErrInvalidUsername, codes.InvalidArgument},
		{"create: huge username", func() error {
			_, err := f.srv.CreateUser(ctx, &identityv1.CreateUserRequest{Username: strings.Repeat("u", 5000), Password: adminTestPW})
			return err
		}, users.ErrInvalidUsername, codes.InvalidArgument},
		{"create: empty password", func() error {
			_, err := f.srv.CreateUser(ctx, &identityv1.CreateUserRequest{Username: "bob"})
			return err
		}, users.ErrInvalidPassword, codes.InvalidArgument},
		{"create: password too long", func() error {
			_, err := f.srv.CreateUser(ctx, &identityv1.CreateUserRequest{Username: "bob", Password: long})
			return err
		}, users.ErrInvalidPassword, codes.InvalidArgument},
		{"create: empty role", func() error {
			_, err := f.srv.CreateUser(ctx, &identityv1.CreateUserRequest{Username: "bob", Password: adminTestPW, Roles: []string{""}})
			return err
		}, users.ErrInvalidRole, codes.InvalidArgument},
		{"create: too many roles", func() error {
			roles := make([]string, 65)
			for i := range roles {
				roles[i] = "r" + strings.Repeat("x", i)
			}
			_, err := f.srv.CreateUser(ctx, &identityv1.CreateUserRequest{Username: "bob", Password: adminTestPW, Roles: roles})
			return err
		}, users.ErrInvalidRole, codes.InvalidArgument},
		{"create: duplicate", func() error {
			_, err := f.srv.CreateUser(ctx, &identityv1.CreateUserRequest{Username: "alice", Password: adminTestPW})
			return err
		}, tokenstore.ErrAlreadyExists, codes.AlreadyExists},
		{"create: weak password", func() error {
			_, err := f.srv.CreateUser(ctx, &identityv1.CreateUserRequest{Username: "bob", Password: "bob12345"})
			return err
		}, users.ErrPasswordTooWeak, codes.InvalidArgument},
		{"create: short password", func() error {
			_, err := f.srv.CreateUser(ctx, &identityv1.CreateUserRequest{Username: "bob", Password: "h4Tz!pQ"})
			return err
		}, users.ErrPasswordTooWeak, codes.InvalidArgument},
		{"update: weak password", func() error {
			weak := "wonderland"
			_, err := f.srv.UpdateUser(ctx, &identityv1.UpdateUserRequest{Username: "alice", Password: &weak})
			return err
		}, users.ErrPasswordTooWeak, codes.InvalidArgument},
		{"update: empty username", func() error {
			_, err := f.srv.UpdateUser(ctx, &identityv1.UpdateUserRequest{})
			return err
		}, users.ErrInvalidUsername, codes.InvalidArgument},
		{"update: empty password", func() error {
			_, err := f.srv.UpdateUser(ctx, &identityv1.UpdateUserRequest{Username: "alice", Password: &empty})
			return err
		}, users.ErrInvalidPassword, codes.InvalidArgument},
		{"update: unknown user", func() error {
			_, err := f.srv.UpdateUser(ctx, &identityv1.UpdateUserRequest{Username: "nobody"})
			return err
		}, tokenstore.ErrNotFound, codes.NotFound},
		{"list sessions: empty username", func() error {
			_, err := f.srv.ListSessions(ctx, &identityv1.ListSessionsRequest{})
			return err
		}, users.ErrInvalidUsername, codes.InvalidArgument},
		{"list sessions: unknown user", func() error {
			_, err := f.srv.ListSessions(ctx, &identityv1.ListSessionsRequest{Username: "nobody"})
			return err
		}, tokenstore.ErrNotFound, codes.NotFound},
		{"revoke all: empty username", func() error {
			_, err := f.srv.RevokeUserSessions(ctx, &identityv1.RevokeUserSessionsRequest{})
			return err
		}, users.ErrInvalidUsername, codes.InvalidArgument},
		{"revoke: empty session id", func() error {
			_, err := f.srv.RevokeSession(ctx, &identityv1.RevokeSessionRequest{})
			return err
		}, nil, codes.InvalidArgument},
		{"revoke: malformed session id", func() error {
			_, err := f.srv.RevokeSession(ctx, &identityv1.RevokeSessionRequest{SessionId: "not-a-session"})
			return err
		}, nil, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatal("no error")
			}
			if _, ok := status.FromError(err); ok {
				t.Errorf("handler built a status (%v): it must return a domain error", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err = %v, want %v", err, tt.is)
			}
			if code := status.Code(toStatus(err)); code != tt.code {
				t.Errorf("mapped to %v, want %v (err %v)", code, tt.code, err)
			}
		})
	}
	list, err := f.srv.ListUsers(ctx, &identityv1.ListUsersRequest{})
	if err != nil || len(list.GetUsers()) != 1 {
		t.Errorf("rejected requests created users: %v, %v", list, err)
	}
}
