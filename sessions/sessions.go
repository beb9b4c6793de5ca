// Package sessions holds identity's session rules, between the RPC handlers
// and the store: a session is created on login, rotated on refresh,
// revoked one by one or all of a user's at once. Whoever revokes a session
// here (Logout, an admin, a disabled account, a password change, a reused
// refresh token) also puts it in the instance's revocation set at once, so
// this instance's Verify refuses its access tokens from that moment; other
// instances learn of it through the Feed, the one reader of the store's
// revocation events per process, which also fans them out to every
// WatchRevocations stream. It does not check passwords (package users) or
// sign access tokens (package token).
package sessions

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/identityd/identity/internal/tokencheck"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
)

// ErrRefreshTokenInvalid: a refresh token that is malformed, forged, of an
// unknown, expired or revoked session, or of a disabled user.
var ErrRefreshTokenInvalid = errors.New("sessions: refresh token invalid")

// Config holds the session lifetimes.
type Config struct {
	// AbsoluteTTL ends a session whatever its use; IdleTTL ends it unless
	// refreshed; Grace is how long the previous refresh token still
	// answers with the current one.
	AbsoluteTTL time.Duration
	IdleTTL     time.Duration
	Grace       time.Duration
	// AccessTTL and Leeway bound how long an access token of a revoked
	// session can still be presented: the revocation set keeps it that long.
	AccessTTL time.Duration
	Leeway    time.Duration
	// RefreshLimit bounds how often one session may be refreshed (zero:
	// no limit); it is checked in the rotation's own atomic step.
	RefreshLimit tokenstore.UseLimit
	// OnRevoke, if set, is told of every revocation this service makes:
	// why (cause.go) and how many sessions. It runs on the caller's
	// goroutine and must be quick (a metric's counter).
	OnRevoke func(cause Cause, sessions int)
}

// Service applies the session rules. It is safe for concurrent use.
type Service struct {
	store   tokenstore.Store
	refresh *token.Refresh
	revoked *tokencheck.Revoked
	cfg     Config
	now     func() time.Time
	rand    io.Reader
}

// New returns a Service over store, encoding refresh tokens with refresh and
// recording its own revocations in revoked (the set this instance's Verify
// consults). now and rand are injected for tests.
func New(store tokenstore.Store, refresh *token.Refresh, revoked *tokencheck.Revoked, cfg Config, now func() time.Time, rand io.Reader) *Service {
	return &Service{store: store, refresh: refresh, revoked: revoked, cfg: cfg, now: now, rand: rand}
}

// Client describes who uses a session: its User-Agent and address, kept
// for the user's own list of devices (bounded by Create and Refresh).
type Client struct {
	UserAgent string
	Addr      string
}

// Bounds of what a session keeps of its client.
const (
	maxUserAgent = 128
	maxAddr      = 64
)

func (c Client) bounded() Client {
	return Client{UserAgent: truncateUTF8(c.UserAgent, maxUserAgent), Addr: truncateUTF8(c.Addr, maxAddr)}
}

// truncateUTF8 cuts s to at most n bytes without splitting a character,
// and drops control characters (a User-Agent is the client's to choose).
func truncateUTF8(s string, n int) string {
	if len(s) <= n && printableASCII(s) {
		return s // the usual case: nothing to drop, nothing to copy
	}
	out := make([]byte, 0, min(len(s), n))
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError {
			continue
		}
		if len(out)+utf8.RuneLen(r) > n {
			break
		}
		out = utf8.AppendRune(out, r)
	}
	return string(out)
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Create starts a session for an authenticated user.
func (s *Service) Create(ctx context.Context, u tokenstore.User, client Client) (tokenstore.Session, error) {
	client = client.bounded()
	sid, err := tokenstore.NewSessionID(u.ID, s.rand)
	if err != nil {
		return tokenstore.Session{}, err
	}
	nonce, err := token.NewNonce(s.rand)
	if err != nil {
		return tokenstore.Session{}, err
	}
	// The stores keep milliseconds: the session handed back is the one
	// they will return.
	ms := s.now().Truncate(time.Millisecond)
	sess := tokenstore.Session{
		ID:         sid,
		UserID:     u.ID,
		Nonce:      nonce,
		CreatedAt:  ms,
		RotatedAt:  ms,
		LastUsedAt: ms,
		ExpiresAt:  ms.Add(s.cfg.AbsoluteTTL),
		// The epoch u was read under: if the user's credentials changed
		// since (a password change racing this login), the store refuses
		// the session with tokenstore.ErrStale.
		Epoch:      u.Epoch,
		UserAgent:  client.UserAgent,
		ClientAddr: client.Addr,
	}
	if err := s.store.CreateSession(ctx, sess); err != nil {
		return tokenstore.Session{}, err
	}
	return sess, nil
}

