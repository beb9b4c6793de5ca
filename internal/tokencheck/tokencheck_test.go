package tokencheck

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/identityd/identity/token"
)

func TestCacheBoundsAndExpiry(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	c := NewCache(16, time.Minute)
	for i := range 1000 {
		c.Put(KeyOf(fmt.Sprint(i)), &token.Claims{ExpiresAt: now.Add(time.Hour)}, now, c.Epoch())
		if n := c.Len(); n > 16 {
			t.Fatalf("cache holds %d entries, bound is 16", n)
		}
	}

	k := KeyOf("tok")
	c.Put(k, &token.Claims{SessionID: "s", ExpiresAt: now.Add(30 * time.Second)}, now, c.Epoch())
	if _, ok := c.Get(k, now.Add(29*time.Second)); !ok {
		t.Fatal("entry gone before the token's exp")
	}
	if _, ok := c.Get(k, now.Add(30*time.Second)); ok {
		t.Fatal("entry outlived the token's exp")
	}
	c.Put(k, &token.Claims{ExpiresAt: now.Add(time.Hour)}, now, c.Epoch())
	if _, ok := c.Get(k, now.Add(time.Minute)); ok {
		t.Fatal("entry outlived the cache's max age")
	}
	expired := KeyOf("expired")
	c.Put(expired, &token.Claims{ExpiresAt: now}, now, c.Epoch())
	if _, ok := c.Get(expired, now); ok {
		t.Fatal("an expired token was cached")
	}
	c.Clear()
	if c.Len() != 0 {
		t.Fatal("Clear left entries")
	}

	none := NewCache(0, 0)
	none.Put(k, &token.Claims{ExpiresAt: now.Add(time.Hour)}, now, none.Epoch())
	if _, ok := none.Get(k, now); ok || none.Len() != 0 {
		t.Fatal("a disabled cache remembered a token")
	}
}

// A verification that began before a Clear (say, with a key withdrawn
// meanwhile) must not leave its result in the cache after it.
func TestCachePutAfterClearIsDropped(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	c := NewCache(16, 0)
	epoch := c.Epoch()
	c.Clear()
	c.Put(KeyOf("tok"), &token.Claims{ExpiresAt: now.Add(time.Hour)}, now, epoch)
	if _, ok := c.Get(KeyOf("tok"), now); ok {
		t.Fatal("a Put begun before Clear survived it")
	}
	c.Put(KeyOf("tok"), &token.Claims{ExpiresAt: now.Add(time.Hour)}, now, c.Epoch())
	if _, ok := c.Get(KeyOf("tok"), now); !ok {
		t.Fatal("a Put begun after Clear was dropped")
	}
}

func TestKeyOfIsSHA256AndDoesNotAllocate(t *testing.T) {
	tok := strings.Repeat("eyJhbGciOiJFZERTQSJ9.", 30)
	if KeyOf(tok) != sha256.Sum256([]byte(tok)) {
		t.Fatal("KeyOf is not the SHA-256 of the token")
	}
	if n := testing.AllocsPerRun(100, func() { _ = KeyOf(tok) }); n != 0 {
		t.Fatalf("KeyOf allocates %v times per call", n)
	}
}

func TestRevokedKeepsRevocationsUntilForgetAfter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	r := NewRevoked(5*time.Second, 0, 2)
	r.Add("past", now.Add(-time.Second), now)
	if r.IsRevoked("past") {
		t.Error("kept a revocation whose tokens have all expired")
	}
	r.Add("s1", time.Time{}, now) // no forget_after: kept a long time
	r.Add("s2", now.Add(time.Minute), now)
	r.Add("s2", now.Add(time.Second), now) // an earlier forget_after never shortens it
	r.Purge(now.Add(30 * time.Second))
	if !r.IsRevoked("s1") || !r.IsRevoked("s2") {
		t.Fatal("purged revocations still in force")
	}
	r.Purge(now.Add(2 * time.Minute))
	if r.IsRevoked("s2") || !r.IsRevoked("s1") {
		t.Fatal("purge kept an expired revocation or dropped a live one")
	}

	// Full: a third revocation is not dropped silently; nothing is
	// trusted until it would have expired.
	r.Heard(now)
	r.Add("s2", now.Add(time.Minute), now)
	if !r.Trusted(now, now) {
		t.Fatal("not trusted before the overflow")
	}
	r.Add("s3", now.Add(10*time.Minute), now)
	if r.Trusted(now, now) {
		t.Fatal("trusted after dropping a revocation")
	}
	later := now.Add(10*time.Minute + time.Nanosecond)
	r.Heard(later)
	if !r.Trusted(later, later) {
		t.Fatal("still distrusting after the dropped revocation expired")
	}
}

