package token

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// KeyringStore is the part of a store the Manager needs: one blob
// with compare-and-swap, so instances racing at first start or rotating at
// once agree on a single keyring.
type KeyringStore interface {
	// Keyring returns the stored keyring, nil if there is none yet.
	Keyring(ctx context.Context) ([]byte, error)
	// SwapKeyring stores new if the stored value still equals old (nil =
	// absent), or already equals new, and reports whether it does now.
	SwapKeyring(ctx context.Context, old, new []byte) (swapped bool, err error)
}

// maxSwapAttempts bounds a CAS loop: losing this often in a row means
// something other than a few instances racing is going on.
const maxSwapAttempts = 10

// Manager holds the current keyring and hands out keys: the signing key to
// the Issuer, verification keys to the Verifier (it is a KeySource), public
// keys to the JWKS endpoint and the refresh-token codec. Reads are lock-free
// (an atomic pointer), so it sits on the Verify hot path.
type Manager struct {
	cfg   config
	alg   string       // store mode: the configured signing alg
	store KeyringStore // nil in dir mode
	dir   string       // "" in store mode

	mu  sync.Mutex // serialises Reload and Rotate
	cur atomic.Pointer[keyState]
}

// keyState is an immutable snapshot built from one keyring.
type keyState struct {
	raw     []byte // as read from the store: the "old" of the next swap
	ring    Keyring
	verify  map[string]verifyKey
	refresh *Refresh
}

type verifyKey struct {
	key      any
	alg      string
	retireAt time.Time
	public   bool // asymmetric: may be published
}

func newKeyState(raw []byte, ring Keyring) (*keyState, error) {
	if err := ring.validate(); err != nil {
		return nil, err
	}
	s := &keyState{raw: raw, ring: ring, verify: make(map[string]verifyKey, len(ring.Keys))}
	for _, k := range ring.Keys {
		pub, err := k.public()
		if err != nil {
			return nil, err
		}
		s.verify[k.ID] = verifyKey{key: pub, alg: k.Alg, retireAt: k.RetireAt, public: k.Alg != HS256}
	}
	var err error
	if s.refresh, err = NewRefresh(ring.RefreshSecret); err != nil {
		return nil, err
	}
	return s, nil
}

// LoadOrCreate reads the keyring from store, or creates one with a key of
// alg if there is none. Instances starting together converge: the losers of
// the create race read the winner's keyring. If the newest key's alg is not
// alg (the configuration changed), a key of alg is rotated in; it signs after
// the publish-ahead delay.
//
// With WithSealing the keyring is stored sealed. A keyring found in the
// clear is then sealed where it is (the migration from a version that
// stored it so), and one that does not open (another master key, an
// altered or moved blob) is an error that leaves the store as it was.
//
// It uses WithAccessTTL, WithLeeway, WithPublishAhead, WithClock,
// WithRandom, WithSealing and WithLogger; pass the same options as to
// NewIssuer and NewVerifier.
func LoadOrCreate(ctx context.Context, store KeyringStore, alg string, opts ...Option) (*Manager, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if err := checkAlg(alg); err != nil {
		return nil, err
	}
	m := &Manager{cfg: c, alg: alg, store: store}
	for range maxSwapAttempts {
		raw, err := store.Keyring(ctx)
		if err != nil {
			return nil, fmt.Errorf("token: read keyring: %w", err)
		}
		if raw != nil {
			if err := m.load(ctx, raw); err != nil {
				return nil, err
			}
			algChanged := func(r Keyring) bool { return r.newest().Alg != alg }
			if algChanged(m.cur.Load().ring) {
				if _, err := m.rotateIf(ctx, c.now(), algChanged); err != nil {
					return nil, err
				}
			}
			return m, nil
		}
		ring, err := NewKeyring(alg, c.now(), c.rand)
		if err != nil {
			return nil, err
		}
		b, err := c.sealing.seal(ring)
		if err != nil {
			return nil, err
		}
		// Each seal draws a new nonce, so racing instances write different
		// blobs: the swap from absent lets exactly one land, and the others
		// read it on their next turn.
		swapped, err := store.SwapKeyring(ctx, nil, b)
		if err != nil {
			return nil, fmt.Errorf("token: create keyring: %w", err)
		}
		if !swapped {
			continue // another instance created it first: use theirs
		}
		s, err := newKeyState(b, ring)
		if err != nil {
			return nil, err
		}
		m.cur.Store(s)
		return m, nil
	}
	return nil, fmt.Errorf("token: create keyring: gave up after %d conflicts", maxSwapAttempts)
}

