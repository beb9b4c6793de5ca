package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
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

func (h *identityServer) Login(ctx context.Context, req *identityv1.LoginRequest) (*identityv1.TokenPair, error) {
	if err := required("username", req.GetUsername(), 1024); err != nil {
		return nil, err
	}
	if err := required("password", req.GetPassword(), password.MaxLength); err != nil {
		return nil, err
	}
	s := h.s
	// In a login flood most attempts find the hashing queue full. Say so
	// before the limiter and the user lookup (store round trips each), so
	// turning them away costs little of the CPU Verify shares: the answer
	// is the one the hash would give after that work, whoever the user.
	if s.hasher != nil && s.hasher.Busy() {
		return nil, password.ErrBusy
	}
	if err := s.limitLogin(ctx, req.GetUsername()); err != nil {
		return nil, err
	}
	u, err := s.users.Authenticate(ctx, req.GetUsername(), req.GetPassword())
	if err != nil {
		s.loginFailed(ctx, req.GetUsername(), err)
		return nil, err
	}
	now := s.now()
	sid, err := tokenstore.NewSessionID(u.ID, s.rand)
	if err != nil {
		return nil, err
	}
	nonce, err := token.NewNonce(s.rand)
	if err != nil {
		return nil, err
	}
	ms := now.Truncate(time.Millisecond)
	sess := tokenstore.Session{
		ID:         sid,
		UserID:     u.ID,
		Nonce:      nonce,
		CreatedAt:  ms,
		RotatedAt:  ms,
		LastUsedAt: ms,
		ExpiresAt:  ms.Add(s.cfg.RefreshAbsoluteTTL),
	}
	if err := s.store.CreateSession(ctx, sess); err != nil {
		return nil, err
	}
	return s.tokenPair(now, sess, u)
}

func (h *identityServer) Refresh(ctx context.Context, req *identityv1.RefreshRequest) (*identityv1.TokenPair, error) {
	raw := req.GetRefreshToken()
	if err := required("refresh_token", raw, maxTokenLen); err != nil {
		return nil, err
	}
	s := h.s
	sid, gen, nonce, err := s.refresh.Decode(raw)
	if err != nil {
		return nil, errRefreshTokenInvalid
	}
	now := s.now()
	sess, u, err := s.store.Rotate(ctx, tokenstore.RotateRequest{
		SessionID:  sid,
		Generation: gen,
		Nonce:      nonce,
		Now:        now,
		Grace:      s.cfg.RefreshGrace,
		IdleTTL:    s.cfg.RefreshIdleTTL,
	})
	switch {
	case errors.Is(err, tokenstore.ErrNotFound):
		return nil, errRefreshTokenInvalid
	case errors.Is(err, tokenstore.ErrReused):
		s.revoked.add(sid, now.Add(s.cfg.AccessTTL+s.cfg.Leeway))
		return nil, err
	case err != nil:
		return nil, err
	}
	if u.Disabled {
		// Disabling revokes every session; this only closes the race with
		// a refresh already under way.
		return nil, errRefreshTokenInvalid
	}
	return s.tokenPair(now, sess, u)
}

func (h *identityServer) Logout(ctx context.Context, req *identityv1.LogoutRequest) (*identityv1.LogoutResponse, error) {
	raw := req.GetRefreshToken()
	if err := required("refresh_token", raw, maxTokenLen); err != nil {
		return nil, err
	}
	s := h.s
	sid, gen, nonce, err := s.refresh.Decode(raw)
	if err != nil {
		return nil, errRefreshTokenInvalid
	}
	sess, err := s.store.Session(ctx, sid)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return nil, errRefreshTokenInvalid
	}
	if err != nil {
		return nil, err
	}
	// Any genuine token of the session may end it, even an old generation:
	// whoever holds one was given it. A token from another incarnation of
	// the session or from the future is not genuine.
	if sess.Nonce != nonce || gen > sess.Generation {
		return nil, errRefreshTokenInvalid
	}
	now := s.now()
	if req.GetAllSessions() {
		if _, err := s.store.RevokeUserSessions(ctx, sess.UserID, now); err != nil {
			return nil, err
		}
		// Learn the per-session events now, so this instance refuses the
		// user's access tokens from this moment (a failed read makes the
		// feed stale, and Verify then asks the store).
		_ = s.feed.poll(ctx)
		return &identityv1.LogoutResponse{}, nil
	}
	if err := s.store.RevokeSession(ctx, sid, now); err != nil && !errors.Is(err, tokenstore.ErrNotFound) {
		return nil, err
	}
	s.revoked.add(sid, now.Add(s.cfg.AccessTTL+s.cfg.Leeway))
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
		RefreshToken:          s.refresh.Encode(sess.ID, sess.Generation, sess.Nonce),
		RefreshTokenExpiresAt: timestamppb.New(sess.IdleExpiresAt(s.cfg.RefreshIdleTTL)),
		SessionId:             sess.ID,
	}, nil
}
