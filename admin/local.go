package admin

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/identityd/identity/password"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// Accounts is what Local needs of *users.Service: every account change goes
// through its rules (normalisation, hashing, session revocation).
type Accounts interface {
	Create(ctx context.Context, username, pw string, roles []string) (tokenstore.User, error)
	List(ctx context.Context) ([]tokenstore.User, error)
	ByName(ctx context.Context, username string) (tokenstore.User, error)
	Update(ctx context.Context, username string, c users.Change) (tokenstore.User, error)
}

// Sessions is what Local needs of the session service (identityd) or of a
// tokenstore.Store (identityctl with direct store access).
type Sessions interface {
	ListSessions(ctx context.Context, userID string) ([]tokenstore.Session, error)
	RevokeSession(ctx context.Context, id string, now time.Time) error
	RevokeUserSessions(ctx context.Context, userID string, now time.Time, except ...string) ([]string, error)
}

// Keys is what Local needs of the token key manager.
type Keys interface {
	// List returns the published keys.
	List(ctx context.Context) ([]Key, error)
	// Rotate adds a new signing key and returns the keys after it.
	Rotate(ctx context.Context) ([]Key, error)
}

// ErrNoKeys: this Local was built without a key manager.
var ErrNoKeys = errors.New("admin: no key manager")

// Local carries out administration against a store.
type Local struct {
	sessions Sessions
	accounts Accounts
	keys     Keys
	now      func() time.Time
	idleTTL  time.Duration
}

// Option configures Local.
type Option func(*Local)

// WithClock sets the clock used to date revocations (time.Now by default).
func WithClock(now func() time.Time) Option { return func(l *Local) { l.now = now } }

// WithIdleTTL sets the sessions' idle lifetime, so a Session's ExpiresAt is
// the moment it ends unless refreshed rather than its absolute end.
func WithIdleTTL(d time.Duration) Option { return func(l *Local) { l.idleTTL = d } }

// NewLocal returns a Local over a store (a tokenstore.Store), the account
// rules (a *users.Service) and the signing keys (nil: key commands fail with
// ErrNoKeys).
func NewLocal(store Sessions, accounts Accounts, keys Keys, opts ...Option) *Local {
	l := &Local{sessions: store, accounts: accounts, keys: keys, now: time.Now}
	for _, o := range opts {
		o(l)
	}
	return l
}

func (l *Local) CreateUser(ctx context.Context, username, pw string, roles []string) (User, error) {
	u, err := l.accounts.Create(ctx, username, pw, roles)
	if err != nil {
		return User{}, describe(err, username)
	}
	return userOf(u), nil
}

func (l *Local) ListUsers(ctx context.Context) ([]User, error) {
	us, err := l.accounts.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]User, len(us))
	for i, u := range us {
		out[i] = userOf(u)
	}
	return out, nil
}

func (l *Local) UpdateUser(ctx context.Context, username string, c users.Change) (User, error) {
	u, err := l.accounts.Update(ctx, username, c)
	if err != nil {
		return User{}, describe(err, username)
	}
	return userOf(u), nil
}

func (l *Local) ListSessions(ctx context.Context, username string) ([]Session, error) {
	u, err := l.accounts.ByName(ctx, username)
	if err != nil {
		return nil, describe(err, username)
	}
	ss, err := l.sessions.ListSessions(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	out := make([]Session, len(ss))
	for i, s := range ss {
		out[i] = Session{
			ID:         s.ID,
			UserID:     s.UserID,
			Generation: s.Generation,
			CreatedAt:  s.CreatedAt,
			LastUsedAt: s.LastUsedAt,
			ExpiresAt:  s.ExpiresAt,
		}
		if l.idleTTL > 0 {
			out[i].ExpiresAt = s.IdleExpiresAt(l.idleTTL)
		}
	}
	return out, nil
}

func (l *Local) RevokeSession(ctx context.Context, sessionID string) error {
	if _, ok := tokenstore.SessionUserID(sessionID); !ok {
		return &described{fmt.Sprintf("invalid session id %s", quote(sessionID)), ErrInvalidSessionID}
	}
	err := l.sessions.RevokeSession(ctx, sessionID, l.now())
	if errors.Is(err, tokenstore.ErrNotFound) {
		return &described{fmt.Sprintf("session %s not found (expired or already revoked)", quote(sessionID)), err}
	}
	return err
}

func (l *Local) RevokeUserSessions(ctx context.Context, username string) (int, error) {
	u, err := l.accounts.ByName(ctx, username)
	if err != nil {
		return 0, describe(err, username)
	}
	ids, err := l.sessions.RevokeUserSessions(ctx, u.ID, l.now())
	return len(ids), err
}

func (l *Local) ListKeys(ctx context.Context) ([]Key, error) {
	if l.keys == nil {
		return nil, ErrNoKeys
	}
	return l.keys.List(ctx)
}

func (l *Local) RotateKeys(ctx context.Context) ([]Key, error) {
	if l.keys == nil {
		return nil, ErrNoKeys
	}
	return l.keys.Rotate(ctx)
}

func userOf(u tokenstore.User) User {
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	return User{ID: u.ID, Username: u.Username, Roles: roles, Disabled: u.Disabled, CreatedAt: u.CreatedAt}
}

// describe names the user an account error is about; other errors (store
// failures) pass unchanged.
func describe(err error, username string) error {
	var msg string
	switch {
	case errors.Is(err, tokenstore.ErrNotFound):
		msg = fmt.Sprintf("user %s not found", quote(username))
	case errors.Is(err, tokenstore.ErrAlreadyExists):
		msg = fmt.Sprintf("user %s already exists", quote(username))
	case errors.Is(err, users.ErrInvalidUsername):
		msg = fmt.Sprintf("invalid username %s: it must be 1 to %d bytes without control characters or surrounding spaces", quote(username), users.MaxUsernameLength)
	case errors.Is(err, users.ErrInvalidPassword):
		msg = fmt.Sprintf("invalid password: it must be 1 to %d bytes", password.MaxLength)
	case errors.Is(err, users.ErrInvalidRole):
		msg = "invalid role: a role is 1 to 64 letters, digits or - _ . :"
	default:
		return err
	}
	return &described{msg, err}
}

// quote shows a caller-supplied name in an error message, cut short so a
// huge request cannot make a huge message.
func quote(s string) string {
	const max = 64
	if len(s) > max {
		return strconv.Quote(strings.ToValidUTF8(s[:max], "")) + "…"
	}
	return strconv.Quote(s)
}
