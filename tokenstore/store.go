// Package tokenstore keeps what identity must remember between requests:
// users, refresh-token sessions, signing keys and revocation events.
//
// Store is the one seam with two implementations, Redis (production, also
// Redis Cluster) and Memory (the embedded single-instance default). Both pass
// the conformance suite in tokenstore/storetest. The package knows nothing of
// JWTs, HMACs or gRPC: it stores sessions by id and generation and decides
// rotation, grace and reuse atomically, so callers never read-modify-write.
package tokenstore

import (
	"context"
	"errors"
	"time"
)

// Domain errors. Implementations wrap them with %w; callers test with errors.Is.
var (
	// ErrNotFound: no such user or session (never created, expired or revoked).
	ErrNotFound = errors.New("tokenstore: not found")
	// ErrAlreadyExists: a user with that username exists.
	ErrAlreadyExists = errors.New("tokenstore: already exists")
	// ErrReused: a refresh generation older than the grace window allows was
	// presented; the session has been revoked as a result.
	ErrReused = errors.New("tokenstore: refresh token reused")
	// ErrConflict: a compare-and-set lost the race too often (UpdateUser).
	ErrConflict = errors.New("tokenstore: conflict")
	// ErrStale: a session was to be created under a credential epoch the
	// user has left (its password, roles or status changed, or it logged
	// out everywhere, while the login was in flight).
	ErrStale = errors.New("tokenstore: credentials changed")
	// ErrUnavailable: the backing store could not be reached or timed out.
	// Every method wraps transport failures with it so callers fail closed.
	ErrUnavailable = errors.New("tokenstore: store unavailable")
	// ErrNotReplicated: a write reached the primary but fewer replicas than
	// asked (WithReplicaWait) confirmed it in time, so a failover could
	// still lose it. It always comes wrapped together with ErrUnavailable
	// (callers fail closed and the client retries); the write may or may
	// not have happened on the primary, and repeating it is harmless.
	ErrNotReplicated = errors.New("tokenstore: write not confirmed by a replica")
)

// User is an account. Username is immutable and already NFC-normalised by
// the caller; PasswordHash is a PHC string the store never interprets, of
// at most MaxPasswordHash bytes.
type User struct {
	ID           string
	Username     string
	PasswordHash string
	Roles        []string
	Disabled     bool
	CreatedAt    time.Time
	// Epoch counts the changes that must end every session made before
	// them: a password change, a role change, disabling, "log out
	// everywhere". It only grows (UpdateUser refuses to lower it).
	Epoch uint64
}

// MaxPasswordHash bounds User.PasswordHash: CreateUser and UpdateUser
// refuse a longer one (an argon2id PHC string is ~100 bytes).
const MaxPasswordHash = 1024

// Session is one login on one device. Generation counts refresh-token
// rotations; Nonce is per-session random input to the refresh-token HMAC
// (the store keeps it, never a token).
type Session struct {
	ID         string
	UserID     string
	Generation uint64
	Nonce      string
	CreatedAt  time.Time
	// RotatedAt is when Generation last advanced (CreatedAt before the first
	// rotation): the start of the grace window for the previous generation.
	RotatedAt time.Time
	// LastUsedAt is when the session was created or last refreshed.
	LastUsedAt time.Time
	// ExpiresAt is the absolute end of the session, whatever its use.
	ExpiresAt time.Time
	// Epoch is the user's credential epoch when the session was created;
	// a session whose user has moved past it is dead (CreateSession refuses
	// it, Rotate revokes it).
	Epoch uint64
	// UserAgent and ClientAddr describe the client at the session's last
	// use (login or refresh), for the user's own list of devices; the
	// caller bounds their size. Empty: not known.
	UserAgent  string
	ClientAddr string
}

// IdleExpiresAt is when the session ends unless refreshed before.
func (s Session) IdleExpiresAt(idle time.Duration) time.Time {
	t := s.LastUsedAt.Add(idle)
	if t.After(s.ExpiresAt) {
		return s.ExpiresAt
	}
	return t
}

// RotateRequest is a presented refresh token, already authenticated by its
// HMAC, and the rules to apply to it.
type RotateRequest struct {
	SessionID  string
	Generation uint64
	Nonce      string
	Now        time.Time
	// Grace is how long after a rotation the previous generation is still
	// answered with the current one (idempotent concurrent refresh).
	Grace time.Duration
	// IdleTTL is the idle lifetime; a successful rotation restarts it.
	IdleTTL time.Duration
	// Limit bounds how often the session may be used (rotations and
	// grace answers alike); the zero value is no limit.
	Limit UseLimit
	// UserAgent and ClientAddr, when not empty, replace the session's on a
	// use (rotation or grace answer).
	UserAgent  string
	ClientAddr string
}

// UseLimit is a GCRA bound on a session's refreshes: at most Burst at once,
// then one per Every.
type UseLimit struct {
	Every time.Duration
	Burst int
}

// ErrTooFast: the session was refreshed more often than its UseLimit
// allows; nothing changed. The error is a *TooFastError.
var ErrTooFast = errors.New("tokenstore: session refreshed too often")

// TooFastError says when the session may be refreshed again.
type TooFastError struct{ After time.Duration }

