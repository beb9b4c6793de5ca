// Package storetest is the conformance suite of tokenstore.Store: every
// backend runs Run unchanged, so the memory and the Redis store behave the
// same to their callers. It tests the contract documented on Store, not any
// backend's layout; it is not a benchmark and not a load test.
//
// The suite uses real time (Redis TTLs expire in real time), keeps the waits
// of its expiry tests to about a second and runs its tests in parallel.
// newStore is called once per test and must return a store whose keyring and
// revocation stream no other test shares (a fresh Memory, or a Redis store
// with a random key prefix); users and sessions are random per test, so no
// store is ever flushed.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/identityd/identity/tokenstore"
)

// Grace is the grace window the suite's rotations use.
const grace = 10 * time.Second

// Run runs the conformance suite against stores built by newStore.
func Run(t *testing.T, newStore func(t *testing.T) tokenstore.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s tokenstore.Store)
	}{
		{"CreateAndGetUser", testCreateAndGetUser},
		{"DuplicateUsername", testDuplicateUsername},
		{"ConcurrentCreateSameUsername", testConcurrentCreateSameUsername},
		{"UserNotFound", testUserNotFound},
		{"ListUsers", testListUsers},
		{"UpdateUser", testUpdateUser},
		{"UpdateUserRejected", testUpdateUserRejected},
		{"ConcurrentUpdateUser", testConcurrentUpdateUser},
		{"CreateAndGetSession", testCreateAndGetSession},
		{"SessionNotFound", testSessionNotFound},
		{"Rotate", testRotate},
		{"RotateSeesUserChanges", testRotateSeesUserChanges},
		{"RotateReuseWithinGrace", testRotateReuseWithinGrace},
		{"RotateReuseAfterGrace", testRotateReuseAfterGrace},
		{"RotateReuseOlderThanPrevious", testRotateReuseOlderThanPrevious},
		{"RotateWrongNonce", testRotateWrongNonce},
		{"RotateFutureGeneration", testRotateFutureGeneration},
		{"ConcurrentRotate", testConcurrentRotate},
		{"RevokeSession", testRevokeSession},
		{"RevokeUserSessions", testRevokeUserSessions},
		{"ListSessions", testListSessions},
		{"IdleExpiry", testIdleExpiry},
		{"AbsoluteExpiry", testAbsoluteExpiry},
		{"Revocations", testRevocations},
		{"RevocationsAncientCursor", testRevocationsAncientCursor},
		{"WaitRevocations", testWaitRevocations},
		{"WaitRevocationsAncientCursor", testWaitRevocationsAncientCursor},
		{"Keyring", testKeyring},
		{"ConcurrentFirstKeyring", testConcurrentFirstKeyring},
		{"CredentialEpoch", testCredentialEpoch},
		{"RotateUseLimit", testRotateUseLimit},
		{"SessionClient", testSessionClient},
		{"RevokeUserSessionsExcept", testRevokeUserSessionsExcept},
		{"AdoptSession", testAdoptSession},
		{"SessionNeedsUser", testSessionNeedsUser},
		{"UserKeepsSessions", testUserKeepsSessions},
		{"PasswordHashBound", testPasswordHashBound},
		{"CanceledContext", testCanceledContext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

// Helpers.

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// now is the current time at the stores' resolution.
func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

func randomString(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func userID(t *testing.T) string {
	t.Helper()
	id, err := tokenstore.NewUserID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func sessionID(t *testing.T, uid string) string {
	t.Helper()
	id, err := tokenstore.NewSessionID(uid, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func createUser(t *testing.T, s tokenstore.Store, name string, roles ...string) tokenstore.User {
	t.Helper()
	u := tokenstore.User{
		ID:           userID(t),
		Username:     name,
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$" + randomString(t),
		Roles:        roles,
		CreatedAt:    now(),
	}
	if err := s.CreateUser(ctx(t), u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	return u
}

func newUser(t *testing.T, s tokenstore.Store) tokenstore.User {
	t.Helper()
	return createUser(t, s, "user-"+randomString(t), "reader")
}

func createSession(t *testing.T, s tokenstore.Store, uid string, at time.Time, lifetime time.Duration) tokenstore.Session {
	t.Helper()
	sess := tokenstore.Session{
		ID:         sessionID(t, uid),
		UserID:     uid,
		Nonce:      randomString(t),
		CreatedAt:  at,
		RotatedAt:  at,
		LastUsedAt: at,
		ExpiresAt:  at.Add(lifetime),
	}
	if err := s.CreateSession(ctx(t), sess); err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return sess
}

func newSession(t *testing.T, s tokenstore.Store, uid string) tokenstore.Session {
	t.Helper()
	return createSession(t, s, uid, now(), time.Hour)
}

func rotate(sess tokenstore.Session, gen uint64, at time.Time) tokenstore.RotateRequest {
	return tokenstore.RotateRequest{
		SessionID:  sess.ID,
		Generation: gen,
		Nonce:      sess.Nonce,
		Now:        at,
		Grace:      grace,
		IdleTTL:    time.Hour,
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

func noErr(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func equalUser(t *testing.T, what string, got, want tokenstore.User) {
	t.Helper()
	if got.ID != want.ID || got.Username != want.Username || got.PasswordHash != want.PasswordHash ||
		!slices.Equal(got.Roles, want.Roles) || got.Disabled != want.Disabled || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

func equalSession(t *testing.T, what string, got, want tokenstore.Session) {
	t.Helper()
	if got.ID != want.ID || got.UserID != want.UserID || got.Generation != want.Generation || got.Nonce != want.Nonce ||
		!got.CreatedAt.Equal(want.CreatedAt) || !got.RotatedAt.Equal(want.RotatedAt) ||
		!got.LastUsedAt.Equal(want.LastUsedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Fatalf("%s:\n got  %+v\n want %+v", what, got, want)
	}
}

func getSession(t *testing.T, s tokenstore.Store, id string) tokenstore.Session {
	t.Helper()
	got, err := s.Session(ctx(t), id)
	noErr(t, "Session", err)
	return got
}

// revokeAll revokes every session of uid and checks that exactly want were
// revoked, that each is gone, and that none is listed any more.
func revokeAll(t *testing.T, s tokenstore.Store, uid string, want []string) {
	t.Helper()
	revoked, err := s.RevokeUserSessions(ctx(t), uid, now())
	noErr(t, "RevokeUserSessions", err)
	if got := slices.Sorted(slices.Values(revoked)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("RevokeUserSessions revoked %v, want %v", got, want)
	}
	for _, id := range want {
		sessionGone(t, s, id)
	}
	listed, err := s.ListSessions(ctx(t), uid)
	noErr(t, "ListSessions after revoking", err)
	if len(listed) != 0 {
		t.Fatalf("ListSessions after revoking every session: %v", listed)
	}
}

func sessionGone(t *testing.T, s tokenstore.Store, id string) {
	t.Helper()
	_, err := s.Session(ctx(t), id)
	wantErr(t, "Session of a dead session", err, tokenstore.ErrNotFound)
}

// revocationsAfter returns every event after cursor, reading in pages.
func revocationsAfter(t *testing.T, s tokenstore.Store, cursor string) ([]tokenstore.Revocation, string) {
	t.Helper()
	var all []tokenstore.Revocation
	for {
		events, next, ok, err := s.Revocations(ctx(t), cursor, 100)
		noErr(t, "Revocations", err)
		if !ok {
			t.Fatalf("Revocations(%q): ok = false, want true", cursor)
		}
		all = append(all, events...)
		if len(events) == 0 {
			return all, next
		}
		cursor = next
	}
}

func latestCursor(t *testing.T, s tokenstore.Store) string {
	t.Helper()
	events, next, ok, err := s.Revocations(ctx(t), "", 10)
	noErr(t, "Revocations(\"\")", err)
	if !ok || len(events) != 0 || next == "" {
		t.Fatalf(`Revocations(""): events %v, next %q, ok %v; want none, a cursor, true`, events, next, ok)
	}
	return next
}

func revokedIDs(events []tokenstore.Revocation) []string {
	ids := make([]string, len(events))
	for i, e := range events {
		ids[i] = e.SessionID
	}
	return ids
}

// Users.

func testCreateAndGetUser(t *testing.T, s tokenstore.Store) {
	u := createUser(t, s, "alice-"+randomString(t), "admin", "reader")
	got, err := s.UserByID(ctx(t), u.ID)
	noErr(t, "UserByID", err)
	equalUser(t, "UserByID", got, u)
	got, err = s.UserByName(ctx(t), u.Username)
	noErr(t, "UserByName", err)
	equalUser(t, "UserByName", got, u)

	plain := createUser(t, s, "bob-"+randomString(t))
	got, err = s.UserByID(ctx(t), plain.ID)
	noErr(t, "UserByID", err)
	if len(got.Roles) != 0 || got.Disabled {
		t.Fatalf("user without roles: got %+v", got)
	}
}

func testDuplicateUsername(t *testing.T, s tokenstore.Store) {
	first := newUser(t, s)
	dup := tokenstore.User{ID: userID(t), Username: first.Username, PasswordHash: "other", CreatedAt: now()}
	wantErr(t, "CreateUser with a taken username", s.CreateUser(ctx(t), dup), tokenstore.ErrAlreadyExists)

	_, err := s.UserByID(ctx(t), dup.ID)
	wantErr(t, "UserByID of the refused user", err, tokenstore.ErrNotFound)
	got, err := s.UserByName(ctx(t), first.Username)
	noErr(t, "UserByName", err)
	equalUser(t, "the first user keeps the name", got, first)
}

func testConcurrentCreateSameUsername(t *testing.T, s tokenstore.Store) {
	name := "race-" + randomString(t)
	const n = 10
	users := make([]tokenstore.User, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		users[i] = tokenstore.User{ID: userID(t), Username: name, CreatedAt: now()}
		wg.Go(func() { errs[i] = s.CreateUser(ctx(t), users[i]) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("two CreateUser calls for %q succeeded", name)
		case err == nil:
			winner = i
		case !errors.Is(err, tokenstore.ErrAlreadyExists):
			t.Fatalf("CreateUser: %v", err)
		}
	}
	if winner < 0 {
		t.Fatal("no CreateUser call succeeded")
	}
	got, err := s.UserByName(ctx(t), name)
	noErr(t, "UserByName", err)
	if got.ID != users[winner].ID {
		t.Fatalf("UserByName: id %s, want the winner %s", got.ID, users[winner].ID)
	}
	for i, u := range users {
		if i == winner {
			continue
		}
		_, err := s.UserByID(ctx(t), u.ID)
		wantErr(t, "UserByID of a loser", err, tokenstore.ErrNotFound)
	}
}

func testUserNotFound(t *testing.T, s tokenstore.Store) {
	_, err := s.UserByName(ctx(t), "nobody-"+randomString(t))
	wantErr(t, "UserByName(unknown)", err, tokenstore.ErrNotFound)
	_, err = s.UserByID(ctx(t), userID(t))
	wantErr(t, "UserByID(unknown)", err, tokenstore.ErrNotFound)
	_, err = s.UserByID(ctx(t), "not an id")
	wantErr(t, "UserByID(malformed)", err, tokenstore.ErrNotFound)
	_, err = s.UpdateUser(ctx(t), userID(t), func(u tokenstore.User) (tokenstore.User, error) { return u, nil })
	wantErr(t, "UpdateUser(unknown)", err, tokenstore.ErrNotFound)
}

func testListUsers(t *testing.T, s tokenstore.Store) {
	suffix := randomString(t)
	c := createUser(t, s, "c-"+suffix)
	a := createUser(t, s, "a-"+suffix, "admin")
	b := createUser(t, s, "b-"+suffix)
	all, err := s.ListUsers(ctx(t))
	noErr(t, "ListUsers", err)
	if !slices.IsSortedFunc(all, func(x, y tokenstore.User) int { return strings.Compare(x.Username, y.Username) }) {
		t.Fatal("ListUsers is not ordered by username")
	}
	var mine []tokenstore.User
	for _, u := range all {
		if u.ID == a.ID || u.ID == b.ID || u.ID == c.ID {
			mine = append(mine, u)
		}
	}
	if len(mine) != 3 {
		t.Fatalf("ListUsers: found %d of the 3 users created", len(mine))
	}
	equalUser(t, "first", mine[0], a)
	equalUser(t, "second", mine[1], b)
	equalUser(t, "third", mine[2], c)
}

func testUpdateUser(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	want := u
	want.Roles = []string{"admin", "ops"}
	want.Disabled = true
	want.PasswordHash = "$argon2id$new"
	got, err := s.UpdateUser(ctx(t), u.ID, func(cur tokenstore.User) (tokenstore.User, error) {
		equalUser(t, "UpdateUser gives fn the stored user", cur, u)
		cur.Roles = []string{"admin", "ops"}
		cur.Disabled = true
		cur.PasswordHash = "$argon2id$new"
		return cur, nil
	})
	noErr(t, "UpdateUser", err)
	equalUser(t, "UpdateUser result", got, want)
	stored, err := s.UserByID(ctx(t), u.ID)
	noErr(t, "UserByID", err)
	equalUser(t, "stored after UpdateUser", stored, want)
	byName, err := s.UserByName(ctx(t), u.Username)
	noErr(t, "UserByName", err)
	equalUser(t, "by name after UpdateUser", byName, want)

	// And back: roles cleared, enabled again.
	want.Roles, want.Disabled = nil, false
	got, err = s.UpdateUser(ctx(t), u.ID, func(cur tokenstore.User) (tokenstore.User, error) {
		cur.Roles, cur.Disabled = nil, false
		return cur, nil
	})
	noErr(t, "UpdateUser", err)
	equalUser(t, "UpdateUser result", got, want)
	stored, err = s.UserByID(ctx(t), u.ID)
	noErr(t, "UserByID", err)
	equalUser(t, "stored after second UpdateUser", stored, want)
}

func testUpdateUserRejected(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	boom := errors.New("boom")
	_, err := s.UpdateUser(ctx(t), u.ID, func(cur tokenstore.User) (tokenstore.User, error) {
		cur.Disabled = true
		return cur, boom
	})
	wantErr(t, "UpdateUser with a failing fn", err, boom)

	for name, change := range map[string]func(*tokenstore.User){
		"ID":        func(u *tokenstore.User) { u.ID = userID(t) },
		"Username":  func(u *tokenstore.User) { u.Username += "x" },
		"CreatedAt": func(u *tokenstore.User) { u.CreatedAt = u.CreatedAt.Add(time.Hour) },
	} {
		_, err := s.UpdateUser(ctx(t), u.ID, func(cur tokenstore.User) (tokenstore.User, error) {
			change(&cur)
			cur.Disabled = true
			return cur, nil
		})
		if err == nil {
			t.Fatalf("UpdateUser changing %s: no error", name)
		}
	}
	got, err := s.UserByID(ctx(t), u.ID)
	noErr(t, "UserByID", err)
	equalUser(t, "user after refused updates", got, u)
}

func testConcurrentUpdateUser(t *testing.T, s tokenstore.Store) {
	u := createUser(t, s, "busy-"+randomString(t))
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.UpdateUser(ctx(t), u.ID, func(cur tokenstore.User) (tokenstore.User, error) {
				cur.Roles = append(cur.Roles, fmt.Sprintf("r%02d", i))
				return cur, nil
			})
		})
	}
	wg.Wait()
	for _, err := range errs {
		noErr(t, "UpdateUser", err)
	}
	got, err := s.UserByID(ctx(t), u.ID)
	noErr(t, "UserByID", err)
	roles := slices.Sorted(slices.Values(got.Roles))
	if len(roles) != n {
		t.Fatalf("after %d concurrent role additions: roles %v", n, roles)
	}
	for i, r := range roles {
		if r != fmt.Sprintf("r%02d", i) {
			t.Fatalf("after %d concurrent role additions: roles %v", n, roles)
		}
	}
}

// Sessions.

func testCreateAndGetSession(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	at := now()
	sess := tokenstore.Session{
		ID:         sessionID(t, u.ID),
		UserID:     u.ID,
		Generation: 3,
		Nonce:      randomString(t),
		CreatedAt:  at.Add(-time.Minute),
		RotatedAt:  at.Add(-time.Second),
		LastUsedAt: at,
		ExpiresAt:  at.Add(time.Hour),
	}
	noErr(t, "CreateSession", s.CreateSession(ctx(t), sess))
	equalSession(t, "Session", getSession(t, s, sess.ID), sess)

	taken := sess
	taken.Nonce = randomString(t)
	wantErr(t, "CreateSession with a taken id", s.CreateSession(ctx(t), taken), tokenstore.ErrAlreadyExists)
	equalSession(t, "Session after a refused CreateSession", getSession(t, s, sess.ID), sess)

	bad := sess
	bad.ID = sessionID(t, userID(t)) // not of bad.UserID
	if err := s.CreateSession(ctx(t), bad); err == nil {
		t.Fatal("CreateSession with an id of another user: no error")
	}
}

func testSessionNotFound(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	for _, id := range []string{sessionID(t, u.ID), sessionID(t, userID(t)), "garbage", u.ID, ""} {
		_, err := s.Session(ctx(t), id)
		wantErr(t, fmt.Sprintf("Session(%q)", id), err, tokenstore.ErrNotFound)
		_, _, err = s.Rotate(ctx(t), tokenstore.RotateRequest{SessionID: id, Nonce: "x", Now: now(), Grace: grace, IdleTTL: time.Hour})
		wantErr(t, fmt.Sprintf("Rotate(%q)", id), err, tokenstore.ErrNotFound)
	}
}

func testRotate(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	sess := newSession(t, s, u.ID)
	for gen := uint64(0); gen < 3; gen++ {
		at := now().Add(time.Duration(gen+1) * time.Second)
		got, gotUser, err := s.Rotate(ctx(t), rotate(sess, gen, at))
		noErr(t, "Rotate", err)
		if gotUser.PasswordHash != "" {
			t.Fatal("Rotate returned the user's password hash")
		}
		withoutHash := u
		withoutHash.PasswordHash = ""
		equalUser(t, "Rotate's user", gotUser, withoutHash)
		want := sess
		want.Generation, want.RotatedAt, want.LastUsedAt = gen+1, at, at
		equalSession(t, "Rotate result", got, want)
		equalSession(t, "Session after Rotate", getSession(t, s, sess.ID), want)
	}
}

// testRotateSeesUserChanges: the user returned by Rotate is the stored
// one at the time of the rotation (roles, disabled), and a session whose
// user is gone cannot be rotated.
func testRotateSeesUserChanges(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	sess := newSession(t, s, u.ID)
	updated, err := s.UpdateUser(ctx(t), u.ID, func(u tokenstore.User) (tokenstore.User, error) {
		u.Roles = []string{"admin", "reader"}
		u.Disabled = true
		return u, nil
	})
	noErr(t, "UpdateUser", err)
	_, got, err := s.Rotate(ctx(t), rotate(sess, 0, now()))
	noErr(t, "Rotate", err)
	updated.PasswordHash = "" // Rotate never returns it
	equalUser(t, "Rotate's user after UpdateUser", got, updated)
	if !got.Disabled {
		t.Fatal("Rotate's user: Disabled = false, want true")
	}
}

func testRotateReuseWithinGrace(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	sess := newSession(t, s, u.ID)
	t0 := now()
	first, _, err := s.Rotate(ctx(t), rotate(sess, 0, t0))
	noErr(t, "Rotate", err)
	if first.Generation != 1 {
		t.Fatalf("Rotate: generation %d, want 1", first.Generation)
	}
	// A retry or a second tab presents generation 0 again: same answer,
	// no advance, up to and including the end of the grace window.
	for _, after := range []time.Duration{0, time.Millisecond, grace / 2, grace} {
		again, _, err := s.Rotate(ctx(t), rotate(sess, 0, t0.Add(after)))
		noErr(t, fmt.Sprintf("Rotate(previous generation) %v after rotation", after), err)
		equalSession(t, "Rotate(previous generation)", again, first)
	}
	equalSession(t, "Session after grace reuse", getSession(t, s, sess.ID), first)
	next, _, err := s.Rotate(ctx(t), rotate(sess, 1, t0.Add(time.Second)))
	noErr(t, "Rotate(current) after grace reuse", err)
	if next.Generation != 2 {
		t.Fatalf("Rotate: generation %d, want 2", next.Generation)
	}
}

func testRotateReuseAfterGrace(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	sess := newSession(t, s, u.ID)
	other := newSession(t, s, u.ID)
	cursor := latestCursor(t, s)
	t0 := now()
	_, _, err := s.Rotate(ctx(t), rotate(sess, 0, t0))
	noErr(t, "Rotate", err)

	late := t0.Add(grace + time.Millisecond)
	_, _, err = s.Rotate(ctx(t), rotate(sess, 0, late))
	wantErr(t, "Rotate(previous generation) after grace", err, tokenstore.ErrReused)

	sessionGone(t, s, sess.ID)
	_, _, err = s.Rotate(ctx(t), rotate(sess, 1, late))
	wantErr(t, "Rotate(current) of a revoked session", err, tokenstore.ErrNotFound)
	getSession(t, s, other.ID) // only the reused session is revoked

	events, _ := revocationsAfter(t, s, cursor)
	if !slices.Contains(revokedIDs(events), sess.ID) {
		t.Fatalf("no revocation event for the reused session; events %v", events)
	}
}

func testRotateReuseOlderThanPrevious(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	sess := newSession(t, s, u.ID)
	t0 := now()
	for gen := range uint64(2) {
		_, _, err := s.Rotate(ctx(t), rotate(sess, gen, t0))
		noErr(t, "Rotate", err)
	}
	// Generation 0 is two behind: theft even inside the grace window.
	_, _, err := s.Rotate(ctx(t), rotate(sess, 0, t0))
	wantErr(t, "Rotate(current-2) within grace", err, tokenstore.ErrReused)
	sessionGone(t, s, sess.ID)
}

func testRotateWrongNonce(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	sess := newSession(t, s, u.ID)
	t0 := now()
	first, _, err := s.Rotate(ctx(t), rotate(sess, 0, t0))
	noErr(t, "Rotate", err)

	for _, gen := range []uint64{0, 1, 2} { // previous, current, future
		forged := rotate(sess, gen, t0.Add(grace+time.Second))
		forged.Nonce = randomString(t)
		_, _, err := s.Rotate(ctx(t), forged)
		wantErr(t, fmt.Sprintf("Rotate(generation %d, wrong nonce)", gen), err, tokenstore.ErrNotFound)
	}
	// Not revoked (a wrong nonce proves nothing about theft) and not advanced.
	equalSession(t, "Session after wrong nonces", getSession(t, s, sess.ID), first)
	_, _, err = s.Rotate(ctx(t), rotate(sess, 1, t0))
	noErr(t, "Rotate with the right nonce", err)
}

func testRotateFutureGeneration(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	sess := newSession(t, s, u.ID)
	for _, gen := range []uint64{1, 2, 1 << 40, 1<<64 - 1} {
		_, _, err := s.Rotate(ctx(t), rotate(sess, gen, now()))
		wantErr(t, fmt.Sprintf("Rotate(future generation %d)", gen), err, tokenstore.ErrNotFound)
	}
	equalSession(t, "Session after future generations", getSession(t, s, sess.ID), sess)
}

func testConcurrentRotate(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	sess := newSession(t, s, u.ID)
	const n = 50
	results := make([]tokenstore.Session, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], _, errs[i] = s.Rotate(ctx(t), rotate(sess, 0, now()))
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		noErr(t, "concurrent Rotate", errs[i])
		// Every caller gets the one rotation's result: same generation,
		// same RotatedAt, so the same new refresh token.
		equalSession(t, "concurrent Rotate result", results[i], results[0])
	}
	if results[0].Generation != 1 {
		t.Fatalf("concurrent Rotate: generation %d, want exactly one advance to 1", results[0].Generation)
	}
	equalSession(t, "Session after concurrent Rotate", getSession(t, s, sess.ID), results[0])
}

func testRevokeSession(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	sess := newSession(t, s, u.ID)
	other := newSession(t, s, u.ID)
	cursor := latestCursor(t, s)
	at := now()
	noErr(t, "RevokeSession", s.RevokeSession(ctx(t), sess.ID, at))

	sessionGone(t, s, sess.ID)
	_, _, err := s.Rotate(ctx(t), rotate(sess, 0, now()))
	wantErr(t, "Rotate of a revoked session", err, tokenstore.ErrNotFound)
	wantErr(t, "RevokeSession again", s.RevokeSession(ctx(t), sess.ID, now()), tokenstore.ErrNotFound)
	wantErr(t, "RevokeSession(unknown)", s.RevokeSession(ctx(t), sessionID(t, u.ID), now()), tokenstore.ErrNotFound)
	wantErr(t, "RevokeSession(malformed)", s.RevokeSession(ctx(t), "garbage", now()), tokenstore.ErrNotFound)
	getSession(t, s, other.ID)

	events, _ := revocationsAfter(t, s, cursor)
	if len(events) != 1 {
		t.Fatalf("revocation events: %v, want one for the revoked session", events)
	}
	e := events[0]
	if e.SessionID != sess.ID || e.UserID != u.ID || !e.RevokedAt.Equal(at) || !e.ForgetAfter.After(at) {
		t.Fatalf("revocation event %+v, want session %s of user %s revoked at %v", e, sess.ID, u.ID, at)
	}
}

func testRevokeUserSessions(t *testing.T, s tokenstore.Store) {
	alice, bob := newUser(t, s), newUser(t, s)
	var mine []string
	for range 3 {
		mine = append(mine, newSession(t, s, alice.ID).ID)
	}
	bobs := newSession(t, s, bob.ID)
	cursor := latestCursor(t, s)

	revokeAll(t, s, alice.ID, mine)
	getSession(t, s, bobs.ID) // other users untouched

	events, _ := revocationsAfter(t, s, cursor)
	if got := slices.Sorted(slices.Values(revokedIDs(events))); !slices.Equal(got, slices.Sorted(slices.Values(mine))) {
		t.Fatalf("revocation events for %v, want %v", got, mine)
	}
	ids, err := s.RevokeUserSessions(ctx(t), alice.ID, now())
	noErr(t, "RevokeUserSessions again", err)
	if len(ids) != 0 {
		t.Fatalf("RevokeUserSessions again: %v, want none", ids)
	}
	ids, err = s.RevokeUserSessions(ctx(t), userID(t), now())
	if err != nil || len(ids) != 0 {
		t.Fatalf("RevokeUserSessions(unknown user): %v, %v; want none, nil", ids, err)
	}
}

func testListSessions(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	t0 := now()
	// Created out of order: the list is by CreatedAt, oldest first.
	b := createSession(t, s, u.ID, t0.Add(-2*time.Second), time.Hour)
	c := createSession(t, s, u.ID, t0.Add(-1*time.Second), time.Hour)
	a := createSession(t, s, u.ID, t0.Add(-3*time.Second), time.Hour)
	revoked := createSession(t, s, u.ID, t0.Add(-4*time.Second), time.Hour)
	noErr(t, "RevokeSession", s.RevokeSession(ctx(t), revoked.ID, t0))
	rotated, _, err := s.Rotate(ctx(t), rotate(c, 0, t0))
	noErr(t, "Rotate", err)

	got, err := s.ListSessions(ctx(t), u.ID)
	noErr(t, "ListSessions", err)
	if len(got) != 3 {
		t.Fatalf("ListSessions: %d sessions, want 3: %+v", len(got), got)
	}
	equalSession(t, "oldest", got[0], a)
	equalSession(t, "middle", got[1], b)
	equalSession(t, "newest (rotated)", got[2], rotated)

	for _, uid := range []string{userID(t), "garbage"} {
		none, err := s.ListSessions(ctx(t), uid)
		if err != nil || len(none) != 0 {
			t.Fatalf("ListSessions(%q): %v, %v; want none", uid, none, err)
		}
	}
}

// waitGone polls until the session is gone and returns how long that took.
func waitGone(t *testing.T, s tokenstore.Store, id string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		_, err := s.Session(ctx(t), id)
		if errors.Is(err, tokenstore.ErrNotFound) {
			return time.Since(start)
		}
		noErr(t, "Session", err)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("session still live %v later", limit)
	return 0
}

func testIdleExpiry(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	sess := createSession(t, s, u.ID, now(), time.Hour)
	req := rotate(sess, 0, now())
	req.IdleTTL = time.Second
	rotated, _, err := s.Rotate(ctx(t), req)
	noErr(t, "Rotate", err)
	deadline := rotated.LastUsedAt.Add(time.Second)

	getSession(t, s, sess.ID) // live right after the rotation
	waitGone(t, s, sess.ID, 5*time.Second)
	if time.Now().Before(deadline) {
		t.Fatalf("session gone before its idle lifetime ended (at %v)", deadline)
	}
	listed, err := s.ListSessions(ctx(t), u.ID)
	noErr(t, "ListSessions", err)
	if len(listed) != 0 {
		t.Fatalf("ListSessions lists an idle-expired session: %+v", listed)
	}
	_, _, err = s.Rotate(ctx(t), rotate(sess, 1, now()))
	wantErr(t, "Rotate of an idle-expired session", err, tokenstore.ErrNotFound)
}

func testAbsoluteExpiry(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	t0 := now()
	sess := createSession(t, s, u.ID, t0, time.Second)

	// A rotation with a long idle lifetime does not extend the absolute one.
	rotated, _, err := s.Rotate(ctx(t), rotate(sess, 0, t0))
	noErr(t, "Rotate", err)
	if !rotated.ExpiresAt.Equal(sess.ExpiresAt) {
		t.Fatalf("Rotate moved ExpiresAt from %v to %v", sess.ExpiresAt, rotated.ExpiresAt)
	}
	// A rotation at or after ExpiresAt fails without waiting for a TTL.
	_, _, err = s.Rotate(ctx(t), rotate(sess, 1, sess.ExpiresAt))
	wantErr(t, "Rotate at ExpiresAt", err, tokenstore.ErrNotFound)

	waitGone(t, s, sess.ID, 5*time.Second)
	if time.Now().Before(sess.ExpiresAt) {
		t.Fatalf("session gone before ExpiresAt %v", sess.ExpiresAt)
	}

	// Born expired: CreateSession succeeds but nothing is live.
	old := createSession(t, s, u.ID, t0.Add(-2*time.Hour), time.Hour)
	sessionGone(t, s, old.ID)
}

// Revocations.

func testRevocations(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	start := latestCursor(t, s)
	if events, origin, ok, err := s.Revocations(ctx(t), tokenstore.CursorOrigin, 10); err != nil || !ok || len(events) != 0 || origin != start {
		t.Fatalf("Revocations(CursorOrigin) of an empty store: %v, %q, ok %v, %v; want none, %q, true", events, origin, ok, err, start)
	}
	t0 := now()
	var ids []string
	for i := range 3 {
		sess := newSession(t, s, u.ID)
		ids = append(ids, sess.ID)
		noErr(t, "RevokeSession", s.RevokeSession(ctx(t), sess.ID, t0.Add(time.Duration(i)*time.Millisecond)))
	}

	events, next, ok, err := s.Revocations(ctx(t), start, 10)
	noErr(t, "Revocations", err)
	if !ok || len(events) != 3 {
		t.Fatalf("Revocations: %d events, ok %v; want 3, true", len(events), ok)
	}
	for i, e := range events {
		at := t0.Add(time.Duration(i) * time.Millisecond)
		if e.SessionID != ids[i] || e.UserID != u.ID || !e.RevokedAt.Equal(at) || !e.ForgetAfter.After(at) || e.Cursor == "" {
			t.Fatalf("event %d: %+v, want session %s revoked at %v", i, e, ids[i], at)
		}
		if i > 0 && e.Cursor == events[i-1].Cursor {
			t.Fatalf("events %d and %d share cursor %q", i-1, i, e.Cursor)
		}
	}
	if next != events[2].Cursor {
		t.Fatalf("next cursor %q, want the last event's %q", next, events[2].Cursor)
	}
	if latest := latestCursor(t, s); latest != next {
		t.Fatalf(`Revocations(""): cursor %q, want the newest %q`, latest, next)
	}

	// CursorOrigin reads from the oldest retained event.
	all, end, ok, err := s.Revocations(ctx(t), tokenstore.CursorOrigin, 10)
	noErr(t, "Revocations(CursorOrigin)", err)
	if !ok || !slices.Equal(revokedIDs(all), ids) || end != next {
		t.Fatalf("Revocations(CursorOrigin): %v, %q, ok %v; want the 3 events, %q, true", revokedIDs(all), end, ok, next)
	}

	// Nothing after the newest cursor.
	none, again, ok, err := s.Revocations(ctx(t), next, 10)
	noErr(t, "Revocations", err)
	if !ok || len(none) != 0 || again != next {
		t.Fatalf("Revocations(newest): %v, %q, %v; want none, %q, true", none, again, ok, next)
	}

	// Paging with a limit.
	page, mid, ok, err := s.Revocations(ctx(t), start, 2)
	noErr(t, "Revocations", err)
	if !ok || len(page) != 2 || page[0].SessionID != ids[0] || page[1].SessionID != ids[1] || mid != page[1].Cursor {
		t.Fatalf("Revocations(limit 2): %+v, %q, %v", page, mid, ok)
	}
	rest, end, ok, err := s.Revocations(ctx(t), mid, 2)
	noErr(t, "Revocations", err)
	if !ok || len(rest) != 1 || rest[0].SessionID != ids[2] || end != next {
		t.Fatalf("Revocations(after page): %+v, %q, %v", rest, end, ok)
	}
}

func testRevocationsAncientCursor(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	start := latestCursor(t, s)
	t0 := now()
	first := newSession(t, s, u.ID)
	noErr(t, "RevokeSession", s.RevokeSession(ctx(t), first.ID, t0))
	_, afterFirst := revocationsAfter(t, s, start)

	// An event a day later pushes the first one out of any sane retention
	// window (the default is 20 minutes).
	second := newSession(t, s, u.ID)
	noErr(t, "RevokeSession", s.RevokeSession(ctx(t), second.ID, t0.Add(24*time.Hour)))

	events, next, ok, err := s.Revocations(ctx(t), start, 10)
	noErr(t, "Revocations(ancient)", err)
	if ok || len(events) != 0 || next == "" {
		t.Fatalf("Revocations(cursor before trimmed events): %v, %q, ok %v; want none, the newest cursor, false", events, next, ok)
	}
	// The cursor it hands back is a valid place to resume.
	_, _, ok, err = s.Revocations(ctx(t), next, 10)
	if err != nil || !ok {
		t.Fatalf("Revocations(cursor returned with ok=false): ok %v, %v", ok, err)
	}
	events, _ = revocationsAfter(t, s, afterFirst)
	if !slices.Equal(revokedIDs(events), []string{second.ID}) {
		t.Fatalf("Revocations(after the trimmed event): %v, want only %s", events, second.ID)
	}
	// CursorOrigin loads what is retained, whatever was trimmed before.
	events, next, ok, err = s.Revocations(ctx(t), tokenstore.CursorOrigin, 10)
	noErr(t, "Revocations(CursorOrigin)", err)
	if !ok || !slices.Equal(revokedIDs(events), []string{second.ID}) || next != events[len(events)-1].Cursor {
		t.Fatalf("Revocations(CursorOrigin) after trimming: %v, %q, ok %v; want only %s", events, next, ok, second.ID)
	}
	for _, c := range []string{"garbage", "99999999999999-0"} {
		events, next, ok, err := s.Revocations(ctx(t), c, 10)
		if err != nil || ok || len(events) != 0 || next == "" {
			t.Fatalf("Revocations(%q): %v, %q, ok %v, %v; want none, the newest cursor, false", c, events, next, ok, err)
		}
	}
}

// testWaitRevocations: a blocking read answers what is there at once, and
// otherwise wakes for an event appended while it waits, well before its
// wait is over. Nothing here compares against the clock: the wait is long
// (a minute), and the test only asks that the read returns with the event.
func testWaitRevocations(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	first, second := newSession(t, s, u.ID), newSession(t, s, u.ID)
	start := latestCursor(t, s)
	noErr(t, "RevokeSession", s.RevokeSession(ctx(t), first.ID, now()))

	events, next, ok, err := s.WaitRevocations(ctx(t), start, 10, time.Minute)
	noErr(t, "WaitRevocations with an event waiting", err)
	if !ok || len(events) != 1 || events[0].SessionID != first.ID || next != events[0].Cursor {
		t.Fatalf("WaitRevocations: %+v, %q, ok %v; want the event of %s at once", events, next, ok, first.ID)
	}

	type answer struct {
		events []tokenstore.Revocation
		next   string
		ok     bool
		err    error
	}
	got := make(chan answer, 1)
	go func() {
		e, n, ok, err := s.WaitRevocations(ctx(t), next, 10, time.Minute)
		got <- answer{e, n, ok, err}
	}()
	// The read may start before or after the revocation: either way it
	// must return the event, and only the wait bounded by the test's own
	// deadline could make it miss.
	noErr(t, "RevokeSession", s.RevokeSession(ctx(t), second.ID, now()))
	a := <-got
	noErr(t, "WaitRevocations woken by an append", a.err)
	if !a.ok || len(a.events) != 1 || a.events[0].SessionID != second.ID || a.events[0].UserID != u.ID || a.next != a.events[0].Cursor {
		t.Fatalf("WaitRevocations woken: %+v, %q, ok %v; want the event of %s", a.events, a.next, a.ok, second.ID)
	}

	// Nothing more: a short wait ends empty, ok, at the same cursor.
	events, again, ok, err := s.WaitRevocations(ctx(t), a.next, 10, 10*time.Millisecond)
	noErr(t, "WaitRevocations with nothing new", err)
	if !ok || len(events) != 0 || again != a.next {
		t.Fatalf("WaitRevocations with nothing new: %+v, %q, ok %v; want none, %q, true", events, again, ok, a.next)
	}
	// "" answers the newest cursor without waiting.
	events, latest, ok, err := s.WaitRevocations(ctx(t), "", 10, time.Hour)
	noErr(t, `WaitRevocations("")`, err)
	if !ok || len(events) != 0 || latest != a.next {
		t.Fatalf(`WaitRevocations(""): %+v, %q, ok %v; want none, %q, true`, events, latest, ok, a.next)
	}
}

// testWaitRevocationsAncientCursor: a blocking read checks the cursor
// against the retained history as Revocations does.
func testWaitRevocationsAncientCursor(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	first, second := newSession(t, s, u.ID), newSession(t, s, u.ID)
	start := latestCursor(t, s)
	t0 := now()
	noErr(t, "RevokeSession", s.RevokeSession(ctx(t), first.ID, t0))
	noErr(t, "RevokeSession", s.RevokeSession(ctx(t), second.ID, t0.Add(24*time.Hour)))
	events, next, ok, err := s.WaitRevocations(ctx(t), start, 10, time.Minute)
	noErr(t, "WaitRevocations(ancient)", err)
	if ok || len(events) != 0 || next == "" {
		t.Fatalf("WaitRevocations(cursor before trimmed events): %v, %q, ok %v; want none, the newest cursor, false", events, next, ok)
	}
	for _, c := range []string{"garbage", "99999999999999-0"} {
		events, _, ok, err := s.WaitRevocations(ctx(t), c, 10, time.Minute)
		if err != nil || ok || len(events) != 0 {
			t.Fatalf("WaitRevocations(%q): %v, ok %v, %v; want none, false", c, events, ok, err)
		}
	}
}

// testCredentialEpoch: a session lives in its user's credential epoch. A
// session to be created under an epoch the user has left is refused in the
// same atomic step (the login raced a password change), and one that
// somehow outlived its epoch is revoked at its next rotation.
func testCredentialEpoch(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	old := newSession(t, s, u.ID) // epoch 0
	if got := getSession(t, s, old.ID); got.Epoch != 0 {
		t.Fatalf("session epoch %d, want 0", got.Epoch)
	}
	bumped, err := s.UpdateUser(ctx(t), u.ID, func(u tokenstore.User) (tokenstore.User, error) {
		u.Epoch++
		return u, nil
	})
	noErr(t, "UpdateUser(epoch+1)", err)
	if bumped.Epoch != 1 {
		t.Fatalf("UpdateUser returned epoch %d, want 1", bumped.Epoch)
	}
	if got, err := s.UserByID(ctx(t), u.ID); err != nil || got.Epoch != 1 {
		t.Fatalf("UserByID after the bump: epoch %d, %v; want 1", got.Epoch, err)
	}
	if _, err := s.UpdateUser(ctx(t), u.ID, func(u tokenstore.User) (tokenstore.User, error) {
		u.Epoch = 0
		return u, nil
	}); err == nil {
		t.Fatal("UpdateUser lowered the credential epoch")
	}

	stale := tokenstore.Session{ID: sessionID(t, u.ID), UserID: u.ID, Nonce: "n-" + randomString(t),
		CreatedAt: now(), RotatedAt: now(), LastUsedAt: now(), ExpiresAt: now().Add(time.Hour)}
	wantErr(t, "CreateSession under a left epoch", s.CreateSession(ctx(t), stale), tokenstore.ErrStale)
	sessionGone(t, s, stale.ID)
	fresh := stale
	fresh.ID, fresh.Epoch = sessionID(t, u.ID), 1
	noErr(t, "CreateSession under the current epoch", s.CreateSession(ctx(t), fresh))
	if got := getSession(t, s, fresh.ID); got.Epoch != 1 {
		t.Fatalf("session epoch %d, want 1", got.Epoch)
	}
	if _, u2, err := s.Rotate(ctx(t), rotate(fresh, 0, now())); err != nil || u2.Epoch != 1 {
		t.Fatalf("Rotate of a current-epoch session: user epoch %d, %v", u2.Epoch, err)
	}

	cursor := latestCursor(t, s)
	_, _, err = s.Rotate(ctx(t), rotate(old, 0, now()))
	wantErr(t, "Rotate of a session from a left epoch", err, tokenstore.ErrNotFound)
	sessionGone(t, s, old.ID)
	events, _ := revocationsAfter(t, s, cursor)
	if ids := revokedIDs(events); len(ids) != 1 || ids[0] != old.ID {
		t.Fatalf("revocation events after the stale rotation: %v, want %s", ids, old.ID)
	}
}

// testRotateUseLimit: a session refreshed faster than its limit is refused
// with the wait, changing nothing; grace answers count as uses; a reuse
// past the grace window is theft whatever the rate.
func testRotateUseLimit(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	sess := newSession(t, s, u.ID)
	t0 := now()
	limit := tokenstore.UseLimit{Every: time.Minute, Burst: 2}
	at := func(gen uint64, when time.Time) tokenstore.RotateRequest {
		r := rotate(sess, gen, when)
		r.Limit = limit
		return r
	}
	_, _, err := s.Rotate(ctx(t), at(0, t0))
	noErr(t, "first use", err)
	_, _, err = s.Rotate(ctx(t), at(0, t0)) // the same token again: grace
	noErr(t, "second use (grace)", err)
	_, _, err = s.Rotate(ctx(t), at(1, t0))
	var tooFast *tokenstore.TooFastError
	if !errors.As(err, &tooFast) || !errors.Is(err, tokenstore.ErrTooFast) {
		t.Fatalf("third use within the burst of 2: %v, want a TooFastError", err)
	}
	if tooFast.RetryAfter() != time.Minute {
		t.Fatalf("retry after %v, want 1m (one interval after the burst)", tooFast.RetryAfter())
	}
	if got := getSession(t, s, sess.ID); got.Generation != 1 {
		t.Fatalf("a refused use changed the session: generation %d, want 1", got.Generation)
	}
	next, _, err := s.Rotate(ctx(t), at(1, t0.Add(time.Minute)))
	noErr(t, "use after the wait", err)
	if next.Generation != 2 {
		t.Fatalf("generation %d after the wait, want 2", next.Generation)
	}
	// Theft is not rate limited: an old generation past grace revokes.
	_, _, err = s.Rotate(ctx(t), at(0, t0.Add(time.Minute)))
	wantErr(t, "reuse past the grace window, however fast", err, tokenstore.ErrReused)
}

// testSessionClient: a session keeps the client of its last use.
func testSessionClient(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	sess := tokenstore.Session{ID: sessionID(t, u.ID), UserID: u.ID, Nonce: "n-" + randomString(t),
		CreatedAt: now(), RotatedAt: now(), LastUsedAt: now(), ExpiresAt: now().Add(time.Hour),
		UserAgent: "Firefox/140", ClientAddr: "127.0.0.2"}
	noErr(t, "CreateSession", s.CreateSession(ctx(t), sess))
	got := getSession(t, s, sess.ID)
	if got.UserAgent != "Firefox/140" || got.ClientAddr != "127.0.0.2" {
		t.Fatalf("session client %q %q, want Firefox/140 127.0.0.2", got.UserAgent, got.ClientAddr)
	}
	r := rotate(sess, 0, now())
	r.UserAgent, r.ClientAddr = "Chrome/150", "127.0.0.3"
	next, _, err := s.Rotate(ctx(t), r)
	noErr(t, "Rotate", err)
	if next.UserAgent != "Chrome/150" || next.ClientAddr != "127.0.0.3" {
		t.Fatalf("Rotate returned client %q %q, want the new one", next.UserAgent, next.ClientAddr)
	}
	r = rotate(sess, 1, now()) // no client named: the session's stays
	next, _, err = s.Rotate(ctx(t), r)
	noErr(t, "Rotate", err)
	listed, err := s.ListSessions(ctx(t), u.ID)
	noErr(t, "ListSessions", err)
	if len(listed) != 1 || listed[0].UserAgent != "Chrome/150" || listed[0].ClientAddr != "127.0.0.3" || next.UserAgent != "Chrome/150" {
		t.Fatalf("ListSessions %+v; want the client of the last use that named one", listed)
	}
}

// testRevokeUserSessionsExcept: the sessions named in except live on.
func testRevokeUserSessionsExcept(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	keep, a, b := newSession(t, s, u.ID), newSession(t, s, u.ID), newSession(t, s, u.ID)
	ids, err := s.RevokeUserSessions(ctx(t), u.ID, now(), keep.ID)
	noErr(t, "RevokeUserSessions(except)", err)
	if got := slices.Sorted(slices.Values(ids)); !slices.Equal(got, slices.Sorted(slices.Values([]string{a.ID, b.ID}))) {
		t.Fatalf("RevokeUserSessions(except %s): %v, want the other two", keep.ID, ids)
	}
	getSession(t, s, keep.ID)
	sessionGone(t, s, a.ID)
	sessionGone(t, s, b.ID)
}

// testAdoptSession: a live session moves to its user's epoch, and only to
// the epoch the user is at.
func testAdoptSession(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	sess := newSession(t, s, u.ID)
	_, err := s.UpdateUser(ctx(t), u.ID, func(u tokenstore.User) (tokenstore.User, error) { u.Epoch = 3; return u, nil })
	noErr(t, "UpdateUser(epoch 3)", err)
	wantErr(t, "AdoptSession to an epoch the user is not at", s.AdoptSession(ctx(t), sess.ID, 2), tokenstore.ErrStale)
	noErr(t, "AdoptSession(3)", s.AdoptSession(ctx(t), sess.ID, 3))
	if got := getSession(t, s, sess.ID); got.Epoch != 3 {
		t.Fatalf("epoch after AdoptSession: %d, want 3", got.Epoch)
	}
	_, _, err = s.Rotate(ctx(t), rotate(sess, 0, now()))
	noErr(t, "Rotate of the adopted session", err)
	wantErr(t, "AdoptSession(unknown)", s.AdoptSession(ctx(t), sessionID(t, u.ID), 3), tokenstore.ErrNotFound)
	wantErr(t, "AdoptSession(malformed)", s.AdoptSession(ctx(t), "garbage", 3), tokenstore.ErrNotFound)
}

// Keyring.

// testSessionNeedsUser: a session of a user id with no user record is
// refused with ErrNotFound and leaves nothing behind: no session, and no
// user (the Redis store indexes sessions in the user's record).
func testSessionNeedsUser(t *testing.T, s tokenstore.Store) {
	uid := userID(t)
	at := now()
	sess := tokenstore.Session{ID: sessionID(t, uid), UserID: uid, Nonce: randomString(t),
		CreatedAt: at, RotatedAt: at, LastUsedAt: at, ExpiresAt: at.Add(time.Hour)}
	wantErr(t, "CreateSession of a user with no record", s.CreateSession(ctx(t), sess), tokenstore.ErrNotFound)
	sessionGone(t, s, sess.ID)
	_, err := s.UserByID(ctx(t), uid)
	wantErr(t, "UserByID after a refused CreateSession", err, tokenstore.ErrNotFound)
	list, err := s.ListSessions(ctx(t), uid)
	noErr(t, "ListSessions", err)
	if len(list) != 0 {
		t.Fatalf("ListSessions of a user with no record: %d sessions, want none", len(list))
	}
	users, err := s.ListUsers(ctx(t))
	noErr(t, "ListUsers", err)
	for _, u := range users {
		if u.ID == uid {
			t.Fatalf("ListUsers lists %s, refused a session and never created", uid)
		}
	}
	// Once the user exists, the same session is accepted.
	u := tokenstore.User{ID: uid, Username: "late-" + randomString(t), CreatedAt: now()}
	noErr(t, "CreateUser", s.CreateUser(ctx(t), u))
	noErr(t, "CreateSession once the user exists", s.CreateSession(ctx(t), sess))
	equalSession(t, "Session", getSession(t, s, sess.ID), sess)
}

// testUserKeepsSessions: the user's own fields and its sessions do not mix.
// Reads return exactly the user, through every read, however many sessions
// it has; an update keeps its sessions; and "log out everywhere" or
// disabling (RevokeUserSessions) still ends every one of them. The
// password hash is longer than 64 bytes, and changes length.
func testUserKeepsSessions(t *testing.T, s tokenstore.Store) {
	u := createUser(t, s, "keeps-"+randomString(t), "reader")
	var ids []string
	for range 3 {
		ids = append(ids, newSession(t, s, u.ID).ID)
	}
	check := func(what string, want tokenstore.User) {
		t.Helper()
		got, err := s.UserByID(ctx(t), u.ID)
		noErr(t, what+": UserByID", err)
		equalUser(t, what+": UserByID", got, want)
		got, err = s.UserByName(ctx(t), u.Username)
		noErr(t, what+": UserByName", err)
		equalUser(t, what+": UserByName", got, want)
		all, err := s.ListUsers(ctx(t))
		noErr(t, what+": ListUsers", err)
		found := false
		for _, x := range all {
			if x.ID == u.ID {
				equalUser(t, what+": ListUsers", x, want)
				found = true
			}
		}
		if !found {
			t.Fatalf("%s: ListUsers does not list the user", what)
		}
		list, err := s.ListSessions(ctx(t), u.ID)
		noErr(t, what+": ListSessions", err)
		var got2 []string
		for _, x := range list {
			got2 = append(got2, x.ID)
		}
		slices.Sort(got2)
		wantIDs := slices.Sorted(slices.Values(ids))
		if !slices.Equal(got2, wantIDs) {
			t.Fatalf("%s: ListSessions %v, want %v", what, got2, wantIDs)
		}
	}
	check("with 3 sessions", u)

	want := u
	for i, hash := range []string{
		"$argon2id$v=19$m=19456,t=2,p=1$" + strings.Repeat("s", 22) + "$" + strings.Repeat("h", 43), // 97 bytes
		strings.Repeat("x", 300),
		"$argon2id$short",
		strings.Repeat("y", 64),
		strings.Repeat("z", 65),
		"",
	} {
		want.PasswordHash = hash
		want.Roles = []string{"reader", fmt.Sprint("r", i)}
		got, err := s.UpdateUser(ctx(t), u.ID, func(cur tokenstore.User) (tokenstore.User, error) {
			cur.PasswordHash, cur.Roles = want.PasswordHash, want.Roles
			return cur, nil
		})
		noErr(t, "UpdateUser", err)
		equalUser(t, "UpdateUser result", got, want)
		check(fmt.Sprintf("after an update to a %d-byte hash", len(hash)), want)
	}

	// Disabling, as users.Service does it: update, then revoke every session.
	_, err := s.UpdateUser(ctx(t), u.ID, func(cur tokenstore.User) (tokenstore.User, error) {
		cur.Disabled, cur.Epoch = true, cur.Epoch+1
		return cur, nil
	})
	noErr(t, "UpdateUser (disable)", err)
	revokeAll(t, s, u.ID, ids)
}

// testPasswordHashBound: a password hash over MaxPasswordHash bytes is
// refused by CreateUser and UpdateUser, and changes nothing.
func testPasswordHashBound(t *testing.T, s tokenstore.Store) {
	long := strings.Repeat("h", tokenstore.MaxPasswordHash+1)
	u := tokenstore.User{ID: userID(t), Username: "long-" + randomString(t), PasswordHash: long, CreatedAt: now()}
	if err := s.CreateUser(ctx(t), u); err == nil {
		t.Fatal("CreateUser with a password hash over MaxPasswordHash: no error")
	}
	_, err := s.UserByID(ctx(t), u.ID)
	wantErr(t, "UserByID after a refused CreateUser", err, tokenstore.ErrNotFound)

	ok := newUser(t, s)
	atMax := strings.Repeat("m", tokenstore.MaxPasswordHash)
	_, err = s.UpdateUser(ctx(t), ok.ID, func(cur tokenstore.User) (tokenstore.User, error) {
		cur.PasswordHash = long
		return cur, nil
	})
	if err == nil {
		t.Fatal("UpdateUser to a password hash over MaxPasswordHash: no error")
	}
	got, err := s.UserByID(ctx(t), ok.ID)
	noErr(t, "UserByID", err)
	equalUser(t, "user after a refused UpdateUser", got, ok)
	want := ok
	want.PasswordHash = atMax
	_, err = s.UpdateUser(ctx(t), ok.ID, func(cur tokenstore.User) (tokenstore.User, error) {
		cur.PasswordHash = atMax
		return cur, nil
	})
	noErr(t, "UpdateUser to a password hash of MaxPasswordHash bytes", err)
	got, err = s.UserByID(ctx(t), ok.ID)
	noErr(t, "UserByID", err)
	equalUser(t, "user with a password hash of MaxPasswordHash bytes", got, want)
}

func testKeyring(t *testing.T, s tokenstore.Store) {
	got, err := s.Keyring(ctx(t))
	noErr(t, "Keyring", err)
	if got != nil {
		t.Fatalf("Keyring of a new store: %q, want nil", got)
	}
	a, b := []byte("keyring-a\x00\xff"), []byte("keyring-b")
	swap := func(what string, old, new []byte, want bool) {
		t.Helper()
		swapped, err := s.SwapKeyring(ctx(t), old, new)
		noErr(t, what, err)
		if swapped != want {
			t.Fatalf("%s: swapped = %v, want %v", what, swapped, want)
		}
	}
	swap("SwapKeyring(present, b) when absent", a, b, false)
	swap("SwapKeyring(nil, a)", nil, a, true)
	swap("SwapKeyring(nil, a) again (a retry)", nil, a, true)
	swap("SwapKeyring(nil, b) when present", nil, b, false)
	swap("SwapKeyring(stale, b)", []byte("stale"), b, false)
	got, err = s.Keyring(ctx(t))
	noErr(t, "Keyring", err)
	if string(got) != string(a) {
		t.Fatalf("Keyring: %q, want %q", got, a)
	}
	swap("SwapKeyring(a, b)", a, b, true)
	got, err = s.Keyring(ctx(t))
	noErr(t, "Keyring", err)
	if string(got) != string(b) {
		t.Fatalf("Keyring: %q, want %q", got, b)
	}
}

func testConcurrentFirstKeyring(t *testing.T, s tokenstore.Store) {
	const n = 10
	errs := make([]error, n)
	swapped := make([]bool, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { swapped[i], errs[i] = s.SwapKeyring(ctx(t), nil, fmt.Appendf(nil, "keyring-%d", i)) })
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		noErr(t, "SwapKeyring", err)
		switch {
		case swapped[i] && winner >= 0:
			t.Fatal("two first SwapKeyring calls succeeded")
		case swapped[i]:
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no first SwapKeyring call succeeded")
	}
	got, err := s.Keyring(ctx(t))
	noErr(t, "Keyring", err)
	if want := fmt.Sprintf("keyring-%d", winner); string(got) != want {
		t.Fatalf("Keyring: %q, want the winner's %q", got, want)
	}
}

// testCanceledContext: a call whose context is done fails closed.
func testCanceledContext(t *testing.T, s tokenstore.Store) {
	u := newUser(t, s)
	sess := newSession(t, s, u.ID)
	c, cancel := context.WithCancel(t.Context())
	cancel()
	calls := map[string]func() error{
		"Ping":       func() error { return s.Ping(c) },
		"UserByID":   func() error { _, err := s.UserByID(c, u.ID); return err },
		"UserByName": func() error { _, err := s.UserByName(c, u.Username); return err },
		"ListUsers":  func() error { _, err := s.ListUsers(c); return err },
		"UpdateUser": func() error {
			_, err := s.UpdateUser(c, u.ID, func(u tokenstore.User) (tokenstore.User, error) { return u, nil })
			return err
		},
		"CreateUser": func() error {
			return s.CreateUser(c, tokenstore.User{ID: userID(t), Username: "x-" + randomString(t), CreatedAt: now()})
		},
		"Session":            func() error { _, err := s.Session(c, sess.ID); return err },
		"Rotate":             func() error { _, _, err := s.Rotate(c, rotate(sess, 0, now())); return err },
		"ListSessions":       func() error { _, err := s.ListSessions(c, u.ID); return err },
		"RevokeSession":      func() error { return s.RevokeSession(c, sess.ID, now()) },
		"RevokeUserSessions": func() error { _, err := s.RevokeUserSessions(c, u.ID, now()); return err },
		"Revocations":        func() error { _, _, _, err := s.Revocations(c, "", 10); return err },
		"Keyring":            func() error { _, err := s.Keyring(c); return err },
		"SwapKeyring":        func() error { _, err := s.SwapKeyring(c, nil, []byte("k")); return err },
		"AdoptSession":       func() error { return s.AdoptSession(c, sess.ID, 0) },
		"WaitRevocations": func() error {
			_, _, _, err := s.WaitRevocations(c, tokenstore.CursorOrigin, 10, time.Second)
			return err
		},
	}
	for name, call := range calls {
		wantErr(t, name+" with a canceled context", call(), tokenstore.ErrUnavailable)
	}
	// Nothing happened.
	equalSession(t, "Session after canceled calls", getSession(t, s, sess.ID), sess)
}
