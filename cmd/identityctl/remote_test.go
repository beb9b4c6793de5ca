package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// fakeIdentityd plays a running identityd: Login, Logout and an
// AdminService that records the credentials each call carried.
type fakeIdentityd struct {
	identityv1.UnimplementedIdentityServiceServer
	identityv1.UnimplementedAdminServiceServer

	mu        sync.Mutex
	auth      []string // authorization metadata of each admin call
	logins    []*identityv1.LoginRequest
	logouts   []string
	loginErr  error
	adminErr  error
	created   []*identityv1.CreateUserRequest
	loginAuth []string // authorization metadata Login arrived with
}

const (
	fakeAccess  = "access.token.from-login"
	fakeRefresh = "refresh-token-from-login"
)

func (f *fakeIdentityd) Login(ctx context.Context, r *identityv1.LoginRequest) (*identityv1.TokenPair, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logins = append(f.logins, r)
	md, _ := metadata.FromIncomingContext(ctx)
	f.loginAuth = append(f.loginAuth, md.Get("authorization")...)
	if f.loginErr != nil {
		return nil, f.loginErr
	}
	return &identityv1.TokenPair{AccessToken: fakeAccess, TokenType: "Bearer", RefreshToken: fakeRefresh}, nil
}

func (f *fakeIdentityd) Logout(_ context.Context, r *identityv1.LogoutRequest) (*identityv1.LogoutResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logouts = append(f.logouts, r.GetRefreshToken())
	return &identityv1.LogoutResponse{}, nil
}

func (f *fakeIdentityd) record(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	md, _ := metadata.FromIncomingContext(ctx)
	f.auth = append(f.auth, strings.Join(md.Get("authorization"), "|"))
	return f.adminErr
}

func (f *fakeIdentityd) CreateUser(ctx context.Context, r *identityv1.CreateUserRequest) (*identityv1.User, error) {
	if err := f.record(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.created = append(f.created, r)
	f.mu.Unlock()
	return &identityv1.User{Id: "aaaaaaaaaaaaaaaaaaaa", Username: r.GetUsername(), Roles: r.GetRoles()}, nil
}

func (f *fakeIdentityd) ListUsers(ctx context.Context, _ *identityv1.ListUsersRequest) (*identityv1.ListUsersResponse, error) {
	if err := f.record(ctx); err != nil {
		return nil, err
	}
	return &identityv1.ListUsersResponse{Users: []*identityv1.User{
		{Id: "aaaaaaaaaaaaaaaaaaaa", Username: "root", Roles: []string{"admin"}, CreatedAt: timestamppb.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))},
	}}, nil
}

func (f *fakeIdentityd) ListSessions(ctx context.Context, _ *identityv1.ListSessionsRequest) (*identityv1.ListSessionsResponse, error) {
	return &identityv1.ListSessionsResponse{}, f.record(ctx)
}

func (f *fakeIdentityd) RevokeSession(ctx context.Context, _ *identityv1.RevokeSessionRequest) (*identityv1.RevokeSessionResponse, error) {
	return &identityv1.RevokeSessionResponse{}, f.record(ctx)
}

func (f *fakeIdentityd) RotateKeys(ctx context.Context, _ *identityv1.RotateKeysRequest) (*identityv1.ListKeysResponse, error) {
	if err := f.record(ctx); err != nil {
		return nil, err
	}
	return &identityv1.ListKeysResponse{Keys: []*identityv1.SigningKey{{Kid: "k1", Alg: "EdDSA", Signing: true}}}, nil
}

func startFakeIdentityd(t *testing.T) (*fakeIdentityd, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	f := &fakeIdentityd{}
	identityv1.RegisterIdentityServiceServer(srv, f)
	identityv1.RegisterAdminServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return f, lis.Addr().String()
}

func identityErr(t *testing.T, code codes.Code, reason identityv1.ErrorReason, msg string) error {
	t.Helper()
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Domain: "identity", Reason: reason.String()})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func runWith(t *testing.T, env map[string]string, stdin string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &cli{getenv: func(k string) string { return env[k] }, stdin: strings.NewReader(stdin), stdout: &stdout, stderr: &stderr}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r := result{code: c.run(ctx, args), stdout: stdout.String(), stderr: stderr.String()}
	for _, secret := range []string{"tok-123", fakeAccess, fakeRefresh, "root pw", "new-user-pw"} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("identityctl %q printed the secret %q:\n%s%s", args, secret, r.stdout, r.stderr)
		}
	}
	return r
}

func TestRemoteWithToken(t *testing.T) {
	t.Parallel()
	f, addr := startFakeIdentityd(t)
	env := map[string]string{"IDENTITY_SERVER": addr, "IDENTITY_TOKEN": "tok-123"}

	r := runWith(t, env, "", "user", "list")
	if r.code != 0 {
		t.Fatalf("user list: %+v", r)
	}
	checkTable(t, rows(r.stdout), [][]string{
		{"USERNAME", "ID", "ROLES", "STATUS", "CREATED"},
		{"root", "aaaaaaaaaaaaaaaaaaaa", "admin", "active", "2030-01-02T03:04:05Z"},
	})
	r = runWith(t, env, "new-user-pw\n", "user", "add", "bob", "--password-stdin", "--role", "ops")
	if r.code != 0 || !strings.HasPrefix(r.stdout, `created user "bob"`) {
		t.Fatalf("user add: %+v", r)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.auth) != 2 || f.auth[0] != "Bearer tok-123" || f.auth[1] != "Bearer tok-123" {
		t.Errorf("admin calls carried %q, want Bearer tok-123 each", f.auth)
	}
	if len(f.created) != 1 || f.created[0].GetPassword() != "new-user-pw" || f.created[0].GetRoles()[0] != "ops" {
		t.Errorf("CreateUser got %v", f.created)
	}
	if len(f.logins) != 0 {
		t.Errorf("identityctl logged in although it had a token")
	}
}

