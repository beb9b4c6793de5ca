package server_test

import (
	"crypto/rand"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/users"
)

// TestConcurrentGuessesCheckAtMostTheBurst: 40 wrong passwords for one
// username sent at once check at most the failure limit's burst of them;
// the rest are RATE_LIMITED without a hash. Each INVALID_CREDENTIALS is a
// password checked, so counting them counts the hashes. The user's hash
// has the real (slow) parameters, so the guesses overlap in the hashing
// pool, as an attacker's would; with the embedded limiter and with Redis.
func TestConcurrentGuessesCheckAtMostTheBurst(t *testing.T) {
	t.Parallel()
	onBothStores(t, func(t *testing.T, _ string, s *testidentityd.InProcess) {
		burst := s.Config.LoginFailuresPerUserAddress // the smaller limit
		name := "victim-" + rand.Text()[:8]           // the Redis is shared: a name of its own
		pw := addSlowUser(t, s, name)

		// Successes cost nothing: more of them than the burst all pass.
		for range burst + 2 {
			s.Login(t, name, pw)
		}

		const guesses = 40
		checked := 0
		for _, err := range loginAtOnce(t, s, guesses, name, "wrong-"+pw) {
			switch reason := authn.Reason(err); reason {
			case identityv1.ErrorReason_INVALID_CREDENTIALS:
				checked++
			case identityv1.ErrorReason_RATE_LIMITED:
				if status.Code(err) != codes.ResourceExhausted {
					t.Errorf("RATE_LIMITED with code %v", status.Code(err))
				}
			default:
				t.Errorf("a guess answered %v (%v)", reason, err)
			}
		}
		if checked > burst {
			t.Errorf("%d of %d concurrent guesses had their password checked, limit's burst %d", checked, guesses, burst)
		}
		if checked == 0 {
			t.Error("no guess was checked at all")
		}
	})
}

// TestBurstOfRightPasswordsIsServed: 32 logins of one username with its
// right password, at once from one address, against the default failure
// limit of 10 per username and address. Each is charged as a failure to
// come and given its charge back when its password proves right, so at most
// 10 are in flight; the others wait for those to settle instead of being
// refused as "too many failed logins". The hash is the real (slow) one on
// one worker and the wait budget a minute, so the burst overlaps however
// fast or loaded the machine is; with the embedded limiter and with Redis.
func TestBurstOfRightPasswordsIsServed(t *testing.T) {
	t.Parallel()
	onBothStores(t, func(t *testing.T, _ string, s *testidentityd.InProcess) {
		if s.Config.LoginFailuresPerUserAddress != 10 {
			t.Fatalf("default failures per username and address %d, the test is written for 10", s.Config.LoginFailuresPerUserAddress)
		}
		name := "burst-" + rand.Text()[:8]
		pw := addSlowUser(t, s, name)
		for _, err := range loginAtOnce(t, s, 32, name, pw) {
			if err != nil {
				t.Errorf("a login with the right password: %v (%v)", authn.Reason(err), err)
			}
		}
		// Every charge came back: the limit is whole again, so as many
		// wrong passwords as its burst are still checked (that the next is
		// refused, TestConcurrentGuessesCheckAtMostTheBurst shows).
		for i := range s.Config.LoginFailuresPerUserAddress {
			_, err := s.API.Login(t.Context(), &identityv1.LoginRequest{Username: name, Password: "wrong-" + pw})
			if r := authn.Reason(err); r != identityv1.ErrorReason_INVALID_CREDENTIALS {
				t.Fatalf("wrong password %d after the burst: %v (%v), want INVALID_CREDENTIALS", i+1, r, err)
			}
		}
	}, testidentityd.InProcessHasher(password.WithWorkers(1), password.WithWaitBudget(time.Minute)))
}

// loginAtOnce sends n logins of name with pw at once and returns their
// errors.
func loginAtOnce(t *testing.T, s *testidentityd.InProcess, n int, name, pw string) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.API.Login(t.Context(), &identityv1.LoginRequest{Username: name, Password: pw})
		})
	}
	wg.Wait()
	return errs
}

// addSlowUser creates a user whose stored hash has the default argon2id
// parameters (the server checks a hash at its own cost).
func addSlowUser(t *testing.T, s *testidentityd.InProcess, name string) string {
	t.Helper()
	h, err := password.New(password.WithWorkers(1))
	if err != nil {
		t.Fatal(err)
	}
	pw := testidentityd.RandomPassword()
	if _, err := users.New(s.Store, h, time.Now, rand.Reader).Create(t.Context(), name, pw, nil); err != nil {
		t.Fatal(err)
	}
	return pw
}