// checkAlg fails fast on a misconfigured alg, before touching the store.
func checkAlg(alg string) error {
	switch alg {
	case EdDSA, ES256, RS256, HS256:
		return nil
	}
	return fmt.Errorf("token: unsupported algorithm %q (want EdDSA, ES256, RS256 or HS256)", alg)
}

// setRaw makes raw, a blob just read from the store, the current keyring.
// The state keeps raw itself, as stored: sealed blobs differ at every seal,
// so the next compare-and-swap must name these exact bytes.
func (m *Manager) setRaw(raw []byte) error {
	ring, _, err := m.cfg.sealing.open(raw)
	if err != nil {
		return err
	}
	return m.setRing(raw, ring)
}

func (m *Manager) setRing(raw []byte, ring Keyring) error {
	s, err := newKeyState(raw, ring)
	if err != nil {
		return err
	}
	m.cur.Store(s)
	return nil
}

// load is setRaw that also seals a keyring found in the clear when the
// Manager has a Sealer (an older version, or an insecure start, stored it):
// a compare-and-swap from the bytes read, so instances starting together
// migrate it once. One that loses the swap keeps what it read until its
// next Reload. A keyring that does not open changes nothing in the store.
func (m *Manager) load(ctx context.Context, raw []byte) error {
	ring, inClear, err := m.cfg.sealing.open(raw)
	if err != nil {
		return err
	}
	if inClear && m.cfg.sealing.Sealer != nil {
		sealed, err := m.cfg.sealing.seal(ring)
		if err != nil {
			return err
		}
		swapped, err := m.store.SwapKeyring(ctx, raw, sealed)
		if err != nil {
			return fmt.Errorf("token: seal the keyring found in the clear: %w", err)
		}
		if swapped {
			raw = sealed
			m.cfg.log.Warn("the keyring was stored in the clear (an older version, or --insecure-plaintext-keys); it is now sealed under the master key",
				slog.String("key", m.cfg.sealing.Name))
		}
	}
	return m.setRing(raw, ring)
}

// Sealing is how the Manager stores its keyring (WithSealing).
func (m *Manager) Sealing() Sealing { return m.cfg.sealing }

// Reload re-reads the keys (store or directory) so a rotation done by
// another instance, or a new key file, is picked up. Servers call it
// periodically, more often than the publish-ahead delay. On error (a
// keyring rewrapped under a master key this instance lacks, say) the keys
// in use are kept.
func (m *Manager) Reload(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dir != "" {
		s, err := readDir(m.dir)
		if err != nil {
			return err
		}
		m.cur.Store(s)
		return nil
	}
	raw, err := m.store.Keyring(ctx)
	if err != nil {
		return fmt.Errorf("token: read keyring: %w", err)
	}
	if raw == nil {
		return errors.New("token: keyring vanished from the store; keeping the keys in memory")
	}
	if bytes.Equal(raw, m.cur.Load().raw) {
		return nil
	}
	return m.load(ctx, raw)
}

// Rotate adds a key of the configured alg that signs from now plus the
// publish-ahead delay, schedules the retirement of the keys it replaces
// (after the access TTL plus leeway, so their last tokens still verify) and
// drops keys already retired. With keys from LoadDir it returns
// ErrKeysOnDisk.
func (m *Manager) Rotate(ctx context.Context, now time.Time) error {
	if m.dir != "" {
		return ErrKeysOnDisk
	}
	_, err := m.rotateIf(ctx, now, func(Keyring) bool { return true })
	return err
}

