package server_test

import (
	"context"
	"crypto/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/server"
	"github.com/identityd/identity/tokenstore"
)

// Every way of ending a session is refused by the same instance's Verify
// on the very next call: the session service puts it in the instance's
// revocation set before the RPC answers, without waiting for the feed.
func TestRevocationIsImmediateOnTheSameInstance(t *testing.T) {
	t.Parallel()
	onBothStores(t, func(t *testing.T, store string, p *testidentityd.InProcess) {
		adminPW := testidentityd.AddUser(t, p.Store, "root-"+store, "", "admin")
		userPW := testidentityd.AddUser(t, p.Store, "dora-"+store, "")
		admin := p.Login(t, "root-"+store, adminPW)
		adminCtx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+admin.GetAccessToken())
		adminAPI := identityv1.NewAdminServiceClient(p.Conn)
		ctx := t.Context()

		verifyRefused := func(what string, pair *identityv1.TokenPair) {
			t.Helper()
			_, err := p.API.Verify(ctx, &identityv1.VerifyRequest{Token: pair.GetAccessToken()})
			if authn.Reason(err) != identityv1.ErrorReason_TOKEN_REVOKED {
				t.Errorf("%s: Verify right after: %v, want TOKEN_REVOKED", what, err)
			}
		}
		warm := func(pair *identityv1.TokenPair) {
			t.Helper()
			// Verified once first, so the token sits in the cache.
			if _, err := p.API.Verify(ctx, &identityv1.VerifyRequest{Token: pair.GetAccessToken()}); err != nil {
				t.Fatal(err)
			}
		}

		pair := p.Login(t, "dora-"+store, userPW)
		warm(pair)
		p.Logout(t, pair)
		verifyRefused("Logout", pair)

		a, b := p.Login(t, "dora-"+store, userPW), p.Login(t, "dora-"+store, userPW)
		warm(a)
		warm(b)
		if _, err := p.API.Logout(ctx, &identityv1.LogoutRequest{RefreshToken: a.GetRefreshToken(), AllSessions: true}); err != nil {
			t.Fatal(err)
		}
		verifyRefused("Logout all sessions (this one)", a)
		verifyRefused("Logout all sessions (another)", b)

		pair = p.Login(t, "dora-"+store, userPW)
		warm(pair)
		if _, err := adminAPI.RevokeSession(adminCtx, &identityv1.RevokeSessionRequest{SessionId: pair.GetSessionId()}); err != nil {
			t.Fatal(err)
		}
		verifyRefused("admin RevokeSession", pair)

		pair = p.Login(t, "dora-"+store, userPW)
		warm(pair)
		if _, err := adminAPI.RevokeUserSessions(adminCtx, &identityv1.RevokeUserSessionsRequest{Username: "dora-" + store}); err != nil {
			t.Fatal(err)
		}
		verifyRefused("admin RevokeUserSessions", pair)

		pair = p.Login(t, "dora-"+store, userPW)
		warm(pair)
		newPW := testidentityd.RandomPassword()
		if _, err := adminAPI.UpdateUser(adminCtx, &identityv1.UpdateUserRequest{Username: "dora-" + store, Password: &newPW}); err != nil {
			t.Fatal(err)
		}
		verifyRefused("password change", pair)

		pair = p.Login(t, "dora-"+store, newPW)
		warm(pair)
		disabled := true
		if _, err := adminAPI.UpdateUser(adminCtx, &identityv1.UpdateUserRequest{Username: "dora-" + store, Disabled: &disabled}); err != nil {
			t.Fatal(err)
		}
		verifyRefused("disable", pair)
	})
}

