package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/identityd/identity/audit"
	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/sessions"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// identityServer implements IdentityService. Handlers validate input,
// call the domain packages and return domain errors; errors.go maps them.
type identityServer struct {
	identityv1.UnimplementedIdentityServiceServer
	s *Server
}

// maxTokenLen bounds any token field before it is parsed.
const maxTokenLen = 8 << 10

func required(field, v string, max int) error {
	if v == "" {
		return invalidRequest(field + " is required")
	}
	if len(v) > max {
		return invalidRequest(field + " is too long")
	}
	return nil
}

func (h *identityServer) Login(ctx context.Context, req *identityv1.LoginRequest) (_ *identityv1.TokenPair, err error) {
	var (
		u    tokenstore.User
		sess tokenstore.Session
	)
	defer func() {
		e := audit.Event{Name: audit.LoginFailed, Username: req.GetUsername()}
		if err == nil {
			e = audit.Event{Name: audit.LoginSucceeded, Subject: u.ID, Username: u.Username, SessionID: sess.ID}
		}
		h.s.record(ctx, e, err)
	}()
	if err := required("username", req.GetUsername(), 1024); err != nil {
		return nil, err
	}
	if err := required("password", req.GetPassword(), password.MaxLength); err != nil {
		return nil, err
	}
	s := h.s
	// In a login flood most attempts would wait in the hashing queue past
	// its budget. Say so before the limiter and the user lookup (store
	// round trips each), so turning them away costs little of the CPU
	// Verify shares: the answer (RATE_LIMITED, retry after the expected
	// wait) is the one the hash would give after that work, whoever the
	// user.
	if s.hasher != nil {
		if err := s.hasher.Admit(); err != nil {
			s.metrics.refused(limitLoginHashes)
			return nil, err
		}
	}
	charge, err := s.limitLogin(ctx, req.GetUsername())
	if err != nil {
		return nil, err
	}
	u, err = s.users.Authenticate(ctx, req.GetUsername(), req.GetPassword())
	s.settleLogin(ctx, charge, err)
	if err != nil {
		if errors.Is(err, password.ErrBusy) {
			s.metrics.refused(limitLoginHashes) // waited past the budget
		}
		return nil, err
	}
	sess, err = s.sessions.Create(ctx, u, client(ctx))
	if err != nil {
		return nil, err
	}
	return s.tokenPair(s.now(), sess, u)
}

func (h *identityServer) Refresh(ctx context.Context, req *identityv1.RefreshRequest) (_ *identityv1.TokenPair, err error) {
	raw := req.GetRefreshToken()
	var (
		u    tokenstore.User
		sess tokenstore.Session
	)
	defer func() {
		e := audit.Event{Name: audit.SessionRefreshed, Subject: u.ID, Username: u.Username, SessionID: sess.ID}
		if err != nil {
			// The session the token names, if it names one.
			sid := h.s.refreshSession(raw)
			e = audit.Event{Name: audit.SessionRefreshed, Subject: sessionSubject(sid), SessionID: sid}
		}
		if errors.Is(err, tokenstore.ErrReused) {
			e.Name, e.Cause = audit.SessionReuseDetected, string(sessions.CauseReuse)
		}
		h.s.record(ctx, e, err)
	}()
	if err := required("refresh_token", raw, maxTokenLen); err != nil {
		return nil, err
	}
	if err := h.s.limitRefresh(ctx); err != nil {
		return nil, err
	}
	sess, u, err = h.s.sessions.Refresh(ctx, raw, client(ctx))
	if err != nil {
		return nil, err
	}
	return h.s.tokenPair(h.s.now(), sess, u)
}

