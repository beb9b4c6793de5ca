package authn

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestCacheBoundsAndExpiry(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	c := newCache(16, time.Minute)
	for i := range 1000 {
		c.put(keyOf(fmt.Sprint(i)), &Claims{ExpiresAt: now.Add(time.Hour)}, now)
		if n := c.len(); n > 16 {
			t.Fatalf("cache holds %d entries, bound is 16", n)
		}
	}

	k := keyOf("tok")
	c.put(k, &Claims{SessionID: "s", ExpiresAt: now.Add(30 * time.Second)}, now)
	if _, ok := c.get(k, now.Add(29*time.Second)); !ok {
		t.Fatal("entry gone before the token's exp")
	}
	if _, ok := c.get(k, now.Add(30*time.Second)); ok {
		t.Fatal("entry outlived the token's exp")
	}
	c.put(k, &Claims{ExpiresAt: now.Add(time.Hour)}, now)
	if _, ok := c.get(k, now.Add(time.Minute)); ok {
		t.Fatal("entry outlived the cache's max age")
	}
	expired := keyOf("expired")
	c.put(expired, &Claims{ExpiresAt: now}, now)
	if _, ok := c.get(expired, now); ok {
		t.Fatal("an expired token was cached")
	}
	c.clear()
	if c.len() != 0 {
		t.Fatal("clear left entries")
	}

	none := newCache(0, 0)
	none.put(k, &Claims{ExpiresAt: now.Add(time.Hour)}, now)
	if _, ok := none.get(k, now); ok || none.len() != 0 {
		t.Fatal("a disabled cache remembered a token")
	}
}

func TestKeyOfIsSHA256AndDoesNotAllocate(t *testing.T) {
	tok := strings.Repeat("eyJhbGciOiJFZERTQSJ9.", 30)
	if keyOf(tok) != sha256.Sum256([]byte(tok)) {
		t.Fatal("keyOf is not the SHA-256 of the token")
	}
	if n := testing.AllocsPerRun(100, func() { _ = keyOf(tok) }); n != 0 {
		t.Fatalf("keyOf allocates %v times per call", n)
	}
}

func TestFeedKeepsRevocationsUntilForgetAfter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	c := newVerifierConfig([]VerifierOption{WithMaxRevoked(2), WithLeeway(0), WithClock(func() time.Time { return now })})
	f := newFeed(nil, &c)
	f.add("past", now.Add(-time.Second), now)
	if f.isRevoked("past") {
		t.Error("kept a revocation whose tokens have all expired")
	}
	f.add("s1", time.Time{}, now) // no forget_after: kept a long time
	f.add("s2", now.Add(time.Minute), now)
	f.add("s2", now.Add(time.Second), now) // an earlier forget_after never shortens it
	f.purge(now.Add(30 * time.Second))
	if !f.isRevoked("s1") || !f.isRevoked("s2") {
		t.Fatal("purged revocations still in force")
	}
	f.purge(now.Add(2 * time.Minute))
	if f.isRevoked("s2") || !f.isRevoked("s1") {
		t.Fatal("purge kept an expired revocation or dropped a live one")
	}

	// Full: a third revocation is not dropped silently; nothing is
	// trusted until it would have expired.
	f.lastHeard.Store(now.UnixNano())
	f.add("s2", now.Add(time.Minute), now)
	if !f.trusted(now, now) {
		t.Fatal("not trusted before the overflow")
	}
	f.add("s3", now.Add(10*time.Minute), now)
	if f.trusted(now, now) {
		t.Fatal("trusted after dropping a revocation")
	}
	later := now.Add(10*time.Minute + time.Nanosecond)
	f.lastHeard.Store(later.UnixNano())
	if !f.trusted(later, later) {
		t.Fatal("still distrusting after the dropped revocation expired")
	}
}

func TestKidOf(t *testing.T) {
	t.Parallel()
	enc := base64.RawURLEncoding.EncodeToString
	for _, tc := range []struct{ tok, want string }{
		{enc([]byte(`{"alg":"EdDSA","kid":"k1","typ":"at+jwt"}`)) + ".e30.sig", "k1"},
		{enc([]byte(`{"alg":"EdDSA"}`)) + ".e30.sig", ""},
		{enc([]byte(`{"kid":7}`)) + ".e30.sig", ""},
		{"not-base64!.e30.sig", ""},
		{"no dots at all", ""},
		{enc([]byte(`{"kid":"`+strings.Repeat("k", 2000)+`"}`)) + ".x.y", ""},
	} {
		if got := kidOf(tc.tok); got != tc.want {
			t.Errorf("kidOf(%.30q…) = %q, want %q", tc.tok, got, tc.want)
		}
	}
}

func FuzzKidOf(f *testing.F) {
	f.Add("eyJraWQiOiJrMSJ9.e30.sig")
	f.Add("..")
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		_ = kidOf(tok) // must not panic, whatever the input
	})
}
