// Package token issues and verifies identity's access tokens and refresh
// tokens, and manages the keys that sign them.
//
// Access tokens are JWTs in the RFC 9068 profile (header typ "at+jwt", a kid
// naming the signing key). The Verifier is shared by the identity server and
// by authn, the local verifier other services import, so it depends only on a
// KeySource: the server passes its Manager, authn a KeySet parsed from the
// published JWKS. Refresh tokens are opaque HMAC strings (never JWTs), so one
// can never be taken for the other.
//
// The package is not a session store and knows nothing of gRPC: it does not
// decide whether a session is still live (tokenstore does) and does not map
// errors to status codes (server does). Keys live in a Keyring that the
// Manager keeps in the store (shared by every instance, sealed under the
// operator's master key: WithSealing) or reads from a directory of PEM
// files.
package token

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Errors returned by Verify and by Refresh.Decode. Everything that is not an
// expiry is ErrInvalid on purpose: a caller (and an attacker) learns nothing
// about which check failed. The wrapped text, when there is one, is for logs.
var (
	// ErrExpired: a well-formed, correctly signed access token whose exp is
	// past by more than the leeway.
	ErrExpired = errors.New("token: expired")
	// ErrInvalid: malformed, bad signature, unknown kid, wrong alg, iss, aud
	// or typ, a missing claim, a refresh token given as an access token or
	// the other way round.
	ErrInvalid = errors.New("token: invalid")
	// ErrSessionEnded: Issue was asked for a token of a session that ends
	// within the current second, so no token could start before it ends.
	ErrSessionEnded = errors.New("token: issue: the session's expiry has passed")
	// ErrKeysOnDisk: the keys were loaded with LoadDir and are rotated by
	// replacing files, not by Rotate.
	ErrKeysOnDisk = errors.New("token: keys are managed on disk (keys dir): rotate by adding a key file that sorts last, then Reload")
)

// Claims is what an access token says about its bearer.
type Claims struct {
	// Subject is the stable user id (sub).
	Subject string
	// Username is preferred_username, for display only; never an identifier.
	Username string
	Roles    []string
	// SessionID (sid) names the refresh-token session the token came from;
	// the server checks it against revocations.
	SessionID string
	// ID is the token's jti.
	ID        string
	IssuedAt  time.Time
	ExpiresAt time.Time
	// KeyID is the kid of the key that verified the token (set by Verify;
	// Issue ignores it): a cache of verified tokens drops the token when
	// that key goes.
	KeyID string
}

// Algorithms the package signs and verifies with. EdDSA means Ed25519.
const (
	EdDSA = "EdDSA"
	ES256 = "ES256"
	RS256 = "RS256"
	HS256 = "HS256"
)

// Defaults, as documented in docs/configuration.md and docs/api.md.
const (
	DefaultIssuer       = "identity"
	DefaultAudience     = "identity"
	DefaultAccessTTL    = 15 * time.Minute
	DefaultLeeway       = 30 * time.Second
	DefaultPublishAhead = time.Minute
	// MaxLeeway bounds WithLeeway: a larger clock allowance would quietly
	// stretch every token's lifetime.
	MaxLeeway = 5 * time.Minute
	// MaxTokenSize bounds what Verify will look at: our tokens are well under
	// 1 KiB, and refusing large input early keeps garbage cheap.
	MaxTokenSize = 8 << 10
)

// Option configures a Verifier, an Issuer or a Manager. One option type
// serves all three so a server can build one []Option from its config and
// pass it everywhere: the Manager's key overlap is then computed from the
// same access TTL and leeway the Issuer and Verifier use. Options that do not
// concern a constructor are ignored by it.
type Option func(*config)

type config struct {
	issuer    string
	audience  string
	accessTTL time.Duration
	// accessTTLSet: WithAccessTTL was given, so a Verifier knows the
	// longest lifetime a token of ours can have.
	accessTTLSet bool
	leeway       time.Duration
	publishAhead time.Duration
	now          func() time.Time
	rand         io.Reader
	sealing      Sealing
	log          *slog.Logger
}

// WithIssuer sets iss, written by the Issuer and required by the Verifier.
func WithIssuer(iss string) Option { return func(c *config) { c.issuer = iss } }

// WithAudience sets aud, written by the Issuer and required by the Verifier.
func WithAudience(aud string) Option { return func(c *config) { c.audience = aud } }

// WithAccessTTL sets the access-token lifetime (Issuer; the Manager also
// keeps a replaced key this long after it stops signing). A Verifier given
// it refuses a token whose exp is more than the TTL plus the leeway after
// its iat: no token of ours lives longer, whatever its exp says.
func WithAccessTTL(d time.Duration) Option {
	return func(c *config) { c.accessTTL, c.accessTTLSet = d, true }
}

// WithLeeway sets the allowed clock skew for exp, nbf and iat, from 0 to
// MaxLeeway (Verifier; the Manager adds it to a replaced key's overlap).
func WithLeeway(d time.Duration) Option { return func(c *config) { c.leeway = d } }

// WithPublishAhead sets how long a rotated-in key is published before it
// signs (Manager), so verifiers holding a cached JWKS learn of it first.
// Instances must Reload more often than this.
func WithPublishAhead(d time.Duration) Option { return func(c *config) { c.publishAhead = d } }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(c *config) { c.now = now } }

// WithRandom replaces crypto/rand.Reader for jti, kid, nonce and Ed25519 key
// generation (ECDSA and RSA generation always use the system source since Go
// 1.26), for tests.
func WithRandom(r io.Reader) Option { return func(c *config) { c.rand = r } }

// WithLogger is where the Manager reports what it does to the stored
// keyring on its own (sealing one found in the clear); default: nowhere.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.log = l } }

func newConfig(opts []Option) (config, error) {
	c := config{
		issuer:       DefaultIssuer,
		audience:     DefaultAudience,
		accessTTL:    DefaultAccessTTL,
		leeway:       DefaultLeeway,
		publishAhead: DefaultPublishAhead,
		now:          time.Now,
		rand:         rand.Reader,
		log:          slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(&c)
	}
	switch {
	case c.issuer == "":
		return c, errors.New("token: issuer must not be empty")
	case c.audience == "":
		return c, errors.New("token: audience must not be empty")
	case c.accessTTL <= 0:
		return c, fmt.Errorf("token: access TTL %v must be positive", c.accessTTL)
	case c.leeway < 0 || c.leeway > MaxLeeway:
		return c, fmt.Errorf("token: leeway %v must be between 0 and %v", c.leeway, MaxLeeway)
	case c.publishAhead < 0:
		return c, fmt.Errorf("token: publish-ahead %v must not be negative", c.publishAhead)
	case c.now == nil:
		return c, errors.New("token: clock must not be nil")
	case c.rand == nil:
		return c, errors.New("token: random source must not be nil")
	case c.log == nil:
		return c, errors.New("token: logger must not be nil")
	}
	return c, nil
}
