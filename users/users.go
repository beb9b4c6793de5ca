// Package users manages accounts on top of a tokenstore.Store: it normalises
// and validates usernames, applies the password policy to new passwords
// (PasswordPolicy), hashes passwords and checks credentials. It is the
// one place both identityd (Login, AdminService) and identityctl (direct store
// access) go through, so the rules cannot drift apart. It does not issue
// tokens or manage sessions.
package users

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/identityd/identity/password"
	"github.com/identityd/identity/tokenstore"
)

var (
	// ErrInvalidUsername: empty, too long, not UTF-8, or holding control or
	// format characters.
	ErrInvalidUsername = errors.New("users: invalid username")
	// ErrInvalidPassword: empty or longer than password.MaxLength bytes.
	ErrInvalidPassword = errors.New("users: invalid password")
	// ErrInvalidRole: a role that is empty or not a simple token.
	ErrInvalidRole = errors.New("users: invalid role")
	// ErrBadCredentials: unknown user, disabled user or wrong password. One
	// error for all three so callers cannot leak which one it was.
	ErrBadCredentials = errors.New("users: invalid credentials")
)

// Which of the three a refused login was, for the audit trail only: each
// wraps ErrBadCredentials, and a client is never told more than that.
var (
	ErrUnknownUser   = fmt.Errorf("%w: unknown user", ErrBadCredentials)
	ErrWrongPassword = fmt.Errorf("%w: wrong password", ErrBadCredentials)
	ErrDisabled      = fmt.Errorf("%w: account disabled", ErrBadCredentials)
)

// MaxUsernameLength is in bytes, after normalisation.
const MaxUsernameLength = 256

// Hasher is what Service needs of password.Hasher.
type Hasher interface {
	Hash(ctx context.Context, pw string) (string, error)
	Check(ctx context.Context, phc, pw string) (bool, error)
	// NeedsRehash reports whether phc was made with other parameters
	// than new hashes get.
	NeedsRehash(phc string) bool
}

// Sessions is what Service needs to end a user's sessions: identityd's
// session service (which also tells its own Verify at once), or the store
// itself where no server runs (identityctl with direct store access).
type Sessions interface {
	RevokeUserSessions(ctx context.Context, userID string, now time.Time, except ...string) ([]string, error)
	AdoptSession(ctx context.Context, id string, epoch uint64) error
}

// Service applies account rules over a store.
type Service struct {
	store    tokenstore.Store
	sessions Sessions
	hasher   Hasher
	policy   PasswordPolicy
	log      *slog.Logger
	now      func() time.Time
	rand     io.Reader
}

// Option configures New.
type Option func(*Service)

// WithSessions ends sessions through s instead of the store directly.
func WithSessions(s Sessions) Option { return func(svc *Service) { svc.sessions = s } }

// WithPasswordPolicy replaces DefaultPasswordPolicy for new passwords.
func WithPasswordPolicy(p PasswordPolicy) Option { return func(svc *Service) { svc.policy = p } }

// WithLogger receives what goes wrong without failing the caller (a
// password rehash that could not be stored); default: discarded.
func WithLogger(l *slog.Logger) Option { return func(svc *Service) { svc.log = l } }

