package e2e

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/identityd/identity/internal/testidentityd"
)

// graceWait outlasts the shared instance's --refresh-grace 1s.
const graceWait = 1500 * time.Millisecond

// testRefreshRotation: session rule 1 (rotation) and rule 2 (the previous
// token inside the grace window gets the same new token), on both protocols.
func testRefreshRotation(t *testing.T, d *identityd) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			tp0 := d.loginVia(t, p, d.Username, d.Password)

			tp1, f := d.refreshVia(t, p, tp0.RefreshToken)
			requireSuccess(t, f)
			if tp1.RefreshToken == tp0.RefreshToken {
				t.Fatal("refresh returned the same refresh token: no rotation")
			}
			if tp1.SessionID != tp0.SessionID {
				t.Errorf("refresh moved to session %q, want the login's %q", tp1.SessionID, tp0.SessionID)
			}
			if tp1.AccessToken == tp0.AccessToken || tp1.TokenType != "Bearer" || tp1.ExpiresIn != 60 {
				t.Errorf("refresh: want a new Bearer access token with expires_in 60, got type %q expires_in %d", tp1.TokenType, tp1.ExpiresIn)
			}
			id, f := d.verifyVia(t, p, tp1.AccessToken)
			requireSuccess(t, f)
			if id.SessionID != tp0.SessionID || id.Username != d.Username {
				t.Errorf("refreshed access token: session %q user %q, want %q %q", id.SessionID, id.Username, tp0.SessionID, d.Username)
			}

			// Within the grace window the previous token is answered with
			// the current one: a retried request or a second tab.
			again, f := d.refreshVia(t, p, tp0.RefreshToken)
			requireSuccess(t, f)
			if again.RefreshToken != tp1.RefreshToken || again.SessionID != tp0.SessionID {
				t.Errorf("previous token within grace: got a different refresh token than the first refresh")
			}

			tp2, f := d.refreshVia(t, p, tp1.RefreshToken)
			requireSuccess(t, f)
			if tp2.RefreshToken == tp1.RefreshToken || tp2.RefreshToken == tp0.RefreshToken {
				t.Fatal("second rotation returned an earlier refresh token")
			}

			// Tokens that were never issued are INVALID, and presenting
			// them must not count as reuse: the session stays alive.
			for _, bad := range tamperedTokens(tp2.RefreshToken) {
				_, f := d.refreshVia(t, p, bad)
				requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
			}
			_, f = d.refreshVia(t, p, "not-a-refresh-token")
			requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
			_, f = d.refreshVia(t, p, tp2.AccessToken)
			requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
			_, f = d.refreshVia(t, p, "")
			requireFailure(t, f, codes.InvalidArgument, "INVALID_REQUEST")

			tp3, f := d.refreshVia(t, p, tp2.RefreshToken)
			requireSuccess(t, f)
			if tp3.RefreshToken == tp2.RefreshToken {
				t.Error("rotation after rejected forgeries returned the same token")
			}
		})
	}
}

// tamperedTokens returns copies of tok with one character changed at a few
// positions spread over it (skipping separators), so every part of whatever
// structure the token has gets hit.
func tamperedTokens(tok string) []string {
	var out []string
	for _, frac := range []int{0, 25, 50, 75, 90} {
		i := len(tok) * frac / 100
		for i < len(tok)-1 && !isAlnum(tok[i]) {
			i++
		}
		b := []byte(tok)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		out = append(out, string(b))
	}
	return out
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// testConcurrentRefreshAndReuse: rule 2 under load (20 concurrent refreshes
// of one token, half over REST and half over gRPC, all get the same new
// token and the session advances once), then rule 3 (the previous token
// after the grace window is theft: the whole session dies).
func testConcurrentRefreshAndReuse(t *testing.T, d *identityd) {
	tp0 := d.login(t, d.Username, d.Password)

	const n = 20
	results := make([]tokenPair, n)
	failures := make([]*failure, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		p := protocols[i%2]
		wg.Go(func() {
			<-start
			results[i], failures[i] = d.refreshVia(t, p, tp0.RefreshToken)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if failures[i] != nil {
			t.Fatalf("concurrent refresh %d (%s): %v", i, protocols[i%2], failures[i])
		}
	}
	tp1 := results[0]
	distinct := map[string]bool{}
	for i := range n {
		distinct[results[i].RefreshToken] = true
		if results[i].SessionID != tp0.SessionID {
			t.Errorf("concurrent refresh %d moved to session %q", i, results[i].SessionID)
		}
	}
	if len(distinct) != 1 {
		t.Fatalf("%d concurrent refreshes of one token returned %d different refresh tokens, want 1", n, len(distinct))
	}
	if tp1.RefreshToken == tp0.RefreshToken {
		t.Fatal("concurrent refreshes returned the presented token")
	}

	// The session advanced exactly once: the common new token is current.
	tp2 := d.refresh(t, tp1.RefreshToken)
	if tp2.RefreshToken == tp1.RefreshToken {
		t.Fatal("refresh with the common new token did not rotate")
	}
	requireSuccess(t, second(d.verifyVia(t, viaREST, tp2.AccessToken)))

	// Rule 3: the previous generation after the grace window.
	time.Sleep(graceWait)
	_, f := d.refreshVia(t, viaREST, tp1.RefreshToken)
	requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_REUSED")

	// ... and the whole session is revoked, its newest tokens included.
	for _, p := range protocols {
		_, f := d.refreshVia(t, p, tp2.RefreshToken)
		requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
	}
	d.requireTokenRejected(t, tp2.AccessToken, "TOKEN_REVOKED")
	d.requireTokenRejected(t, tp0.AccessToken, "TOKEN_REVOKED")
}

func second[A, B any](_ A, b B) B { return b }

// testLogout: rule 4. The session's refresh token fails at once and its
// access tokens fail Verify with TOKEN_REVOKED at once; the user's other
// sessions live on.
func testLogout(t *testing.T, d *identityd) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			a := d.loginVia(t, p, d.Username, d.Password)
			other := d.loginVia(t, p, d.Username, d.Password)
			a1, f := d.refreshVia(t, p, a.RefreshToken) // a session with history
			requireSuccess(t, f)

			requireSuccess(t, d.logoutVia(t, p, a1.RefreshToken, false))

			for _, q := range protocols {
				_, f := d.refreshVia(t, q, a1.RefreshToken)
				requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
			}
			d.requireTokenRejected(t, a1.AccessToken, "TOKEN_REVOKED")
			d.requireTokenRejected(t, a.AccessToken, "TOKEN_REVOKED")

			requireSuccess(t, second(d.verifyVia(t, p, other.AccessToken)))
			_, f = d.refreshVia(t, p, other.RefreshToken)
			requireSuccess(t, f)

			requireFailure(t, d.logoutVia(t, p, "", false), codes.InvalidArgument, "INVALID_REQUEST")
			// An unknown token: refused as invalid, or accepted as a no-op.
			if f := d.logoutVia(t, p, "not-a-refresh-token", false); f != nil {
				requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
			}
		})
	}
}

