package tokenstore

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is the production Store, on one Redis, Sentinel or Redis Cluster
// through a go-redis UniversalClient.
//
// # Keys
//
// With the default prefix "identity:" (WithPrefix changes it):
//
//	identity:{<uid>}:u          hash    user: n username, p pb pc ... the password hash in
//	                                    chunks of at most 64 bytes (pb only past 64), r roles
//	                                    (JSON), d disabled, c created, v version, k credential
//	                                    epoch (not when 0); and the user's session index, one
//	                                    field s:<rand> -> expire-at per session (no TTL)
//	identity:{<uid>}:s:<rand>   hash    session <uid>.<rand>: g generation, n nonce,
//	                                    c created, R rotated (ms after c), e absolute expiry,
//	                                    l last used (only when it differs from rotated: never
//	                                    after a rotation), k credential epoch (not when 0),
//	                                    Q refresh limiter state (ms after rotated; r and q,
//	                                    absolute, in a hash of the layout before), ip client
//	                                    address, ua and ub the user agent
//	                                    in chunks of at most 64 bytes (ub only past 64), so
//	                                    every value stays under Redis's default
//	                                    hash-max-listpack-value and the hash a listpack
//	                                    TTL: min(last used + idle TTL, e)
//	identity:{<uid>}:ss         zset    the layout before: the user's session <rand>s, scored by
//	                                    their expire-at; folded into the user hash and deleted
//	                                    when first met (see below)
//	identity:n:{<username>}     string  username -> uid (no TTL)
//	identity:users              zset    every username, for ListUsers (no TTL)
//	identity:{revocations}      stream  revocation events, trimmed to the retention window
//	identity:{revocations}:meta hash    l newest event id, t newest trimmed id (no TTL)
//	identity:keyring            string  the signing keyring blob, sealed by token.Manager under
//	                                    the master key (no TTL)
//
// Times are unix milliseconds. All keys of one user share the hash tag
// {<uid>}, so each multi-key change is one Lua script (lua/*.lua) that also
// runs on Redis Cluster. Sessions expire by TTL; users, the username index
// and the keyring are account and key material, not session data, and live
// until deleted; the revocation stream is bounded by trimming instead of a
// TTL, because an expired stream would be indistinguishable from a lost one
// and make every verifier distrust its cache.
//
// Every value is kept under Redis's default hash-max-listpack-value (64
// bytes) so both hashes stay listpacks, the compact encoding: a longer
// value turns the whole hash into a hashtable, two to three times the
// memory. A one-session user's session costs 264 bytes (MEMORY USAGE, a
// gRPC client's; see BENCHMARKS.md): its hash and its index field. The
// session's rotation time (R) and limiter state (Q) are kept as small
// deltas, not times, for the same reason: a listpack stores a small
// integer in fewer bytes, which keeps the session hash in a 128-byte
// allocation.
//
// # Sessions need their user
//
// A session is indexed in its user's record, so CreateSession refuses
// (ErrNotFound) a session of a user id with no user record, and stores
// nothing. The index field s:<rand> holds the session's expire-at, which
// only nominates it for pruning: a field whose session hash is gone is
// dropped when the user's sessions are enumerated (CreateSession,
// ListSessions, RevokeUserSessions) or the session revoked, and the session
// hash's own TTL decides, so clock skew never drops a live session. Until
// then a user who never returns keeps the fields of its expired sessions
// (32 bytes each). User reads return only the user's own fields, and
// UpdateUser never drops index fields. Disabling a user, a password or role
// change and "log out everywhere" revoke the user's sessions through
// RevokeUserSessions (the callers do: see users and server), which reads
// the index.
//
// A user indexed by the layout before (a zset {<uid>}:ss) keeps working:
// the scripts that enumerate its sessions or remove one from the index fold
// the zset's members into fields and delete it, in the same script (one
// EXISTS when there is none). A password hash written whole in p by the
// layout before reads back the same, and is chunked by its next update.
//
// # Client settings
//
// Build the client with RedisOptions (or set the same two fields) and
// NewClient: every call is then bounded by its context
// (ContextTimeoutEnabled) and go-redis does not resend a command whose
// reply was lost (MaxRetries -1, and on a cluster NewClient's hooks, which
// also make the client find a failed-over master at once). The
// scripts are written to survive such a resend anyway: a rotation retried
// after it advanced lands in the grace window and returns the same session,
// user and session creation recognise their own earlier write, an update
// recognises its own result and the keyring swap accepts a keyring that
// already holds the new value. A retried RevokeSession may report
// ErrNotFound for a session it did revoke.
//
// Every error from Redis or the network other than redis.Nil is returned
// wrapping ErrUnavailable (and the original error), so callers fail closed.
//
// # Replicas
//
// With WithReplicaWait, every write that revokes (the revocation events,
// the sessions' deletion, a user's update) is followed by WAIT on the same
// connection: Redis's WAIT counts the replicas that have every write of
// the connection it runs on, so a WAIT on another pooled connection would
// answer at once and prove nothing. The write goes to the master that owns
// its key (on a cluster, and on Sentinel's failover cluster client, the
// node client ClusterClient.MasterForKey names), on one connection taken
// from that node's pool for the write and its WAIT. A master that no
// longer owns the slot answers MOVED: the call then fails (ErrUnavailable)
// after asking for a new slot map, rather than resending the write on its
// own. The events are appended, and confirmed, before the sessions are
// deleted: when no replica confirms the event the session is still there,
// so a retried Logout finds it and completes.
type Redis struct {
	c redis.UniversalClient
	// feed is the client of WaitRevocations (WithFeedClient; default c).
	feed redis.UniversalClient
	o    options
}