// Refresh rotates the session of a refresh token and returns it with its
// user (one store round trip). A token reused after the grace window
// revokes the session (tokenstore.ErrReused); any other unusable token is
// ErrRefreshTokenInvalid.
func (s *Service) Refresh(ctx context.Context, raw string, client Client) (tokenstore.Session, tokenstore.User, error) {
	client = client.bounded()
	sid, gen, nonce, err := s.refresh.Decode(raw)
	if err != nil {
		return tokenstore.Session{}, tokenstore.User{}, ErrRefreshTokenInvalid
	}
	now := s.now()
	sess, u, err := s.store.Rotate(ctx, tokenstore.RotateRequest{
		SessionID:  sid,
		Generation: gen,
		Nonce:      nonce,
		Now:        now,
		Grace:      s.cfg.Grace,
		IdleTTL:    s.cfg.IdleTTL,
		Limit:      s.cfg.RefreshLimit,
		UserAgent:  client.UserAgent,
		ClientAddr: client.Addr,
	})
	switch {
	case errors.Is(err, tokenstore.ErrNotFound):
		return tokenstore.Session{}, tokenstore.User{}, ErrRefreshTokenInvalid
	case errors.Is(err, tokenstore.ErrReused):
		s.revoked.Add(sid, s.forgetAfter(now), now) // the store revoked it
		s.revokedSessions(CauseReuse, 1)
		return tokenstore.Session{}, tokenstore.User{}, err
	case err != nil:
		return tokenstore.Session{}, tokenstore.User{}, err
	}
	if u.Disabled {
		// Disabling revokes every session; this only closes the race with
		// a refresh already under way.
		return tokenstore.Session{}, tokenstore.User{}, ErrRefreshTokenInvalid
	}
	return sess, u, nil
}

// RefreshToken is the refresh token of the session's current generation.
func (s *Service) RefreshToken(sess tokenstore.Session) string {
	return s.refresh.Encode(sess.ID, sess.Generation, sess.Nonce)
}

// Logout ends the session of a refresh token, or with all every session of
// its user. Any genuine token of the session may end it, even an old
// generation: whoever holds one was given it. So may one of a generation
// the store has not reached: its MAC proves this service issued it, so the
// store lost the rotations that led to it (a Redis restarted from an AOF
// that missed its last writes, a replica promoted before it had them), and
// refusing it would leave the session alive, still open to its older
// tokens, while its client believes it logged out. A token from another
// incarnation of the session (another nonce) is not genuine.
func (s *Service) Logout(ctx context.Context, raw string, all bool) error {
	sid, _, nonce, err := s.refresh.Decode(raw)
	if err != nil {
		return ErrRefreshTokenInvalid
	}
	sess, err := s.store.Session(ctx, sid)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return ErrRefreshTokenInvalid
	}
	if err != nil {
		return err
	}
	if sess.Nonce != nonce {
		return ErrRefreshTokenInvalid // any generation will do: see above
	}
	now := s.now()
	if all {
		return s.EndAll(WithCause(ctx, CauseLogoutAll), sess.UserID, now)
	}
	err = s.RevokeSession(WithCause(ctx, CauseLogout), sid, now)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return nil // ended meanwhile: what the caller asked for
	}
	return err
}

// ListSessions returns the live sessions of a user, oldest first.
func (s *Service) ListSessions(ctx context.Context, userID string) ([]tokenstore.Session, error) {
	return s.store.ListSessions(ctx, userID)
}

// RevokeSession ends a session; tokenstore.ErrNotFound if it was not live.
// A revocation no replica confirmed (tokenstore.ErrNotReplicated, which
// the caller answers as the store's unavailability, so the client
// retries) may already hold on the primary: this instance refuses the
// session's access tokens from now on all the same, as the caller asked.
func (s *Service) RevokeSession(ctx context.Context, id string, now time.Time) error {
	err := s.store.RevokeSession(ctx, id, now)
	if errors.Is(err, tokenstore.ErrNotReplicated) {
		s.revoked.Add(id, s.forgetAfter(now), now)
		return err
	}
	if err != nil {
		return err
	}
	s.revoked.Add(id, s.forgetAfter(now), now)
	s.revokedSessions(causeOf(ctx), 1)
	return nil
}

// RevokeUserSessions ends every session of a user but those in except,
// and returns their ids.
func (s *Service) RevokeUserSessions(ctx context.Context, userID string, now time.Time, except ...string) ([]string, error) {
	ids, err := s.store.RevokeUserSessions(ctx, userID, now, except...)
	// Sessions revoked before a failure are revoked all the same, also
	// those whose deletion no replica confirmed (ErrNotReplicated).
	for _, id := range ids {
		s.revoked.Add(id, s.forgetAfter(now), now)
	}
	s.revokedSessions(causeOf(ctx), len(ids))
	if err != nil {
		return ids, fmt.Errorf("sessions: revoke user sessions: %w", err)
	}
	return ids, nil
}

// AdoptSession moves a live session to its user's new credential epoch
// (the session a password was changed from).
func (s *Service) AdoptSession(ctx context.Context, id string, epoch uint64) error {
	return s.store.AdoptSession(ctx, id, epoch)
}

// EndAll is "log out everywhere": it raises the user's credential epoch,
// so a login in flight cannot add a session, then revokes every session.
func (s *Service) EndAll(ctx context.Context, userID string, now time.Time) error {
	if _, err := s.store.UpdateUser(ctx, userID, func(u tokenstore.User) (tokenstore.User, error) {
		u.Epoch++
		return u, nil
	}); err != nil && !errors.Is(err, tokenstore.ErrNotFound) {
		return fmt.Errorf("sessions: raise the credential epoch: %w", err)
	}
	_, err := s.RevokeUserSessions(ctx, userID, now)
	return err
}

// forgetAfter is when no access token of a session revoked at now can
// still be accepted.
func (s *Service) forgetAfter(now time.Time) time.Time {
	return now.Add(s.cfg.AccessTTL + s.cfg.Leeway)
}

// Codec is the refresh-token codec the service encodes with.
func (s *Service) Codec() *token.Refresh { return s.refresh }