func (h *identityServer) Logout(ctx context.Context, req *identityv1.LogoutRequest) (_ *identityv1.LogoutResponse, err error) {
	raw := req.GetRefreshToken()
	defer func() {
		sid := h.s.refreshSession(raw)
		e := audit.Event{Name: audit.SessionLoggedOut, Subject: sessionSubject(sid), SessionID: sid}
		if req.GetAllSessions() {
			e.Name, e.Cause = audit.UserSessionsRevoked, string(sessions.CauseLogoutAll)
		}
		h.s.record(ctx, e, err)
	}()
	if err := required("refresh_token", raw, maxTokenLen); err != nil {
		return nil, err
	}
	if err := h.s.sessions.Logout(ctx, raw, req.GetAllSessions()); err != nil {
		return nil, err
	}
	return &identityv1.LogoutResponse{}, nil
}

func (h *identityServer) Verify(ctx context.Context, req *identityv1.VerifyRequest) (*identityv1.VerifyResponse, error) {
	if err := required("token", req.GetToken(), maxTokenLen); err != nil {
		return nil, err
	}
	c, err := h.s.verify(ctx, req.GetToken())
	if err != nil {
		return nil, err
	}
	return verifyResponse(c), nil
}

func (h *identityServer) WhoAmI(ctx context.Context, _ *identityv1.WhoAmIRequest) (*identityv1.VerifyResponse, error) {
	c, ok := authn.ClaimsFromContext(ctx)
	if !ok {
		// The interceptor runs before every WhoAmI; reaching here without
		// claims is a wiring bug, and must still fail closed.
		return nil, fmt.Errorf("WhoAmI without verified claims")
	}
	return verifyResponse(c), nil
}

// self is the verified caller of a self-service call.
func self(ctx context.Context) (*token.Claims, error) {
	c, ok := authn.ClaimsFromContext(ctx)
	if !ok {
		// The interceptor runs before every self-service call; reaching
		// here without claims is a wiring bug, and must still fail closed.
		return nil, fmt.Errorf("self-service call without verified claims")
	}
	return c, nil
}

func (h *identityServer) ListMySessions(ctx context.Context, _ *identityv1.ListMySessionsRequest) (*identityv1.ListMySessionsResponse, error) {
	c, err := self(ctx)
	if err != nil {
		return nil, err
	}
	ss, err := h.s.sessions.ListSessions(ctx, c.Subject)
	if err != nil {
		return nil, err
	}
	out := &identityv1.ListMySessionsResponse{Sessions: make([]*identityv1.MySession, 0, len(ss))}
	for _, s := range ss {
		out.Sessions = append(out.Sessions, &identityv1.MySession{
			SessionId:     s.ID,
			CreatedAt:     timestamppb.New(s.CreatedAt),
			LastUsedAt:    timestamppb.New(s.LastUsedAt),
			ExpiresAt:     timestamppb.New(s.IdleExpiresAt(h.s.cfg.RefreshIdleTTL)),
			UserAgent:     s.UserAgent,
			ClientAddress: s.ClientAddr,
			Current:       s.ID == c.SessionID,
		})
	}
	return out, nil
}

func (h *identityServer) RevokeMySession(ctx context.Context, req *identityv1.RevokeMySessionRequest) (_ *identityv1.RevokeMySessionResponse, err error) {
	defer func() {
		e := audit.Event{Name: audit.SessionRevoked, SessionID: req.GetSessionId()}
		if c, ok := authn.ClaimsFromContext(ctx); ok {
			e.Subject, e.Username = c.Subject, c.Username
		}
		h.s.record(ctx, e, err)
	}()
	if err := required("session_id", req.GetSessionId(), 256); err != nil {
		return nil, err
	}
	c, err := self(ctx)
	if err != nil {
		return nil, err
	}
	// Another user's session is answered as an unknown one: the caller
	// learns nothing of sessions that are not theirs.
	if uid, ok := tokenstore.SessionUserID(req.GetSessionId()); !ok || uid != c.Subject {
		return nil, errSessionNotFound
	}
	if err := h.s.sessions.RevokeSession(ctx, req.GetSessionId(), h.s.now()); err != nil {
		if errors.Is(err, tokenstore.ErrNotFound) {
			return nil, errSessionNotFound
		}
		return nil, err
	}
	return &identityv1.RevokeMySessionResponse{}, nil
}