var _ Store = (*Redis)(nil)

//go:embed lua/*.lua
var luaFiles embed.FS

// loadScript is lua/<name>.lua, after the libraries lua/<lib>.lib.lua.
func loadScript(name string, libs ...string) *redis.Script {
	var src []byte
	for _, f := range append(libs, name) {
		if f != name {
			f += ".lib"
		}
		b, err := luaFiles.ReadFile("lua/" + f + ".lua")
		if err != nil {
			panic(err)
		}
		src = append(src, b...)
	}
	return redis.NewScript(string(src))
}

// Script.Run sends EVALSHA and falls back to EVAL once when the server does
// not have the script (first use, restart, failover).
var (
	scriptCreateUser        = loadScript("create_user")
	scriptUpdateUser        = loadScript("update_user")
	scriptCreateSession     = loadScript("create_session", "index")
	scriptRotate            = loadScript("rotate")
	scriptRevokeSession     = loadScript("revoke_session", "index")
	scriptRevokeUser        = loadScript("revoke_user", "index")
	scriptListSessions      = loadScript("list_sessions", "index")
	scriptAppendRevocations = loadScript("append_revocations")
	scriptRevocations       = loadScript("revocations")
	scriptSwapKeyring       = loadScript("swap_keyring")
	scriptAdoptSession      = loadScript("adopt_session")
)

const (
	// maxGeneration is the largest generation Lua's doubles hold exactly.
	maxGeneration = 1 << 53
	// maxPasswordChunks is how many 64-byte chunks a password hash of
	// MaxPasswordHash bytes takes (lua/create_user.lua).
	maxPasswordChunks = MaxPasswordHash / 64
	// batch bounds the keys and arguments of one script or pipeline.
	batch = 500
	// updateAttempts bounds UpdateUser's compare-and-set loop.
	updateAttempts = 50
)

// NewRedis returns a Store on client. It honours WithPrefix, WithIdleTTL,
// WithRevocationRetention, WithClock and WithReplicaWait. The client stays
// the caller's: Close does not close it.
func NewRedis(client redis.UniversalClient, opts ...Option) *Redis {
	if problem := clientProblem(client); problem != "" {
		slog.Warn("tokenstore: redis client " + problem + "; build it with tokenstore.RedisOptions")
	}
	o := newOptions(opts)
	feed := o.feed
	if feed == nil {
		feed = client
	}
	return &Redis{c: client, feed: feed, o: o}
}

// clientProblem names a setting of client that works against the Store's
// guarantees, for the clients whose options can be read.
func clientProblem(client redis.UniversalClient) string {
	var ctxTimeouts bool
	var retries int
	switch c := client.(type) {
	case *redis.Client:
		ctxTimeouts, retries = c.Options().ContextTimeoutEnabled, c.Options().MaxRetries
	case *redis.ClusterClient:
		ctxTimeouts, retries = c.Options().ContextTimeoutEnabled, c.Options().MaxRetries
	default:
		return ""
	}
	switch {
	case !ctxTimeouts:
		return "ignores context deadlines (ContextTimeoutEnabled is false)"
	case retries > 0: // normalised: -1 became 0
		return "resends commands whose reply was lost (MaxRetries is not -1)"
	}
	return ""
}

// RedisOptions returns a copy of o set up for a Store client: calls bounded
// by their context and no automatic resend of commands (see Redis).
func RedisOptions(o redis.UniversalOptions) *redis.UniversalOptions {
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1
	return &o
}

// notReplicatedError: fewer replicas than asked confirmed a write.
type notReplicatedError struct {
	acked, want int
	timeout     time.Duration
}

func (e *notReplicatedError) Error() string {
	return fmt.Sprintf("write confirmed by %d of the %d replica(s) asked within %v", e.acked, e.want, e.timeout)
}

func (e *notReplicatedError) Unwrap() error { return ErrNotReplicated }

