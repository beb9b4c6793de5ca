package server

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/identityd/identity/admin"
	"github.com/identityd/identity/audit"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/sessions"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// adminServer implements AdminService over admin.Local. The admin-role
// check is the auth interceptor's job; handlers validate input, convert
// to and from proto, and return domain errors for errors.go to map.
type adminServer struct {
	identityv1.UnimplementedAdminServiceServer
	a *admin.Local
	// record writes an audit event of every change (audit.go); the
	// actor is the admin's verified identity.
	record func(context.Context, audit.Event, error)
}

func newAdminServer(a *admin.Local, record func(context.Context, audit.Event, error)) identityv1.AdminServiceServer {
	return &adminServer{a: a, record: record}
}

// Requests are checked and bounded here, before they reach the account
// rules (which refuse the same values, but only after hashing a password).
const (
	maxAdminUsernameLen = 4 * users.MaxUsernameLength // before NFC normalisation
	maxAdminRoles       = 64
	maxAdminRoleLen     = 64
)

func checkAdminUsername(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("username is required: %w", users.ErrInvalidUsername)
	case len(name) > maxAdminUsernameLen:
		return fmt.Errorf("username is too long: %w", users.ErrInvalidUsername)
	}
	return nil
}

func checkAdminPassword(pw string) error {
	switch {
	case pw == "":
		return fmt.Errorf("password is required: %w", users.ErrInvalidPassword)
	case len(pw) > password.MaxLength:
		return fmt.Errorf("password is too long: %w", users.ErrInvalidPassword)
	}
	return nil
}

func checkAdminRoles(roles []string) error {
	if len(roles) > maxAdminRoles {
		return fmt.Errorf("too many roles: %w", users.ErrInvalidRole)
	}
	for _, r := range roles {
		if r == "" || len(r) > maxAdminRoleLen {
			return users.ErrInvalidRole
		}
	}
	return nil
}

func checkAdminSessionID(id string) error {
	if err := required("session_id", id, 256); err != nil {
		return err
	}
	if _, ok := tokenstore.SessionUserID(id); !ok {
		return invalidRequest("session_id is malformed")
	}
	return nil
}

func (h *adminServer) CreateUser(ctx context.Context, req *identityv1.CreateUserRequest) (_ *identityv1.User, err error) {
	var u admin.User
	defer func() {
		e := audit.Event{Name: audit.UserCreated, Username: req.GetUsername()}
		if err == nil {
			e.Subject, e.Username, e.Roles = u.ID, u.Username, u.Roles
		}
		h.record(ctx, e, err)
	}()
	if err := checkAdminUsername(req.GetUsername()); err != nil {
		return nil, err
	}
	if err := checkAdminPassword(req.GetPassword()); err != nil {
		return nil, err
	}
	if err := checkAdminRoles(req.GetRoles()); err != nil {
		return nil, err
	}
	u, err = h.a.CreateUser(ctx, req.GetUsername(), req.GetPassword(), req.GetRoles())
	if err != nil {
		return nil, err
	}
	return adminUserProto(u), nil
}

func (h *adminServer) ListUsers(ctx context.Context, _ *identityv1.ListUsersRequest) (*identityv1.ListUsersResponse, error) {
	us, err := h.a.ListUsers(ctx)
	if err != nil {
		return nil, err
	}
	resp := &identityv1.ListUsersResponse{Users: make([]*identityv1.User, len(us))}
	for i, u := range us {
		resp.Users[i] = adminUserProto(u)
	}
	return resp, nil
}

func (h *adminServer) UpdateUser(ctx context.Context, req *identityv1.UpdateUserRequest) (_ *identityv1.User, err error) {
	var u admin.User
	defer func() { h.recordUpdate(ctx, req, u, err) }()
	if err := checkAdminUsername(req.GetUsername()); err != nil {
		return nil, err
	}
	var c users.Change
	if req.Password != nil {
		if err := checkAdminPassword(req.GetPassword()); err != nil {
			return nil, err
		}
		c.Password = req.Password
	}
	c.Disabled = req.Disabled
	switch {
	case req.GetSetRoles():
		if err := checkAdminRoles(req.GetRoles()); err != nil {
			return nil, err
		}
		roles := req.GetRoles()
		if roles == nil {
			roles = []string{} // set_roles with no roles clears them
		}
		c.Roles = &roles
	case len(req.GetRoles()) > 0:
		// Roles without set_roles would be silently ignored: refuse the
		// request rather than let the caller believe they were applied.
		return nil, invalidRequest("roles given without set_roles")
	}
	// Label the sessions this ends (metrics): disabling wins over a new
	// password when a request does both.
	switch {
	case req.GetDisabled():
		ctx = sessions.WithCause(ctx, sessions.CauseDisable)
	case req.Password != nil:
		ctx = sessions.WithCause(ctx, sessions.CausePasswordChange)
	}
	u, err = h.a.UpdateUser(ctx, req.GetUsername(), c)
	if err != nil {
		return nil, err
	}
	return adminUserProto(u), nil
}

