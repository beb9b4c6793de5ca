package token

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"hash"
	"io"
	"strconv"
	"strings"
	"sync"
)

// Refresh encodes and authenticates refresh tokens:
//
//	rt1.<session id>.<generation>.<nonce>.<mac>
//	mac = base64url(HMAC-SHA256(secret, "rt1|" + session id + "|" + generation + "|" + nonce))
//
// The generation is decimal, the nonce is the session's random value from
// NewNonce, base64url without padding. Session ids contain a dot themselves,
// so a token is split from the right: generation, nonce and mac never hold
// one. The token is opaque to clients and never a JWT; the store keeps the
// nonce, never the token, so a reader of Redis cannot forge one without the
// secret, and the server recomputes the current token instead of storing it.
type Refresh struct {
	secret []byte
	// macs are keyed HMACs with their input and output buffers, reused:
	// every login and refresh encodes a token and every refresh decodes
	// one, and a new HMAC-SHA256 is about a dozen allocations.
	macs sync.Pool // of *refreshMAC
}

type refreshMAC struct {
	h       hash.Hash
	in, sum []byte
}

// NewRefresh returns a codec keyed with secret (at least 32 bytes).
func NewRefresh(secret []byte) (*Refresh, error) {
	if len(secret) < refreshSecretSize {
		return nil, errors.New("token: refresh secret shorter than 32 bytes")
	}
	return &Refresh{secret: append([]byte(nil), secret...)}, nil
}

const (
	refreshPrefix = "rt1."
	// MaxRefreshSize bounds Decode's input: a real token is about 120 bytes.
	MaxRefreshSize = 512
	maxSessionID   = 128
	nonceBytes     = 16
	nonceLen       = 22 // base64url of 16 bytes, unpadded
	macLen         = 43 // base64url of 32 bytes, unpadded
)

// NewNonce returns a fresh per-session nonce: 16 random bytes, base64url.
func NewNonce(rand io.Reader) (string, error) {
	return randomString(rand, nonceBytes)
}

// Encode returns the refresh token for generation gen of a session.
// sessionID must be 1 to 128 characters of [A-Za-z0-9._-] and nonce come
// from NewNonce; Decode rejects tokens built from anything else.
func (r *Refresh) Encode(sessionID string, gen uint64, nonce string) string {
	var buf [MaxRefreshSize]byte
	var gb [20]byte
	g := strconv.AppendUint(gb[:0], gen, 10)
	b := append(buf[:0], refreshPrefix...)
	b = append(b, sessionID...)
	b = append(b, '.')
	b = append(b, g...)
	b = append(b, '.')
	b = append(b, nonce...)
	b = append(b, '.')
	var mac [sha256.Size]byte
	b = b64.AppendEncode(b, r.mac(mac[:0], sessionID, g, nonce))
	return string(b)
}

// Decode parses tok and checks its MAC in constant time. Any fault (size,
// shape, a non-canonical generation, bad base64, a wrong MAC) is ErrInvalid,
// without saying which. It says nothing about whether the session is live or
// the generation current: the store decides that.
func (r *Refresh) Decode(tok string) (sessionID string, gen uint64, nonce string, err error) {
	if len(tok) > MaxRefreshSize || !strings.HasPrefix(tok, refreshPrefix) {
		return "", 0, "", ErrInvalid
	}
	rest := tok[len(refreshPrefix):]
	rest, macStr, ok1 := cutLast(rest)
	rest, nonce, ok2 := cutLast(rest)
	sessionID, genStr, ok3 := cutLast(rest)
	if !ok1 || !ok2 || !ok3 || !validSessionID(sessionID) ||
		len(nonce) != nonceLen || len(macStr) != macLen || !canonicalUint(genStr) {
		return "", 0, "", ErrInvalid
	}
	gen, err = strconv.ParseUint(genStr, 10, 64)
	if err != nil {
		return "", 0, "", ErrInvalid
	}
	// Strict decoding refuses non-zero trailing bits, so exactly one string
	// encodes each nonce and MAC: a token cannot be altered and still pass.
	var nb [nonceBytes]byte
	if n, err := b64Strict.Decode(nb[:], []byte(nonce)); err != nil || n != nonceBytes {
		return "", 0, "", ErrInvalid
	}
	var got, want [sha256.Size]byte
	if n, err := b64Strict.Decode(got[:], []byte(macStr)); err != nil || n != sha256.Size {
		return "", 0, "", ErrInvalid
	}
	if !hmac.Equal(got[:], r.mac(want[:0], sessionID, []byte(genStr), nonce)) {
		return "", 0, "", ErrInvalid
	}
	return sessionID, gen, nonce, nil
}

// mac appends the token's MAC to dst.
func (r *Refresh) mac(dst []byte, sessionID string, gen []byte, nonce string) []byte {
	m, _ := r.macs.Get().(*refreshMAC)
	if m == nil {
		m = &refreshMAC{h: hmac.New(sha256.New, r.secret)}
	}
	defer r.macs.Put(m)
	m.in = append(m.in[:0], "rt1|"...)
	m.in = append(m.in, sessionID...)
	m.in = append(m.in, '|')
	m.in = append(m.in, gen...)
	m.in = append(m.in, '|')
	m.in = append(m.in, nonce...)
	m.h.Reset()
	m.h.Write(m.in)
	m.sum = m.h.Sum(m.sum[:0])
	return append(dst, m.sum...)
}

// cutLast splits s at its last dot.
func cutLast(s string) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

func validSessionID(s string) bool {
	return len(s) <= maxSessionID && validKID(s)
}

// canonicalUint accepts only the form strconv.FormatUint produces, so a
// generation has exactly one spelling.
func canonicalUint(s string) bool {
	if s == "" || len(s) > 20 || (len(s) > 1 && s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