// runConfirmed runs script like Script.Run and, with WithReplicaWait,
// returns only once the replicas asked have the write (see Redis,
// Replicas). The Cmd holds the script's reply whenever the script ran,
// also when the error is a *notReplicatedError: the write is then done on
// the primary, only not confirmed.
func (r *Redis) runConfirmed(ctx context.Context, script *redis.Script, keys []string, args ...any) (*redis.Cmd, error) {
	if r.o.waitReplicas == 0 {
		cmd := script.Run(ctx, r.c, keys, args...)
		return cmd, cmd.Err()
	}
	node, err := r.masterFor(ctx, keys[0])
	if err != nil {
		return nil, err
	}
	conn := node.Conn()
	defer conn.Close()
	cmd := script.Run(ctx, conn, keys, args...)
	if err := cmd.Err(); err != nil {
		r.replyFromWrongNode(ctx, err)
		return cmd, err
	}
	acked, err := conn.Wait(ctx, r.o.waitReplicas, r.o.waitTimeout).Result()
	if err != nil {
		return cmd, err
	}
	if acked < int64(r.o.waitReplicas) {
		return cmd, &notReplicatedError{acked: int(acked), want: r.o.waitReplicas, timeout: r.o.waitTimeout}
	}
	return cmd, nil
}

// masterFor is the client of the one node a write of key goes to.
func (r *Redis) masterFor(ctx context.Context, key string) (*redis.Client, error) {
	switch c := r.c.(type) {
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, key)
	case *redis.Client:
		return c, nil
	}
	return nil, fmt.Errorf("tokenstore: waiting for replicas needs a *redis.Client or *redis.ClusterClient (NewClient builds one), not %T", r.c)
}

// replyFromWrongNode asks a cluster client for a new slot map after a node
// answered a write with an error reply (MOVED, ASK, CLUSTERDOWN, READONLY:
// the slot moved or the node is no master now). Errors without a reply
// already do so through NewClient's hooks; an error of the script itself
// costs one coalesced CLUSTER SLOTS, which is harmless.
func (r *Redis) replyFromWrongNode(ctx context.Context, err error) {
	var reply redis.Error
	if cc, ok := r.c.(*redis.ClusterClient); ok && errors.As(err, &reply) {
		cc.ReloadState(ctx)
	}
}

func unavailable(op string, err error) error {
	return fmt.Errorf("tokenstore: redis %s: %w: %w", op, ErrUnavailable, err)
}

// Keys. The braces of a hash tag wrap just the id.

func (r *Redis) userKey(uid string) string       { return r.o.prefix + "{" + uid + "}:u" }
func (r *Redis) sessionPrefix(uid string) string { return r.o.prefix + "{" + uid + "}:s:" }
func (r *Redis) legacySetKey(uid string) string  { return r.o.prefix + "{" + uid + "}:ss" }
func (r *Redis) nameKey(username string) string  { return r.o.prefix + "n:{" + username + "}" }
func (r *Redis) usersKey() string                { return r.o.prefix + "users" }
func (r *Redis) keyringKey() string              { return r.o.prefix + "keyring" }
func (r *Redis) revocationKeys() []string {
	return []string{r.o.prefix + "{revocations}", r.o.prefix + "{revocations}:meta"}
}
func (r *Redis) sessionKey(uid, rnd string) string { return r.sessionPrefix(uid) + rnd }

// sessionRef splits a session id "<uid>.<rand>" into the user id and the
// <rand> of its key and index field.
func sessionRef(id string) (uid, rnd string, ok bool) {
	uid, ok = SessionUserID(id)
	if !ok {
		return "", "", false
	}
	return uid, id[len(uid)+1:], true
}

// Users.

func (r *Redis) CreateUser(ctx context.Context, u User) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if err := checkNewUser(u); err != nil {
		return err
	}
	res, err := scriptCreateUser.Run(ctx, r.c, []string{r.userKey(u.ID)},
		u.Username, u.PasswordHash, encodeRoles(u.Roles), flag(u.Disabled), ms(u.CreatedAt)).Text()
	if err != nil {
		return unavailable("create user", err)
	}
	if res == "exists" {
		return fmt.Errorf("tokenstore: create user: id %w", ErrAlreadyExists)
	}
	// List the name before claiming it: a crash in between leaves a name
	// that ListUsers skips, never a user it cannot list.
	if err := r.c.ZAdd(ctx, r.usersKey(), redis.Z{Member: u.Username}).Err(); err != nil {
		return unavailable("create user", err)
	}
	claimed, err := r.c.SetNX(ctx, r.nameKey(u.Username), u.ID, 0).Result()
	if err != nil {
		return unavailable("create user", err)
	}
	if !claimed {
		owner, err := r.c.Get(ctx, r.nameKey(u.Username)).Result()
		if err == nil && owner == u.ID {
			return nil // our own claim, retried
		}
		// The hash is unreachable without the name; remove it (best effort).
		r.c.Del(ctx, r.userKey(u.ID))
		return fmt.Errorf("tokenstore: create user: %w", ErrAlreadyExists)
	}
	return nil
}

func (r *Redis) UserByName(ctx context.Context, username string) (User, error) {
	if err := ctxErr(ctx); err != nil {
		return User{}, err
	}
	uid, err := r.c.Get(ctx, r.nameKey(username)).Result()
	if errors.Is(err, redis.Nil) {
		return User{}, fmt.Errorf("tokenstore: user: %w", ErrNotFound)
	}
	if err != nil {
		return User{}, unavailable("user", err)
	}
	return r.UserByID(ctx, uid)
}