// recordUpdate records each change an UpdateUser asked for, with the
// call's outcome (one request may disable, set roles and a password).
func (h *adminServer) recordUpdate(ctx context.Context, req *identityv1.UpdateUserRequest, u admin.User, err error) {
	base := audit.Event{Username: req.GetUsername()}
	if err == nil {
		base.Subject, base.Username = u.ID, u.Username
	}
	var es []audit.Event
	if req.Disabled != nil {
		e := base
		e.Name = audit.UserEnabled
		if req.GetDisabled() {
			e.Name, e.Cause = audit.UserDisabled, string(sessions.CauseDisable)
		}
		es = append(es, e)
	}
	if req.GetSetRoles() || len(req.GetRoles()) > 0 {
		e := base
		e.Name = audit.UserRolesChanged
		if err == nil {
			e.Roles = u.Roles
		}
		es = append(es, e)
	}
	if req.Password != nil {
		e := base
		e.Name, e.Cause = audit.UserPasswordChanged, string(sessions.CausePasswordChange)
		es = append(es, e)
	}
	for _, e := range es {
		h.record(ctx, e, err)
	}
}

func (h *adminServer) ListSessions(ctx context.Context, req *identityv1.ListSessionsRequest) (*identityv1.ListSessionsResponse, error) {
	if err := checkAdminUsername(req.GetUsername()); err != nil {
		return nil, err
	}
	ss, err := h.a.ListSessions(ctx, req.GetUsername())
	if err != nil {
		return nil, err
	}
	resp := &identityv1.ListSessionsResponse{Sessions: make([]*identityv1.Session, len(ss))}
	for i, s := range ss {
		resp.Sessions[i] = &identityv1.Session{
			SessionId:  s.ID,
			Subject:    s.UserID,
			Generation: s.Generation,
			CreatedAt:  adminTimestamp(s.CreatedAt),
			LastUsedAt: adminTimestamp(s.LastUsedAt),
			ExpiresAt:  adminTimestamp(s.ExpiresAt),
		}
	}
	return resp, nil
}

func (h *adminServer) RevokeSession(ctx context.Context, req *identityv1.RevokeSessionRequest) (_ *identityv1.RevokeSessionResponse, err error) {
	defer func() {
		h.record(ctx, audit.Event{Name: audit.SessionRevoked, Subject: sessionSubject(req.GetSessionId()),
			SessionID: req.GetSessionId(), Cause: string(sessions.CauseAdmin)}, err)
	}()
	if err := checkAdminSessionID(req.GetSessionId()); err != nil {
		return nil, err
	}
	if err := h.a.RevokeSession(sessions.WithCause(ctx, sessions.CauseAdmin), req.GetSessionId()); err != nil {
		return nil, err
	}
	return &identityv1.RevokeSessionResponse{}, nil
}

func (h *adminServer) RevokeUserSessions(ctx context.Context, req *identityv1.RevokeUserSessionsRequest) (_ *identityv1.RevokeUserSessionsResponse, err error) {
	var n int
	defer func() {
		h.record(ctx, audit.Event{Name: audit.UserSessionsRevoked, Username: req.GetUsername(),
			Cause: string(sessions.CauseAdmin), Sessions: n}, err)
	}()
	if err := checkAdminUsername(req.GetUsername()); err != nil {
		return nil, err
	}
	n, err = h.a.RevokeUserSessions(sessions.WithCause(ctx, sessions.CauseAdmin), req.GetUsername())
	if err != nil {
		return nil, err
	}
	return &identityv1.RevokeUserSessionsResponse{Revoked: int32(min(n, 1<<31-1))}, nil
}

func (h *adminServer) ListKeys(ctx context.Context, _ *identityv1.ListKeysRequest) (*identityv1.ListKeysResponse, error) {
	ks, err := h.a.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	return adminKeysProto(ks), nil
}

func (h *adminServer) RotateKeys(ctx context.Context, _ *identityv1.RotateKeysRequest) (_ *identityv1.ListKeysResponse, err error) {
	ks, err := h.a.RotateKeys(ctx)
	h.record(ctx, audit.Event{Name: audit.KeysRotated, KeyID: newestKey(ks)}, err)
	if err != nil {
		return nil, err
	}
	return adminKeysProto(ks), nil
}

func adminUserProto(u admin.User) *identityv1.User {
	return &identityv1.User{
		Id:        u.ID,
		Username:  u.Username,
		Roles:     u.Roles,
		Disabled:  u.Disabled,
		CreatedAt: adminTimestamp(u.CreatedAt),
	}
}

func adminKeysProto(ks []admin.Key) *identityv1.ListKeysResponse {
	resp := &identityv1.ListKeysResponse{Keys: make([]*identityv1.SigningKey, len(ks))}
	for i, k := range ks {
		resp.Keys[i] = &identityv1.SigningKey{
			Kid:       k.ID,
			Alg:       k.Alg,
			CreatedAt: adminTimestamp(k.CreatedAt),
			ActiveAt:  adminTimestamp(k.ActiveAt),
			RetireAt:  adminTimestamp(k.RetireAt),
			Signing:   k.Signing,
		}
	}
	return resp
}

// adminTimestamp leaves a zero time unset (e.g. a current key's retire_at)
// rather than sending 0001-01-01.
func adminTimestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
