package authn_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
)

// newLocal builds a local verifier against f with the fake clock and a
// long key refresh (so only the tests' own triggers fetch keys).
func newLocal(t *testing.T, f *fakeIdentity, opts ...authn.LocalOption) *authn.Local {
	t.Helper()
	base := []authn.LocalOption{
		authn.WithKeysFromConn(f.conn),
		authn.WithClock(f.clock.Now),
		authn.WithStaleness(5 * time.Second),
		authn.WithKeyRefresh(time.Hour),
		authn.WithReconnectBackoff(time.Millisecond, 10*time.Millisecond),
		quiet(t),
	}
	l, err := authn.NewLocal(append(base, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func waitReady(t *testing.T, l *authn.Local) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := l.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

// heartbeatUntilReady sends heartbeats until l has caught up (its stream
// may open after the first ones are sent).
func heartbeatUntilReady(t *testing.T, f *fakeIdentity, l *authn.Local) {
	t.Helper()
	testidentityd.Eventually(t, 5*time.Second, func() error {
		f.heartbeat("c0")
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Millisecond)
		defer cancel()
		return l.WaitReady(ctx)
	})
}

func verifyOK(t *testing.T, v authn.Verifier, tok, wantSID string) {
	t.Helper()
	c, err := v.Verify(t.Context(), tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.SessionID != wantSID {
		t.Fatalf("Verify: session %q, want %q", c.SessionID, wantSID)
	}
}

func verifyFails(t *testing.T, v authn.Verifier, tok string, code codes.Code, reason identityv1.ErrorReason) {
	t.Helper()
	_, err := v.Verify(t.Context(), tok)
	wantStatus(t, err, code, reason)
}

// eventuallyFails waits (briefly: the feed runs on its own goroutine)
// until Verify fails as described.
func eventuallyFails(t *testing.T, v authn.Verifier, tok string, code codes.Code, reason identityv1.ErrorReason) {
	t.Helper()
	testidentityd.Eventually(t, 5*time.Second, func() error {
		_, err := v.Verify(t.Context(), tok)
		if status.Code(err) != code || authn.Reason(err) != reason {
			return fmt.Errorf("Verify has not failed with %v/%s yet: %v", code, reason, err)
		}
		return nil
	})
}

func eventuallyOK(t *testing.T, v authn.Verifier, tok string) {
	t.Helper()
	testidentityd.Eventually(t, 5*time.Second, func() error {
		if _, err := v.Verify(t.Context(), tok); err != nil {
			return fmt.Errorf("Verify has not succeeded yet: %w", err)
		}
		return nil
	})
}

func TestLocalFailsClosedUntilCaughtUpAndWhenStale(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	f := newFakeIdentity(t, clock)
	l := newLocal(t, f)
	tok := f.issue(t, "s1")

	f.waitStreams(t, 1)
	// Connected, keys fetched, but no heartbeat: the stream may still be
	// replaying revocations, so nothing is vouched for.
	verifyFails(t, l, tok, codes.Unavailable, identityv1.ErrorReason_VERIFIER_STALE)

	f.heartbeat("c1")
	waitReady(t, l)
	verifyOK(t, l, tok, "s1")

	// Silence up to the bound is tolerated, beyond it is not.
	clock.Advance(5 * time.Second)
	verifyOK(t, l, tok, "s1")
	clock.Advance(time.Millisecond)
	verifyFails(t, l, tok, codes.Unavailable, identityv1.ErrorReason_VERIFIER_STALE)

	// A heartbeat makes it fresh again.
	f.heartbeat("c1")
	eventuallyOK(t, l, tok)
}

func TestLocalRevocationEvents(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	f := newFakeIdentity(t, clock)
	l := newLocal(t, f)
	f.waitStreams(t, 1)
	f.heartbeat("c0")
	s1, s2 := f.issue(t, "s1"), f.issue(t, "s2")
	eventuallyOK(t, l, s1)
	verifyOK(t, l, s2, "s2") // both cached now

	f.revoke("c1", "s1", clock.Now().Add(15*time.Minute))
	eventuallyFails(t, l, s1, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED)
	verifyOK(t, l, s2, "s2")

	// A revoked session stays revoked while the feed is stale: what is
	// known to be revoked is said, only the rest fails closed.
	clock.Advance(6 * time.Second)
	verifyFails(t, l, s1, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED)
	verifyFails(t, l, s2, codes.Unavailable, identityv1.ErrorReason_VERIFIER_STALE)
}

func TestLocalResumesFromItsCursor(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	f := newFakeIdentity(t, clock)
	l := newLocal(t, f)
	f.waitStreams(t, 1)
	f.heartbeat("c0")
	f.revoke("c7", "s1", clock.Now().Add(time.Hour))
	tok := f.issue(t, "s1")
	eventuallyFails(t, l, tok, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED)

	f.dropStreams()
	f.waitStreams(t, 2)
	if got := f.watchCursors(); !slices.Equal(got, []string{tokenstore.CursorOrigin, "c7"}) {
		t.Fatalf("WatchRevocations cursors = %q; want the whole history first, then a resume after c7", got)
	}
	// What was learnt before the drop is kept.
	verifyFails(t, l, tok, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED)
}

func TestLocalResetDistrustsOlderTokens(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	f := newFakeIdentity(t, clock)
	l := newLocal(t, f)
	lf := newLocal(t, f, authn.WithRemoteFallback(testidentityd.Dial(t, f.conn.Target())))
	fallback := f
	f.waitStreams(t, 2)
	f.heartbeat("c0")
	before := f.issue(t, "s1")
	eventuallyOK(t, l, before)
	eventuallyOK(t, lf, before)

	// identity could not resume: revocations may have been lost.
	f.send(&identityv1.WatchRevocationsResponse{Cursor: "c9", Reset_: true})
	f.heartbeat("c9")
	eventuallyFails(t, l, before, codes.Unavailable, identityv1.ErrorReason_VERIFIER_STALE)
	// With a fallback, identity is asked instead (once lf has seen the
	// reset: its stream is its own).
	testidentityd.Eventually(t, 5*time.Second, func() error {
		calls := fallback.verifyCalls.Load()
		verifyOK(t, lf, before, "s1")
		if fallback.verifyCalls.Load() != calls+1 {
			return errors.New("the fallback was not asked about a token issued before the reset")
		}
		return nil
	})
	// Tokens issued after the reset (and the clock leeway) are checked
	// locally again.
	clock.Advance(token.DefaultLeeway + time.Second)
	f.heartbeat("c9")
	after := f.issue(t, "s2")
	eventuallyOK(t, l, after)
	testidentityd.Eventually(t, 5*time.Second, func() error {
		f.heartbeat("c9") // until lf has seen one since the clock moved
		calls := fallback.verifyCalls.Load()
		verifyOK(t, lf, after, "s2")
		if fallback.verifyCalls.Load() != calls {
			return errors.New("the fallback was asked about a token the local verifier can check")
		}
		return nil
	})
}

func TestLocalFallbackWhileStale(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	f := newFakeIdentity(t, clock)
	fallbackConn := testidentityd.Dial(t, f.conn.Target())
	l := newLocal(t, f, authn.WithRemoteFallback(fallbackConn))
	fallback := f
	f.waitStreams(t, 1)
	f.heartbeat("c0")
	waitReady(t, l)
	tok := f.issue(t, "s1")
	verifyOK(t, l, tok, "s1")
	if n := fallback.verifyCalls.Load(); n != 0 {
		t.Fatalf("fresh feed, yet the fallback was called %d times", n)
	}

	clock.Advance(time.Minute)
	// Whatever identity answers is the answer: here, the session revoked.
	fallback.mu.Lock()
	fallback.verify = func(context.Context, string) (*identityv1.VerifyResponse, error) {
		return nil, authn.Error(codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED, "access token revoked")
	}
	fallback.mu.Unlock()
	verifyFails(t, l, tok, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED)
	// identity unreachable too: UNAVAILABLE, never OK.
	fallbackConn.Close()
	verifyFails(t, l, tok, codes.Unavailable, identityv1.ErrorReason_IDENTITY_UNAVAILABLE)
}

func TestLocalRevokedSetIsBoundedAndFailsClosedWhenFull(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	f := newFakeIdentity(t, clock)
	l := newLocal(t, f, authn.WithMaxRevoked(2), authn.WithStaleness(time.Hour))
	f.waitStreams(t, 1)
	f.heartbeat("c0")
	live := f.issue(t, "live")
	eventuallyOK(t, l, live)

	// Two revocations fit; the third does not, and must not be dropped
	// silently: until it would have expired, nothing is vouched for.
	f.revoke("c1", "s1", clock.Now().Add(10*time.Minute))
	f.revoke("c2", "s2", clock.Now().Add(10*time.Minute))
	f.revoke("c3", "s3", clock.Now().Add(20*time.Minute))
	eventuallyFails(t, l, live, codes.Unavailable, identityv1.ErrorReason_VERIFIER_STALE)

	// Past every forget_after, the set empties and trust returns.
	clock.Advance(21 * time.Minute)
	later := f.issue(t, "later")
	f.heartbeat("c3")
	eventuallyOK(t, l, later)
}

func TestLocalLearnsRotatedKeysAtOnceButRateLimited(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	f := newFakeIdentity(t, clock)
	l := newLocal(t, f, authn.WithKeyRefetchInterval(time.Hour))
	// Ready first: a token verified before the first fetch ends would
	// trigger a fetch of its own and use up the hour's allowance.
	heartbeatUntilReady(t, f, l)
	old := f.issue(t, "s1")
	verifyOK(t, l, old, "s1")
	fetches := f.keyFetches.Load()

	if err := f.keys.Rotate(t.Context(), clock.Now()); err != nil {
		t.Fatal(err)
	}
	rotated := f.issue(t, "s2")
	if kidOf(t, rotated) == kidOf(t, old) {
		t.Fatal("rotation did not change the signing key")
	}
	// Unknown kid: the keys are fetched again at once and the token
	// verifies; the old key still does.
	verifyOK(t, l, rotated, "s2")
	verifyOK(t, l, old, "s1")
	if got := f.keyFetches.Load() - fetches; got != 1 {
		t.Fatalf("%d key fetches for one unknown kid, want 1", got)
	}

	// Forged kids cannot make it hammer identity: at most one fetch per
	// interval (an hour here), however many tokens arrive.
	if err := f.keys.Rotate(t.Context(), clock.Now()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			_, err := l.Verify(context.Background(), f.issue(t, "s3"))
			if authn.Reason(err) != identityv1.ErrorReason_TOKEN_INVALID {
				t.Errorf("token of a key not refetchable yet: %v, want TOKEN_INVALID", err)
			}
		})
	}
	wg.Wait()
	if got := f.keyFetches.Load() - fetches; got != 1 {
		t.Fatalf("%d key fetches in all, want still 1 (rate limited)", got)
	}
}

func TestLocalWithoutKeysIsUnavailableNotInvalid(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	f := newFakeIdentity(t, clock)
	f.keysDown.Store(true)
	l := newLocal(t, f, authn.WithKeyRefetchInterval(0))
	f.waitStreams(t, 1)
	f.heartbeat("c0")
	tok := f.issue(t, "s1")
	// The keys cannot be fetched: the token may be perfectly good, so the
	// caller is told to retry, not that its token is bad.
	verifyFails(t, l, tok, codes.Unavailable, identityv1.ErrorReason_VERIFIER_STALE)
	f.keysDown.Store(false)
	verifyOK(t, l, tok, "s1")
}

func TestLocalRejectsWhatTheServerRejects(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	f := newFakeIdentity(t, clock)
	l := newLocal(t, f, authn.WithLeeway(10*time.Second))
	f.waitStreams(t, 1)
	f.heartbeat("c0")
	tok := f.issue(t, "s1")
	eventuallyOK(t, l, tok)

	otherAud, err := token.NewIssuer(f.keys, token.WithAudience("someone-else"), token.WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	wrongAud, _, err := otherAud.Issue(token.Claims{Subject: "u", SessionID: "s9"}, clock.Now(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	tampered := tok[:len(tok)-4] + "AAAA"
	if tampered == tok {
		tampered = tok[:len(tok)-4] + "BBBB"
	}
	for _, tc := range []struct{ name, tok string }{
		{"garbage", "not a token"},
		{"refresh token", "rt1.abc.def"},
		{"wrong audience", wrongAud},
		{"bad signature", tampered},
		{"oversized", "eyJ" + strings.Repeat("A", token.MaxTokenSize)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			verifyFails(t, l, tc.tok, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID)
		})
	}
	verifyFails(t, l, "", codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID)

	// Expiry: accepted within the leeway (from the cache too), then
	// TOKEN_EXPIRED, exactly as identity would answer.
	clock.Advance(token.DefaultAccessTTL + 5*time.Second)
	f.heartbeat("c0")
	eventuallyOK(t, l, tok)
	clock.Advance(6 * time.Second)
	f.heartbeat("c0")
	eventuallyFails(t, l, tok, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_EXPIRED)
}

func TestLocalWithJWKSURL(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	f := newFakeIdentity(t, clock)
	var mu sync.Mutex
	jwksStatus := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if jwksStatus != http.StatusOK {
			http.Error(w, "down", jwksStatus)
			return
		}
		b, _ := f.keys.JWKS()
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	l, err := authn.NewLocal(authn.WithJWKSURL(srv.URL), authn.WithRevocationsFromConn(f.conn),
		authn.WithClock(clock.Now), authn.WithKeyRefetchInterval(0), quiet(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f.waitStreams(t, 1)
	f.heartbeat("c0")
	tok := f.issue(t, "s1")
	eventuallyOK(t, l, tok)

	// A failing JWKS endpoint keeps the keys we have.
	mu.Lock()
	jwksStatus = http.StatusServiceUnavailable
	mu.Unlock()
	if err := f.keys.Rotate(t.Context(), clock.Now()); err != nil {
		t.Fatal(err)
	}
	verifyOK(t, l, tok, "s1")
	verifyFails(t, l, f.issue(t, "s2"), codes.Unavailable, identityv1.ErrorReason_VERIFIER_STALE)
	mu.Lock()
	jwksStatus = http.StatusOK
	mu.Unlock()
	verifyOK(t, l, f.issue(t, "s3"), "s3")
}

func TestNewLocalRefusesUnsafeConfigurations(t *testing.T) {
	t.Parallel()
	f := newFakeIdentity(t, newFakeClock())
	for _, tc := range []struct {
		name string
		opts []authn.LocalOption
		want string
	}{
		{"no key source", []authn.LocalOption{authn.WithRevocationsFromConn(f.conn)}, "key source"},
		{"no revocation stream", []authn.LocalOption{authn.WithJWKSURL("http://127.0.0.1:1/jwks")}, "revocation stream"},
		{"two key sources", []authn.LocalOption{authn.WithJWKSURL("http://x"), authn.WithKeysFromConn(f.conn)}, "exclusive"},
		{"no staleness", []authn.LocalOption{authn.WithKeysFromConn(f.conn), authn.WithStaleness(0)}, "staleness"},
		{"leeway too large", []authn.LocalOption{authn.WithKeysFromConn(f.conn), authn.WithLeeway(time.Hour)}, "leeway"},
		{"empty audience", []authn.LocalOption{authn.WithKeysFromConn(f.conn), authn.WithAudience("")}, "audience"},
		{"no revoked set", []authn.LocalOption{authn.WithKeysFromConn(f.conn), authn.WithMaxRevoked(0)}, "max revoked"},
		{"no access TTL", []authn.LocalOption{authn.WithKeysFromConn(f.conn), authn.WithAccessTTL(0)}, "access TTL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := authn.NewLocal(tc.opts...)
			if err == nil {
				l.Close()
				t.Fatal("NewLocal accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

func TestNewRemoteRefusesBadValues(t *testing.T) {
	t.Parallel()
	f := newFakeIdentity(t, newFakeClock())
	for _, tc := range []struct {
		name string
		opts []authn.RemoteOption
		want string
	}{
		{"no call timeout", []authn.RemoteOption{authn.WithCallTimeout(0)}, "call timeout"},
		{"nil clock", []authn.RemoteOption{authn.WithClock(nil)}, "clock"},
		{"nil logger", []authn.RemoteOption{authn.WithLogger(nil)}, "logger"},
		{"no staleness", []authn.RemoteOption{authn.WithRevocationWatch(), authn.WithStaleness(-time.Second)}, "staleness"},
		{"backoff upside down", []authn.RemoteOption{authn.WithReconnectBackoff(time.Second, time.Millisecond)}, "backoff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := authn.NewRemote(f.conn, tc.opts...)
			if err == nil {
				r.Close()
				t.Fatal("NewRemote accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	if r, err := authn.NewRemote(nil); err == nil {
		r.Close()
		t.Fatal("NewRemote accepted a nil connection")
	}
}

// Options that concern one verifier are of its own type, so giving one to
// the other does not compile; options both take are of a type both accept.
func TestOptionTypesKeepToTheirVerifier(t *testing.T) {
	t.Parallel()
	localOnly := map[string]any{
		"WithJWKSURL":             authn.WithJWKSURL("http://x"),
		"WithHTTPClient":          authn.WithHTTPClient(nil),
		"WithKeysFromConn":        authn.WithKeysFromConn(nil),
		"WithRevocationsFromConn": authn.WithRevocationsFromConn(nil),
		"WithRemoteFallback":      authn.WithRemoteFallback(nil),
		"WithIssuer":              authn.WithIssuer("i"),
		"WithAudience":            authn.WithAudience("a"),
		"WithLeeway":              authn.WithLeeway(0),
		"WithKeyRefresh":          authn.WithKeyRefresh(time.Second),
		"WithKeyRefetchInterval":  authn.WithKeyRefetchInterval(time.Second),
		"WithAccessTTL":           authn.WithAccessTTL(time.Minute),
	}
	for name, o := range localOnly {
		if _, ok := o.(authn.RemoteOption); ok {
			t.Errorf("%s is accepted by NewRemote, which ignores it", name)
		}
		if _, ok := o.(authn.LocalOption); !ok {
			t.Errorf("%s is not a LocalOption", name)
		}
	}
	if _, ok := any(authn.WithRevocationWatch()).(authn.LocalOption); ok {
		t.Error("WithRevocationWatch is accepted by NewLocal, which ignores it")
	}
	for name, o := range map[string]any{
		"WithCache": authn.WithCache(1, 0), "WithCallTimeout": authn.WithCallTimeout(time.Second),
		"WithClock": authn.WithClock(time.Now), "WithLogger": authn.WithLogger(nil),
		"WithStaleness": authn.WithStaleness(time.Second), "WithMaxRevoked": authn.WithMaxRevoked(1),
		"WithReconnectBackoff": authn.WithReconnectBackoff(time.Millisecond, time.Second),
	} {
		_, local := o.(authn.LocalOption)
		_, remote := o.(authn.RemoteOption)
		if !local || !remote {
			t.Errorf("%s: LocalOption %v, RemoteOption %v; want both", name, local, remote)
		}
	}
}

// A local verifier caps a token's lifetime: exp - iat beyond the access
// TTL it is told (plus the leeway) is refused, however good the signature.
func TestLocalCapsTheTokenLifetime(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	f := newFakeIdentity(t, clock) // issues tokens for token's default access TTL (15m)
	strict := newLocal(t, f, authn.WithAccessTTL(time.Minute), authn.WithLeeway(0))
	lenient := newLocal(t, f) // DefaultMaxAccessTTL
	tok := f.issue(t, "s1")
	f.waitStreams(t, 2)
	f.heartbeat("c1")
	waitReady(t, strict)
	waitReady(t, lenient)
	verifyOK(t, lenient, tok, "s1")
	verifyFails(t, strict, tok, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID)
}
