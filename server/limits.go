package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"

	"github.com/identityd/identity/ratelimit"
	"github.com/identityd/identity/users"
)

// Login limits: per client address for every attempt, per username for
// failures. The username key is a hash, so no username reaches the limiter's
// store in clear, and the same name in another normalisation is the same key.
func (s *Server) ipLimit() ratelimit.Limit {
	return ratelimit.Limit{Rate: s.cfg.LoginRatePerIP, Period: time.Minute, Burst: max(1, s.cfg.LoginRatePerIP/5)}
}

func (s *Server) userLimit() ratelimit.Limit {
	return ratelimit.Limit{Rate: s.cfg.LoginFailuresPerUser, Period: time.Minute, Burst: max(1, s.cfg.LoginFailuresPerUser)}
}

func userKey(username string) string {
	if n, err := users.NormalizeUsername(username); err == nil {
		username = n
	}
	sum := sha256.Sum256([]byte(username))
	return "login:user:" + hex.EncodeToString(sum[:16])
}

// limitLogin refuses an attempt when the client address is over its rate or
// the username has used up its failures. A limiter failure fails closed.
func (s *Server) limitLogin(ctx context.Context, username string) error {
	if s.cfg.LoginRatePerIP > 0 {
		r, err := s.limiter.Allow(ctx, "login:ip:"+clientAddr(ctx), s.ipLimit())
		if err != nil {
			return err
		}
		if !r.Allowed {
			s.metrics.refused(limitLoginIP)
			return &rateLimitedError{msg: "too many login attempts from this address", retryAfter: r.RetryAfter}
		}
	}
	if s.cfg.LoginFailuresPerUser > 0 {
		r, err := s.limiter.Peek(ctx, userKey(username), s.userLimit())
		if err != nil {
			return err
		}
		if !r.Allowed {
			s.metrics.refused(limitLoginUser)
			return &rateLimitedError{msg: "too many failed logins for this username", retryAfter: r.RetryAfter}
		}
	}
	return nil
}

// loginFailed charges a failed attempt to the username.
func (s *Server) loginFailed(ctx context.Context, username string, cause error) {
	if s.cfg.LoginFailuresPerUser <= 0 || !errors.Is(cause, users.ErrBadCredentials) {
		return
	}
	if _, err := s.limiter.Allow(ctx, userKey(username), s.userLimit()); err != nil {
		s.log.WarnContext(ctx, "login limiter unavailable", slog.String("error", err.Error()))
	}
}
