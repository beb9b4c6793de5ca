package admin_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/identityd/identity/admin"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// recordingServer answers AdminService calls with canned replies and keeps
// the last request, so a test sees both directions of the conversion.
type recordingServer struct {
	identityv1.UnimplementedAdminServiceServer
	last proto.Message
	err  error
}

func (s *recordingServer) CreateUser(_ context.Context, r *identityv1.CreateUserRequest) (*identityv1.User, error) {
	s.last = r
	if s.err != nil {
		return nil, s.err
	}
	return &identityv1.User{Id: "u1", Username: r.GetUsername(), Roles: r.GetRoles(), CreatedAt: timestamppb.New(t0)}, nil
}

func (s *recordingServer) ListUsers(_ context.Context, r *identityv1.ListUsersRequest) (*identityv1.ListUsersResponse, error) {
	s.last = r
	return &identityv1.ListUsersResponse{Users: []*identityv1.User{
		{Id: "u1", Username: "alice", Roles: []string{"admin"}, CreatedAt: timestamppb.New(t0)},
		{Id: "u2", Username: "bob", Disabled: true},
	}}, s.err
}

func (s *recordingServer) UpdateUser(_ context.Context, r *identityv1.UpdateUserRequest) (*identityv1.User, error) {
	s.last = r
	if s.err != nil {
		return nil, s.err
	}
	return &identityv1.User{Id: "u1", Username: r.GetUsername(), Roles: r.GetRoles(), Disabled: r.GetDisabled()}, nil
}

func (s *recordingServer) ListSessions(_ context.Context, r *identityv1.ListSessionsRequest) (*identityv1.ListSessionsResponse, error) {
	s.last = r
	if s.err != nil {
		return nil, s.err
	}
	return &identityv1.ListSessionsResponse{Sessions: []*identityv1.Session{{
		SessionId: "s1", Subject: "u1", Generation: 3,
		CreatedAt: timestamppb.New(t0), LastUsedAt: timestamppb.New(t0.Add(time.Minute)), ExpiresAt: timestamppb.New(t0.Add(time.Hour)),
	}}}, nil
}

func (s *recordingServer) RevokeSession(_ context.Context, r *identityv1.RevokeSessionRequest) (*identityv1.RevokeSessionResponse, error) {
	s.last = r
	if s.err != nil {
		return nil, s.err
	}
	return &identityv1.RevokeSessionResponse{}, nil
}

func (s *recordingServer) RevokeUserSessions(_ context.Context, r *identityv1.RevokeUserSessionsRequest) (*identityv1.RevokeUserSessionsResponse, error) {
	s.last = r
	if s.err != nil {
		return nil, s.err
	}
	return &identityv1.RevokeUserSessionsResponse{Revoked: 4}, nil
}

func (s *recordingServer) ListKeys(_ context.Context, r *identityv1.ListKeysRequest) (*identityv1.ListKeysResponse, error) {
	s.last = r
	return &identityv1.ListKeysResponse{Keys: []*identityv1.SigningKey{
		{Kid: "k1", Alg: "EdDSA", CreatedAt: timestamppb.New(t0), ActiveAt: timestamppb.New(t0), Signing: true},
	}}, s.err
}

func (s *recordingServer) RotateKeys(_ context.Context, r *identityv1.RotateKeysRequest) (*identityv1.ListKeysResponse, error) {
	s.last = r
	if s.err != nil {
		return nil, s.err
	}
	return &identityv1.ListKeysResponse{Keys: []*identityv1.SigningKey{
		{Kid: "k1", Alg: "EdDSA", CreatedAt: timestamppb.New(t0), ActiveAt: timestamppb.New(t0), RetireAt: timestamppb.New(t0.Add(time.Hour))},
		{Kid: "k2", Alg: "EdDSA", CreatedAt: timestamppb.New(t0), ActiveAt: timestamppb.New(t0.Add(time.Minute)), Signing: true},
	}}, nil
}