// A logout on one instance reaches a WatchRevocations stream of another
// instance on the same store, pushed by that instance's one feed; the
// stream's first message is a heartbeat (caught up).
func TestWatchRevocationsAcrossInstances(t *testing.T) {
	t.Parallel()
	// A Redis of its own: the revocation stream holds only this test's events.
	url := testredis.NewServer(t).URL()
	a := testidentityd.StartInProcess(t, testidentityd.InProcessRedisURL(url))
	b := testidentityd.StartInProcess(t, testidentityd.InProcessRedisURL(url))
	pw := testidentityd.AddUser(t, a.Store, "erin", "")
	pair := a.Login(t, "erin", pw)

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ctx = asService(t, &b.Client, b.Store, ctx)
	stream, err := b.API.WatchRevocations(ctx, &identityv1.WatchRevocationsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.GetSessionId() != "" || first.GetReset_() || first.GetCursor() == "" {
		t.Fatalf("first message %v, want a heartbeat with a cursor", first)
	}
	a.Logout(t, pair)
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("stream ended before the revocation arrived: %v", err)
		}
		if m.GetSessionId() == "" {
			continue // heartbeats of an idle feed
		}
		if m.GetSessionId() != pair.GetSessionId() || m.GetCursor() == "" || m.GetForgetAfter() == nil {
			t.Fatalf("event %v, want the revocation of %s", m, pair.GetSessionId())
		}
		break
	}
	// Resuming from the first cursor replays the event (from the store),
	// then a heartbeat.
	again, err := b.API.WatchRevocations(ctx, &identityv1.WatchRevocationsRequest{Cursor: first.GetCursor()})
	if err != nil {
		t.Fatal(err)
	}
	m, err := again.Recv()
	if err != nil || m.GetSessionId() != pair.GetSessionId() {
		t.Fatalf("resumed stream's first message %v, %v; want the missed revocation", m, err)
	}
	if m, err := again.Recv(); err != nil || m.GetSessionId() != "" || m.GetReset_() {
		t.Fatalf("resumed stream's second message %v, %v; want a heartbeat", m, err)
	}
}

