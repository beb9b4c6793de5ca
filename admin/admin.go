// Package admin carries out account, session and key administration: the
// operations behind identityctl and identityd's AdminService.
//
// Local applies them to a store directly (inside identityd, or identityctl
// pointed at Redis); Remote sends them to a running identityd over gRPC. Both
// satisfy Admin, so identityctl does not care which one it holds. Local
// returns domain errors (tokenstore.ErrNotFound, users.ErrInvalidUsername, …)
// for the server's error interceptor to map. The package does not
// authenticate callers (the server checks the admin role) and never hands out
// a password hash or key material.
package admin

import (
	"context"
	"errors"
	"time"

	"github.com/identityd/identity/users"
)

// ErrInvalidSessionID: an empty or malformed session id (no session can have
// it). Like users.ErrInvalid*, it is the caller's mistake.
var ErrInvalidSessionID = errors.New("admin: invalid session id")

// User is an account as an administrator sees it: never its password hash.
type User struct {
	ID        string    `json:"id"`
	Username  string    `json:"username"`
	Roles     []string  `json:"roles"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
}

// Session is one login of a user, without its nonce.
type Session struct {
	ID         string    `json:"session_id"`
	UserID     string    `json:"subject"`
	Generation uint64    `json:"generation"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	// ExpiresAt is when the session ends unless refreshed: the idle expiry
	// when Local knows the idle lifetime (WithIdleTTL), the absolute one
	// otherwise.
	ExpiresAt time.Time `json:"expires_at"`
}

// Key is a signing key's public description: never its material.
type Key struct {
	ID  string `json:"kid"`
	Alg string `json:"alg"`
	// CreatedAt and ActiveAt are zero for keys from a directory (files
	// carry no dates).
	CreatedAt time.Time `json:"created_at,omitzero"`
	// ActiveAt is when the key starts (or started) signing; it is published
	// before that so verifiers know it in time.
	ActiveAt time.Time `json:"active_at,omitzero"`
	// RetireAt is when the key leaves the published set; zero while current.
	RetireAt time.Time `json:"retire_at,omitzero"`
	// Signing is true for the one key that signs new tokens now.
	Signing bool `json:"signing"`
}

// Admin is the administration API, local or remote.
type Admin interface {
	// CreateUser adds an account; the username is NFC-normalised.
	CreateUser(ctx context.Context, username, password string, roles []string) (User, error)
	// ListUsers returns every account, ordered by username.
	ListUsers(ctx context.Context) ([]User, error)
	// UpdateUser applies c. Disabling a user or setting a password revokes
	// every session of the user.
	UpdateUser(ctx context.Context, username string, c users.Change) (User, error)
	// ListSessions returns the live sessions of a user, oldest first.
	ListSessions(ctx context.Context, username string) ([]Session, error)
	// RevokeSession ends one session at once.
	RevokeSession(ctx context.Context, sessionID string) error
	// RevokeUserSessions ends every session of a user and says how many.
	RevokeUserSessions(ctx context.Context, username string) (int, error)
	// ListKeys returns the published signing keys.
	ListKeys(ctx context.Context) ([]Key, error)
	// RotateKeys adds a new signing key and returns the keys after it.
	RotateKeys(ctx context.Context) ([]Key, error)
}

var (
	_ Admin = (*Local)(nil)
	_ Admin = (*Remote)(nil)
)

// described keeps a domain sentinel for errors.Is while giving it a message
// an operator can act on ("user \"bob\" not found" rather than
// "tokenstore: not found"). Messages never carry a password or hash.
type described struct {
	msg string
	err error
}

func (e *described) Error() string { return e.msg }
func (e *described) Unwrap() error { return e.err }