func (e *TooFastError) Error() string             { return ErrTooFast.Error() }
func (e *TooFastError) Unwrap() error             { return ErrTooFast }
func (e *TooFastError) RetryAfter() time.Duration { return e.After }

// Revocation is one session revocation event, as streamed to verifiers.
type Revocation struct {
	// Cursor orders events; opaque to callers, increasing within one store.
	Cursor    string
	SessionID string
	UserID    string
	RevokedAt time.Time
	// ForgetAfter is when no access token of the session can still be valid.
	ForgetAfter time.Time
}

// Store is the persistence seam. Every method honours ctx's deadline and
// returns an error wrapping ErrUnavailable when the backend fails.
type Store interface {
	// CreateUser stores a new user; ErrAlreadyExists if the username is taken.
	CreateUser(ctx context.Context, u User) error
	// UserByName and UserByID return ErrNotFound for unknown users.
	UserByName(ctx context.Context, username string) (User, error)
	UserByID(ctx context.Context, id string) (User, error)
	// ListUsers returns every user, ordered by username.
	ListUsers(ctx context.Context) ([]User, error)
	// UpdateUser applies fn to the stored user atomically and stores the
	// result (ID, Username and CreatedAt cannot change). fn may be called
	// more than once; an error from fn aborts the update and is returned.
	UpdateUser(ctx context.Context, id string, fn func(User) (User, error)) (User, error)

	// CreateSession stores a new session (Generation usually 0) of an
	// existing user: a session needs its user's record (the Redis store
	// indexes sessions in it), so for a user id with no user it stores
	// nothing and returns ErrNotFound. If the user's Epoch is not the
	// session's, it stores nothing and returns ErrStale, in the same atomic
	// step that reads the epoch.
	CreateSession(ctx context.Context, s Session) error
	// Session returns a live session; ErrNotFound once it has expired or
	// been revoked. It is the session check of Verify: one round trip.
	Session(ctx context.Context, id string) (Session, error)
	// Rotate applies the refresh rules atomically and returns the session
	// after them, with its user as read in the same atomic step (so a
	// refresh costs one round trip; the caller refuses disabled users),
	// without the user's PasswordHash (a refresh never needs it, and a
	// backend does not ship it over the network for nothing):
	//   - Generation == current: advance to current+1, RotatedAt = LastUsedAt = Now;
	//   - Generation == current-1 and Now-RotatedAt <= Grace: no change, the
	//     caller gets the current generation (same new token for everyone);
	//   - Generation < current otherwise: revoke the session, ErrReused;
	//   - unknown/expired session, wrong Nonce or Generation > current: ErrNotFound.
	//   - a session whose user no longer exists: ErrNotFound;
	//   - a session of an older Epoch than its user's: revoked (with a
	//     Revocation), ErrNotFound;
	//   - a current or grace-window use beyond r.Limit: nothing changes,
	//     *TooFastError (a reuse past the window is theft, and is never
	//     limited: the session is revoked whatever the rate).
	Rotate(ctx context.Context, r RotateRequest) (Session, User, error)
	// ListSessions returns the live sessions of a user, oldest first.
	ListSessions(ctx context.Context, userID string) ([]Session, error)
	// RevokeSession ends a session at once and records a Revocation;
	// ErrNotFound if it was not live.
	RevokeSession(ctx context.Context, id string, now time.Time) error
	// RevokeUserSessions ends every live session of a user but those in
	// except, records a Revocation for each, and returns their ids (none
	// for an unknown user).
	RevokeUserSessions(ctx context.Context, userID string, now time.Time, except ...string) ([]string, error)
	// AdoptSession moves a live session to its user's credential epoch,
	// provided that is epoch (atomically): the session a user changed its
	// password from lives on in the new epoch. ErrNotFound if the session
	// is not live, ErrStale if the user's epoch is not epoch.
	AdoptSession(ctx context.Context, id string, epoch uint64) error

	// Revocations returns events after cursor ("" = none: only the latest
	// cursor is returned), at most limit, oldest first, and the cursor to
	// resume from. ok is false when cursor is older than the retained
	// history (the caller must distrust what it cached).
	Revocations(ctx context.Context, cursor string, limit int) (events []Revocation, next string, ok bool, err error)
	// WaitRevocations is Revocations that, when no event follows cursor,
	// waits up to wait (bounded by ctx) for one to be appended, and returns
	// it as soon as it is. An empty answer with ok true means "none until
	// now". It is the one blocking read each identityd makes: one command
	// in flight, however many verifiers listen (XREAD BLOCK on Redis).
	WaitRevocations(ctx context.Context, cursor string, limit int, wait time.Duration) (events []Revocation, next string, ok bool, err error)

	// Keyring returns the serialized signing-key material (nil if none yet),
	// an opaque blob to the store: token.Manager seals it before it gets
	// here when a master key is configured.
	Keyring(ctx context.Context) ([]byte, error)
	// SwapKeyring replaces the keyring if it still equals old (nil = absent)
	// and reports whether it did (true too when it already equals new, so a
	// retry is not a conflict). Instances racing at first start all end up
	// with the same keys.
	SwapKeyring(ctx context.Context, old, new []byte) (swapped bool, err error)

	// Ping checks the backend is reachable (readiness).
	Ping(ctx context.Context) error
	Close() error
}
