package e2e

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/server"
)

// TestSessionLifetimes: rule 5. A session ends after its idle lifetime
// without use, and after its absolute lifetime whatever its use.
func TestSessionLifetimes(t *testing.T) {
	t.Parallel()
	// Refreshes in a tight loop: no per-session refresh limit here.
	d := startIdentityd(t, opts{flags: map[string]string{"refresh-idle-ttl": "2s", "refresh-absolute-ttl": "4s", "refresh-rate-per-session": "0"}})

	t.Run("idle", func(t *testing.T) {
		t.Parallel()
		tp := d.login(t, d.Username, d.Password)
		if until := time.Until(tp.RefreshTokenExpiresAt); until > 3*time.Second {
			t.Errorf("refresh_token_expires_at is %v away, want about the 2s idle lifetime", until.Round(time.Millisecond))
		}
		time.Sleep(3 * time.Second)
		_, f := d.refreshVia(t, viaREST, tp.RefreshToken)
		requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
	})

	t.Run("absolute", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		tp := d.login(t, d.Username, d.Password)
		// Refresh often, well inside the idle lifetime, until the session ends:
		// the refreshes in its last moments must fail cleanly too.
		var endedAt time.Time
		testidentityd.Eventually(t, 7*time.Second, func() error {
			next, f := d.refreshVia(t, viaREST, tp.RefreshToken)
			if f == nil {
				tp = next
				return errors.New("the session (--refresh-absolute-ttl 4s) is still alive")
			}
			if f.code != codes.Unauthenticated || f.reason != "REFRESH_TOKEN_INVALID" {
				t.Fatalf("refresh %v after login (--refresh-absolute-ttl 4s): want Unauthenticated REFRESH_TOKEN_INVALID, got %v",
					time.Since(start).Round(time.Millisecond), f)
			}
			endedAt = time.Now()
			return nil
		})
		if age := endedAt.Sub(start); age < 3*time.Second {
			t.Errorf("session ended after %v, before its 4s absolute lifetime", age.Round(time.Millisecond))
		}
	})
}

