package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testredis"
)

// TestStoreOutageFailsClosed: with Redis gone every call that needs the
// store answers 503 STORE_UNAVAILABLE (gRPC UNAVAILABLE), never a guess;
// /readyz says so while /healthz stays 200; once Redis is back the same
// identityd serves the same sessions again.
func TestStoreOutageFailsClosed(t *testing.T) {
	t.Parallel()
	r := testredis.NewServer(t)
	d := startIdentityd(t, opts{redis: r})
	tp := d.login(t, d.Username, d.Password)
	tp = d.refresh(t, tp.RefreshToken)
	requireSuccess(t, second(d.verifyVia(t, viaREST, tp.AccessToken)))

	r.Stop()

	// Each check reports done when it sees the outage answer; any answer
	// that is neither that nor a (not yet stale) success fails the test.
	unavailable := func(what string, f *failure) (bool, error) {
		if f == nil {
			return false, nil
		}
		if f.code != codes.Unavailable || f.reason != "STORE_UNAVAILABLE" {
			return false, fmt.Errorf("%s: want UNAVAILABLE STORE_UNAVAILABLE, got %v", what, f)
		}
		return true, nil
	}
	outage := map[string]func() (bool, error){
		"GET /readyz": func() (bool, error) {
			r := d.do(t, http.MethodGet, "/readyz", nil, nil)
			return r.status == http.StatusServiceUnavailable, nil
		},
		"REST Verify": func() (bool, error) {
			return unavailable("REST Verify", second(d.verifyVia(t, viaREST, tp.AccessToken)))
		},
		"gRPC Verify": func() (bool, error) {
			return unavailable("gRPC Verify", second(d.verifyVia(t, viaGRPC, tp.AccessToken)))
		},
		"REST WhoAmI": func() (bool, error) {
			return unavailable("REST WhoAmI", second(d.whoAmIVia(t, viaREST, tp.AccessToken)))
		},
		"REST Refresh": func() (bool, error) {
			_, f := d.refreshVia(t, viaREST, tp.RefreshToken)
			if f == nil {
				return false, errors.New("REST Refresh succeeded")
			}
			return unavailable("REST Refresh", f)
		},
		"gRPC Refresh": func() (bool, error) {
			_, f := d.refreshVia(t, viaGRPC, tp.RefreshToken)
			if f == nil {
				return false, errors.New("gRPC Refresh succeeded")
			}
			return unavailable("gRPC Refresh", f)
		},
		"REST Login": func() (bool, error) {
			f := restFailure(t, d.loginREST(t, d.Username, d.Password))
			if f == nil {
				return false, errors.New("REST Login succeeded")
			}
			return unavailable("REST Login", f)
		},
		"gRPC Login": func() (bool, error) {
			_, err := d.API.Login(rpcContext(t), &identityv1.LoginRequest{Username: d.Username, Password: d.Password})
			f := grpcFailure(t, err)
			if f == nil {
				return false, errors.New("gRPC Login succeeded")
			}
			return unavailable("gRPC Login", f)
		},
	}
	pollAll(t, "with Redis down", 10*time.Second, outage, func() {
		if r := d.do(t, http.MethodGet, "/healthz", nil, nil); r.status != http.StatusOK {
			t.Fatalf("/healthz with Redis down: %v, want 200", r)
		}
	})

	r.Restart()

	// The same process recovers: same sessions, same keys, no false reuse
	// from the refreshes that failed during the outage.
	var next tokenPair
	recovery := map[string]func() (bool, error){
		"GET /readyz": func() (bool, error) {
			return d.do(t, http.MethodGet, "/readyz", nil, nil).status == http.StatusOK, nil
		},
		"REST Verify": func() (bool, error) { return second(d.verifyVia(t, viaREST, tp.AccessToken)) == nil, nil },
		"gRPC Verify": func() (bool, error) { return second(d.verifyVia(t, viaGRPC, tp.AccessToken)) == nil, nil },
		"REST Refresh": func() (bool, error) {
			if next.RefreshToken != "" {
				return true, nil
			}
			tp2, f := d.refreshVia(t, viaREST, tp.RefreshToken)
			if f != nil && f.code != codes.Unavailable {
				return false, fmt.Errorf("refresh after the outage: %v (want the session intact)", f)
			}
			next = tp2
			return f == nil, nil
		},
		"REST Login": func() (bool, error) {
			f := restFailure(t, d.loginREST(t, d.Username, d.Password))
			if f != nil && f.code != codes.Unavailable {
				return false, fmt.Errorf("login after the outage: %v", f)
			}
			return f == nil, nil
		},
	}
	pollAll(t, "after Redis restarted", 10*time.Second, recovery, nil)
	requireSuccess(t, second(d.verifyVia(t, viaGRPC, next.AccessToken)))
}