func (r *Redis) UserByID(ctx context.Context, id string) (User, error) {
	u, _, err := r.user(ctx, id)
	return u, err
}

func (r *Redis) user(ctx context.Context, id string) (User, string, error) {
	if err := ctxErr(ctx); err != nil {
		return User{}, "", err
	}
	if !ValidUserID(id) {
		return User{}, "", fmt.Errorf("tokenstore: user: %w", ErrNotFound)
	}
	vals, err := r.c.HMGet(ctx, r.userKey(id), userFields...).Result()
	if err != nil {
		return User{}, "", unavailable("user", err)
	}
	return decodeUser(id, vals)
}

func (r *Redis) ListUsers(ctx context.Context) ([]User, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	names, err := r.c.ZRange(ctx, r.usersKey(), 0, -1).Result()
	if err != nil {
		return nil, unavailable("list users", err)
	}
	users := make([]User, 0, len(names))
	for chunk := range slices.Chunk(names, batch) {
		ids := make([]*redis.StringCmd, len(chunk))
		// Pipelined reports only the first failed command, and a missing
		// name (redis.Nil) is no failure: check every command instead.
		r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, name := range chunk {
				ids[i] = p.Get(ctx, r.nameKey(name))
			}
			return nil
		})
		var uids []string
		for _, cmd := range ids {
			uid, err := cmd.Result()
			switch {
			case errors.Is(err, redis.Nil):
				// listed but never claimed (see CreateUser)
			case err != nil:
				return nil, unavailable("list users", err)
			case ValidUserID(uid):
				uids = append(uids, uid)
			}
		}
		hashes := make([]*redis.SliceCmd, len(uids))
		if _, err := r.c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, uid := range uids {
				hashes[i] = p.HMGet(ctx, r.userKey(uid), userFields...)
			}
			return nil
		}); err != nil {
			return nil, unavailable("list users", err)
		}
		for i, cmd := range hashes {
			u, _, err := decodeUser(uids[i], cmd.Val())
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			users = append(users, u)
		}
	}
	return users, nil // ZRANGE of equal scores is username order
}

// UpdateUser reads the user with its version, applies fn and stores the
// result with update_user.lua only if the version is unchanged; otherwise it
// reads again and reapplies fn.
func (r *Redis) UpdateUser(ctx context.Context, id string, fn func(User) (User, error)) (User, error) {
	for range updateAttempts {
		cur, version, err := r.user(ctx, id)
		if err != nil {
			return User{}, err
		}
		next, err := fn(cloneUser(cur))
		if err != nil {
			return User{}, err
		}
		if err := checkUpdate(cur, next); err != nil {
			return User{}, err
		}
		cmd, err := r.runConfirmed(ctx, scriptUpdateUser, []string{r.userKey(id)},
			version, next.PasswordHash, encodeRoles(next.Roles), flag(next.Disabled), next.Epoch)
		if err != nil {
			return User{}, unavailable("update user", err)
		}
		res, err := cmd.Text()
		if err != nil {
			return User{}, unavailable("update user", err)
		}
		switch res {
		case "ok":
			next.CreatedAt = cur.CreatedAt
			return cloneUser(next), nil
		case "notfound":
			return User{}, fmt.Errorf("tokenstore: update user: %w", ErrNotFound)
		}
	}
	return User{}, fmt.Errorf("tokenstore: update user: %w", ErrConflict)
}

// Sessions.

func (r *Redis) CreateSession(ctx context.Context, s Session) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if err := checkNewSession(s); err != nil {
		return err
	}
	s = normSession(s)
	uid, rnd, _ := sessionRef(s.ID)
	res, err := scriptCreateSession.Run(ctx, r.c,
		[]string{r.sessionKey(uid, rnd), r.userKey(uid), r.legacySetKey(uid)},
		rnd, s.Generation, s.Nonce, ms(s.CreatedAt), ms(s.RotatedAt), ms(s.LastUsedAt),
		ms(s.ExpiresAt), ms(s.IdleExpiresAt(r.o.idleTTL)), ms(r.o.now()), s.Epoch,
		s.UserAgent, s.ClientAddr).Text()
	if err != nil {
		return unavailable("create session", err)
	}
	switch res {
	case "exists":
		return fmt.Errorf("tokenstore: create session: id %w", ErrAlreadyExists)
	case "stale":
		return fmt.Errorf("tokenstore: create session: %w", ErrStale)
	case "nouser":
		return fmt.Errorf("tokenstore: create session: user %w", ErrNotFound)
	}
	return nil
}

