package token

import (
	"crypto/rand"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

const sessionID = "ABCDEFGHIJKLMNOPQRST.abcdefghijklmnopqrst"

func newTestRefresh(t *testing.T) *Refresh {
	t.Helper()
	r, err := NewRefresh([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustNonce(t *testing.T) string {
	t.Helper()
	n, err := NewNonce(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRefreshRoundTrip(t *testing.T) {
	t.Parallel()
	r := newTestRefresh(t)
	nonce := mustNonce(t)
	for _, sid := range []string{sessionID, "s", "a.b.c", strings.Repeat("x", 128)} {
		for _, gen := range []uint64{0, 1, 9, 10, 1 << 40, math.MaxUint64} {
			tok := r.Encode(sid, gen, nonce)
			gotSID, gotGen, gotNonce, err := r.Decode(tok)
			if err != nil {
				t.Fatalf("Decode(Encode(%q, %d)) = %v", sid, gen, err)
			}
			if gotSID != sid || gotGen != gen || gotNonce != nonce {
				t.Errorf("round trip (%q, %d, %q) -> (%q, %d, %q)", sid, gen, nonce, gotSID, gotGen, gotNonce)
			}
			if !strings.HasPrefix(tok, "rt1."+sid+"."+strconv.FormatUint(gen, 10)+".") {
				t.Errorf("token %q does not follow rt1.<sid>.<gen>.<nonce>.<mac>", tok)
			}
		}
	}
}

// Any change to any byte of a token, to any other value, is refused.
func TestRefreshEveryByteFlippedIsInvalid(t *testing.T) {
	t.Parallel()
	r := newTestRefresh(t)
	tok := []byte(r.Encode(sessionID, 42, mustNonce(t)))
	for i := range tok {
		orig := tok[i]
		for v := range 256 {
			if byte(v) == orig {
				continue
			}
			tok[i] = byte(v)
			if _, _, _, err := r.Decode(string(tok)); !errors.Is(err, ErrInvalid) {
				t.Fatalf("byte %d changed from %q to %q: Decode = %v, want ErrInvalid", i, orig, byte(v), err)
			}
		}
		tok[i] = orig
	}
	for n := range len(tok) {
		if _, _, _, err := r.Decode(string(tok[:n])); !errors.Is(err, ErrInvalid) {
			t.Fatalf("token cut to %d bytes: Decode = %v", n, err)
		}
	}
	if _, _, _, err := r.Decode(string(tok) + "A"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("token with a byte appended: Decode = %v", err)
	}
}

func TestRefreshRejects(t *testing.T) {
	t.Parallel()
	r := newTestRefresh(t)
	nonce := mustNonce(t)
	other, err := NewRefresh([]byte("another secret of at least 32 bytes"))
	if err != nil {
		t.Fatal(err)
	}
	// withMAC builds a token with a correct MAC over arbitrary parts, to
	// show the parser, not only the MAC, refuses non-canonical forms.
	withMAC := func(sid, gen, nonce string) string {
		var m [32]byte
		return "rt1." + sid + "." + gen + "." + nonce + "." + b64.EncodeToString(r.mac(m[:0], sid, []byte(gen), nonce))
	}
	s := newSetup(t, EdDSA)
	tests := map[string]string{
		"other secret":            other.Encode(sessionID, 1, nonce),
		"gen with a leading zero": withMAC(sessionID, "01", nonce),
		"gen with a sign":         withMAC(sessionID, "+1", nonce),
		"gen overflowing":         withMAC(sessionID, "18446744073709551616", nonce),
		"empty gen":               withMAC(sessionID, "", nonce),
		"short nonce":             withMAC(sessionID, "1", nonce[:21]),
		"nonce not base64url":     withMAC(sessionID, "1", strings.Repeat("/", 22)),
		"empty session id":        withMAC("", "1", nonce),
		"session id with a slash": withMAC("a/b", "1", nonce),
		"session id with a pipe":  withMAC("a|1", "1", nonce),
		"session id too long":     withMAC(strings.Repeat("a", 129), "1", nonce),
		"oversized":               "rt1." + strings.Repeat("a", MaxRefreshSize),
		"no prefix":               strings.TrimPrefix(r.Encode(sessionID, 1, nonce), "rt1."),
		"old version":             "rt0" + strings.TrimPrefix(r.Encode(sessionID, 1, nonce), "rt1"),
		"access token":            s.issue(t, alice),
		"empty":                   "",
		"dots only":               "rt1.....",
	}
	for name, tok := range tests {
		if _, _, _, err := r.Decode(tok); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Decode = %v, want ErrInvalid", name, err)
		}
	}
	if _, _, _, err := r.Decode(withMAC(sessionID, "1", nonce)); err != nil {
		t.Errorf("withMAC is broken: the canonical form fails too: %v", err)
	}
}

func TestRefreshTokenIsNotAnAccessToken(t *testing.T) {
	t.Parallel()
	s := newSetup(t, EdDSA)
	tok := s.m.Refresh().Encode(alice.SessionID, 0, mustNonce(t))
	if _, err := s.ver.Verify(tok); !errors.Is(err, ErrInvalid) {
		t.Errorf("Verify(refresh token) = %v, want ErrInvalid", err)
	}
}

func TestNewNonce(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 1000 {
		n := mustNonce(t)
		if len(n) != nonceLen || seen[n] {
			t.Fatalf("nonce %q: wrong length or repeated", n)
		}
		seen[n] = true
	}
	if _, err := NewNonce(strings.NewReader("short")); err == nil {
		t.Error("NewNonce hid a short read")
	}
	if _, err := NewRefresh(make([]byte, 31)); err == nil {
		t.Error("NewRefresh accepted a 31-byte secret")
	}
}