// RotateIfOlder rotates when the newest key (signing or published ahead)
// was created maxAge or more before now, and reports whether it did. The age
// is checked on the keyring as it is in the store, inside the
// compare-and-swap, so instances running the same schedule rotate once
// between them, not once each. With keys from LoadDir it returns
// ErrKeysOnDisk.
func (m *Manager) RotateIfOlder(ctx context.Context, now time.Time, maxAge time.Duration) (bool, error) {
	if m.dir != "" {
		return false, ErrKeysOnDisk
	}
	return m.rotateIf(ctx, now, func(r Keyring) bool { return now.Sub(r.newest().Created) >= maxAge })
}

// rotateIf rotates unless cond, evaluated on the freshly read keyring, says
// no: instances changing alg together then add one key, not one each.
func (m *Manager) rotateIf(ctx context.Context, now time.Time, cond func(Keyring) bool) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	overlap := m.cfg.accessTTL + m.cfg.leeway
	for range maxSwapAttempts {
		raw, err := m.store.Keyring(ctx)
		if err != nil {
			return false, fmt.Errorf("token: read keyring: %w", err)
		}
		if raw == nil {
			return false, errors.New("token: no keyring in the store to rotate")
		}
		if err := m.setRaw(raw); err != nil {
			return false, err
		}
		ring := m.cur.Load().ring
		if !cond(ring) {
			return false, nil
		}
		next, err := ring.rotated(m.alg, now, m.cfg.publishAhead, overlap, m.cfg.rand)
		if err != nil {
			return false, err
		}
		b, err := m.cfg.sealing.seal(next)
		if err != nil {
			return false, err
		}
		swapped, err := m.store.SwapKeyring(ctx, raw, b)
		if err != nil {
			return false, fmt.Errorf("token: store keyring: %w", err)
		}
		if !swapped {
			continue
		}
		s, err := newKeyState(b, next)
		if err != nil {
			return false, err
		}
		m.cur.Store(s)
		return true, nil
	}
	return false, fmt.Errorf("token: rotate: gave up after %d conflicts", maxSwapAttempts)
}

// SigningKey is the key an Issuer signs with.
type SigningKey struct {
	ID  string
	Alg string
	// Private is what golang-jwt signs with for Alg: ed25519.PrivateKey,
	// *ecdsa.PrivateKey, *rsa.PrivateKey or []byte.
	Private crypto.PrivateKey
}

// SigningKey returns the newest key active now.
func (m *Manager) SigningKey() (SigningKey, error) {
	k, ok := m.cur.Load().ring.signer(m.cfg.now())
	if !ok {
		return SigningKey{}, errors.New("token: no active signing key")
	}
	return SigningKey{ID: k.ID, Alg: k.Alg, Private: k.Private}, nil
}

// Key implements KeySource: every key not yet retired, including keys
// published ahead of signing and HS256 keys (the server verifies its own
// HS256 tokens; they are never published).
func (m *Manager) Key(kid string) (any, string, bool) {
	k, ok := m.cur.Load().verify[kid]
	if !ok || (!k.retireAt.IsZero() && !m.cfg.now().Before(k.retireAt)) {
		return nil, "", false
	}
	return k.key, k.alg, true
}