// Session is the session check of Verify: one HGETALL.
func (r *Redis) Session(ctx context.Context, id string) (Session, error) {
	if err := ctxErr(ctx); err != nil {
		return Session{}, err
	}
	uid, rnd, ok := sessionRef(id)
	if !ok {
		return Session{}, fmt.Errorf("tokenstore: session: %w", ErrNotFound)
	}
	h, err := r.c.HGetAll(ctx, r.sessionKey(uid, rnd)).Result()
	if err != nil {
		return Session{}, unavailable("session", err)
	}
	if len(h) == 0 {
		return Session{}, fmt.Errorf("tokenstore: session: %w", ErrNotFound)
	}
	s, err := decodeSession(id, uid, h["g"], h["n"], h["c"], sessionRotated(h), h["l"], h["e"], h["k"])
	if err != nil {
		return Session{}, err
	}
	s.UserAgent, s.ClientAddr = h["ua"]+h["ub"], h["ip"]
	if !r.o.now().Before(s.ExpiresAt) {
		return Session{}, fmt.Errorf("tokenstore: session: %w", ErrNotFound)
	}
	return s, nil
}

// Rotate is one EVALSHA of rotate.lua on the happy and the grace path. A
// reused generation costs two more round trips: the revocation event is
// appended before the session is deleted, never after.
func (r *Redis) Rotate(ctx context.Context, req RotateRequest) (Session, User, error) {
	if err := ctxErr(ctx); err != nil {
		return Session{}, User{}, err
	}
	uid, rnd, ok := sessionRef(req.SessionID)
	if !ok || req.Generation > maxGeneration {
		return Session{}, User{}, fmt.Errorf("tokenstore: rotate: %w", ErrNotFound)
	}
	idle := req.IdleTTL
	if idle <= 0 {
		idle = r.o.idleTTL
	}
	now := ms(req.Now)
	res, err := scriptRotate.Run(ctx, r.c,
		[]string{r.sessionKey(uid, rnd), r.userKey(uid)},
		rnd, req.Generation, req.Nonce, now, max(0, req.Grace.Milliseconds()),
		now+idle.Milliseconds(),
		max(0, req.Limit.Every.Milliseconds()), max(1, req.Limit.Burst), req.UserAgent, req.ClientAddr).StringSlice()
	if err != nil {
		return Session{}, User{}, unavailable("rotate", err)
	}
	if len(res) == 0 {
		return Session{}, User{}, errors.New("tokenstore: rotate: malformed script reply")
	}
	switch res[0] {
	case "ok", "grace":
		if len(res) != 14 {
			return Session{}, User{}, errors.New("tokenstore: rotate: malformed script reply")
		}
		s, err := decodeSession(req.SessionID, uid, res[1], res[2], res[3], res[4], res[5], res[6], res[11])
		if err != nil {
			return Session{}, User{}, err
		}
		s.UserAgent, s.ClientAddr = res[12], res[13]
		// The script does not read the password hash (Store.Rotate).
		u, err := decodeUserFields(uid, res[7], "", res[8], res[9], res[10], res[11])
		if err != nil {
			return Session{}, User{}, err
		}
		return s, u, nil
	case "reused":
		if _, err := r.revokeSession(ctx, "rotate", truncMS(req.Now), uid, rnd); err != nil {
			return Session{}, User{}, err
		}
		return Session{}, User{}, fmt.Errorf("tokenstore: rotate: %w", ErrReused)
	case "limited":
		wait := time.Second
		if len(res) == 2 {
			if n, err := strconv.ParseInt(res[1], 10, 64); err == nil {
				wait = time.Duration(n) * time.Millisecond
			}
		}
		return Session{}, User{}, fmt.Errorf("tokenstore: rotate: %w", &TooFastError{After: wait})
	case "stale":
		// Born before a credential change that ended its user's sessions
		// and missed by it: end it now, with an event, so its access
		// tokens are refused too.
		if _, err := r.revokeSession(ctx, "rotate", truncMS(req.Now), uid, rnd); err != nil {
			return Session{}, User{}, err
		}
	}
	return Session{}, User{}, fmt.Errorf("tokenstore: rotate: %w", ErrNotFound)
}

func (r *Redis) ListSessions(ctx context.Context, userID string) ([]Session, error) {
	ss, err := r.listSessions(ctx, userID)
	if err != nil {
		return nil, err
	}
	now := r.o.now()
	live := ss[:0]
	for _, s := range ss {
		if now.Before(s.ExpiresAt) {
			live = append(live, s)
		}
	}
	sortSessions(live)
	return live, nil
}

// listSessions returns every session whose hash exists, expired by its
// absolute lifetime or not.
func (r *Redis) listSessions(ctx context.Context, uid string) ([]Session, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	if !ValidUserID(uid) {
		return nil, nil
	}
	res, err := scriptListSessions.Run(ctx, r.c, []string{r.userKey(uid), r.legacySetKey(uid)}, r.sessionPrefix(uid)).Slice()
	if err != nil {
		return nil, unavailable("list sessions", err)
	}
	out := make([]Session, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		rnd, _ := res[i].(string)
		kv, _ := res[i+1].([]any)
		h := make(map[string]string, len(kv)/2)
		for j := 0; j+1 < len(kv); j += 2 {
			k, _ := kv[j].(string)
			v, _ := kv[j+1].(string)
			h[k] = v
		}
		s, err := decodeSession(uid+"."+rnd, uid, h["g"], h["n"], h["c"], sessionRotated(h), h["l"], h["e"], h["k"])
		if err != nil {
			return nil, err
		}
		s.UserAgent, s.ClientAddr = h["ua"]+h["ub"], h["ip"]
		out = append(out, s)
	}
	sortSessions(out)
	return out, nil
}

