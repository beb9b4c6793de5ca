package authn_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
)

func TestRemotePassesIdentityAnswersThrough(t *testing.T) {
	t.Parallel()
	p := testidentityd.StartInProcess(t)
	pw := testidentityd.AddUser(t, p.Store, "carol", "", "ops")
	pair := p.Login(t, "carol", pw)
	r := mustRemote(t, p.Conn)
	defer r.Close()

	c, err := r.Verify(t.Context(), pair.GetAccessToken())
	if err != nil {
		t.Fatal(err)
	}
	if c.Username != "carol" || c.SessionID != pair.GetSessionId() || len(c.Roles) != 1 || c.Roles[0] != "ops" ||
		!c.ExpiresAt.Equal(pair.GetAccessTokenExpiresAt().AsTime()) {
		t.Fatalf("claims = %+v; want carol's, session %s", c, pair.GetSessionId())
	}

	// identity's own errors come through as they are: code, reason, message.
	for _, tok := range []string{"garbage", pair.GetRefreshToken()} {
		_, want := p.API.Verify(t.Context(), &identityv1.VerifyRequest{Token: tok})
		_, got := r.Verify(t.Context(), tok)
		if status.Code(got) != status.Code(want) || authn.Reason(got) != authn.Reason(want) || status.Convert(got).Message() != status.Convert(want).Message() {
			t.Errorf("Verify(%.8q…) = %v; identity says %v", tok, got, want)
		}
		wantStatus(t, got, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID)
	}
	if _, err := p.API.Logout(t.Context(), &identityv1.LogoutRequest{RefreshToken: pair.GetRefreshToken()}); err != nil {
		t.Fatal(err)
	}
	verifyFails(t, r, pair.GetAccessToken(), codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED)
	verifyFails(t, r, "", codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID)
}

func TestRemoteUnavailable(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	f := newFakeIdentity(t, clock)
	tok := f.issue(t, "s1")

	// Nothing listens there.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := testidentityd.Dial(t, lis.Addr().String())
	lis.Close()

	hanging := newFakeIdentity(t, clock)
	hanging.verify = func(ctx context.Context, _ string) (*identityv1.VerifyResponse, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	broken := newFakeIdentity(t, clock)
	broken.verify = func(context.Context, string) (*identityv1.VerifyResponse, error) {
		// A status without identity's ErrorInfo: not identity's answer
		// (a proxy, a half-deployed server...).
		return nil, status.Error(codes.Internal, "boom")
	}
	storeDown := newFakeIdentity(t, clock)
	storeDown.verify = func(context.Context, string) (*identityv1.VerifyResponse, error) {
		return nil, authn.Error(codes.Unavailable, identityv1.ErrorReason_STORE_UNAVAILABLE, "the session store is unavailable")
	}

	for _, tc := range []struct {
		name   string
		r      *authn.Remote
		reason identityv1.ErrorReason
	}{
		{"nothing listening", mustRemote(t, dead), identityv1.ErrorReason_IDENTITY_UNAVAILABLE},
		{"no answer in time", mustRemote(t, hanging.conn, authn.WithCallTimeout(100*time.Millisecond)), identityv1.ErrorReason_IDENTITY_UNAVAILABLE},
		{"no ErrorInfo", mustRemote(t, broken.conn), identityv1.ErrorReason_IDENTITY_UNAVAILABLE},
		{"identity's own UNAVAILABLE", mustRemote(t, storeDown.conn), identityv1.ErrorReason_STORE_UNAVAILABLE},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			verifyFails(t, tc.r, tok, codes.Unavailable, tc.reason)
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v to fail", d)
			}
		})
	}
}

