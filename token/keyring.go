package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"
)

// Keyring is every signing key identity knows plus the refresh-token HMAC
// secret. It is what the Manager stores (as JSON, private keys as PKCS#8 DER,
// sealed when it has a Sealer) so every instance signs and verifies with the
// same keys.
type Keyring struct {
	Keys []Key
	// RefreshSecret keys the refresh-token HMAC; at least 32 bytes.
	RefreshSecret []byte
}

// Key is one signing key and its lifetime.
type Key struct {
	// ID is the kid.
	ID  string
	Alg string
	// Private is an ed25519.PrivateKey, *ecdsa.PrivateKey (P-256),
	// *rsa.PrivateKey (2048 bits or more) or, for HS256, a []byte secret.
	Private crypto.PrivateKey
	Created time.Time
	// ActiveAt is when the key starts signing; it is published before.
	ActiveAt time.Time
	// RetireAt is when the key stops verifying and leaves the JWKS; zero
	// while it is the newest key.
	RetireAt time.Time
}

// retired reports whether k may no longer verify at now.
func (k Key) retired(now time.Time) bool {
	return !k.RetireAt.IsZero() && !now.Before(k.RetireAt)
}

// public returns the verification form of k's private key: the public key,
// or the secret itself for HS256.
func (k Key) public() (any, error) {
	switch p := k.Private.(type) {
	case ed25519.PrivateKey:
		return p.Public(), nil
	case *ecdsa.PrivateKey:
		return &p.PublicKey, nil
	case *rsa.PrivateKey:
		return &p.PublicKey, nil
	case []byte:
		return p, nil
	}
	return nil, fmt.Errorf("token: key %q: unsupported key type %T", k.ID, k.Private)
}

// refreshSecretSize is the size of a generated refresh secret (and the
// minimum accepted): HMAC-SHA256 gains nothing from longer keys.
const refreshSecretSize = 32

// NewKeyring returns a keyring with one fresh key of alg, signing from now,
// and a fresh refresh secret.
func NewKeyring(alg string, now time.Time, rand io.Reader) (Keyring, error) {
	k, err := newKey(alg, now, now, rand)
	if err != nil {
		return Keyring{}, err
	}
	secret := make([]byte, refreshSecretSize)
	if _, err := io.ReadFull(rand, secret); err != nil {
		return Keyring{}, fmt.Errorf("token: refresh secret: %w", err)
	}
	return Keyring{Keys: []Key{k}, RefreshSecret: secret}, nil
}

func newKey(alg string, now, activeAt time.Time, rand io.Reader) (Key, error) {
	priv, err := GenerateKey(alg, rand)
	if err != nil {
		return Key{}, err
	}
	kid, err := randomString(rand, 12)
	if err != nil {
		return Key{}, fmt.Errorf("token: kid: %w", err)
	}
	return Key{ID: kid, Alg: alg, Private: priv, Created: now, ActiveAt: activeAt}, nil
}