func (h *identityServer) ChangePassword(ctx context.Context, req *identityv1.ChangePasswordRequest) (_ *identityv1.ChangePasswordResponse, err error) {
	defer func() {
		e := audit.Event{Name: audit.UserPasswordChanged}
		if c, ok := authn.ClaimsFromContext(ctx); ok {
			e.Subject, e.Username, e.SessionID = c.Subject, c.Username, c.SessionID
		}
		h.s.record(ctx, e, err)
	}()
	if err := required("current_password", req.GetCurrentPassword(), password.MaxLength); err != nil {
		return nil, err
	}
	if err := required("new_password", req.GetNewPassword(), password.MaxLength); err != nil {
		return nil, err
	}
	c, err := self(ctx)
	if err != nil {
		return nil, err
	}
	s := h.s
	// The current password is checked like a login, under the same
	// limits, so a stolen access token cannot take over the account.
	charge, err := s.limitLogin(ctx, c.Username)
	if err != nil {
		return nil, err
	}
	u, err := s.users.Authenticate(ctx, c.Username, req.GetCurrentPassword())
	if err == nil && u.ID != c.Subject {
		err = users.ErrBadCredentials
	}
	s.settleLogin(ctx, charge, err)
	if err != nil {
		return nil, err
	}
	pw := req.GetNewPassword()
	if _, err := s.users.Update(ctx, u.Username, users.Change{Password: &pw, KeepSession: c.SessionID}); err != nil {
		return nil, err
	}
	return &identityv1.ChangePasswordResponse{}, nil
}

func (h *identityServer) GetPublicKeys(ctx context.Context, _ *identityv1.GetPublicKeysRequest) (*identityv1.GetPublicKeysResponse, error) {
	keys := h.s.keys.PublicJWKs()
	out := &identityv1.GetPublicKeysResponse{Keys: make([]*identityv1.PublicKey, 0, len(keys))}
	for _, k := range keys {
		out.Keys = append(out.Keys, &identityv1.PublicKey{
			Kid: k.Kid, Kty: k.Kty, Alg: k.Alg, Use: k.Use, Crv: k.Crv, X: k.X, Y: k.Y, N: k.N, E: k.E,
		})
	}
	return out, nil
}

func verifyResponse(c *token.Claims) *identityv1.VerifyResponse {
	roles := c.Roles
	if roles == nil {
		roles = []string{}
	}
	return &identityv1.VerifyResponse{
		Subject:   c.Subject,
		Username:  c.Username,
		Roles:     roles,
		SessionId: c.SessionID,
		IssuedAt:  timestamppb.New(c.IssuedAt),
		ExpiresAt: timestamppb.New(c.ExpiresAt),
	}
}

// tokenPair issues an access token for the session's current generation and
// the matching refresh token. Concurrent refreshes inside the grace window
// get the same session generation and so the same refresh token.
func (s *Server) tokenPair(now time.Time, sess tokenstore.Session, u tokenstore.User) (*identityv1.TokenPair, error) {
	at, exp, err := s.issuer.Issue(token.Claims{
		Subject:   u.ID,
		Username:  u.Username,
		Roles:     u.Roles,
		SessionID: sess.ID,
	}, now, sess.ExpiresAt)
	if err != nil {
		return nil, err
	}
	iat := now.Truncate(time.Second)
	return &identityv1.TokenPair{
		AccessToken:           at,
		TokenType:             "Bearer",
		ExpiresIn:             int32(exp.Sub(iat) / time.Second),
		AccessTokenExpiresAt:  timestamppb.New(exp),
		RefreshToken:          s.sessions.RefreshToken(sess),
		RefreshTokenExpiresAt: timestamppb.New(sess.IdleExpiresAt(s.cfg.RefreshIdleTTL)),
		SessionId:             sess.ID,
	}, nil
}
