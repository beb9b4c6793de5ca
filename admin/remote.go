package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// Remote carries out administration through a running identityd's
// AdminService. The client's connection must authenticate each call (an
// admin access token); Remote does not.
type Remote struct {
	client identityv1.AdminServiceClient
}

// NewRemote returns a Remote over client.
func NewRemote(client identityv1.AdminServiceClient) *Remote {
	return &Remote{client: client}
}

// RemoteError is a failure identityd reported.
type RemoteError struct {
	Code codes.Code
	// Reason is the google.rpc.ErrorInfo reason (INVALID_REQUEST, …),
	// ERROR_REASON_UNSPECIFIED when the status carried none (then the
	// failure is likely not identityd's own, e.g. the connection).
	Reason  identityv1.ErrorReason
	Message string
}

func (e *RemoteError) Error() string {
	if e.Reason != identityv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
		return fmt.Sprintf("%s: %s", e.Reason, e.Message)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// Is lets callers test a remote failure with the same sentinels as a local
// one, where the status code says unambiguously which it is.
func (e *RemoteError) Is(target error) bool {
	switch target {
	case tokenstore.ErrNotFound:
		return e.Code == codes.NotFound
	case tokenstore.ErrAlreadyExists:
		return e.Code == codes.AlreadyExists
	case tokenstore.ErrUnavailable:
		return e.Code == codes.Unavailable && e.Reason == identityv1.ErrorReason_STORE_UNAVAILABLE
	}
	return false
}

// FromStatus turns the error of a call to identityd into a *RemoteError
// (identityctl uses it for Login too); nil and errors that are not a status
// (a context that ended before the call) pass unchanged.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	re := &RemoteError{Code: st.Code(), Message: st.Message()}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			re.Reason = identityv1.ErrorReason(identityv1.ErrorReason_value[info.GetReason()])
			break
		}
	}
	return re
}

func (r *Remote) CreateUser(ctx context.Context, username, password string, roles []string) (User, error) {
	u, err := r.client.CreateUser(ctx, &identityv1.CreateUserRequest{Username: username, Password: password, Roles: roles})
	if err != nil {
		return User{}, FromStatus(err)
	}
	return userFromProto(u), nil
}

func (r *Remote) ListUsers(ctx context.Context) ([]User, error) {
	resp, err := r.client.ListUsers(ctx, &identityv1.ListUsersRequest{})
	if err != nil {
		return nil, FromStatus(err)
	}
	out := make([]User, len(resp.GetUsers()))
	for i, u := range resp.GetUsers() {
		out[i] = userFromProto(u)
	}
	return out, nil
}

func (r *Remote) UpdateUser(ctx context.Context, username string, c users.Change) (User, error) {
	req := &identityv1.UpdateUserRequest{Username: username, Password: c.Password, Disabled: c.Disabled}
	if c.Roles != nil {
		req.SetRoles = true
		req.Roles = *c.Roles
	}
	u, err := r.client.UpdateUser(ctx, req)
	if err != nil {
		return User{}, FromStatus(err)
	}
	return userFromProto(u), nil
}

func (r *Remote) ListSessions(ctx context.Context, username string) ([]Session, error) {
	resp, err := r.client.ListSessions(ctx, &identityv1.ListSessionsRequest{Username: username})
	if err != nil {
		return nil, FromStatus(err)
	}
	out := make([]Session, len(resp.GetSessions()))
	for i, s := range resp.GetSessions() {
		out[i] = Session{
			ID:         s.GetSessionId(),
			UserID:     s.GetSubject(),
			Generation: s.GetGeneration(),
			CreatedAt:  timeOf(s.GetCreatedAt()),
			LastUsedAt: timeOf(s.GetLastUsedAt()),
			ExpiresAt:  timeOf(s.GetExpiresAt()),
		}
	}
	return out, nil
}

func (r *Remote) RevokeSession(ctx context.Context, sessionID string) error {
	_, err := r.client.RevokeSession(ctx, &identityv1.RevokeSessionRequest{SessionId: sessionID})
	return FromStatus(err)
}

func (r *Remote) RevokeUserSessions(ctx context.Context, username string) (int, error) {
	resp, err := r.client.RevokeUserSessions(ctx, &identityv1.RevokeUserSessionsRequest{Username: username})
	if err != nil {
		return 0, FromStatus(err)
	}
	return int(resp.GetRevoked()), nil
}

func (r *Remote) ListKeys(ctx context.Context) ([]Key, error) {
	resp, err := r.client.ListKeys(ctx, &identityv1.ListKeysRequest{})
	if err != nil {
		return nil, FromStatus(err)
	}
	return keysFromProto(resp.GetKeys()), nil
}

func (r *Remote) RotateKeys(ctx context.Context) ([]Key, error) {
	resp, err := r.client.RotateKeys(ctx, &identityv1.RotateKeysRequest{})
	if err != nil {
		return nil, FromStatus(err)
	}
	return keysFromProto(resp.GetKeys()), nil
}

func userFromProto(u *identityv1.User) User {
	roles := u.GetRoles()
	if roles == nil {
		roles = []string{}
	}
	return User{
		ID:        u.GetId(),
		Username:  u.GetUsername(),
		Roles:     roles,
		Disabled:  u.GetDisabled(),
		CreatedAt: timeOf(u.GetCreatedAt()),
	}
}

func keysFromProto(ks []*identityv1.SigningKey) []Key {
	out := make([]Key, len(ks))
	for i, k := range ks {
		out[i] = Key{
			ID:        k.GetKid(),
			Alg:       k.GetAlg(),
			CreatedAt: timeOf(k.GetCreatedAt()),
			ActiveAt:  timeOf(k.GetActiveAt()),
			RetireAt:  timeOf(k.GetRetireAt()),
			Signing:   k.GetSigning(),
		}
	}
	return out
}

// timeOf reads an optional timestamp: unset is the zero time, not 1970.
func timeOf(ts *timestamppb.Timestamp) (t time.Time) {
	if ts == nil {
		return t
	}
	return ts.AsTime()
}