func newRemote(t *testing.T) (*admin.Remote, *recordingServer) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	rec := &recordingServer{}
	identityv1.RegisterAdminServiceServer(srv, rec)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return admin.NewRemote(identityv1.NewAdminServiceClient(conn)), rec
}

func identityError(t *testing.T, code codes.Code, reason identityv1.ErrorReason, msg string) error {
	t.Helper()
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Domain: "identity", Reason: reason.String()})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func TestRemoteConverts(t *testing.T) {
	t.Parallel()
	r, rec := newRemote(t)
	ctx := t.Context()

	u, err := r.CreateUser(ctx, "alice", "pw", []string{"admin"})
	if err != nil {
		t.Fatal(err)
	}
	if want := (admin.User{ID: "u1", Username: "alice", Roles: []string{"admin"}, CreatedAt: t0}); !equalUser(u, want) {
		t.Errorf("CreateUser = %+v, want %+v", u, want)
	}
	if req := rec.last.(*identityv1.CreateUserRequest); req.GetPassword() != "pw" || !slices.Equal(req.GetRoles(), []string{"admin"}) {
		t.Errorf("request = %v", req)
	}

	us, err := r.ListUsers(ctx)
	if err != nil || len(us) != 2 || us[1].Username != "bob" || !us[1].Disabled || !us[1].CreatedAt.IsZero() || us[1].Roles == nil {
		t.Errorf("ListUsers = %+v, %v", us, err)
	}

	// Only what the Change sets is sent.
	disabled, pw := true, "new"
	roles := []string{}
	for _, tt := range []struct {
		change users.Change
		want   *identityv1.UpdateUserRequest
	}{
		{users.Change{Disabled: &disabled}, &identityv1.UpdateUserRequest{Username: "alice", Disabled: &disabled}},
		{users.Change{Password: &pw}, &identityv1.UpdateUserRequest{Username: "alice", Password: &pw}},
		{users.Change{Roles: &roles}, &identityv1.UpdateUserRequest{Username: "alice", SetRoles: true}},
		{users.Change{}, &identityv1.UpdateUserRequest{Username: "alice"}},
	} {
		if _, err := r.UpdateUser(ctx, "alice", tt.change); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(rec.last, tt.want) {
			t.Errorf("UpdateUser(%+v) sent %v, want %v", tt.change, rec.last, tt.want)
		}
	}

	ss, err := r.ListSessions(ctx, "alice")
	want := admin.Session{ID: "s1", UserID: "u1", Generation: 3, CreatedAt: t0, LastUsedAt: t0.Add(time.Minute), ExpiresAt: t0.Add(time.Hour)}
	if err != nil || len(ss) != 1 || ss[0] != want {
		t.Errorf("ListSessions = %+v, %v; want %+v", ss, err, want)
	}

	if err := r.RevokeSession(ctx, "s1"); err != nil || rec.last.(*identityv1.RevokeSessionRequest).GetSessionId() != "s1" {
		t.Errorf("RevokeSession: %v, sent %v", err, rec.last)
	}
	if n, err := r.RevokeUserSessions(ctx, "alice"); err != nil || n != 4 {
		t.Errorf("RevokeUserSessions = %d, %v; want 4", n, err)
	}

	ks, err := r.ListKeys(ctx)
	if err != nil || len(ks) != 1 || ks[0].ID != "k1" || !ks[0].Signing || !ks[0].RetireAt.IsZero() {
		t.Errorf("ListKeys = %+v, %v; want k1 signing with no retirement", ks, err)
	}
	ks, err = r.RotateKeys(ctx)
	if err != nil || len(ks) != 2 || !ks[0].RetireAt.Equal(t0.Add(time.Hour)) || !ks[1].Signing {
		t.Errorf("RotateKeys = %+v, %v", ks, err)
	}
}