func TestRevokedTrust(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	skew := 2 * time.Second
	r := NewRevoked(5*time.Second, skew, 10)
	if r.Trusted(now, now) || r.Fresh(now) {
		t.Fatal("trusted before the feed was ever heard")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := r.WaitSynced(ctx); err == nil {
		t.Fatal("WaitSynced returned before the first Heard")
	}
	r.Heard(now)
	if err := r.WaitSynced(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		at   time.Duration
		want bool
	}{{0, true}, {5 * time.Second, true}, {5*time.Second + 1, false}} {
		if got := r.Trusted(now.Add(tc.at), now); got != tc.want {
			t.Errorf("Trusted %v after Heard = %v, want %v", tc.at, got, tc.want)
		}
	}
	r.Stale()
	if r.Trusted(now, now) {
		t.Fatal("trusted after Stale")
	}
	r.Heard(now)
	// A reset at now distrusts tokens issued up to now+skew (our clock
	// against the issuer's), and trusts those issued after.
	r.Reset(now)
	for _, tc := range []struct {
		iat  time.Duration
		want bool
	}{{-time.Hour, false}, {0, false}, {skew, false}, {skew + time.Millisecond, true}} {
		if got := r.Trusted(now, now.Add(tc.iat)); got != tc.want {
			t.Errorf("after a reset, Trusted(iat %+v) = %v, want %v", tc.iat, got, tc.want)
		}
	}
}

func TestChecker(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	calls := 0
	bad := errors.New("bad token")
	verify := func(_ context.Context, raw string) (*token.Claims, error) {
		calls++
		if raw == "bad" {
			return nil, bad
		}
		return &token.Claims{SessionID: raw, IssuedAt: now, ExpiresAt: now.Add(time.Minute)}, nil
	}
	r := NewRevoked(5*time.Second, 0, 10)
	c := NewChecker(verify, NewCache(10, 0), r, func() time.Time { return now })

	if _, err := c.Check(t.Context(), "bad"); !errors.Is(err, bad) {
		t.Fatalf("bad token: %v, want the verify error", err)
	}
	cl, err := c.Check(t.Context(), "s1")
	if !errors.Is(err, ErrUntrusted) || cl == nil || cl.SessionID != "s1" {
		t.Fatalf("before the feed is heard: %v, %v; want the claims with ErrUntrusted", cl, err)
	}
	r.Heard(now)
	calls = 0
	for range 3 {
		if cl, err := c.Check(t.Context(), "s1"); err != nil || cl.SessionID != "s1" {
			t.Fatalf("fresh feed: %v, %v", cl, err)
		}
	}
	if calls != 0 {
		t.Fatalf("a cached token was verified again %d times", calls)
	}
	r.Add("s1", now.Add(time.Minute), now)
	if _, err := c.Check(t.Context(), "s1"); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked session from the cache: %v, want ErrRevoked", err)
	}
	c.Cache().Clear()
	if _, err := c.Check(t.Context(), "s1"); !errors.Is(err, ErrRevoked) || calls != 1 {
		t.Fatalf("revoked session after a miss: %v (%d verifications), want ErrRevoked after one", err, calls)
	}
}

// keySet is a token.KeySource whose keys a test withdraws.
type keySet struct {
	mu   sync.Mutex
	kids map[string]bool
}

func (k *keySet) Key(kid string) (any, string, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return nil, token.EdDSA, k.kids[kid]
}

func (k *keySet) withdraw(kid string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	delete(k.kids, kid)
}

// A cached token dies with the key that verified it: once its kid is gone
// from the key source, the next Check verifies it again, which refuses it,
// and the entry is gone.
func TestCheckerDropsTokensOfAWithdrawnKey(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	keys := &keySet{kids: map[string]bool{"k1": true, "k2": true}}
	errUnknownKid := errors.New("unknown kid")
	calls := 0
	verify := func(_ context.Context, raw string) (*token.Claims, error) {
		calls++
		kid, sid, _ := strings.Cut(raw, ".")
		if _, _, ok := keys.Key(kid); !ok {
			return nil, errUnknownKid
		}
		return &token.Claims{SessionID: sid, KeyID: kid, IssuedAt: now, ExpiresAt: now.Add(time.Hour)}, nil
	}
	r := NewRevoked(time.Minute, 0, 10)
	r.Heard(now)
	c := NewChecker(verify, NewCache(10, 0), r, func() time.Time { return now }, WithKeys(keys))
	for _, tok := range []string{"k1.s1", "k1.s1", "k2.s2"} {
		if _, err := c.Check(t.Context(), tok); err != nil {
			t.Fatalf("Check(%s): %v", tok, err)
		}
	}
	if calls != 2 {
		t.Fatalf("%d verifications for two tokens, one checked twice: the cache is not used", calls)
	}

	keys.withdraw("k1")
	if _, err := c.Check(t.Context(), "k1.s1"); !errors.Is(err, errUnknownKid) {
		t.Fatalf("cached token of a withdrawn key: %v, want it verified again and refused", err)
	}
	if _, err := c.Check(t.Context(), "k2.s2"); err != nil || calls != 3 {
		t.Fatalf("token of a key still there: %v after %d verifications, want it from the cache", err, calls)
	}
	if n := c.Cache().Len(); n != 1 {
		t.Errorf("cache holds %d entries, want only the live key's token", n)
	}
}

func TestCacheStats(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	c := NewCache(16, 0)
	k := KeyOf("tok")
	c.Get(k, now) // miss: not there
	c.Put(k, &token.Claims{ExpiresAt: now.Add(time.Minute)}, now, c.Epoch())
	c.Get(k, now)                  // hit
	c.Get(k, now.Add(time.Second)) // hit
	c.Get(k, now.Add(time.Hour))   // miss: expired
	c.Clear()
	c.Get(k, now) // miss: cleared; the counts survive Clear
	if hits, misses := c.Stats(); hits != 2 || misses != 3 {
		t.Errorf("Stats = %d hits, %d misses; want 2, 3", hits, misses)
	}
	var none *Cache
	none.Get(k, now)
	if hits, misses := none.Stats(); hits != 0 || misses != 0 {
		t.Errorf("a nil cache counts %d, %d", hits, misses)
	}
}

func TestRevokedLastHeard(t *testing.T) {
	t.Parallel()
	r := NewRevoked(time.Second, 0, 10)
	if !r.LastHeard().IsZero() {
		t.Fatal("heard before any catch-up")
	}
	at := time.Unix(1_700_000_000, 0)
	r.Heard(at)
	if !r.LastHeard().Equal(at) {
		t.Fatalf("LastHeard = %v, want %v", r.LastHeard(), at)
	}
	r.Stale()
	if !r.LastHeard().IsZero() {
		t.Fatal("a stale set still reports its last catch-up")
	}
}
