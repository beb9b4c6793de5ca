package token

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// SigningKeys supplies the key to sign with; the Manager implements it.
type SigningKeys interface {
	SigningKey() (SigningKey, error)
}

// Issuer mints access tokens. It is safe for concurrent use.
type Issuer struct {
	keys SigningKeys
	cfg  config
}

// NewIssuer returns an Issuer signing with keys' current key. It uses
// WithIssuer, WithAudience, WithAccessTTL and WithRandom.
func NewIssuer(keys SigningKeys, opts ...Option) (*Issuer, error) {
	if keys == nil {
		return nil, errors.New("token: nil SigningKeys")
	}
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	return &Issuer{keys: keys, cfg: c}, nil
}

// Issue signs an access token for c at now and returns it with its expiry.
// c.Subject and c.SessionID are required; c.ID, c.IssuedAt and c.ExpiresAt
// are ignored (a fresh jti; iat = nbf = now). The token lives for the access
// TTL, but never past notAfter when that is not zero: pass the session's
// absolute expiry, so no access token outlives its session.
//
// Times are whole seconds in a JWT, so now is truncated to the second; the
// returned expiry is exactly the token's exp.
func (i *Issuer) Issue(c Claims, now, notAfter time.Time) (string, time.Time, error) {
	if c.Subject == "" || c.SessionID == "" {
		return "", time.Time{}, errors.New("token: issue: subject and session id are required")
	}
	now = now.Truncate(time.Second)
	exp := now.Add(i.cfg.accessTTL)
	if !notAfter.IsZero() && notAfter.Before(exp) {
		exp = notAfter.Truncate(time.Second)
		if !exp.After(now) {
			return "", time.Time{}, ErrSessionEnded
		}
	}
	key, err := i.keys.SigningKey()
	if err != nil {
		return "", time.Time{}, err
	}
	jti, err := randomString(i.cfg.rand, 16)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token: jti: %w", err)
	}
	method := jwt.GetSigningMethod(key.Alg)
	if method == nil {
		return "", time.Time{}, fmt.Errorf("token: unsupported algorithm %q", key.Alg)
	}
	iat := jwt.NewNumericDate(now)
	t := jwt.NewWithClaims(method, &accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.cfg.issuer,
			Subject:   c.Subject,
			Audience:  jwt.ClaimStrings{i.cfg.audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: iat,
			IssuedAt:  iat,
			ID:        jti,
		},
		SessionID: c.SessionID,
		Roles:     c.Roles,
		Username:  c.Username,
	})
	t.Header["typ"] = "at+jwt"
	t.Header["kid"] = key.ID
	s, err := t.SignedString(key.Private)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token: sign: %w", err)
	}
	return s, exp, nil
}