// pollAll calls every pending check every 200ms until all are done. A check
// that returns an error fails the test and is not called again; checks still
// pending when timeout passes fail it too. always runs before each round.
func pollAll(t *testing.T, when string, timeout time.Duration, checks map[string]func() (bool, error), always func()) {
	t.Helper()
	pending := map[string]bool{}
	for name := range checks {
		pending[name] = true
	}
	deadline := time.Now().Add(timeout)
	for len(pending) > 0 {
		if always != nil {
			always()
		}
		for name := range pending {
			done, err := checks[name]()
			if err != nil {
				t.Errorf("%s: %v", when, err)
			}
			if done || err != nil {
				delete(pending, name)
			}
		}
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var names []string
			for name := range pending {
				names = append(names, name)
			}
			t.Fatalf("%s: still not as expected after %v: %s", when, timeout, strings.Join(names, ", "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestEmbeddedStore: without Redis identityd runs on its in-memory store,
// says so first, and serves the bootstrap user.
func TestEmbeddedStore(t *testing.T) {
	t.Parallel()
	d := startIdentityd(t, opts{embedded: true})

	first := ""
	for line := range strings.SplitSeq(d.Log.String(), "\n") {
		if strings.TrimSpace(line) != "" {
			first = line
			break
		}
	}
	if !strings.Contains(strings.ToLower(first), "memory") {
		t.Errorf("first log line %q does not say the store is in memory", first)
	}

	tp := d.login(t, d.Username, d.Password)
	id := requireIdentity(t, d.verifyREST(t, tp.AccessToken))
	if id.Username != d.Username || id.SessionID != tp.SessionID {
		t.Errorf("verify: %+v", id)
	}
	next := d.refresh(t, tp.RefreshToken)
	requireSuccess(t, d.logoutVia(t, viaGRPC, next.RefreshToken, false))
	d.requireTokenRejected(t, next.AccessToken, "TOKEN_REVOKED")
	if r := d.do(t, http.MethodGet, "/readyz", nil, nil); r.status != http.StatusOK {
		t.Errorf("/readyz on the embedded store: %v", r)
	}
}

// TestLoginRateLimit: with --login-failures-per-user-address 5 the sixth
// wrong password for one username from one address within a minute is
// RATE_LIMITED with Retry-After, and from then on even the right password
// is refused from there (or the limit would only tell a guesser when they
// are right). Unknown usernames are limited alike, so the limit does not
// reveal which names exist.
func TestLoginRateLimit(t *testing.T) {
	t.Parallel()
	d := startIdentityd(t, opts{flags: map[string]string{"login-failures-per-user-address": "5"}})
	wrong := "wrong-" + d.Password
	d.Remember(wrong)

	for _, user := range []string{d.Username, "ghost-" + randomHex(4)} {
		t.Run(user, func(t *testing.T) {
			for i := 1; i <= 5; i++ {
				r := d.loginREST(t, user, wrong)
				if r.status != http.StatusUnauthorized {
					t.Fatalf("failure %d of 5: want 401 INVALID_CREDENTIALS: %v", i, r)
				}
				requireError(t, r, http.StatusUnauthorized, "INVALID_CREDENTIALS")
			}
			requireError(t, d.loginREST(t, user, wrong), http.StatusTooManyRequests, "RATE_LIMITED")
			requireError(t, d.loginREST(t, user, wrong), http.StatusTooManyRequests, "RATE_LIMITED")
			_, err := d.API.Login(rpcContext(t), &identityv1.LoginRequest{Username: user, Password: wrong})
			requireStatusError(t, err, codes.ResourceExhausted, "RATE_LIMITED")
		})
	}
	requireError(t, d.loginREST(t, d.Username, d.Password), http.StatusTooManyRequests, "RATE_LIMITED")

	// The limit is per username: another one is not affected.
	requireError(t, d.loginREST(t, "someone-"+randomHex(4), wrong), http.StatusUnauthorized, "INVALID_CREDENTIALS")
}
