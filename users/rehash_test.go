package users_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/identityd/identity/password"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

var (
	oldParams = password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	newParams = password.Params{Memory: 128, Time: 2, Threads: 1, SaltLen: 16, KeyLen: 32}
)

// hashCounter counts Hash calls and can make them fail.
type hashCounter struct {
	*password.Hasher
	hashes atomic.Int32
	fail   error
}

func (h *hashCounter) Hash(ctx context.Context, pw string) (string, error) {
	h.hashes.Add(1)
	if h.fail != nil {
		return "", h.fail
	}
	return h.Hasher.Hash(ctx, pw)
}

// updateHook runs before every UpdateUser of the store it wraps: it can
// fail the write or change the user first, as a concurrent admin would.
type updateHook struct {
	tokenstore.Store
	before func(ctx context.Context, id string) error
}

func (s *updateHook) UpdateUser(ctx context.Context, id string, fn func(tokenstore.User) (tokenstore.User, error)) (tokenstore.User, error) {
	if err := s.before(ctx, id); err != nil {
		return tokenstore.User{}, err
	}
	return s.Store.UpdateUser(ctx, id, fn)
}

type rehashFixture struct {
	store  *updateHook
	hasher *hashCounter
	svc    *users.Service
	log    *bytes.Buffer
	user   tokenstore.User
}

const rehashPW = "correct horse battery staple"

// newRehashFixture makes a user whose hash has oldParams and a Service
// whose hasher makes newParams.
func newRehashFixture(t *testing.T) *rehashFixture {
	t.Helper()
	mem := tokenstore.NewMemory()
	t.Cleanup(func() { mem.Close() })
	oldHasher, err := password.New(password.WithParams(oldParams))
	if err != nil {
		t.Fatal(err)
	}
	u, err := users.New(mem, oldHasher, time.Now, rand.Reader).Create(t.Context(), "alice", rehashPW, nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := password.New(password.WithParams(newParams))
	if err != nil {
		t.Fatal(err)
	}
	f := &rehashFixture{
		store:  &updateHook{Store: mem, before: func(context.Context, string) error { return nil }},
		hasher: &hashCounter{Hasher: h},
		log:    &bytes.Buffer{},
		user:   u,
	}
	f.svc = users.New(f.store, f.hasher, time.Now, rand.Reader,
		users.WithLogger(slog.New(slog.NewTextHandler(f.log, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	return f
}

func (f *rehashFixture) stored(t *testing.T) tokenstore.User {
	t.Helper()
	u, err := f.store.UserByID(t.Context(), f.user.ID)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// A login with a hash of older parameters stores a new one, once, and
// changes nothing else.
func TestAuthenticateRehashes(t *testing.T) {
	t.Parallel()
	f := newRehashFixture(t)
	ctx := t.Context()
	if !f.hasher.NeedsRehash(f.user.PasswordHash) {
		t.Fatal("the fixture's hash does not need a rehash")
	}
	sid, err := tokenstore.NewSessionID(f.user.ID, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Millisecond)
	if err := f.store.CreateSession(ctx, tokenstore.Session{ID: sid, UserID: f.user.ID, Nonce: "n", CreatedAt: now, RotatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}

	got, err := f.svc.Authenticate(ctx, "alice", rehashPW)
	if err != nil {
		t.Fatal(err)
	}
	after := f.stored(t)
	if after.PasswordHash == f.user.PasswordHash || f.hasher.NeedsRehash(after.PasswordHash) {
		t.Fatalf("stored hash after the login %.30q…: want one with the current parameters", after.PasswordHash)
	}
	if !strings.HasPrefix(after.PasswordHash, "$argon2id$v=19$m=128,t=2,p=1$") {
		t.Errorf("stored hash %.30q…: want m=128,t=2,p=1", after.PasswordHash)
	}
	if got.PasswordHash != after.PasswordHash || got.Epoch != f.user.Epoch {
		t.Errorf("Authenticate returned hash %.30q… epoch %d; want the new hash and the epoch it authenticated under (%d)", got.PasswordHash, got.Epoch, f.user.Epoch)
	}
	if after.Epoch != f.user.Epoch {
		t.Errorf("a rehash raised the credential epoch (%d → %d): it is not a credential change", f.user.Epoch, after.Epoch)
	}
	if _, err := f.store.Session(ctx, sid); err != nil {
		t.Errorf("a rehash ended a session: %v", err)
	}
	if n := f.hasher.hashes.Load(); n != 1 {
		t.Errorf("%d hashes for the first login, want 1", n)
	}
	// The new hash checks, and the next login hashes nothing.
	if _, err := f.svc.Authenticate(ctx, "alice", rehashPW); err != nil {
		t.Fatalf("login after the rehash: %v", err)
	}
	if n := f.hasher.hashes.Load(); n != 1 {
		t.Errorf("%d hashes after a second login, want still 1", n)
	}
	if !strings.Contains(f.log.String(), "password rehashed") {
		t.Errorf("no log line for the rehash: %q", f.log.String())
	}
	checkLogClean(t, f.log.String(), rehashPW, f.user.PasswordHash, after.PasswordHash)
}

// A rehash that cannot be stored, or whose user changed meanwhile, does
// not fail the login and leaves the stored user as it was.
func TestAuthenticateRehashFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		setup  func(f *rehashFixture)
		logged bool
	}{
		{"store unavailable", func(f *rehashFixture) {
			f.store.before = func(context.Context, string) error { return tokenstore.ErrUnavailable }
		}, true},
		{"hasher busy", func(f *rehashFixture) { f.hasher.fail = password.ErrBusy }, true},
		{"password changed meanwhile", func(f *rehashFixture) {
			f.store.before = func(ctx context.Context, id string) error {
				_, err := f.store.Store.UpdateUser(ctx, id, func(u tokenstore.User) (tokenstore.User, error) {
					u.PasswordHash = "$argon2id$set-by-an-admin"
					u.Epoch++
					return u, nil
				})
				return err
			}
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newRehashFixture(t)
			tc.setup(f)
			before := f.stored(t)
			got, err := f.svc.Authenticate(t.Context(), "alice", rehashPW)
			if err != nil {
				t.Fatalf("the login failed with its rehash: %v", err)
			}
			if got.ID != f.user.ID || got.Epoch != f.user.Epoch {
				t.Errorf("Authenticate = %+v: want the user as the login read it", got)
			}
			after := f.stored(t)
			if tc.name != "password changed meanwhile" && after.PasswordHash != before.PasswordHash {
				t.Errorf("the stored hash changed although the rehash failed")
			}
			if tc.name == "password changed meanwhile" && after.PasswordHash != "$argon2id$set-by-an-admin" {
				t.Errorf("the rehash overwrote a password set during the login: %.30q…", after.PasswordHash)
			}
			if strings.Contains(f.log.String(), "rehash not stored") != tc.logged {
				t.Errorf("log %q: want a warning %v", f.log.String(), tc.logged)
			}
			checkLogClean(t, f.log.String(), rehashPW, before.PasswordHash)
		})
	}
}

// A failed login never rehashes.
func TestFailedLoginDoesNotRehash(t *testing.T) {
	t.Parallel()
	f := newRehashFixture(t)
	if _, err := f.svc.Authenticate(t.Context(), "alice", "wrong horse battery"); !errors.Is(err, users.ErrBadCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if n := f.hasher.hashes.Load(); n != 0 || f.stored(t).PasswordHash != f.user.PasswordHash {
		t.Errorf("a failed login hashed %d times or changed the stored hash", n)
	}
}

func checkLogClean(t *testing.T, log string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("the log holds a secret (%.12q…): %s", s, log)
		}
	}
}