func (r *Redis) RevokeSession(ctx context.Context, id string, now time.Time) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	uid, rnd, ok := sessionRef(id)
	if !ok {
		return fmt.Errorf("tokenstore: revoke session: %w", ErrNotFound)
	}
	// Check first so an unknown id adds no event. A session that ends
	// between this check and the delete gets an event it did not need:
	// harmless, verifiers ignore events of dead sessions.
	n, err := r.c.Exists(ctx, r.sessionKey(uid, rnd)).Result()
	if err != nil {
		return unavailable("revoke session", err)
	}
	if n == 0 {
		return fmt.Errorf("tokenstore: revoke session: %w", ErrNotFound)
	}
	existed, err := r.revokeSession(ctx, "revoke session", truncMS(now), uid, rnd)
	if err != nil {
		return err
	}
	if !existed {
		return fmt.Errorf("tokenstore: revoke session: %w", ErrNotFound)
	}
	return nil
}

func (r *Redis) RevokeUserSessions(ctx context.Context, userID string, now time.Time, except ...string) ([]string, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	ss, err := r.listSessions(ctx, userID)
	if err != nil || len(ss) == 0 {
		return nil, err
	}
	rnds := make([]string, 0, len(ss))
	for _, s := range ss {
		if slices.Contains(except, s.ID) {
			continue
		}
		_, rnd, _ := sessionRef(s.ID)
		rnds = append(rnds, rnd)
	}
	if len(rnds) == 0 {
		return nil, nil
	}
	return r.revokeUser(ctx, truncMS(now), userID, rnds)
}

func (r *Redis) AdoptSession(ctx context.Context, id string, epoch uint64) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	uid, rnd, ok := sessionRef(id)
	if !ok {
		return fmt.Errorf("tokenstore: adopt session: %w", ErrNotFound)
	}
	res, err := scriptAdoptSession.Run(ctx, r.c, []string{r.sessionKey(uid, rnd), r.userKey(uid)}, epoch).Text()
	if err != nil {
		return unavailable("adopt session", err)
	}
	switch res {
	case "notfound":
		return fmt.Errorf("tokenstore: adopt session: %w", ErrNotFound)
	case "stale":
		return fmt.Errorf("tokenstore: adopt session: %w", ErrStale)
	}
	return nil
}

// Revocation order: the revocation event is appended first and the session
// deleted after, never the other way round. The stream is in another hash
// slot, so the two cannot be one script; a crash between them must leave an
// event without a revocation (harmless: verifiers ignore events of sessions
// they do not know) rather than a revocation no verifier hears of.

// revokeSession revokes one session and reports whether it still existed.
func (r *Redis) revokeSession(ctx context.Context, op string, now time.Time, uid, rnd string) (bool, error) {
	if err := r.appendRevocations(ctx, now, []string{uid + "." + rnd}); err != nil {
		return false, unavailable(op, err)
	}
	cmd, err := r.runConfirmed(ctx, scriptRevokeSession, []string{r.sessionKey(uid, rnd), r.userKey(uid), r.legacySetKey(uid)}, rnd)
	if err != nil {
		return false, unavailable(op, err)
	}
	n, err := cmd.Int()
	if err != nil {
		return false, unavailable(op, err)
	}
	return n == 1, nil
}

// revokeUser revokes the given sessions of a user, batch by batch, and
// returns the ids of those that still existed.
func (r *Redis) revokeUser(ctx context.Context, now time.Time, uid string, rnds []string) ([]string, error) {
	const op = "revoke user sessions"
	var revoked []string
	for chunk := range slices.Chunk(rnds, batch) {
		sids := make([]string, len(chunk))
		keys := make([]string, 0, len(chunk)+2)
		args := make([]any, len(chunk))
		keys = append(keys, r.userKey(uid), r.legacySetKey(uid))
		for i, rnd := range chunk {
			sids[i] = uid + "." + rnd
			keys = append(keys, r.sessionKey(uid, rnd))
			args[i] = rnd
		}
		if err := r.appendRevocations(ctx, now, sids); err != nil {
			return revoked, unavailable(op, err)
		}
		cmd, err := r.runConfirmed(ctx, scriptRevokeUser, keys, args...)
		if cmd != nil && cmd.Err() == nil {
			// Deleted on the primary, even when not confirmed (err is
			// then ErrNotReplicated): the caller treats them as revoked.
			gone, rerr := cmd.StringSlice()
			if rerr != nil && err == nil {
				err = rerr
			}
			for _, rnd := range gone {
				revoked = append(revoked, uid+"."+rnd)
			}
		}
		if err != nil {
			return revoked, unavailable(op, err)
		}
	}
	return revoked, nil
}

