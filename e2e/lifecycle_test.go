package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testredis"
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
// the other at once (its verify cache must not outlive a revocation).
func TestTwoInstancesShareRedis(t *testing.T) {
	t.Parallel()
	r := testredis.NewServer(t)
	a := startIdentityd(t, opts{redis: r})
	b := startIdentityd(t, opts{redis: r, password: a.Password})

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

	requireSuccess(t, a.logoutVia(t, viaREST, next.RefreshToken, false))
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