func TestRemoteWithLogin(t *testing.T) {
	t.Parallel()
	f, addr := startFakeIdentityd(t)
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("root pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"IDENTITY_SERVER": addr}

	r := runWith(t, env, "", "--user", "root", "--password-file", pwFile, "key", "rotate")
	if r.code != 0 {
		t.Fatalf("key rotate: %+v", r)
	}
	checkTable(t, rows(r.stdout), [][]string{
		{"KID", "ALG", "SIGNING", "CREATED", "ACTIVE_AT", "RETIRE_AT"},
		{"k1", "EdDSA", "yes", "-", "-", "-"},
	})
	f.mu.Lock()
	if len(f.logins) != 1 || f.logins[0].GetUsername() != "root" || f.logins[0].GetPassword() != "root pw" {
		t.Errorf("Login got %v, want root with the file's password (newline stripped)", f.logins)
	}
	if len(f.loginAuth) != 0 {
		t.Errorf("Login carried authorization %q", f.loginAuth)
	}
	if len(f.auth) != 1 || f.auth[0] != "Bearer "+fakeAccess {
		t.Errorf("admin call carried %q, want the access token from Login", f.auth)
	}
	if len(f.logouts) != 1 || f.logouts[0] != fakeRefresh {
		t.Errorf("Logout got %q, want the session of the login ended", f.logouts)
	}
	f.loginErr = identityErr(t, codes.Unauthenticated, identityv1.ErrorReason_INVALID_CREDENTIALS, "invalid username or password")
	f.mu.Unlock()

	r = runWith(t, env, "", "--user", "root", "--password-file", pwFile, "user", "list")
	want := "identityctl: log in as \"root\": identityd refused the credentials: INVALID_CREDENTIALS: invalid username or password\n"
	if r.code != 1 || r.stderr != want {
		t.Errorf("bad login: exit %d, stderr %q; want 1, %q", r.code, r.stderr, want)
	}

	r = runWith(t, env, "", "--user", "root", "--password-file", filepath.Join(t.TempDir(), "missing"), "user", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "--password-file") {
		t.Errorf("missing password file: %+v", r)
	}
	r = runWith(t, env, "", "--user", "root", "user", "list")
	if r.code != 2 || !strings.Contains(r.stderr, "--user needs --password-file") {
		t.Errorf("--user without --password-file: %+v", r)
	}
}

func TestRemoteErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		args   []string
		stderr string
	}{
		{"not found", identityErr(t, codes.NotFound, identityv1.ErrorReason_NOT_FOUND, "not found"),
			[]string{"session", "list", "bob"}, "identityctl: user \"bob\" not found\n"},
		{"session not found", identityErr(t, codes.NotFound, identityv1.ErrorReason_NOT_FOUND, "not found"),
			[]string{"session", "revoke", "x"}, "identityctl: session \"x\" not found (expired or already revoked)\n"},
		{"already exists", identityErr(t, codes.AlreadyExists, identityv1.ErrorReason_ALREADY_EXISTS, "already exists"),
			[]string{"user", "add", "bob", "--password-stdin"}, "identityctl: user \"bob\" already exists\n"},
		{"invalid", identityErr(t, codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, "invalid role"),
			[]string{"user", "add", "bob", "--password-stdin"}, "identityctl: INVALID_REQUEST: invalid role\n"},
		{"expired token", identityErr(t, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_EXPIRED, "access token expired"),
			[]string{"user", "list"}, "identityctl: identityd refused the credentials: TOKEN_EXPIRED: access token expired\n"},
		{"not an admin", identityErr(t, codes.PermissionDenied, identityv1.ErrorReason_PERMISSION_DENIED, "the admin role is required"),
			[]string{"key", "rotate"}, "identityctl: identityd refused the credentials: PERMISSION_DENIED: the admin role is required\n"},
		{"store down", identityErr(t, codes.Unavailable, identityv1.ErrorReason_STORE_UNAVAILABLE, "the session store is unavailable"),
			[]string{"user", "list"}, "identityctl: STORE_UNAVAILABLE: the session store is unavailable\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, addr := startFakeIdentityd(t)
			f.adminErr = tt.err
			r := runWith(t, map[string]string{"IDENTITY_SERVER": addr, "IDENTITY_TOKEN": "tok-123"}, "new-user-pw\n", tt.args...)
			if r.code != 1 || r.stderr != tt.stderr || r.stdout != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want 1 and %q", r.code, r.stdout, r.stderr, tt.stderr)
			}
		})
	}
}

func TestRemoteUnreachable(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	r := runWith(t, map[string]string{"IDENTITY_SERVER": addr, "IDENTITY_TOKEN": "tok-123"}, "", "user", "list")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "identityctl: cannot reach identityd at "+addr) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("unreachable identityd: %+v", r)
	}
}