func (r *Redis) appendRevocations(ctx context.Context, now time.Time, sids []string) error {
	at := ms(now)
	args := make([]any, 0, len(sids)+3)
	args = append(args, at, at+r.o.retention.Milliseconds(), max(0, at-r.o.retention.Milliseconds()))
	for _, sid := range sids {
		args = append(args, sid)
	}
	_, err := r.runConfirmed(ctx, scriptAppendRevocations, r.revocationKeys(), args...)
	return err
}

// Revocations reads the stream with revocations.lua (see cursor.go for the
// cursor rules).
func (r *Redis) Revocations(ctx context.Context, cursor string, limit int) ([]Revocation, string, bool, error) {
	return r.revocations(ctx, r.c, cursor, limit)
}

func (r *Redis) revocations(ctx context.Context, client redis.UniversalClient, cursor string, limit int) ([]Revocation, string, bool, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, "", false, err
	}
	arg := cursor
	if cursor != "" && cursor != CursorOrigin {
		c, ok := parseStreamID(cursor)
		if !ok {
			_, latest, _, err := r.revocations(ctx, client, "", 0)
			return nil, latest, false, err
		}
		arg = c.String()
	}
	res, err := scriptRevocations.Run(ctx, client, r.revocationKeys(), arg, clampLimit(limit)).Slice()
	if err != nil {
		return nil, "", false, unavailable("revocations", err)
	}
	if len(res) != 3 {
		return nil, "", false, errors.New("tokenstore: revocations: malformed script reply")
	}
	ok, _ := res[0].(int64)
	next, _ := res[1].(string)
	entries, _ := res[2].([]any)
	var events []Revocation
	for _, e := range entries {
		ev, err := decodeRevocation(e)
		if err != nil {
			return nil, "", false, err
		}
		events = append(events, ev)
	}
	return events, next, ok == 1, nil
}

// WaitRevocations reads with revocations.lua first, which checks the
// cursor against the retained history; when that finds nothing new it
// blocks in XREAD on the stream for up to wait. An event appended meanwhile
// wakes it at once (Redis serves blocked readers when the appending script
// ends). Events XREAD returns follow the cursor directly, so the history
// check made just before still holds for them.
func (r *Redis) WaitRevocations(ctx context.Context, cursor string, limit int, wait time.Duration) ([]Revocation, string, bool, error) {
	events, next, ok, err := r.revocations(ctx, r.feed, cursor, limit)
	if err != nil || !ok || len(events) > 0 || cursor == "" || wait <= 0 {
		return events, next, ok, err
	}
	wait = max(wait, time.Millisecond) // XREAD BLOCK 0 would wait forever
	streams, err := r.feed.XRead(ctx, &redis.XReadArgs{
		Streams: []string{r.revocationKeys()[0], next},
		Count:   int64(clampLimit(limit)),
		Block:   wait,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, next, true, nil // nothing appended in time
	}
	if err != nil {
		return nil, "", false, unavailable("wait revocations", err)
	}
	for _, st := range streams {
		for _, m := range st.Messages {
			kv := make([]any, 0, 2*len(m.Values))
			for k, v := range m.Values {
				kv = append(kv, k, v)
			}
			ev, err := decodeRevocation([]any{m.ID, kv})
			if err != nil {
				return nil, "", false, err
			}
			events = append(events, ev)
			next = ev.Cursor
		}
	}
	return events, next, true, nil
}

func decodeRevocation(e any) (Revocation, error) {
	bad := errors.New("tokenstore: revocations: malformed stream entry")
	pair, _ := e.([]any)
	if len(pair) != 2 {
		return Revocation{}, bad
	}
	id, _ := pair[0].(string)
	kv, _ := pair[1].([]any)
	var ev Revocation
	ev.Cursor = id
	for j := 0; j+1 < len(kv); j += 2 {
		k, _ := kv[j].(string)
		v, _ := kv[j+1].(string)
		switch k {
		case "s":
			ev.SessionID = v
			ev.UserID, _ = SessionUserID(v)
		case "t", "f":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return Revocation{}, bad
			}
			if k == "t" {
				ev.RevokedAt = fromMS(n)
			} else {
				ev.ForgetAfter = fromMS(n)
			}
		}
	}
	if ev.SessionID == "" || ev.UserID == "" {
		return Revocation{}, bad
	}
	return ev, nil
}

// Keyring.

