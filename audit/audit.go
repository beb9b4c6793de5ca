// Package audit records identity's security events (logins, refreshes,
// revocations, account and key changes) in one stable schema, for people
// and collectors that watch who did what: Event is the record, Sink is
// where it goes, NewLogSink writes it as a log/slog record and Stream
// appends it to a bounded Redis stream. It decides nothing: the server
// says what happened, this package only writes it down. It never sees a
// secret (an Event has no field for a password, a token, a hash or a key),
// and what a client chose (a username, a User-Agent) is bounded before it
// is written.
package audit

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Name is an event's name, from the fixed vocabulary below (docs/audit.md).
// It says what was attempted; Outcome says whether it happened. Login and
// reuse detection have names of their own, as collectors' rules expect.
type Name string

const (
	LoginSucceeded       Name = "login.succeeded"        // Login
	LoginFailed          Name = "login.failed"           // Login refused (Reason says why)
	SessionRefreshed     Name = "session.refreshed"      // Refresh
	SessionReuseDetected Name = "session.reuse_detected" // a rotated refresh token presented again: its session was revoked
	SessionLoggedOut     Name = "session.logged_out"     // Logout of one session
	SessionRevoked       Name = "session.revoked"        // one session revoked by its user (RevokeMySession) or an admin
	UserSessionsRevoked  Name = "user.sessions_revoked"  // every session of a user: Logout with all_sessions, or an admin
	UserCreated          Name = "user.created"
	UserDisabled         Name = "user.disabled"
	UserEnabled          Name = "user.enabled"
	UserRolesChanged     Name = "user.roles_changed"
	UserPasswordChanged  Name = "user.password_changed" // by the user (ChangePassword) or an admin
	KeysRotated          Name = "keys.rotated"          // a new signing key added (an admin, or the --key-rotation schedule)
)

// Names lists the vocabulary.
var Names = []Name{
	LoginSucceeded, LoginFailed, SessionRefreshed, SessionReuseDetected, SessionLoggedOut,
	SessionRevoked, UserSessionsRevoked, UserCreated, UserDisabled, UserEnabled,
	UserRolesChanged, UserPasswordChanged, KeysRotated,
}

// Outcome is whether the attempt took effect.
type Outcome string

const (
	Success Outcome = "success"
	Failure Outcome = "failure"
)

// Event is one audit record. Empty fields are left out of what is written.
type Event struct {
	Name Name
	Time time.Time // written in UTC, RFC 3339 with nanoseconds
	// Subject and Username are the user the event is about (for an admin
	// action, the user acted on); SessionID the session.
	Subject   string
	Username  string
	SessionID string
	// ClientAddress and UserAgent are the caller's: for REST calls the
	// HTTP client's (behind --trusted-proxies, the X-Forwarded-For hop).
	ClientAddress string
	UserAgent     string
	Outcome       Outcome
	// Reason is the identity.v1.ErrorReason name the caller was answered
	// with, on failures (the gRPC code's name for an error without one).
	Reason string
	// Detail says more of a failure than the caller was told: which of
	// unknown_user, wrong_password or account_disabled an
	// INVALID_CREDENTIALS was.
	Detail string
	// Actor and ActorUsername are who did it, when an authenticated
	// caller acted (self-service and admin calls).
	Actor         string
	ActorUsername string
	// Cause is why sessions ended (the sessions package's causes:
	// logout_all, admin, password_change, disable, reuse), or "schedule"
	// for a scheduled key rotation.
	Cause string
	// Sessions is how many sessions a user.sessions_revoked of an admin
	// ended (left out when none, and when not counted: log out everywhere).
	Sessions int
	// Roles are a user's roles after user.created or user.roles_changed.
	Roles []string
	// KeyID is the kid of the key keys.rotated added (public: it is in
	// the JWKS).
	KeyID string
}

// maxField bounds every string written: a username, a User-Agent or a
// session id is the client's to choose.
const maxField = 256

// Field names, in the order they are written (docs/audit.md).
const (
	FieldEvent         = "event"
	FieldTime          = "time"
	FieldOutcome       = "outcome"
	FieldReason        = "reason"
	FieldDetail        = "detail"
	FieldSubject       = "subject"
	FieldUsername      = "username"
	FieldSessionID     = "session_id"
	FieldClientAddress = "client_address"
	FieldUserAgent     = "user_agent"
	FieldActor         = "actor"
	FieldActorUsername = "actor_username"
	FieldCause         = "cause"
	FieldSessions      = "sessions"
	FieldRoles         = "roles"
	FieldKeyID         = "key_id"
)

