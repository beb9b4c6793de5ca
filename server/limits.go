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

// Login limits throttle guessing without handing anyone a lock on an
// account (NIST SP 800-63B §5.2.2):
//
//   - every attempt, per client address (LoginRatePerIP a minute);
//   - failures per username and client address (LoginFailuresPerUserAddress
//     a minute): a guesser at one address is held to a few tries, and only
//     that address is refused;
//   - failures per username across every address (LoginFailuresPerUser an
//     hour): a distributed guesser is held to this, while the user at an
//     address of their own still gets in after someone else's failures.
//
// Failures are charged before the password is checked and given back when
// the attempt turns out not to be a wrong password: the charge is atomic, so
// concurrent guesses can never together check more passwords than a limit's
// burst. An attempt that finds a failure limit used up while attempts this
// instance charged to the same key are still in flight waits for them to
// settle, within the login wait budget, and asks again: a burst of right
// passwords (a script logging one account in many times at once) is served
// as its charges come back, and only failures that were made refuse it.
// Keys are hashes, so no username reaches the limiter's store in clear, and
// the same name in another normalisation is the same key.
func (s *Server) ipLimit() ratelimit.Limit {
	return ratelimit.Limit{Rate: s.cfg.LoginRatePerIP, Period: time.Minute, Burst: max(1, s.cfg.LoginRatePerIP/5)}
}

func (s *Server) userAddrLimit() ratelimit.Limit {
	return ratelimit.Limit{Rate: s.cfg.LoginFailuresPerUserAddress, Period: time.Minute, Burst: max(1, s.cfg.LoginFailuresPerUserAddress)}
}

func (s *Server) userLimit() ratelimit.Limit {
	return ratelimit.Limit{Rate: s.cfg.LoginFailuresPerUser, Period: time.Hour, Burst: max(1, s.cfg.LoginFailuresPerUser)}
}

func normalizedName(username string) string {
	if n, err := users.NormalizeUsername(username); err == nil {
		return n
	}
	return username
}

func userKey(username string) string {
	sum := sha256.Sum256([]byte(normalizedName(username)))
	return "login:user:" + hex.EncodeToString(sum[:16])
}

func userAddrKey(username, addr string) string {
	// A NUL cannot be in a normalised username (control characters are
	// refused), so the pair cannot be confused with another.
	sum := sha256.Sum256([]byte(normalizedName(username) + "\x00" + addr))
	return "login:user-addr:" + hex.EncodeToString(sum[:16])
}

// loginCharge is what one login attempt was charged against the failure
// limits, to give back once it is known not to be a wrong password.
type loginCharge struct {
	keys   []string
	limits []ratelimit.Limit
}

// limitLogin refuses an attempt when the client address is over its rate or
// the username has used up its failures (at this address, or everywhere),
// and otherwise charges it as a failure to come. A limiter failure fails
// closed.
func (s *Server) limitLogin(ctx context.Context, username string) (*loginCharge, error) {
	addr := clientAddr(ctx)
	if s.cfg.LoginRatePerIP > 0 {
		r, err := s.limiter.Allow(ctx, "login:ip:"+addr, s.ipLimit())
		if err != nil {
			return nil, err
		}
		if !r.Allowed {
			s.metrics.refused(limitLoginIP)
			return nil, &rateLimitedError{msg: "too many login attempts from this address", retryAfter: r.RetryAfter}
		}
	}
	var deadline time.Time // of waiting for attempts in flight to settle
	if s.hasher != nil {
		deadline = time.Now().Add(s.hasher.WaitBudget())
	}
	c := &loginCharge{}
	for _, f := range []struct {
		on    bool
		key   string
		limit func() ratelimit.Limit
		msg   string
	}{
		{s.cfg.LoginFailuresPerUserAddress > 0, userAddrKey(username, addr), s.userAddrLimit, "too many failed logins for this username from this address"},
		{s.cfg.LoginFailuresPerUser > 0, userKey(username), s.userLimit, "too many failed logins for this username"},
	} {
		if !f.on {
			continue
		}
		l := f.limit()
		if err := s.chargeLogin(ctx, f.key, l, deadline, f.msg); err != nil {
			// No password is checked: what was charged so far is given back.
			s.settleLogin(ctx, c, nil)
			return nil, err
		}
		c.keys, c.limits = append(c.keys, f.key), append(c.limits, l)
	}
	return c, nil
}

// chargeLogin charges one attempt to key under l, waiting until deadline
// for this instance's attempts in flight on key to settle while l is used
// up; it refuses with msg when l stays used up.
func (s *Server) chargeLogin(ctx context.Context, key string, l ratelimit.Limit, deadline time.Time, msg string) error {
	for {
		// Counted in flight before it asks: an attempt refused meanwhile
		// waits for this one to settle rather than find nothing to wait for.
		m := s.charged.begin(key)
		r, err := s.limiter.Allow(ctx, key, l)
		if err == nil && r.Allowed {
			return nil
		}
		s.charged.abandon(key)
		if err != nil {
			return err
		}
		if !s.charged.awaitSettled(ctx, key, m, deadline) {
			s.metrics.refused(limitLoginUser)
			return &rateLimitedError{msg: msg, retryAfter: r.RetryAfter}
		}
	}
}

// settleLogin gives back the attempt's charges unless it was a wrong
// password (or an unknown user, the same answer): a success costs nothing,
// and neither does an attempt whose password was never checked (hashing
// queue full, store down). Either way the attempt is no longer in flight.
func (s *Server) settleLogin(ctx context.Context, c *loginCharge, cause error) {
	if c == nil {
		return
	}
	if !errors.Is(cause, users.ErrBadCredentials) {
		// A caller that hung up after its password was checked still gets
		// its attempt back; the refund keeps a deadline of its own.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		for i, key := range c.keys {
			if err := s.limiter.Refund(ctx, key, c.limits[i]); err != nil {
				// The attempt stays counted: that fails closed.
				s.log.WarnContext(ctx, "login limiter unavailable", slog.String("error", err.Error()))
			}
		}
	}
	// After the refunds: a waiter woken now finds the charges back.
	for _, key := range c.keys {
		s.charged.settled(key)
	}
}

func (s *Server) refreshIPLimit() ratelimit.Limit {
	return ratelimit.Limit{Rate: s.cfg.RefreshRatePerIP, Period: time.Minute, Burst: max(1, s.cfg.RefreshRatePerIP/4)}
}

// limitRefresh refuses a refresh when the client address is over its rate.
// A limiter failure fails closed.
func (s *Server) limitRefresh(ctx context.Context) error {
	if s.cfg.RefreshRatePerIP <= 0 {
		return nil
	}
	r, err := s.limiter.Allow(ctx, "refresh:ip:"+clientAddr(ctx), s.refreshIPLimit())
	if err != nil {
		return err
	}
	if !r.Allowed {
		return &rateLimitedError{msg: "too many refreshes from this address", retryAfter: r.RetryAfter}
	}
	return nil
}
