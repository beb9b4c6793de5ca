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
	"github.com/identityd/identity/internal/testredis"
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
	for _, tc := range []struct {
		name string
		opts func(*testing.T) []testidentityd.InProcessOption
	}{
		{"memory", func(*testing.T) []testidentityd.InProcessOption { return nil }},
		{"redis", func(t *testing.T) []testidentityd.InProcessOption {
			return []testidentityd.InProcessOption{testidentityd.InProcessRedisURL(testredis.URL(t))}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := testidentityd.StartInProcess(t, tc.opts(t)...)
			burst := s.Config.LoginFailuresPerUserAddress // the smaller limit
			name := "victim-" + rand.Text()[:8]           // the Redis is shared: a name of its own
			pw := addSlowUser(t, s, name)

			// Successes cost nothing: more of them than the burst all pass.
			for range burst + 2 {
				s.Login(t, name, pw)
			}

			const guesses = 40
			codesSeen := make(chan error, guesses)
			var wg sync.WaitGroup
			for range guesses {
				wg.Go(func() {
					_, err := s.API.Login(t.Context(), &identityv1.LoginRequest{Username: name, Password: "wrong-" + pw})
					codesSeen <- err
				})
			}
			wg.Wait()
			close(codesSeen)
			checked := 0
			for err := range codesSeen {
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
