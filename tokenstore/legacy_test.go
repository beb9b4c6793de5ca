package tokenstore_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/tokenstore"
)

// legacyUser is a user and its sessions as the layout before the session
// index moved into the user hash wrote them, by hand: the password hash
// whole in one field 'p' (97 bytes, so the user hash is a hashtable), the
// sessions indexed in a zset "{uid}:ss" scored by expire-at with a TTL,
// and one member of it whose session hash is gone (expired).
type legacyUser struct {
	user     tokenstore.User
	sessions []tokenstore.Session // live, oldest first
	dead     string               // <rand> of the member with no session hash
}

const legacyPHC = "$argon2id$v=19$m=19456,t=2,p=1$bGVnYWN5c2FsdGxlZ2FjeQ$" +
	"bGVnYWN5aGFzaGxlZ2FjeWhhc2hsZWdhY3loYXNobGU"

// writeLegacy writes a legacy user under prefix; withRecord false leaves
// out the user record (a layout before allowed sessions without one).
func writeLegacy(t *testing.T, c *redis.Client, prefix string, withRecord bool) legacyUser {
	t.Helper()
	ctx := t.Context()
	now := time.Now().Truncate(time.Millisecond)
	lu := legacyUser{user: tokenstore.User{ID: newUID(t), PasswordHash: legacyPHC, Roles: []string{"user"}, CreatedAt: now.Add(-time.Hour)}}
	lu.user.Username = "legacy-" + lu.user.ID
	tag := prefix + "{" + lu.user.ID + "}"
	if withRecord {
		if err := c.HSet(ctx, tag+":u", "n", lu.user.Username, "p", legacyPHC, "r", `["user"]`, "d", "0",
			"c", strconv.FormatInt(lu.user.CreatedAt.UnixMilli(), 10), "v", "0").Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.Set(ctx, prefix+"n:{"+lu.user.Username+"}", lu.user.ID, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.ZAdd(ctx, prefix+"users", redis.Z{Member: lu.user.Username}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var top int64
	for i := range 2 {
		s := newTestSession(t, lu.user.ID, now.Add(time.Duration(i-2)*time.Minute), 24*time.Hour)
		s.UserAgent = "legacy/1.0"
		lu.sessions = append(lu.sessions, s)
		rnd := s.ID[len(lu.user.ID)+1:]
		at := s.ExpiresAt.UnixMilli()
		ms := func(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }
		if err := c.HSet(ctx, tag+":s:"+rnd, "g", "0", "n", s.Nonce, "c", ms(s.CreatedAt), "r", ms(s.RotatedAt),
			"e", ms(s.ExpiresAt), "ua", s.UserAgent).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.PExpireAt(ctx, tag+":s:"+rnd, s.ExpiresAt).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.ZAdd(ctx, tag+":ss", redis.Z{Score: float64(at), Member: rnd}).Err(); err != nil {
			t.Fatal(err)
		}
		top = max(top, at)
	}
	dead := newTestSession(t, lu.user.ID, now, time.Hour)
	lu.dead = dead.ID[len(lu.user.ID)+1:]
	if err := c.ZAdd(ctx, tag+":ss", redis.Z{Score: float64(now.Add(-time.Minute).UnixMilli()), Member: lu.dead}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.PExpireAt(ctx, tag+":ss", time.UnixMilli(top).Add(time.Minute)).Err(); err != nil {
		t.Fatal(err)
	}
	return lu
}

func (lu legacyUser) ids() []string {
	var ids []string
	for _, s := range lu.sessions {
		ids = append(ids, s.ID)
	}
	return ids
}

// TestRedisLegacyLayout: a user written by the layout before (its session
// index a zset "{uid}:ss", its password hash one long field) keeps
// working. Every script that enumerates its sessions or unindexes one
// folds the zset into index fields of the user hash and deletes it,
// dropping members whose session is gone; the sessions read, rotate and
// revoke as before; the password hash reads back whole and an update
// rewrites it in chunks that keep the user's sessions.
func TestRedisLegacyLayout(t *testing.T) {
	t.Parallel()
	client := testredis.Start(t)
	prefix := testredis.KeyPrefix(t, client)
	store := tokenstore.NewRedis(client, tokenstore.WithPrefix(prefix))
	ctx := t.Context()
	keys := func(lu legacyUser) (user, zset string) {
		tag := prefix + "{" + lu.user.ID + "}"
		return tag + ":u", tag + ":ss"
	}
	// folded checks the zset is gone and the user hash indexes exactly
	// the live sessions in want, each at its session's expire-at.
	folded := func(t *testing.T, lu legacyUser, want ...tokenstore.Session) {
		t.Helper()
		user, zset := keys(lu)
		if n, err := client.Exists(ctx, zset).Result(); err != nil || n != 0 {
			t.Errorf("legacy zset still there (%d, %v)", n, err)
		}
		h, err := client.HGetAll(ctx, user).Result()
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for f, v := range h {
			if rnd, ok := strings.CutPrefix(f, "s:"); ok {
				got[rnd] = v
			}
		}
		if len(got) != len(want) {
			t.Errorf("index fields %v, want %d", got, len(want))
		}
		for _, s := range want {
			rnd := s.ID[len(lu.user.ID)+1:]
			if got[rnd] != strconv.FormatInt(s.ExpiresAt.UnixMilli(), 10) {
				t.Errorf("index field s:%s = %q, want %d", rnd, got[rnd], s.ExpiresAt.UnixMilli())
			}
		}
	}
	listed := func(t *testing.T, lu legacyUser, want []string) {
		t.Helper()
		list, err := store.ListSessions(ctx, lu.user.ID)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range list {
			got = append(got, s.ID)
			if s.UserAgent != "legacy/1.0" {
				t.Errorf("session %s: user agent %q", s.ID, s.UserAgent)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("ListSessions %v, want %v", got, want)
		}
	}

	t.Run("UserReads", func(t *testing.T) {
		lu := writeLegacy(t, client, prefix, true)
		for what, get := range map[string]func() (tokenstore.User, error){
			"UserByID":   func() (tokenstore.User, error) { return store.UserByID(ctx, lu.user.ID) },
			"UserByName": func() (tokenstore.User, error) { return store.UserByName(ctx, lu.user.Username) },
		} {
			u, err := get()
			if err != nil || u.PasswordHash != legacyPHC || u.Username != lu.user.Username || !slices.Equal(u.Roles, lu.user.Roles) {
				t.Errorf("%s: %+v, %v; want the legacy user with its whole password hash", what, u, err)
			}
		}
		// An update rewrites the password hash in chunks and keeps the sessions.
		u, err := store.UpdateUser(ctx, lu.user.ID, func(u tokenstore.User) (tokenstore.User, error) {
			if u.PasswordHash != legacyPHC {
				t.Errorf("UpdateUser gives fn the password hash %q", u.PasswordHash)
			}
			u.Roles = []string{"user", "admin"}
			return u, nil
		})
		if err != nil || u.PasswordHash != legacyPHC {
			t.Fatalf("UpdateUser: %+v, %v", u, err)
		}
		user, _ := keys(lu)
		p, err := client.HMGet(ctx, user, "p", "pb").Result()
		if err != nil || p[0] != legacyPHC[:64] || p[1] != legacyPHC[64:] {
			t.Errorf("password hash fields after an update: %q, %v; want two chunks", p, err)
		}
		got, err := store.UserByID(ctx, lu.user.ID)
		if err != nil || got.PasswordHash != legacyPHC || !slices.Equal(got.Roles, u.Roles) {
			t.Errorf("UserByID after the update: %+v, %v", got, err)
		}
		listed(t, lu, lu.ids())
	})

	t.Run("ListSessions", func(t *testing.T) {
		lu := writeLegacy(t, client, prefix, true)
		listed(t, lu, lu.ids())
		folded(t, lu, lu.sessions...)
		listed(t, lu, lu.ids()) // and again from the fields
	})

	t.Run("CreateSession", func(t *testing.T) {
		lu := writeLegacy(t, client, prefix, true)
		s := newTestSession(t, lu.user.ID, time.Now(), 24*time.Hour)
		s.UserAgent = "legacy/1.0"
		if err := store.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
		folded(t, lu, append(slices.Clone(lu.sessions), s)...)
		listed(t, lu, append(lu.ids(), s.ID))
	})

	t.Run("Rotate", func(t *testing.T) {
		// Rotate touches no zset: it indexes the session in the user hash,
		// and the next enumeration folds the rest.
		lu := writeLegacy(t, client, prefix, true)
		s := lu.sessions[0]
		now := time.Now()
		got, _, err := store.Rotate(ctx, tokenstore.RotateRequest{SessionID: s.ID, Nonce: s.Nonce, Now: now, Grace: time.Second, IdleTTL: time.Hour})
		if err != nil || got.Generation != 1 {
			t.Fatalf("Rotate of a legacy session: %+v, %v", got, err)
		}
		listed(t, lu, lu.ids())
		rotated := s
		rotated.ExpiresAt = now.Truncate(time.Millisecond).Add(time.Hour) // its expire-at: now + idle
		folded(t, lu, rotated, lu.sessions[1])
	})

	t.Run("RevokeSession", func(t *testing.T) {
		lu := writeLegacy(t, client, prefix, true)
		if err := store.RevokeSession(ctx, lu.sessions[0].ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		folded(t, lu, lu.sessions[1])
		listed(t, lu, lu.ids()[1:])
	})

	t.Run("RevokeUserSessions", func(t *testing.T) {
		lu := writeLegacy(t, client, prefix, true)
		revoked, err := store.RevokeUserSessions(ctx, lu.user.ID, time.Now())
		slices.Sort(revoked)
		if want := slices.Sorted(slices.Values(lu.ids())); err != nil || !slices.Equal(revoked, want) {
			t.Fatalf("RevokeUserSessions: %v, %v; want %v", revoked, err, want)
		}
		folded(t, lu)
		for _, s := range lu.sessions {
			if _, err := store.Session(ctx, s.ID); !errors.Is(err, tokenstore.ErrNotFound) {
				t.Errorf("Session %s after RevokeUserSessions: %v", s.ID, err)
			}
		}
	})

	t.Run("SessionTimes", func(t *testing.T) {
		// A session hash of the layout before keeps its rotation time and
		// limiter state absolute, in r and q: they read as such, and the
		// next rotation replaces them with R and Q.
		lu := writeLegacy(t, client, prefix, true)
		s := lu.sessions[0]
		key := prefix + "{" + lu.user.ID + "}:s:" + s.ID[len(lu.user.ID)+1:]
		got, err := store.Session(ctx, s.ID)
		if err != nil || !got.RotatedAt.Equal(s.RotatedAt) {
			t.Fatalf("Session of a legacy hash: rotated %v, %v; want %v", got.RotatedAt, err, s.RotatedAt)
		}
		// q an hour ahead: a limit of one use at once refuses.
		now := time.Now()
		if err := client.HSet(ctx, key, "q", strconv.FormatInt(now.Add(time.Hour).UnixMilli(), 10)).Err(); err != nil {
			t.Fatal(err)
		}
		req := tokenstore.RotateRequest{SessionID: s.ID, Nonce: s.Nonce, Now: now, Grace: time.Minute, IdleTTL: time.Hour,
			Limit: tokenstore.UseLimit{Every: time.Second, Burst: 1}}
		var tooFast *tokenstore.TooFastError
		if _, _, err := store.Rotate(ctx, req); !errors.As(err, &tooFast) || tooFast.After < 59*time.Minute {
			t.Fatalf("Rotate with a legacy q an hour ahead: %v, want TooFast for about an hour", err)
		}
		if err := client.HSet(ctx, key, "q", strconv.FormatInt(now.Add(-time.Hour).UnixMilli(), 10)).Err(); err != nil {
			t.Fatal(err)
		}
		rot, _, err := store.Rotate(ctx, req)
		if err != nil || rot.Generation != 1 || !rot.RotatedAt.Equal(now.Truncate(time.Millisecond)) {
			t.Fatalf("Rotate of a legacy hash: %+v, %v", rot, err)
		}
		h, err := client.HGetAll(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		_, r := h["r"]
		_, q := h["q"]
		if r || q || h["R"] != strconv.FormatInt(now.Truncate(time.Millisecond).Sub(s.CreatedAt).Milliseconds(), 10) || h["Q"] != "1000" {
			t.Errorf("session hash after rotating: %v; want R, Q = 1000 and no r, q", h)
		}
		// The previous generation within grace: the same session, and the
		// limiter (one use at once, one a second) now refuses.
		grace, _, err := store.Rotate(ctx, req)
		if !errors.As(err, &tooFast) {
			t.Fatalf("Rotate again at once: %+v, %v; want TooFast", grace, err)
		}
		req.Now = now.Add(1500 * time.Millisecond)
		grace, _, err = store.Rotate(ctx, req)
		if err != nil || grace.Generation != 1 || !grace.RotatedAt.Equal(rot.RotatedAt) {
			t.Fatalf("Rotate in grace: %+v, %v; want generation 1 rotated at %v", grace, err, rot.RotatedAt)
		}
		got, err = store.Session(ctx, s.ID)
		if err != nil || !got.RotatedAt.Equal(rot.RotatedAt) || got.Generation != 1 {
			t.Fatalf("Session after rotating: %+v, %v", got, err)
		}
	})

	t.Run("NoUserRecord", func(t *testing.T) {
		// Sessions of a user id with no record, from before sessions
		// needed their user: listed and revoked from the zset, which is
		// not folded (that would make a user hash of index fields alone).
		lu := writeLegacy(t, client, prefix, false)
		user, zset := keys(lu)
		listed(t, lu, lu.ids())
		if n, _ := client.Exists(ctx, user).Result(); n != 0 {
			t.Errorf("ListSessions made a user hash for a user with no record")
		}
		if n, _ := client.ZCard(ctx, zset).Result(); n != 2 {
			t.Errorf("legacy zset of a user with no record has %d members after ListSessions, want its 2 live ones", n)
		}
		if err := store.RevokeSession(ctx, lu.sessions[0].ID, time.Now()); err != nil {
			t.Fatal(err)
		}
		revoked, err := store.RevokeUserSessions(ctx, lu.user.ID, time.Now())
		if err != nil || !slices.Equal(revoked, lu.ids()[1:]) {
			t.Fatalf("RevokeUserSessions: %v, %v; want %v", revoked, err, lu.ids()[1:])
		}
		if n, _ := client.Exists(ctx, user, zset).Result(); n != 0 {
			t.Errorf("%d keys left of a user with no record after revoking its sessions", n)
		}
		if _, err := store.UserByID(context.Background(), lu.user.ID); !errors.Is(err, tokenstore.ErrNotFound) {
			t.Errorf("UserByID of a user with no record: %v", err)
		}
	})
}
