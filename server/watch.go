package server

import (
	"errors"

	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/sessions"
	"github.com/identityd/identity/tokenstore"
)

// cursorOrigin is the API's cursor for "the whole retained history"
// (WatchRevocationsRequest.cursor).
const cursorOrigin = "origin"

// watchPage is how many events one catch-up read returns; a full page means
// more are waiting and are read at once.
const watchPage = 500

// WatchRevocations streams revocation events after the client's cursor,
// then follows new ones as the instance's one revocation feed reads them.
// A resuming client's missed events are read from the store once, at the
// start; after that an open stream costs the store nothing.
//
// A message with neither session nor reset is a heartbeat, and it means
// "every event up to this cursor has been sent": the first one ends the
// catch-up, so a verifier that trusts its revocation set only after a
// heartbeat never trusts it while events it missed are on their way. An
// idle feed sends one about every RevocationWait. The stream ends with
// UNAVAILABLE when the server shuts down or when the client fell too far
// behind, and either way the client resumes from its cursor.
func (h *identityServer) WatchRevocations(req *identityv1.WatchRevocationsRequest, stream identityv1.IdentityService_WatchRevocationsServer) error {
	s := h.s
	ctx := stream.Context()
	cursor := req.GetCursor()
	if len(cursor) > 256 {
		return invalidRequest("cursor is too long")
	}
	// Subscribe before reading the history, so nothing appended meanwhile
	// falls between the two; what both bring is sent once (by cursor).
	w, err := s.feed.Subscribe()
	if errors.Is(err, sessions.ErrFeedClosed) {
		return errShuttingDown
	}
	if errors.Is(err, sessions.ErrTooManyWatchers) {
		s.metrics.refused(limitWatchers)
	}
	if err != nil {
		return err
	}
	defer w.Close()

	send := func(m *identityv1.WatchRevocationsResponse) error { return stream.Send(m) }
	sendEvents := func(events []tokenstore.Revocation) error {
		for _, e := range events {
			if e.Cursor == cursor || tokenstore.CursorAfter(cursor, e.Cursor) {
				continue // sent already, by the catch-up
			}
			if err := send(&identityv1.WatchRevocationsResponse{
				Cursor:      e.Cursor,
				SessionId:   e.SessionID,
				Subject:     e.UserID,
				RevokedAt:   timestamppb.New(e.RevokedAt),
				ForgetAfter: timestamppb.New(e.ForgetAfter),
			}); err != nil {
				return err
			}
			cursor = e.Cursor
		}
		return nil
	}

	switch {
	case cursor == "" && w.Start != "":
		cursor = w.Start // from now on: nothing to catch up
	case cursor == "":
		// The feed has not read yet: ask the store where "now" is.
		if _, cursor, _, err = s.store.Revocations(ctx, "", 0); err != nil {
			return err
		}
	case cursor == cursorOrigin:
		cursor = tokenstore.CursorOrigin
	}
	// Catch up from the store, unless the client is where the feed is.
	for cursor != w.Start {
		events, next, ok, err := s.store.Revocations(ctx, cursor, watchPage)
		if err != nil {
			return err
		}
		if !ok {
			if err := send(&identityv1.WatchRevocationsResponse{Cursor: next, Reset_: true}); err != nil {
				return err
			}
		}
		if err := sendEvents(events); err != nil {
			return err
		}
		cursor = next
		if len(events) < watchPage {
			break
		}
	}
	if err := send(&identityv1.WatchRevocationsResponse{Cursor: cursor}); err != nil {
		return err
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return errShuttingDown
		case <-w.Done:
			if errors.Is(w.Err(), sessions.ErrTooSlow) {
				return errWatcherTooSlow
			}
			return errShuttingDown
		case m := <-w.C:
			switch {
			case m.Reset:
				cursor = m.Cursor
				if err := send(&identityv1.WatchRevocationsResponse{Cursor: cursor, Reset_: true}); err != nil {
					return err
				}
			case len(m.Events) > 0:
				if err := sendEvents(m.Events); err != nil {
					return err
				}
			default: // heartbeat
				if tokenstore.CursorAfter(m.Cursor, cursor) {
					cursor = m.Cursor
				}
				if err := send(&identityv1.WatchRevocationsResponse{Cursor: cursor}); err != nil {
					return err
				}
			}
		}
	}
}