// GenerateKey makes a private key for alg: Ed25519, P-256, RSA 2048 or a
// 32-byte HS256 secret. rand is used for Ed25519 and HS256; since Go 1.26
// ECDSA and RSA always draw from the system source.
func GenerateKey(alg string, rand io.Reader) (crypto.PrivateKey, error) {
	switch alg {
	case EdDSA:
		_, priv, err := ed25519.GenerateKey(rand)
		return priv, err
	case ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand)
	case RS256:
		return rsa.GenerateKey(rand, 2048)
	case HS256:
		b := make([]byte, 32)
		if _, err := io.ReadFull(rand, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return nil, fmt.Errorf("token: unsupported algorithm %q (want EdDSA, ES256, RS256 or HS256)", alg)
}

// algOf returns the algorithm a private key signs with, or an error for keys
// we do not accept (other curves, RSA under 2048 bits).
func algOf(priv crypto.PrivateKey) (string, error) {
	switch p := priv.(type) {
	case ed25519.PrivateKey:
		if len(p) != ed25519.PrivateKeySize {
			return "", errors.New("token: bad Ed25519 key size")
		}
		return EdDSA, nil
	case *ecdsa.PrivateKey:
		if p.Curve != elliptic.P256() {
			return "", errors.New("token: ECDSA key is not on P-256")
		}
		return ES256, nil
	case *rsa.PrivateKey:
		if p.N.BitLen() < 2048 {
			return "", fmt.Errorf("token: RSA key has %d bits, want at least 2048", p.N.BitLen())
		}
		return RS256, nil
	case []byte:
		if len(p) < 32 {
			return "", fmt.Errorf("token: HS256 secret has %d bytes, want at least 32", len(p))
		}
		return HS256, nil
	}
	return "", fmt.Errorf("token: unsupported key type %T", priv)
}

// signer returns the key that signs at now: the newest by ActiveAt among the
// active, unretired ones (the later one in the list on a tie).
func (r Keyring) signer(now time.Time) (Key, bool) {
	var best Key
	found := false
	for _, k := range r.Keys {
		if k.ActiveAt.After(now) || k.retired(now) {
			continue
		}
		if !found || !k.ActiveAt.Before(best.ActiveAt) {
			best, found = k, true
		}
	}
	return best, found
}

// newest returns the most recently activating key, pending or not: the alg
// the keyring is moving to.
func (r Keyring) newest() Key {
	var best Key
	for i, k := range r.Keys {
		if i == 0 || !k.ActiveAt.Before(best.ActiveAt) {
			best = k
		}
	}
	return best
}

// rotated returns r with a new key of alg that signs from now+publishAhead.
// Every key still without a retirement date gets one, overlap after the new
// key takes over (the last token it signed must outlive it), and keys already
// retired at now are dropped, so the ring never grows without bound.
func (r Keyring) rotated(alg string, now time.Time, publishAhead, overlap time.Duration, rand io.Reader) (Keyring, error) {
	activeAt := now.Add(publishAhead)
	k, err := newKey(alg, now, activeAt, rand)
	if err != nil {
		return Keyring{}, err
	}
	out := Keyring{RefreshSecret: r.RefreshSecret, Keys: make([]Key, 0, len(r.Keys)+1)}
	for _, old := range r.Keys {
		if old.retired(now) {
			continue
		}
		if old.RetireAt.IsZero() {
			old.RetireAt = activeAt.Add(overlap)
		}
		out.Keys = append(out.Keys, old)
	}
	out.Keys = append(out.Keys, k)
	return out, nil
}

// validate checks what every consumer of a keyring relies on.
func (r Keyring) validate() error {
	if len(r.Keys) == 0 {
		return errors.New("token: keyring has no keys")
	}
	if len(r.RefreshSecret) < refreshSecretSize {
		return fmt.Errorf("token: refresh secret has %d bytes, want at least %d", len(r.RefreshSecret), refreshSecretSize)
	}
	seen := make(map[string]bool, len(r.Keys))
	for _, k := range r.Keys {
		if !validKID(k.ID) {
			return fmt.Errorf("token: bad kid %q", k.ID)
		}
		if seen[k.ID] {
			return fmt.Errorf("token: duplicate kid %q", k.ID)
		}
		seen[k.ID] = true
		alg, err := algOf(k.Private)
		if err != nil {
			return fmt.Errorf("token: key %q: %w", k.ID, err)
		}
		if alg != k.Alg {
			return fmt.Errorf("token: key %q: is %s, labelled %q", k.ID, alg, k.Alg)
		}
	}
	return nil
}

// validKID keeps kids to characters that need no escaping in a JWT header,
// a JWKS or a file name.
func validKID(kid string) bool {
	if kid == "" || len(kid) > 128 {
		return false
	}
	for i := 0; i < len(kid); i++ {
		if !isIDByte(kid[i]) {
			return false
		}
	}
	return true
}

func isIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
}

// keyringVersion is bumped on any incompatible change of the stored form.
const keyringVersion = 1

type wireKeyring struct {
	Version       int       `json:"v"`
	Keys          []wireKey `json:"keys"`
	RefreshSecret []byte    `json:"refresh_secret"`
}

type wireKey struct {
	ID  string `json:"kid"`
	Alg string `json:"alg"`
	// Key is PKCS#8 DER for asymmetric keys, the raw secret for HS256
	// (base64 in JSON, as encoding/json does for []byte).
	Key      []byte    `json:"key"`
	Created  time.Time `json:"created"`
	ActiveAt time.Time `json:"active_at"`
	RetireAt time.Time `json:"retire_at,omitzero"`
}

// MarshalJSON encodes the keyring for the store. The output holds private
// keys: it must never be logged.
func (r Keyring) MarshalJSON() ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	w := wireKeyring{Version: keyringVersion, RefreshSecret: r.RefreshSecret, Keys: make([]wireKey, len(r.Keys))}
	for i, k := range r.Keys {
		var der []byte
		if b, ok := k.Private.([]byte); ok {
			der = b
		} else {
			var err error
			if der, err = x509.MarshalPKCS8PrivateKey(k.Private); err != nil {
				return nil, fmt.Errorf("token: key %q: %w", k.ID, err)
			}
		}
		w.Keys[i] = wireKey{
			ID: k.ID, Alg: k.Alg, Key: der,
			Created: k.Created.UTC(), ActiveAt: k.ActiveAt.UTC(), RetireAt: k.RetireAt.UTC(),
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes and validates a stored keyring.
func (r *Keyring) UnmarshalJSON(b []byte) error {
	var w wireKeyring
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("token: keyring: %w", err)
	}
	if w.Version != keyringVersion {
		return fmt.Errorf("token: keyring version %d, want %d", w.Version, keyringVersion)
	}
	out := Keyring{RefreshSecret: w.RefreshSecret, Keys: make([]Key, len(w.Keys))}
	for i, wk := range w.Keys {
		var priv crypto.PrivateKey
		if wk.Alg == HS256 {
			priv = slices.Clone(wk.Key)
		} else {
			var err error
			if priv, err = x509.ParsePKCS8PrivateKey(wk.Key); err != nil {
				return fmt.Errorf("token: key %q: %w", wk.ID, err)
			}
		}
		out.Keys[i] = Key{
			ID: wk.ID, Alg: wk.Alg, Private: priv,
			Created: wk.Created, ActiveAt: wk.ActiveAt, RetireAt: wk.RetireAt,
		}
	}
	if err := out.validate(); err != nil {
		return err
	}
	*r = out
	return nil
}

// randomString returns n random bytes from rand, base64url-encoded.
func randomString(rand io.Reader, n int) (string, error) {
	var buf [32]byte
	b := buf[:n]
	if _, err := io.ReadFull(rand, b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