func (r *Redis) Keyring(ctx context.Context) ([]byte, error) {
	if err := ctxErr(ctx); err != nil {
		return nil, err
	}
	b, err := r.c.Get(ctx, r.keyringKey()).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, unavailable("keyring", err)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// KeyringKey is the Redis key that holds the keyring: the name a sealed
// keyring is bound to (token.Sealing), so a copy under another key does not
// open.
func (r *Redis) KeyringKey() string { return r.keyringKey() }

func (r *Redis) SwapKeyring(ctx context.Context, old, new []byte) (bool, error) {
	if err := ctxErr(ctx); err != nil {
		return false, err
	}
	res, err := scriptSwapKeyring.Run(ctx, r.c, []string{r.keyringKey()},
		flag(old != nil), bytesArg(old), flag(new != nil), bytesArg(new)).Text()
	if err != nil {
		return false, unavailable("swap keyring", err)
	}
	return res == "ok", nil
}

func (r *Redis) Ping(ctx context.Context) error {
	if err := ctxErr(ctx); err != nil {
		return err
	}
	if err := r.c.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	return nil
}

// Close does nothing: the client belongs to the caller, who closes it.
func (r *Redis) Close() error { return nil }

// Encoding.

func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func bytesArg(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func encodeRoles(roles []string) string {
	if len(roles) == 0 {
		return ""
	}
	b, _ := json.Marshal(roles)
	return string(b)
}

var errCorruptUser = errors.New("tokenstore: corrupt user record")

// userFields are the fields of a user record, as read with HMGET: never
// the session index fields s:<rand> the same hash holds. The password
// hash's chunks, p then pb, pc, ... (lua/create_user.lua), come last.
var userFields = func() []string {
	f := []string{"n", "r", "d", "c", "k", "v"}
	for i := range maxPasswordChunks {
		f = append(f, passwordChunk(i))
	}
	return f
}()

// passwordChunk is the field of the password hash's chunk i.
func passwordChunk(i int) string {
	if i == 0 {
		return "p"
	}
	return "p" + string(rune('a'+i))
}

// decodeUser builds a User from an HMGET of userFields, and returns its
// version; ErrNotFound if there is no user record (no field c).
func decodeUser(id string, vals []any) (User, string, error) {
	str := func(i int) (string, bool) {
		if i >= len(vals) {
			return "", false
		}
		v, ok := vals[i].(string)
		return v, ok
	}
	if _, ok := str(3); !ok {
		return User{}, "", fmt.Errorf("tokenstore: user: %w", ErrNotFound)
	}
	var f [6]string
	for i := range f {
		f[i], _ = str(i)
	}
	var p strings.Builder
	for i := len(f); i < len(vals); i++ {
		chunk, ok := str(i)
		if !ok {
			break
		}
		p.WriteString(chunk)
	}
	u, err := decodeUserFields(id, f[0], p.String(), f[1], f[2], f[3], f[4])
	return u, f[5], err
}

// decodeUserFields builds a User from the user hash's fields n (username),
// p (password hash), r (roles, JSON), d (disabled), c (created) and k
// (credential epoch, "" for 0).
func decodeUserFields(id, n, p, r, d, c, k string) (User, error) {
	created, err := strconv.ParseInt(c, 10, 64)
	if err != nil {
		return User{}, errCorruptUser
	}
	epoch, err := parseEpoch(k)
	if err != nil {
		return User{}, errCorruptUser
	}
	u := User{
		ID:           id,
		Username:     n,
		PasswordHash: p,
		Disabled:     d == "1",
		CreatedAt:    fromMS(created),
		Epoch:        epoch,
	}
	if r != "" {
		if err := json.Unmarshal([]byte(r), &u.Roles); err != nil {
			return User{}, errCorruptUser
		}
	}
	return u, nil
}

// parseEpoch reads a credential epoch field: absent ("") is 0.
func parseEpoch(k string) (uint64, error) {
	if k == "" {
		return 0, nil
	}
	return strconv.ParseUint(k, 10, 64)
}

// sessionRotated is the rotation time (unix ms) of session hash h: field
// R, ms after c, or in a hash of the layout before r, absolute. "" (and
// decodeSession's corrupt-record error) when neither reads.
func sessionRotated(h map[string]string) string {
	d, ok := h["R"]
	if !ok {
		return h["r"]
	}
	c, err := strconv.ParseInt(h["c"], 10, 64)
	if err != nil {
		return ""
	}
	x, err := strconv.ParseInt(d, 10, 64)
	if err != nil {
		return ""
	}
	return strconv.FormatInt(c+x, 10)
}

// decodeSession builds a Session from the hash fields, r the rotation
// time (sessionRotated); l is "" when it equals r, k "" when the epoch is
// 0.
func decodeSession(id, uid, g, n, c, r, l, e, k string) (Session, error) {
	if l == "" {
		l = r
	}
	epoch, err := parseEpoch(k)
	if err != nil {
		return Session{}, errors.New("tokenstore: corrupt session record")
	}
	var nums [5]int64
	for i, v := range []string{g, c, r, l, e} {
		x, err := strconv.ParseInt(v, 10, 64)
		if err != nil || x < 0 && i == 0 {
			return Session{}, errors.New("tokenstore: corrupt session record")
		}
		nums[i] = x
	}
	return Session{
		ID:         id,
		UserID:     uid,
		Generation: uint64(nums[0]),
		Nonce:      n,
		CreatedAt:  fromMS(nums[1]),
		RotatedAt:  fromMS(nums[2]),
		LastUsedAt: fromMS(nums[3]),
		ExpiresAt:  fromMS(nums[4]),
		Epoch:      epoch,
	}, nil
}