func equalUser(a, b admin.User) bool {
	return a.ID == b.ID && a.Username == b.Username && slices.Equal(a.Roles, b.Roles) &&
		a.Disabled == b.Disabled && a.CreatedAt.Equal(b.CreatedAt)
}

func TestRemoteErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		err        error
		call       func(context.Context, *admin.Remote) error
		is         error
		wantReason identityv1.ErrorReason
		msg        []string
	}{
		{
			name: "already exists",
			err:  identityError(t, codes.AlreadyExists, identityv1.ErrorReason_ALREADY_EXISTS, "already exists"),
			call: func(ctx context.Context, r *admin.Remote) error {
				_, err := r.CreateUser(ctx, "alice", "pw", nil)
				return err
			},
			is: tokenstore.ErrAlreadyExists, wantReason: identityv1.ErrorReason_ALREADY_EXISTS,
			msg: []string{"ALREADY_EXISTS", "already exists"},
		},
		{
			name: "not found",
			err:  identityError(t, codes.NotFound, identityv1.ErrorReason_NOT_FOUND, "not found"),
			call: func(ctx context.Context, r *admin.Remote) error { return r.RevokeSession(ctx, "s1") },
			is:   tokenstore.ErrNotFound, wantReason: identityv1.ErrorReason_NOT_FOUND,
			msg: []string{"NOT_FOUND: not found"},
		},
		{
			name: "invalid request",
			err:  identityError(t, codes.InvalidArgument, identityv1.ErrorReason_INVALID_REQUEST, "invalid password: 1 to 1024 bytes"),
			call: func(ctx context.Context, r *admin.Remote) error {
				_, err := r.UpdateUser(ctx, "alice", users.Change{})
				return err
			},
			wantReason: identityv1.ErrorReason_INVALID_REQUEST,
			msg:        []string{"INVALID_REQUEST: invalid password: 1 to 1024 bytes"},
		},
		{
			name: "store unavailable",
			err:  identityError(t, codes.Unavailable, identityv1.ErrorReason_STORE_UNAVAILABLE, "the session store is unavailable"),
			call: func(ctx context.Context, r *admin.Remote) error {
				_, err := r.ListSessions(ctx, "alice")
				return err
			},
			is: tokenstore.ErrUnavailable, wantReason: identityv1.ErrorReason_STORE_UNAVAILABLE,
			msg: []string{"STORE_UNAVAILABLE"},
		},
		{
			name: "status without ErrorInfo",
			err:  status.Error(codes.PermissionDenied, "admin role required"),
			call: func(ctx context.Context, r *admin.Remote) error {
				_, err := r.RotateKeys(ctx)
				return err
			},
			msg: []string{"PermissionDenied: admin role required"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, rec := newRemote(t)
			rec.err = tt.err
			err := tt.call(t.Context(), r)
			var re *admin.RemoteError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v (%T), want a *RemoteError", err, err)
			}
			if re.Reason != tt.wantReason || re.Code != status.Code(tt.err) {
				t.Errorf("RemoteError = %+v, want code %v reason %v", re, status.Code(tt.err), tt.wantReason)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
			for _, s := range []error{tokenstore.ErrNotFound, tokenstore.ErrAlreadyExists, tokenstore.ErrUnavailable} {
				if s != tt.is && errors.Is(err, s) {
					t.Errorf("errors.Is(%v, %v) = true", err, s)
				}
			}
			for _, m := range tt.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("message %q does not say %q", err, m)
				}
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
	lis.Close() // nothing listens there now
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := admin.NewRemote(identityv1.NewAdminServiceClient(conn))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = r.ListUsers(ctx)
	var re *admin.RemoteError
	if !errors.As(err, &re) || re.Code != codes.Unavailable || re.Reason != identityv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		t.Fatalf("err = %v, want Unavailable without a reason", err)
	}
	if errors.Is(err, tokenstore.ErrUnavailable) {
		t.Error("an unreachable server is not a store failure")
	}
}
