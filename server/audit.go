package server

import (
	"context"
	"errors"
	"slices"

	"google.golang.org/grpc/peer"

	"github.com/identityd/identity/admin"
	"github.com/identityd/identity/audit"
	"github.com/identityd/identity/authn"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// The audit events (package audit, docs/audit.md) are recorded by the
// handlers, one call each where the outcome is known: record fills in
// what every event has (time, the caller's address and User-Agent, the
// authenticated actor, outcome and reason) and hands it to the sinks (the
// log, and the Redis stream of --audit-redis-stream). Nothing here may
// put a secret in an event: handlers fill in ids, names, roles and kids,
// never a request's password or token.

// newAuditSink is the log, and the stream if there is one.
func newAuditSink(d Deps) audit.Sink {
	sinks := audit.Sinks{audit.NewLogSink(d.Logger)}
	if d.AuditStream != nil {
		sinks = append(sinks, d.AuditStream)
	}
	return sinks
}

// record completes e for the call in ctx and writes it: a success if err
// is nil, else a failure with the reason the caller was answered with.
func (s *Server) record(ctx context.Context, e audit.Event, err error) {
	if !s.audit.Enabled(ctx) {
		return // nothing records (a log above info, no stream): a hot path pays nothing more
	}
	e.Time = s.now()
	if _, ok := peer.FromContext(ctx); ok {
		e.ClientAddress = clientAddr(ctx)
		e.UserAgent = userAgent(ctx)
	}
	if c, ok := authn.ClaimsFromContext(ctx); ok && e.Actor == "" {
		e.Actor, e.ActorUsername = c.Subject, c.Username
	}
	e.Outcome = audit.Success
	if err != nil {
		e.Outcome = audit.Failure
		e.Reason = resultOf(toStatus(err))
		e.Detail = failureDetail(err)
	}
	s.audit.Record(ctx, e)
}

// failureDetail is what the audit trail is told of a refused password
// and the client is not.
func failureDetail(err error) string {
	switch {
	case errors.Is(err, users.ErrUnknownUser):
		return "unknown_user"
	case errors.Is(err, users.ErrWrongPassword):
		return "wrong_password"
	case errors.Is(err, users.ErrDisabled):
		return "account_disabled"
	}
	return ""
}

// sessionSubject is the user id a session id names ("" for a malformed
// one): a session id is not secret, it is in every access token.
func sessionSubject(sid string) string {
	uid, _ := tokenstore.SessionUserID(sid)
	return uid
}

// refreshSession is the session id a refresh token names, "" if it names
// none. The token is decoded, never recorded.
func (s *Server) refreshSession(raw string) string {
	if len(raw) > maxTokenLen {
		return ""
	}
	sid, _, _, err := s.sessions.Codec().Decode(raw)
	if err != nil {
		return ""
	}
	return sid
}

// newestKey is the kid of the key a rotation added: the newest created.
func newestKey(ks []admin.Key) string {
	if len(ks) == 0 {
		return ""
	}
	return slices.MaxFunc(ks, func(a, b admin.Key) int { return a.CreatedAt.Compare(b.CreatedAt) }).ID
}

// recordScheduledRotation records a rotation of the --key-rotation
// schedule: no caller, so no address and no actor.
func (s *Server) recordScheduledRotation(ctx context.Context) {
	e := audit.Event{Name: audit.KeysRotated, Cause: "schedule"}
	if ks, err := s.admin.ListKeys(ctx); err == nil {
		e.KeyID = newestKey(ks)
	}
	s.record(ctx, e, nil)
}
