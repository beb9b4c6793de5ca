package server

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// heartbeatEvery is how often a quiet WatchRevocations stream sends an
// event with no session: verifiers measure the feed's freshness by it.
const heartbeatEvery = time.Second

// watchPage is how many events one store read returns; a full page means
// more are waiting and are read at once, without waiting for the next poll.
const watchPage = 500

// WatchRevocations streams the store's revocation events after the
// client's cursor, then follows new ones as they are recorded.
//
// A message with neither session nor reset is a heartbeat, and it means
// "every event up to this cursor has been sent": the first one ends the
// catch-up of a resuming client, so a verifier that trusts its revocation
// set only after a heartbeat never trusts it while events it missed are
// still on their way. The stream ends with UNAVAILABLE when the server
// shuts down, so a long-lived watch never holds up a graceful stop.
func (h *identityServer) WatchRevocations(req *identityv1.WatchRevocationsRequest, stream identityv1.IdentityService_WatchRevocationsServer) error {
	s := h.s
	ctx := stream.Context()
	cursor := req.GetCursor()
	if len(cursor) > 256 {
		return invalidRequest("cursor is too long")
	}
	if cursor == "" {
		_, next, _, err := s.store.Revocations(ctx, "", 0)
		if err != nil {
			return err
		}
		cursor = next
	}
	poll := time.NewTicker(s.cfg.RevocationPoll)
	defer poll.Stop()
	caughtUp := false
	var lastSent time.Time
	for {
		for {
			events, next, ok, err := s.store.Revocations(ctx, cursor, watchPage)
			if err != nil {
				return err
			}
			if !ok {
				if err := stream.Send(&identityv1.WatchRevocationsResponse{Cursor: next, Reset_: true}); err != nil {
					return err
				}
				lastSent = s.now()
			}
			for _, e := range events {
				if err := stream.Send(&identityv1.WatchRevocationsResponse{
					Cursor:      e.Cursor,
					SessionId:   e.SessionID,
					Subject:     e.UserID,
					RevokedAt:   timestamppb.New(e.RevokedAt),
					ForgetAfter: timestamppb.New(e.ForgetAfter),
				}); err != nil {
					return err
				}
				lastSent = s.now()
			}
			cursor = next
			if len(events) < watchPage {
				break
			}
		}
		if now := s.now(); !caughtUp || now.Sub(lastSent) >= heartbeatEvery {
			if err := stream.Send(&identityv1.WatchRevocationsResponse{Cursor: cursor}); err != nil {
				return err
			}
			caughtUp, lastSent = true, now
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.stopping:
			return fmt.Errorf("%w: watch again", errShuttingDown)
		case <-poll.C:
		}
	}
}