// each calls str for each of e's string fields in the schema's order,
// empty ones left out, strings bounded, and num and list for the
// number and the list among them.
func (e Event) each(str func(k, v string), num func(k string, v int), list func(k string, v []string)) {
	add := func(k, v string) {
		if v = bounded(v); v != "" {
			str(k, v)
		}
	}
	add(FieldEvent, string(e.Name))
	add(FieldTime, e.Time.UTC().Format(time.RFC3339Nano))
	add(FieldOutcome, string(e.Outcome))
	add(FieldReason, e.Reason)
	add(FieldDetail, e.Detail)
	add(FieldSubject, e.Subject)
	add(FieldUsername, e.Username)
	add(FieldSessionID, e.SessionID)
	add(FieldClientAddress, e.ClientAddress)
	add(FieldUserAgent, e.UserAgent)
	add(FieldActor, e.Actor)
	add(FieldActorUsername, e.ActorUsername)
	add(FieldCause, e.Cause)
	if e.Sessions > 0 {
		num(FieldSessions, e.Sessions)
	}
	if e.Roles != nil {
		roles := make([]string, len(e.Roles))
		for i, r := range e.Roles {
			roles[i] = bounded(r)
		}
		list(FieldRoles, roles)
	}
	add(FieldKeyID, e.KeyID)
}

// fields is e as (name, value) pairs, in the schema's order, for a
// stream entry: the number in decimal, roles one comma-separated value
// (a role never holds a comma).
func (e Event) fields() []any {
	out := make([]any, 0, 20)
	e.each(func(k, v string) { out = append(out, k, v) },
		func(k string, v int) { out = append(out, k, strconv.Itoa(v)) },
		func(k string, v []string) { out = append(out, k, strings.Join(v, ",")) })
	return out
}

// Attrs are e's fields as slog attributes (sessions a number, roles a
// list).
func (e Event) Attrs() []slog.Attr {
	out := make([]slog.Attr, 0, 10)
	e.each(func(k, v string) { out = append(out, slog.String(k, v)) },
		func(k string, v int) { out = append(out, slog.Int(k, v)) },
		func(k string, v []string) { out = append(out, slog.Any(k, v)) })
	return out
}

// bounded cuts s to maxField bytes without splitting a character and
// drops control characters.
func bounded(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f || s[i] >= utf8.RuneSelf {
			clean = false
			break
		}
	}
	if clean && len(s) <= maxField {
		return s
	}
	out := make([]byte, 0, min(len(s), maxField))
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError || (r >= 0x80 && r < 0xa0) {
			continue
		}
		if len(out)+utf8.RuneLen(r) > maxField {
			break
		}
		out = utf8.AppendRune(out, r)
	}
	return string(out)
}

// Sink receives events. Record must not block on the network or fail the
// caller: it runs inside the RPC it records.
type Sink interface {
	Record(ctx context.Context, e Event)
	// Enabled reports whether an event recorded now would be written
	// anywhere, so a caller can skip assembling it (the client's address,
	// the actor) on a hot path when nothing records.
	Enabled(ctx context.Context) bool
}

// Sinks records every event in each of its sinks.
type Sinks []Sink

func (ss Sinks) Record(ctx context.Context, e Event) {
	for _, s := range ss {
		s.Record(ctx, e)
	}
}

// Enabled is true when any of the sinks is.
func (ss Sinks) Enabled(ctx context.Context) bool {
	for _, s := range ss {
		if s.Enabled(ctx) {
			return true
		}
	}
	return false
}

// Group is the slog group an event's fields are written under, and
// Message the record's message: a JSON log line of an event is
// {"time":…,"level":"INFO","msg":"audit","audit":{"event":…}}.
const (
	Group   = "audit"
	Message = "audit"
)

// LogSink writes events as info records of a slog logger.
type LogSink struct{ log *slog.Logger }

// NewLogSink writes events to log (the service's logger: same output and
// format), at info, their fields in the "audit" group.
func NewLogSink(log *slog.Logger) *LogSink { return &LogSink{log: log} }

// Enabled is whether the log writes info records.
func (l *LogSink) Enabled(ctx context.Context) bool { return l.log.Enabled(ctx, slog.LevelInfo) }

func (l *LogSink) Record(ctx context.Context, e Event) {
	if !l.Enabled(ctx) {
		return
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, Message, slog.Attr{Key: Group, Value: slog.GroupValue(e.Attrs()...)})
}
