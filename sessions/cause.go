package sessions

import "context"

// Cause says why sessions were revoked, for the server's metrics. The set
// is closed (a metric label must stay bounded): the session rules name
// logout, logout_all and reuse themselves; whoever calls RevokeSession or
// RevokeUserSessions names the others with WithCause.
type Cause string

const (
	CauseLogout         Cause = "logout"          // Logout of one session
	CauseLogoutAll      Cause = "logout_all"      // Logout with all_sessions
	CauseAdmin          Cause = "admin"           // an administrator (AdminService, the default)
	CauseReuse          Cause = "reuse"           // a rotated refresh token presented again
	CausePasswordChange Cause = "password_change" // a new password ends the other sessions
	CauseDisable        Cause = "disable"         // the account was disabled
)

// Causes lists every Cause, for a metric to start each at zero.
var Causes = []Cause{CauseLogout, CauseLogoutAll, CauseAdmin, CauseReuse, CausePasswordChange, CauseDisable}

type causeKey struct{}

// WithCause returns ctx saying why the revocations made with it happen.
// It is read by RevokeSession and RevokeUserSessions, and by nothing that
// decides anything: it only labels what they report to Config.OnRevoke.
func WithCause(ctx context.Context, c Cause) context.Context {
	return context.WithValue(ctx, causeKey{}, c)
}

// causeOf is ctx's Cause; CauseAdmin when none was given (the callers that
// name none are the administration paths).
func causeOf(ctx context.Context) Cause {
	if c, ok := ctx.Value(causeKey{}).(Cause); ok {
		return c
	}
	return CauseAdmin
}

// revokedSessions reports n revoked sessions to the hook, if any.
func (s *Service) revokedSessions(c Cause, n int) {
	if s.cfg.OnRevoke != nil && n > 0 {
		s.cfg.OnRevoke(c, n)
	}
}