// The open streams are capped: past the cap a watch is refused with
// RESOURCE_EXHAUSTED and the ones open are not disturbed.
func TestWatchRevocationsCap(t *testing.T) {
	t.Parallel()
	p := testidentityd.StartInProcess(t, testidentityd.InProcessConfig(func(c *server.Config) { c.MaxWatchers = 2 }))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ctx = asService(t, &p.Client, p.Store, ctx)
	var open []identityv1.IdentityService_WatchRevocationsClient
	for range 2 {
		s, err := p.API.WatchRevocations(ctx, &identityv1.WatchRevocationsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
		open = append(open, s)
	}
	s, err := p.API.WatchRevocations(ctx, &identityv1.WatchRevocationsRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	if authn.Reason(err) != identityv1.ErrorReason_RATE_LIMITED {
		t.Fatalf("third stream: %v, want RESOURCE_EXHAUSTED / RATE_LIMITED", err)
	}
	for i, s := range open {
		if m, err := s.Recv(); err != nil || m.GetSessionId() != "" {
			t.Fatalf("open stream %d after the refusal: %v, %v; want a heartbeat", i, m, err)
		}
	}
}

// A login in flight when the password changes cannot leave a session
// behind: its session is refused (the credential epoch moved on) or
// revoked with the others. Logins loop with the old password while an
// admin changes it; afterwards no session of the user lives, and no
// refresh token handed out works.
func TestPasswordChangeEndsLoginsInFlight(t *testing.T) {
	t.Parallel()
	onBothStores(t, func(t *testing.T, store string, p *testidentityd.InProcess) {
		name := "fay-" + store
		oldPW := testidentityd.AddUser(t, p.Store, name, "")
		adminPW := testidentityd.AddUser(t, p.Store, "boss-"+store, "", "admin")
		admin := p.Login(t, "boss-"+store, adminPW)
		adminCtx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+admin.GetAccessToken())

		ctx, stop := context.WithTimeout(t.Context(), 20*time.Second)
		defer stop()
		changed := make(chan struct{})
		results := make(chan []*identityv1.TokenPair, 4)
		for range 4 {
			go func() {
				var got []*identityv1.TokenPair
				defer func() { results <- got }()
				// Keep logging in until a while after the change, at
				// most 200 times.
				after := 0
				for i := 0; i < 200 && after < 20 && ctx.Err() == nil; i++ {
					select {
					case <-changed:
						after++
					default:
					}
					pair, err := p.API.Login(ctx, &identityv1.LoginRequest{Username: name, Password: oldPW})
					if err == nil {
						got = append(got, pair)
					}
				}
			}()
		}
		time.Sleep(20 * time.Millisecond) // let the logins get going; correctness does not depend on it
		newPW := testidentityd.RandomPassword()
		if _, err := identityv1.NewAdminServiceClient(p.Conn).UpdateUser(adminCtx,
			&identityv1.UpdateUserRequest{Username: name, Password: &newPW}); err != nil {
			t.Fatal(err)
		}
		close(changed)
		var pairs []*identityv1.TokenPair
		for range 4 {
			pairs = append(pairs, <-results...)
		}
		u, err := p.Store.UserByName(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		live, err := p.Store.ListSessions(t.Context(), u.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(live) != 0 {
			t.Errorf("%d sessions of the old password outlived the change", len(live))
		}
		for _, pair := range pairs {
			if _, err := p.API.Refresh(t.Context(), &identityv1.RefreshRequest{RefreshToken: pair.GetRefreshToken()}); err == nil {
				t.Errorf("session %s of the old password still refreshes", pair.GetSessionId())
			}
		}
		t.Logf("%d logins with the old password succeeded before the change; none outlived it", len(pairs))
	})
}

// A demoted admin's access token stops opening the AdminService at once:
// a role change ends the user's sessions (no token keeps the old roles).
func TestDemotedAdminIsLockedOutAtOnce(t *testing.T) {
	t.Parallel()
	p := testidentityd.StartInProcess(t)
	rootPW := testidentityd.AddUser(t, p.Store, "root", "", "admin")
	deputyPW := testidentityd.AddUser(t, p.Store, "deputy", "", "admin")
	as := func(pair *identityv1.TokenPair) context.Context {
		return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+pair.GetAccessToken())
	}
	adminAPI := identityv1.NewAdminServiceClient(p.Conn)
	root, deputy := p.Login(t, "root", rootPW), p.Login(t, "deputy", deputyPW)
	if _, err := adminAPI.ListUsers(as(deputy), &identityv1.ListUsersRequest{}); err != nil {
		t.Fatalf("deputy before the demotion: %v", err)
	}
	if _, err := adminAPI.UpdateUser(as(root), &identityv1.UpdateUserRequest{Username: "deputy", SetRoles: true}); err != nil {
		t.Fatal(err)
	}
	_, err := adminAPI.CreateUser(as(deputy), &identityv1.CreateUserRequest{Username: "mole", Password: testidentityd.RandomPassword(), Roles: []string{"admin"}})
	if authn.Reason(err) != identityv1.ErrorReason_TOKEN_REVOKED {
		t.Fatalf("demoted admin's token on the AdminService: %v, want TOKEN_REVOKED", err)
	}
	if _, err := p.API.Refresh(t.Context(), &identityv1.RefreshRequest{RefreshToken: deputy.GetRefreshToken()}); authn.Reason(err) != identityv1.ErrorReason_REFRESH_TOKEN_INVALID {
		t.Fatalf("demoted admin's refresh: %v, want REFRESH_TOKEN_INVALID", err)
	}
	fresh := p.Login(t, "deputy", deputyPW)
	if _, err := adminAPI.ListUsers(as(fresh), &identityv1.ListUsersRequest{}); authn.Reason(err) != identityv1.ErrorReason_PERMISSION_DENIED {
		t.Fatalf("demoted admin after logging in again: %v, want PERMISSION_DENIED", err)
	}
}

// asService returns ctx carrying the access token of a new service
// account (role service), as WatchRevocations asks.
func asService(t *testing.T, c *testidentityd.Client, store tokenstore.Store, ctx context.Context) context.Context {
	t.Helper()
	name := "svc-" + strings.ToLower(rand.Text()[:8])
	pw := testidentityd.AddUser(t, store, name, "", authn.ServiceRole)
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.Login(t, name, pw).GetAccessToken())
}

// The revocation stream names the session and user of every logout: an
// anonymous caller is refused, and so is a user who is not a service.
func TestWatchRevocationsIsForServicesOnly(t *testing.T) {
	t.Parallel()
	p := testidentityd.StartInProcess(t)
	watch := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		s, err := p.API.WatchRevocations(ctx, &identityv1.WatchRevocationsRequest{})
		if err == nil {
			_, err = s.Recv()
		}
		return err
	}
	if err := watch(t.Context()); status.Code(err) != codes.Unauthenticated {
		t.Errorf("anonymous WatchRevocations: %v, want UNAUTHENTICATED", err)
	}
	pw := testidentityd.AddUser(t, p.Store, "gus", "")
	user := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+p.Login(t, "gus", pw).GetAccessToken())
	if err := watch(user); authn.Reason(err) != identityv1.ErrorReason_PERMISSION_DENIED {
		t.Errorf("WatchRevocations as a user without the service role: %v, want PERMISSION_DENIED", err)
	}
	if err := watch(asService(t, &p.Client, p.Store, t.Context())); err != nil {
		t.Errorf("WatchRevocations as a service: %v", err)
	}
}

// onBothStores runs test in parallel on an in-process server with the
// embedded store and with a Redis one, each started with options.
func onBothStores(t *testing.T, test func(t *testing.T, store string, p *testidentityd.InProcess), options ...testidentityd.InProcessOption) {
	t.Helper()
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			opts := slices.Clone(options)
			if store == "redis" {
				opts = append(opts, testidentityd.InProcessRedisURL(testredis.URL(t)))
			}
			test(t, store, testidentityd.StartInProcess(t, opts...))
		})
	}
}
