package server

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// heartbeatEvery is how often a quiet WatchRevocations stream sends an
// event with no session: verifiers measure the feed's freshness by it.
const heartbeatEvery = time.Second

// WatchRevocations streams the store's revocation events after the
// client's cursor, then follows new ones as they are recorded.
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
	if err := stream.Send(&identityv1.WatchRevocationsResponse{Cursor: cursor}); err != nil {
		return err
	}
	poll := time.NewTicker(s.cfg.RevocationPoll)
	defer poll.Stop()
	lastSent := s.now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
		}
		events, next, ok, err := s.store.Revocations(ctx, cursor, 500)
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
		if now := s.now(); now.Sub(lastSent) >= heartbeatEvery {
			if err := stream.Send(&identityv1.WatchRevocationsResponse{Cursor: cursor}); err != nil {
				return err
			}
			lastSent = now
		}
	}
}
