package server

import (
	"context"
	"errors"

	"github.com/identityd/identity/internal/tokencheck"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
)

// Verify's hot path must not be "parse, check the signature, ask the store"
// on every call. It runs on tokencheck, the same core as authn's local
// verifiers: a bounded cache of verified tokens (keyed by their SHA-256)
// and the instance's revocation set, filled by the revocation feed and, at
// once, by this instance's own revocations (the session service). While
// the set is fresh it answers the session check; when it cannot vouch for
// a token (feed stale, history lost) Verify asks the store, which fails
// closed when the store is unreachable.

const (
	// verifiedCacheSize bounds the verified-token cache.
	verifiedCacheSize = 100_000
	// maxRevoked bounds the revocation set; past it Verify asks the store.
	maxRevoked = 1_000_000
)

// verifySignature checks a token's signature and claims.
func (s *Server) verifySignature(_ context.Context, raw string) (*token.Claims, error) {
	c, err := s.verifier.Verify(raw)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// verify checks an access token completely: signature and claims (cached),
// expiry, and that its session is still live.
func (s *Server) verify(ctx context.Context, raw string) (*token.Claims, error) {
	c, err := s.checker.Check(ctx, raw)
	if !errors.Is(err, tokencheck.ErrUntrusted) {
		return c, err
	}
	sess, err := s.store.Session(ctx, c.SessionID)
	if errors.Is(err, tokenstore.ErrNotFound) || err == nil && sess.UserID != c.Subject {
		return nil, tokencheck.ErrRevoked
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}
