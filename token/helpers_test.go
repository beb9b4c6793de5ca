package token

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// t0 is the tests' epoch; whole seconds, as JWT times are.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable time source, safe for concurrent reads.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.Set(t)
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// memStore is a KeyringStore with the compare-and-swap semantics of
// tokenstore.Store.
type memStore struct {
	mu    sync.Mutex
	blob  []byte
	swaps int
	// The first barrierReads calls to Keyring wait for each other, so
	// tests can make several instances read "absent" at once.
	barrierReads int
	barrier      sync.WaitGroup
	failRead     error
}

func (s *memStore) Keyring(ctx context.Context) ([]byte, error) {
	s.mu.Lock()
	if s.barrierReads > 0 {
		s.barrierReads--
		s.mu.Unlock()
		s.barrier.Done()
		s.barrier.Wait()
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if s.failRead != nil {
		return nil, s.failRead
	}
	return bytes.Clone(s.blob), nil
}

func (s *memStore) SwapKeyring(ctx context.Context, old, new []byte) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !bytes.Equal(s.blob, old) || (old == nil) != (s.blob == nil) {
		return false, nil
	}
	s.blob = bytes.Clone(new)
	s.swaps++
	return true, nil
}

func (s *memStore) ring(t *testing.T) Keyring {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var r Keyring
	if err := json.Unmarshal(s.blob, &r); err != nil {
		t.Fatalf("stored keyring: %v", err)
	}
	return r
}

// setup is a Manager, Issuer and Verifier sharing one fake store and clock.
type setup struct {
	clock *clock
	store *memStore
	m     *Manager
	iss   *Issuer
	ver   *Verifier
}

func newSetup(t testing.TB, alg string, opts ...Option) *setup {
	t.Helper()
	s := &setup{clock: newClock(t0), store: &memStore{}}
	// The access TTL named, as the server does: its Verifier bounds the
	// tokens' lifetime.
	opts = append([]Option{WithClock(s.clock.Now), WithAccessTTL(DefaultAccessTTL)}, opts...)
	var err error
	if s.m, err = LoadOrCreate(t.Context(), s.store, alg, opts...); err != nil {
		t.Fatalf("LoadOrCreate(%s): %v", alg, err)
	}
	if s.iss, err = NewIssuer(s.m, opts...); err != nil {
		t.Fatal(err)
	}
	if s.ver, err = NewVerifier(s.m, opts...); err != nil {
		t.Fatal(err)
	}
	return s
}

var alice = Claims{
	Subject:   "u_01HZX",
	Username:  "alice",
	Roles:     []string{"admin", "dev"},
	SessionID: "ABCDEFGHIJKLMNOPQRST.abcdefghijklmnopqrst",
}

func (s *setup) issue(t testing.TB, c Claims) string {
	t.Helper()
	tok, _, err := s.iss.Issue(c, s.clock.Now(), time.Time{})
	if err != nil {
		t.Fatalf("Issue: %v", err)
	}
	return tok
}

// forge signs arbitrary header and claims, starting from a valid token's,
// so each test case states only what it breaks. A nil value deletes.
func forge(t *testing.T, method jwt.SigningMethod, key any, header, claims map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, jwt.MapClaims(claims))
	tok.Header = header
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("forge: %v", err)
	}
	return s
}

// baseClaims are the claims of a valid token issued at t0.
func baseClaims() map[string]any {
	return map[string]any{
		"iss": "identity", "sub": alice.Subject, "aud": "identity",
		"exp": t0.Add(15 * time.Minute).Unix(), "iat": t0.Unix(), "nbf": t0.Unix(),
		"jti": "jti-1", "sid": alice.SessionID, "roles": []string{"admin"},
		"preferred_username": "alice",
	}
}

// with returns a copy of m with edits applied; a nil value deletes the key.
func with(m map[string]any, edits map[string]any) map[string]any {
	out := maps.Clone(m)
	for k, v := range edits {
		if v == nil {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// segments decodes a JWT's header and payload.
func segments(t *testing.T, tok string) (header, payload map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d segments", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &payload} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatal(err)
		}
	}
	return header, payload
}