// testLogoutAllSessions: all_sessions revokes every session of the token's
// user and no session of anyone else.
func testLogoutAllSessions(t *testing.T, d *identityd) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			suffix := randomHex(4)
			carol, dave := "carol-"+suffix, "dave-"+suffix
			carolPW, davePW := "pw-"+randomHex(12), "pw-"+randomHex(12)
			addUser(t, d, carol, carolPW, "reader")
			addUser(t, d, dave, davePW, "reader")

			var sessions []tokenPair
			for _, q := range []via{viaREST, viaGRPC, viaREST} {
				sessions = append(sessions, d.loginVia(t, q, carol, carolPW))
			}
			daves := d.loginVia(t, p, dave, davePW)
			alices := d.loginVia(t, p, d.Username, d.Password)

			requireSuccess(t, d.logoutVia(t, p, sessions[0].RefreshToken, true))

			for i, s := range sessions {
				t.Run(fmt.Sprintf("carol session %d", i), func(t *testing.T) {
					_, f := d.refreshVia(t, p, s.RefreshToken)
					requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
					d.requireTokenRejected(t, s.AccessToken, "TOKEN_REVOKED")
				})
			}
			for user, s := range map[string]tokenPair{dave: daves, d.Username: alices} {
				id, f := d.verifyVia(t, p, s.AccessToken)
				if f != nil || id.Username != user {
					t.Fatalf("after carol's logout of all sessions, %s's access token: %+v %v", user, id, f)
				}
				if _, f = d.refreshVia(t, p, s.RefreshToken); f != nil {
					t.Fatalf("after carol's logout of all sessions, %s's refresh: %v", user, f)
				}
			}
			// carol can log in again: all_sessions ends sessions, not the account.
			fresh := d.login(t, carol, carolPW)
			requireSuccess(t, second(d.verifyVia(t, p, fresh.AccessToken)))
		})
	}
}

// TestAccessTokenExpiry: with --access-ttl 2s and --leeway 0s an access
// token is refused as TOKEN_EXPIRED from its exp on, while the refresh
// token still gets a new one.
func TestAccessTokenExpiry(t *testing.T) {
	t.Parallel()
	d := startIdentityd(t, opts{flags: map[string]string{"access-ttl": "2s", "leeway": "0s"}})
	tp := d.login(t, d.Username, d.Password)
	if tp.ExpiresIn != 2 {
		t.Errorf("expires_in = %d, want 2 (--access-ttl 2s)", tp.ExpiresIn)
	}
	exp := time.Unix(claimInt(t, decodeJWT(t, tp.AccessToken).claims, "exp"), 0)

	// Poll: valid until exp, TOKEN_EXPIRED from then on.
	var expiredAt time.Time
	testidentityd.Eventually(t, 5*time.Second, func() error {
		_, f := d.verifyVia(t, viaREST, tp.AccessToken)
		if f == nil {
			return fmt.Errorf("the access token (exp %v) still verifies", exp.Format(time.RFC3339))
		}
		if f.reason != "TOKEN_EXPIRED" {
			t.Fatalf("while waiting for expiry: %v", f)
		}
		expiredAt = time.Now()
		return nil
	})
	if expiredAt.Before(exp.Add(-100 * time.Millisecond)) {
		t.Errorf("TOKEN_EXPIRED at %v, before the token's exp %v (leeway 0s)", expiredAt, exp)
	}
	if late := expiredAt.Sub(exp); late > 1500*time.Millisecond {
		t.Errorf("token still accepted %v after its exp with --leeway 0s", late)
	}
	d.requireTokenRejected(t, tp.AccessToken, "TOKEN_EXPIRED")

	// The session outlives its access tokens.
	next := d.refresh(t, tp.RefreshToken)
	requireSuccess(t, second(d.verifyVia(t, viaGRPC, next.AccessToken)))
}