// Published returns the public keys to put in the JWKS: every asymmetric
// key not yet retired, ordered by kid so the document is stable.
func (m *Manager) Published() []PublicKey {
	now := m.cfg.now()
	s := m.cur.Load()
	out := make([]PublicKey, 0, len(s.verify))
	for kid, k := range s.verify {
		if !k.public || (!k.retireAt.IsZero() && !now.Before(k.retireAt)) {
			continue
		}
		out = append(out, PublicKey{ID: kid, Alg: k.alg, Key: k.key})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// JWKS returns the JWK Set document of Published, for
// /.well-known/jwks.json.
func (m *Manager) JWKS() ([]byte, error) { return JWKS(m.Published()) }

// PublicJWKs returns Published in JWK form, for the GetPublicKeys RPC. Every
// key of a loaded keyring converts (it was validated on load), so there is
// no error to return.
func (m *Manager) PublicJWKs() []JWK {
	set, err := NewJWKSet(m.Published())
	if err != nil {
		return nil
	}
	return set.Keys
}

// Refresh returns the refresh-token codec keyed with the keyring's secret.
func (m *Manager) Refresh() *Refresh { return m.cur.Load().refresh }

// Keys-directory layout (LoadDir, IDENTITY_KEYS_DIR):
//
//	<kid>.pem    one private key per file: PKCS#8 ("PRIVATE KEY"), or SEC 1
//	             ("EC PRIVATE KEY") / PKCS#1 ("RSA PRIVATE KEY"); Ed25519,
//	             ECDSA P-256 or RSA >= 2048 bits. The alg follows from the key.
//	             The file name without ".pem" is the kid ([A-Za-z0-9._-]).
//	refresh.key  the refresh-token HMAC secret, used verbatim, >= 32 bytes.
//
// Every key verifies and is published; the key whose kid sorts last signs.
// Sorting by name rather than mtime keeps every instance on the same key
// whatever the file copies did to timestamps. Other files are ignored.
const refreshKeyFile = "refresh.key"

// LoadDir loads keys from a directory instead of the store (see the layout
// above). The algorithm follows from the key files, not from configuration,
// and HS256 is not available this way. Rotation is an operator's job: add a
// key file named to sort last, Reload every instance (a verifier meeting the
// new kid first refetches the JWKS), remove the old file once an access TTL
// plus leeway has passed. It uses WithClock.
func LoadDir(dir string, opts ...Option) (*Manager, error) {
	c, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	s, err := readDir(dir)
	if err != nil {
		return nil, err
	}
	m := &Manager{cfg: c, dir: dir}
	m.cur.Store(s)
	return m, nil
}

func readDir(dir string) (*keyState, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("token: keys dir: %w", err)
	}
	var ring Keyring
	for _, e := range entries { // sorted by name: the last key signs
		name := e.Name()
		if !e.Type().IsRegular() && e.Type()&os.ModeSymlink == 0 {
			continue // Kubernetes mounts secrets as symlinks into ..data
		}
		kid, ok := strings.CutSuffix(name, ".pem")
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("token: keys dir: %w", err)
		}
		priv, err := parsePrivatePEM(b)
		if err != nil {
			return nil, fmt.Errorf("token: keys dir: %s: %w", name, err)
		}
		alg, err := algOf(priv)
		if err != nil {
			return nil, fmt.Errorf("token: keys dir: %s: %w", name, err)
		}
		if alg == HS256 {
			return nil, fmt.Errorf("token: keys dir: %s: HS256 keys are not supported on disk", name)
		}
		ring.Keys = append(ring.Keys, Key{ID: kid, Alg: alg, Private: priv})
	}
	if len(ring.Keys) == 0 {
		return nil, fmt.Errorf("token: keys dir %s: no *.pem private keys", dir)
	}
	if ring.RefreshSecret, err = os.ReadFile(filepath.Join(dir, refreshKeyFile)); err != nil {
		return nil, fmt.Errorf("token: keys dir: %w", err)
	}
	if len(ring.RefreshSecret) < refreshSecretSize {
		return nil, fmt.Errorf("token: keys dir: %s has %d bytes, want at least %d", refreshKeyFile, len(ring.RefreshSecret), refreshSecretSize)
	}
	return newKeyState(nil, ring)
}

func parsePrivatePEM(b []byte) (crypto.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		return x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	}
	return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
}