// New returns a Service. now and rand are injected for tests; production
// passes time.Now and crypto/rand.Reader.
func New(store tokenstore.Store, hasher Hasher, now func() time.Time, rand io.Reader, opts ...Option) *Service {
	s := &Service{store: store, sessions: store, hasher: hasher, policy: DefaultPasswordPolicy(), now: now, rand: rand}
	for _, o := range opts {
		o(s)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// NormalizeUsername returns the NFC form of name, or ErrInvalidUsername.
// Control and format characters (including bidi overrides and zero-width
// joiners) are refused, as are leading or trailing spaces, so two visually
// identical names cannot be two accounts.
func NormalizeUsername(name string) (string, error) {
	if name == "" || !utf8.ValidString(name) {
		return "", ErrInvalidUsername
	}
	n := norm.NFC.String(name)
	if len(n) > MaxUsernameLength {
		return "", ErrInvalidUsername
	}
	for _, r := range n {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return "", ErrInvalidUsername
		}
	}
	first, _ := utf8.DecodeRuneInString(n)
	last, _ := utf8.DecodeLastRuneInString(n)
	if unicode.IsSpace(first) || unicode.IsSpace(last) {
		return "", ErrInvalidUsername
	}
	return n, nil
}

func validPassword(pw string) error {
	if pw == "" || len(pw) > password.MaxLength {
		return ErrInvalidPassword
	}
	return nil
}

func validRoles(roles []string) ([]string, error) {
	out := make([]string, 0, len(roles))
	for _, r := range roles {
		if r == "" || len(r) > 64 {
			return nil, ErrInvalidRole
		}
		for _, c := range r {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
				return nil, ErrInvalidRole
			}
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out, nil
}

// newPassword checks a password being chosen for the account name: the
// byte limits, then the policy.
func (s *Service) newPassword(pw, name string) error {
	if err := validPassword(pw); err != nil {
		return err
	}
	return s.policy.Check(pw, name)
}

// Create adds a user. The username is normalised; the password must pass
// the policy (ErrPasswordTooWeak); ErrAlreadyExists (from tokenstore) if
// the name is taken.
func (s *Service) Create(ctx context.Context, username, pw string, roles []string) (tokenstore.User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return tokenstore.User{}, err
	}
	if err := s.newPassword(pw, name); err != nil {
		return tokenstore.User{}, err
	}
	roles, err = validRoles(roles)
	if err != nil {
		return tokenstore.User{}, err
	}
	hash, err := s.hasher.Hash(ctx, pw)
	if err != nil {
		return tokenstore.User{}, fmt.Errorf("users: hash password: %w", err)
	}
	id, err := tokenstore.NewUserID(s.rand)
	if err != nil {
		return tokenstore.User{}, err
	}
	u := tokenstore.User{
		ID:           id,
		Username:     name,
		PasswordHash: hash,
		Roles:        roles,
		CreatedAt:    s.now().UTC().Truncate(time.Millisecond),
	}
	if err := s.store.CreateUser(ctx, u); err != nil {
		return tokenstore.User{}, err
	}
	return u, nil
}

// Authenticate checks a username and password. Every failure that depends
// on the account (unknown, disabled, wrong password, a username that could
// never exist) is ErrBadCredentials and costs one password hash, so neither
// the answer nor its timing tells which usernames exist. Store and hasher
// failures are returned as they are (the caller fails closed). After a
// success, a hash made with other parameters than the hasher's is
// replaced (see rehash); the password policy is not applied here.
func (s *Service) Authenticate(ctx context.Context, username, pw string) (tokenstore.User, error) {
	name, nameErr := NormalizeUsername(username)
	var u tokenstore.User
	var lookupErr error
	// refused is the failure if the password does not match either: a
	// username that could never exist is unknown, a password that could
	// never be set is wrong whoever the user.
	refused := ErrUnknownUser
	switch {
	case nameErr != nil:
		lookupErr = tokenstore.ErrNotFound
	case validPassword(pw) != nil:
		lookupErr, refused = tokenstore.ErrNotFound, ErrWrongPassword
	default:
		u, lookupErr = s.store.UserByName(ctx, name)
		if lookupErr != nil && !errors.Is(lookupErr, tokenstore.ErrNotFound) {
			return tokenstore.User{}, lookupErr
		}
	}
	phc := ""
	if lookupErr == nil {
		phc = u.PasswordHash
	}
	// An over-long password is cut for the dummy comparison only: it can
	// never match, but it must still cost a hash.
	check := pw
	if len(check) > password.MaxLength {
		check = check[:password.MaxLength]
	}
	ok, err := s.hasher.Check(ctx, phc, check)
	if err != nil {
		return tokenstore.User{}, err
	}
	switch {
	case lookupErr != nil:
		return tokenstore.User{}, refused
	case !ok:
		return tokenstore.User{}, ErrWrongPassword
	case u.Disabled:
		return tokenstore.User{}, ErrDisabled
	}
	return s.rehash(ctx, u, pw), nil
}

// errCredentialsMoved aborts a rehash whose user changed since the login
// read it.
var errCredentialsMoved = errors.New("users: password or credential epoch changed during the login")

// rehash stores a fresh hash of pw, just checked against u's, when u's was
// made with other parameters than the hasher's (they were raised since, or
// lowered): a login is the only moment the server holds the password. It
// costs one more hash, once per user and parameter change. It never fails
// the login: a failure is logged and the old hash, which still checks, is
// kept for the next login to try again. It changes nothing else: not the
// credential epoch, so no session ends, and a password change or disable
// that came in between wins (the write is skipped). The user returned is
// u with the new hash, never a newer copy from the store, so a login in
// flight keeps the epoch it authenticated under.
func (s *Service) rehash(ctx context.Context, u tokenstore.User, pw string) tokenstore.User {
	if !s.hasher.NeedsRehash(u.PasswordHash) {
		return u
	}
	fail := func(err error) tokenstore.User {
		s.log.LogAttrs(ctx, slog.LevelWarn, "password rehash not stored; the old hash stays",
			slog.String("user_id", u.ID), slog.String("error", err.Error()))
		return u
	}
	hash, err := s.hasher.Hash(ctx, pw)
	if err != nil {
		return fail(err)
	}
	_, err = s.store.UpdateUser(ctx, u.ID, func(cur tokenstore.User) (tokenstore.User, error) {
		if cur.PasswordHash != u.PasswordHash || cur.Epoch != u.Epoch {
			return cur, errCredentialsMoved
		}
		cur.PasswordHash = hash
		return cur, nil
	})
	if err != nil {
		return fail(err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "password rehashed with the current parameters", slog.String("user_id", u.ID))
	u.PasswordHash = hash
	return u
}

// ByName returns the user with that (normalised) username.
func (s *Service) ByName(ctx context.Context, username string) (tokenstore.User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return tokenstore.User{}, err
	}
	return s.store.UserByName(ctx, name)
}

// List returns every user, ordered by username.
func (s *Service) List(ctx context.Context) ([]tokenstore.User, error) {
	return s.store.ListUsers(ctx)
}

// Change describes an update; nil fields stay as they are.
type Change struct {
	Password *string
	Disabled *bool
	Roles    *[]string
	// KeepSession, with Password, is the session the change is made from
	// (the user's own ChangePassword): it moves to the new credential epoch
	// and is not revoked with the others.
	KeepSession string
}

// Update applies c to the user named username. A new password must pass
// the policy (ErrPasswordTooWeak).
func (s *Service) Update(ctx context.Context, username string, c Change) (tokenstore.User, error) {
	u, err := s.ByName(ctx, username)
	if err != nil {
		return tokenstore.User{}, err
	}
	var hash string
	if c.Password != nil {
		if err := s.newPassword(*c.Password, u.Username); err != nil {
			return tokenstore.User{}, err
		}
		if hash, err = s.hasher.Hash(ctx, *c.Password); err != nil {
			return tokenstore.User{}, fmt.Errorf("users: hash password: %w", err)
		}
	}
	var roles []string
	if c.Roles != nil {
		if roles, err = validRoles(*c.Roles); err != nil {
			return tokenstore.User{}, err
		}
	}
	// A new password, a change of roles or disabling ends every session:
	// whoever held the old credentials must not keep refreshing, and no
	// token may keep the old roles. Raising the credential epoch in the
	// same atomic update also refuses the session of a login that
	// authenticated before it and is still in flight.
	endsSessions := c.Password != nil || c.Roles != nil || c.Disabled != nil && *c.Disabled
	u, err = s.store.UpdateUser(ctx, u.ID, func(u tokenstore.User) (tokenstore.User, error) {
		if c.Password != nil {
			u.PasswordHash = hash
		}
		if c.Disabled != nil {
			u.Disabled = *c.Disabled
		}
		if c.Roles != nil {
			u.Roles = roles
		}
		if endsSessions {
			u.Epoch++
		}
		return u, nil
	})
	if err != nil {
		return tokenstore.User{}, err
	}
	var keep []string
	if c.KeepSession != "" && c.Password != nil && !u.Disabled {
		// A session that ended meanwhile (or a change racing this one)
		// is simply not kept.
		if err := s.sessions.AdoptSession(ctx, c.KeepSession, u.Epoch); err == nil {
			keep = append(keep, c.KeepSession)
		}
	}
	if endsSessions || u.Disabled {
		if _, err := s.sessions.RevokeUserSessions(ctx, u.ID, s.now(), keep...); err != nil {
			return u, fmt.Errorf("users: revoke sessions: %w", err)
		}
	}
	return u, nil
}