func TestRemoteCache(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	f := newFakeIdentity(t, clock)
	r := mustRemote(t, f.conn, authn.WithCache(4, time.Minute), authn.WithClock(clock.Now))
	defer r.Close()
	tok := f.issue(t, "s1")

	verifyOK(t, r, tok, "s1")
	verifyOK(t, r, tok, "s1")
	if n := f.verifyCalls.Load(); n != 1 {
		t.Fatalf("%d Verify calls for one token twice, want 1 (cached)", n)
	}
	// maxAge: a minute, then identity is asked again.
	clock.Advance(time.Minute)
	verifyOK(t, r, tok, "s1")
	if n := f.verifyCalls.Load(); n != 2 {
		t.Fatalf("%d Verify calls, want 2: the entry outlived its max age", n)
	}
	// Never past the token's exp, whatever maxAge says.
	forever := mustRemote(t, f.conn, authn.WithCache(4, 0), authn.WithClock(clock.Now))
	verifyOK(t, forever, tok, "s1")
	calls := f.verifyCalls.Load()
	clock.Advance(13 * time.Minute) // 14 of the token's 15
	verifyOK(t, forever, tok, "s1")
	if f.verifyCalls.Load() != calls {
		t.Fatal("not cached until exp")
	}
	clock.Advance(time.Minute)
	forever.Verify(t.Context(), tok)
	if f.verifyCalls.Load() != calls+1 {
		t.Fatal("served from the cache past the token's exp")
	}

	// Bounded: of ten tokens, at most four are remembered.
	var toks []string
	for i := range 10 {
		toks = append(toks, f.issue(t, fmt.Sprint("b", i)))
	}
	for _, tok := range toks {
		r.Verify(t.Context(), tok)
	}
	calls = f.verifyCalls.Load()
	for _, tok := range toks {
		r.Verify(t.Context(), tok)
	}
	if asked := f.verifyCalls.Load() - calls; asked < 6 {
		t.Fatalf("only %d of 10 tokens needed identity again: the cache holds more than 4", asked)
	}

	// Failures are never cached.
	f.mu.Lock()
	f.verify = func(context.Context, string) (*identityv1.VerifyResponse, error) {
		return nil, authn.Error(codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED, "access token revoked")
	}
	f.mu.Unlock()
	other := f.issue(t, "s2")
	for range 2 {
		verifyFails(t, r, other, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED)
	}
}

func TestRemoteCacheFollowsRevocations(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	f := newFakeIdentity(t, clock)
	r := mustRemote(t, f.conn, authn.WithCache(100, time.Hour), authn.WithRevocationWatch(),
		authn.WithClock(clock.Now), authn.WithReconnectBackoff(time.Millisecond, 10*time.Millisecond), quiet(t))
	defer r.Close()
	f.waitStreams(t, 1)
	f.heartbeat("c0")
	s1, s2 := f.issue(t, "s1"), f.issue(t, "s2")

	// Cached once the watch is fresh.
	testidentityd.Eventually(t, 5*time.Second, func() error {
		verifyOK(t, r, s1, "s1")
		calls := f.verifyCalls.Load()
		verifyOK(t, r, s1, "s1")
		if f.verifyCalls.Load() != calls {
			return errors.New("not served from the cache")
		}
		return nil
	})
	verifyOK(t, r, s2, "s2")

	// A revocation event drops the session's cached tokens at once:
	// identity is asked again, and says revoked.
	f.mu.Lock()
	verify := f.verify
	f.verify = func(ctx context.Context, raw string) (*identityv1.VerifyResponse, error) {
		if raw == s1 {
			return nil, authn.Error(codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED, "access token revoked")
		}
		return verify(ctx, raw)
	}
	f.mu.Unlock()
	f.revoke("c1", "s1", clock.Now().Add(time.Hour))
	eventuallyFails(t, r, s1, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED)
	calls := f.verifyCalls.Load()
	verifyOK(t, r, s2, "s2")
	if f.verifyCalls.Load() != calls {
		t.Fatal("another session's cached token was dropped too")
	}

	// A stale watch cannot vouch for the cache: identity is asked.
	clock.Advance(authn.DefaultStaleness + time.Second)
	verifyOK(t, r, s2, "s2")
	if f.verifyCalls.Load() != calls+1 {
		t.Fatal("served from the cache while the revocation watch was stale")
	}
}