// TestTwoInstancesShareRedis: two identityd processes on one Redis sign with
// the same keys, serve each other's sessions, and a logout on one is seen by
// the other at once (its verify cache must not outlive a revocation), and
// by an authn local verifier that follows the other's WatchRevocations.
// The per-username failed-login limit counts the failures made on both.
// A third instance, in process, runs 20 s ahead: b (leeway 30s) and it
// accept each other's tokens, a (leeway 0s) refuses the early one.
func TestTwoInstancesShareRedis(t *testing.T) {
	t.Parallel()
	r := testredis.NewServer(t)
	limit := map[string]string{"login-failures-per-user": "6"}
	a := startIdentityd(t, opts{redis: r, flags: limit})
	b := startIdentityd(t, opts{redis: r, password: a.Password, flags: map[string]string{"login-failures-per-user": "6", "leeway": "30s"}})

	// A verifier in another service, fed by b's revocation stream.
	svc := "svc-" + randomHex(4)
	svcPassword := testidentityd.AddUser(t, b.Store(t), svc, "", authn.ServiceRole)
	b.Remember(svcPassword)
	local, err := authn.NewLocal(authn.WithKeysFromConn(b.Conn), authn.WithWatchCredentials(authn.NewServiceAccount(b.Conn, svc, svcPassword)),
		authn.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	if err := local.WaitReady(rpcContext(t)); err != nil {
		t.Fatalf("local verifier: %v", err)
	}

	tp := a.login(t, a.Username, a.Password)
	b.Remember(tp.AccessToken, tp.RefreshToken)
	// b verifies a's token, twice, so any cache of b's holds it.
	for range 2 {
		if _, f := b.verifyVia(t, viaGRPC, tp.AccessToken); f != nil {
			t.Fatalf("instance b does not accept instance a's access token: %v", f)
		}
	}
	next := b.refresh(t, tp.RefreshToken)
	a.Remember(next.AccessToken, next.RefreshToken)
	requireSuccess(t, second(a.verifyVia(t, viaREST, next.AccessToken)))
	requireSuccess(t, second(b.verifyVia(t, viaREST, next.AccessToken)))

	if _, err := local.Verify(t.Context(), next.AccessToken); err != nil {
		t.Fatalf("the local verifier refuses a live session's token: %v", err)
	}
	requireSuccess(t, a.logoutVia(t, viaREST, next.RefreshToken, false))
	testidentityd.Eventually(t, 2*time.Second, func() error {
		_, err := local.Verify(t.Context(), next.AccessToken)
		if authn.Reason(err) != identityv1.ErrorReason_TOKEN_REVOKED {
			return fmt.Errorf("the local verifier fed by b: want TOKEN_REVOKED after the logout on a, got %v", err)
		}
		return nil
	})
	// "From that moment": allow only the time a revocation feed needs to
	// cross processes, far less than the access token's minute.
	testidentityd.Eventually(t, 2*time.Second, func() error {
		_, f := b.verifyVia(t, viaREST, next.AccessToken)
		if f == nil {
			return errors.New("instance b still accepts the logged-out session's access token")
		}
		if f.reason != "TOKEN_REVOKED" {
			return fmt.Errorf("instance b: want TOKEN_REVOKED, got %v", f)
		}
		return nil
	})
	b.requireTokenRejected(t, next.AccessToken, "TOKEN_REVOKED")
	_, f := b.refreshVia(t, viaGRPC, next.RefreshToken)
	requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")

	ka, kb := fetchJWKS(t, a), fetchJWKS(t, b)
	if len(ka) != len(kb) || ka[0].Kid != kb[0].Kid || ka[0].X != kb[0].X {
		t.Errorf("the two instances publish different keys: %+v vs %+v", ka, kb)
	}

	t.Run("FailureLimitIsGlobal", func(t *testing.T) {
		name := "limited-" + randomHex(4)
		pw := testidentityd.AddUser(t, a.Store(t), name, "")
		a.Remember(pw)
		b.Remember(pw)
		// Three wrong passwords on each: six, the limit, though neither
		// instance saw more than three.
		for i := range 6 {
			d := a
			if i%2 == 1 {
				d = b
			}
			requireError(t, d.loginREST(t, name, "wrong-"+randomHex(4)), http.StatusUnauthorized, "INVALID_CREDENTIALS")
		}
		for _, d := range []*identityd{a, b} {
			requireError(t, d.loginREST(t, name, "wrong-"+randomHex(4)), http.StatusTooManyRequests, "RATE_LIMITED")
		}
	})

	t.Run("ClockSkew", func(t *testing.T) {
		const skew = 20 * time.Second
		c := testidentityd.StartInProcess(t, testidentityd.InProcessRedisURL(r.URL()),
			testidentityd.InProcessClock(func() time.Time { return time.Now().Add(skew) }),
			// The processes' --access-ttl: a verifier refuses a token
			// that lives longer than its own TTL plus leeway.
			testidentityd.InProcessConfig(func(c *server.Config) { c.Leeway, c.AccessTTL = 30*time.Second, time.Minute }))
		name := "skewed-" + randomHex(4)
		pw := testidentityd.AddUser(t, c.Store, name, "")
		early := c.Login(t, name, pw) // issued 20 s in b's future
		b.Remember(pw, early.GetAccessToken(), early.GetRefreshToken())
		a.Remember(pw, early.GetAccessToken(), early.GetRefreshToken())
		if _, f := b.verifyVia(t, viaGRPC, early.GetAccessToken()); f != nil {
			t.Errorf("b (leeway 30s) refuses a token issued 20 s ahead: %v", f)
		}
		if _, f := a.verifyVia(t, viaGRPC, early.GetAccessToken()); f == nil || f.code != codes.Unauthenticated {
			t.Errorf("a (leeway 0s) accepts a token issued 20 s ahead (the skew is not in effect?): %v", f)
		}
		late := b.loginVia(t, viaGRPC, a.Username, a.Password) // 20 s in c's past
		ctx := rpcContext(t)
		if _, err := c.API.Verify(ctx, &identityv1.VerifyRequest{Token: late.AccessToken}); err != nil {
			t.Errorf("the instance 20 s ahead refuses b's token: %v", err)
		}
		if _, err := c.API.Verify(ctx, &identityv1.VerifyRequest{Token: early.GetAccessToken()}); err != nil {
			t.Errorf("the instance 20 s ahead refuses its own token: %v", err)
		}
	})
}

// testAdminRevocation: revocations made with identityctl directly in the
// store (disable a user, revoke a session) reach the running identityd.
func testAdminRevocation(t *testing.T, d *identityd) {
	ctl := func(args ...string) {
		t.Helper()
		d.Identityctl(t, "", args...)
	}
	revokedSoon := func(token string) {
		t.Helper()
		testidentityd.Eventually(t, 2*time.Second, func() error {
			_, f := d.verifyVia(t, viaREST, token)
			if f == nil {
				return errors.New("the access token still verifies")
			}
			if f.reason != "TOKEN_REVOKED" {
				return fmt.Errorf("want TOKEN_REVOKED, got %v", f)
			}
			return nil
		})
		d.requireTokenRejected(t, token, "TOKEN_REVOKED")
	}

	user, pw := "erin-"+randomHex(4), "pw-"+randomHex(12)
	addUser(t, d, user, pw, "reader")

	t.Run("session revoke", func(t *testing.T) {
		one := d.login(t, user, pw)
		other := d.login(t, user, pw)
		requireSuccess(t, second(d.verifyVia(t, viaREST, one.AccessToken)))
		ctl("session", "revoke", one.SessionID)
		revokedSoon(one.AccessToken)
		_, f := d.refreshVia(t, viaREST, one.RefreshToken)
		requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
		requireSuccess(t, second(d.verifyVia(t, viaREST, other.AccessToken)))
	})

	t.Run("user disable", func(t *testing.T) {
		tp := d.login(t, user, pw)
		requireSuccess(t, second(d.verifyVia(t, viaREST, tp.AccessToken)))
		ctl("user", "disable", user)
		revokedSoon(tp.AccessToken)
		_, f := d.refreshVia(t, viaREST, tp.RefreshToken)
		requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
		// A disabled user gets the answer of a wrong password.
		requireError(t, d.loginREST(t, user, pw), http.StatusUnauthorized, "INVALID_CREDENTIALS")
	})
}
