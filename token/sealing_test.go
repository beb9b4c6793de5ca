package token

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/identityd/identity/masterkey"
)

const ringName = "identity:keyring"

func newMasterKeys(t testing.TB, raw ...[]byte) *masterkey.Keys {
	t.Helper()
	if len(raw) == 0 {
		raw = [][]byte{newMasterKeyBytes(t)}
	}
	k, err := masterkey.New(raw...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newMasterKeyBytes(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, masterkey.Size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sealedWith(k *masterkey.Keys) Option {
	return WithSealing(Sealing{Sealer: k, Name: ringName})
}

func (s *memStore) raw() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.blob)
}

// secretForms are the keyring's secrets in every encoding they could be
// stored or leak in: each private key (raw, seed, PKCS#8) and the refresh
// secret, raw, hex, base64 and base64url.
func secretForms(t testing.TB, ring Keyring) map[string][]byte {
	t.Helper()
	forms := map[string][]byte{}
	add := func(what string, b []byte) {
		forms[what+" raw"] = b
		forms[what+" hex"] = []byte(hex.EncodeToString(b))
		for name, enc := range map[string]*base64.Encoding{
			"base64": base64.StdEncoding, "base64 unpadded": base64.RawStdEncoding,
			"base64url": base64.URLEncoding, "base64url unpadded": base64.RawURLEncoding,
		} {
			forms[what+" "+name] = []byte(enc.EncodeToString(b))
		}
	}
	add("refresh secret", ring.RefreshSecret)
	for _, k := range ring.Keys {
		if p, ok := k.Private.(ed25519.PrivateKey); ok {
			add("key "+k.ID+" seed", p.Seed())
		}
		der, err := x509.MarshalPKCS8PrivateKey(k.Private)
		if err != nil {
			t.Fatal(err)
		}
		add("key "+k.ID+" PKCS#8", der)
	}
	return forms
}

func openRing(t testing.TB, k *masterkey.Keys, blob []byte) Keyring {
	t.Helper()
	ring, err := Sealing{Sealer: k, Name: ringName}.Open(blob)
	if err != nil {
		t.Fatalf("open the stored keyring: %v", err)
	}
	return ring
}

func TestSealedKeyringStoresNoSecret(t *testing.T) {
	t.Parallel()
	mk := newMasterKeys(t)
	store := &memStore{}
	m, err := LoadOrCreate(t.Context(), store, EdDSA, sealedWith(mk))
	if err != nil {
		t.Fatal(err)
	}
	blob := store.raw()
	if id, ok := masterkey.SealedBy(blob); !ok || id != mk.ID() {
		t.Fatalf("stored keyring is not sealed under the master key (SealedBy = %q, %t)", id, ok)
	}
	ring := openRing(t, mk, blob)
	if sk := mustSigningKey(t, m); len(ring.Keys) != 1 || ring.Keys[0].ID != sk.ID ||
		!bytes.Equal(ring.RefreshSecret, m.Refresh().secret) {
		t.Fatal("the sealed keyring is not the one the Manager uses")
	}
	for what, form := range secretForms(t, ring) {
		if bytes.Contains(blob, form) {
			t.Errorf("the stored blob holds the %s", what)
		}
	}
	if !bytes.Equal(m.cur.Load().raw, blob) {
		t.Error("the Manager does not remember the sealed bytes it stored")
	}

	// A second instance with the master key reads the same keys, and a
	// Reload of an unchanged blob changes nothing.
	other, err := LoadOrCreate(t.Context(), store, EdDSA, sealedWith(mk))
	if err != nil {
		t.Fatal(err)
	}
	if mustSigningKey(t, other).ID != mustSigningKey(t, m).ID || store.swaps != 1 {
		t.Errorf("second instance: other keys or a write (%d swaps)", store.swaps)
	}
	before := other.cur.Load()
	if err := other.Reload(t.Context()); err != nil || other.cur.Load() != before {
		t.Errorf("Reload of the unchanged blob: %v (state replaced: %t)", err, other.cur.Load() != before)
	}
}

func TestSealedKeyringRefusedWithoutTheRightKey(t *testing.T) {
	t.Parallel()
	mk := newMasterKeys(t)
	store := &memStore{}
	if _, err := LoadOrCreate(t.Context(), store, EdDSA, sealedWith(mk)); err != nil {
		t.Fatal(err)
	}
	blob := store.raw()
	var env map[string]any
	if err := json.Unmarshal(blob, &env); err != nil {
		t.Fatal(err)
	}
	ct, _ := base64.StdEncoding.DecodeString(env["ciphertext"].(string))
	ct[0] ^= 0x80
	env["ciphertext"] = ct
	tampered, _ := json.Marshal(env)

	tests := []struct {
		name string
		blob []byte
		alg  string
		opts []Option
		want error
	}{
		{"another master key", blob, EdDSA, []Option{sealedWith(newMasterKeys(t))}, masterkey.ErrUnknownKey},
		{"no master key", blob, EdDSA, nil, ErrKeyringSealed},
		{"tampered", tampered, EdDSA, []Option{sealedWith(mk)}, masterkey.ErrOpen},
		{"moved to another name", blob, EdDSA, []Option{WithSealing(Sealing{Sealer: mk, Name: "other:keyring"})}, masterkey.ErrOpen},
		// Another alg would rotate a key in: the refusal must come first.
		{"another master key, another alg", blob, ES256, []Option{sealedWith(newMasterKeys(t))}, masterkey.ErrUnknownKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := &memStore{blob: bytes.Clone(tc.blob)}
			m, err := LoadOrCreate(t.Context(), s, tc.alg, tc.opts...)
			if !errors.Is(err, tc.want) || m != nil {
				t.Fatalf("LoadOrCreate = %v, %v; want %v", m, err, tc.want)
			}
			if s.swaps != 0 || !bytes.Equal(s.raw(), tc.blob) {
				t.Error("a refused keyring was changed in the store")
			}
			ring := openRing(t, mk, blob)
			for what, form := range secretForms(t, ring) {
				if strings.Contains(err.Error(), string(form)) {
					t.Errorf("the error holds the %s", what)
				}
			}
		})
	}
}

func TestClearKeyringIsSealedOnLoad(t *testing.T) {
	t.Parallel()
	store := &memStore{}
	old, err := LoadOrCreate(t.Context(), store, EdDSA) // an older version, in the clear
	if err != nil {
		t.Fatal(err)
	}
	clearBlob := store.raw()
	if !isClearKeyring(clearBlob) {
		t.Fatal("without a Sealer the keyring is not stored as before")
	}
	mk := newMasterKeys(t)
	var log bytes.Buffer
	m, err := LoadOrCreate(t.Context(), store, EdDSA, sealedWith(mk), WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	blob := store.raw()
	if id, ok := masterkey.SealedBy(blob); !ok || id != mk.ID() || store.swaps != 2 {
		t.Fatalf("keyring not sealed in place (SealedBy %q, %t; %d swaps)", id, ok, store.swaps)
	}
	if mustSigningKey(t, m).ID != mustSigningKey(t, old).ID || !bytes.Equal(m.Refresh().secret, old.Refresh().secret) {
		t.Error("the migration changed the keys: tokens and sessions of the old version would break")
	}
	if !bytes.Equal(m.cur.Load().raw, blob) {
		t.Error("after the migration the Manager remembers another blob than the stored one")
	}
	if !strings.Contains(log.String(), "now sealed") || !strings.Contains(log.String(), ringName) {
		t.Errorf("the migration was not logged: %q", log.String())
	}
	for what, form := range secretForms(t, openRing(t, mk, blob)) {
		if strings.Contains(log.String(), string(form)) {
			t.Errorf("the log holds the %s", what)
		}
	}
	// The next start reads the sealed keyring: no second migration.
	if _, err := LoadOrCreate(t.Context(), store, EdDSA, sealedWith(mk)); err != nil || store.swaps != 2 {
		t.Errorf("second start: %v, %d swaps", err, store.swaps)
	}
	// The old version (no master key) can no longer read it.
	if err := old.Reload(t.Context()); !errors.Is(err, ErrKeyringSealed) {
		t.Errorf("Reload without a master key: %v, want ErrKeyringSealed", err)
	}
}

// Instances starting together on a keyring in the clear migrate it once,
// and each ends up on the sealed blob.
func TestClearKeyringMigrationRace(t *testing.T) {
	t.Parallel()
	const instances = 4
	seed := &memStore{}
	first, err := LoadOrCreate(t.Context(), seed, EdDSA)
	if err != nil {
		t.Fatal(err)
	}
	mk := newMasterKeys(t)
	store := &memStore{blob: seed.raw(), barrierReads: instances}
	store.barrier.Add(instances)
	managers := make([]*Manager, instances)
	errs := make([]error, instances)
	var wg sync.WaitGroup
	for i := range instances {
		wg.Go(func() { managers[i], errs[i] = LoadOrCreate(t.Context(), store, EdDSA, sealedWith(mk)) })
	}
	wg.Wait()
	if store.swaps != 1 {
		t.Errorf("%d writes, want one migration", store.swaps)
	}
	for i, m := range managers {
		if errs[i] != nil {
			t.Fatalf("instance %d: %v", i, errs[i])
		}
		if err := m.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.cur.Load().raw, store.raw()) || mustSigningKey(t, m).ID != mustSigningKey(t, first).ID {
			t.Errorf("instance %d is not on the sealed keyring after Reload", i)
		}
	}
}

func TestSealedLoadOrCreateRaceConverges(t *testing.T) {
	t.Parallel()
	const instances = 4
	mk := newMasterKeys(t)
	for round := range 5 {
		store := &memStore{barrierReads: instances}
		store.barrier.Add(instances)
		managers := make([]*Manager, instances)
		errs := make([]error, instances)
		var wg sync.WaitGroup
		for i := range instances {
			wg.Go(func() { managers[i], errs[i] = LoadOrCreate(t.Context(), store, EdDSA, sealedWith(mk)) })
		}
		wg.Wait()
		if store.swaps != 1 {
			t.Errorf("round %d: %d keyrings written, want 1", round, store.swaps)
		}
		for i, m := range managers {
			if errs[i] != nil {
				t.Fatalf("round %d, instance %d: %v", round, i, errs[i])
			}
			if mustSigningKey(t, m).ID != mustSigningKey(t, managers[0]).ID || !bytes.Equal(m.Refresh().secret, managers[0].Refresh().secret) {
				t.Errorf("round %d: instance %d has other keys", round, i)
			}
			if !bytes.Equal(m.cur.Load().raw, store.raw()) {
				t.Errorf("round %d: instance %d remembers another blob than the stored one", round, i)
			}
		}
	}
}

// Sealed blobs differ at each seal: rotations must still compare against
// the exact stored bytes, and every concurrent rotation land.
func TestSealedRotations(t *testing.T) {
	t.Parallel()
	mk := newMasterKeys(t)
	store := &memStore{}
	var managers []*Manager
	for range 4 {
		m, err := LoadOrCreate(t.Context(), store, EdDSA, sealedWith(mk))
		if err != nil {
			t.Fatal(err)
		}
		managers = append(managers, m)
	}
	var wg sync.WaitGroup
	for _, m := range managers {
		wg.Go(func() {
			if err := m.Rotate(t.Context(), t0); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ring := openRing(t, mk, store.raw())
	if len(ring.Keys) != 5 {
		t.Errorf("keyring has %d keys, want 5 (one per rotation, none lost)", len(ring.Keys))
	}
	for _, m := range managers {
		if err := m.Reload(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, _, ok := m.Key(ring.Keys[4].ID); !ok {
			t.Error("an instance does not know the last rotated key after Reload")
		}
	}
}

// The master-key rotation: instances given the new key as accepted keep
// reading after the rewrap; one without it keeps the keys it has.
func TestRewrapKeyring(t *testing.T) {
	t.Parallel()
	oldRaw, newRaw := newMasterKeyBytes(t), newMasterKeyBytes(t)
	oldKey, newKey := newMasterKeys(t, oldRaw), newMasterKeys(t, newRaw)
	store := &memStore{}
	if err := RewrapKeyring(t.Context(), store, Sealing{Sealer: newKey, Name: ringName}); !errors.Is(err, ErrNoKeyring) {
		t.Fatalf("rewrap of an empty store: %v, want ErrNoKeyring", err)
	}
	a, err := LoadOrCreate(t.Context(), store, EdDSA, sealedWith(oldKey))
	if err != nil {
		t.Fatal(err)
	}
	// Step 1: b has the new key as accepted (the old one still seals); c
	// was not given it.
	b, err := LoadOrCreate(t.Context(), store, EdDSA, sealedWith(newMasterKeys(t, oldRaw, newRaw)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := LoadOrCreate(t.Context(), store, EdDSA, sealedWith(oldKey))
	if err != nil {
		t.Fatal(err)
	}
	// Step 2: rewrap under the new key.
	if err := RewrapKeyring(t.Context(), store, Sealing{Sealer: newKey.Accepting(oldKey), Name: ringName}); err != nil {
		t.Fatal(err)
	}
	if id, _ := masterkey.SealedBy(store.raw()); id != newKey.ID() {
		t.Fatalf("after rewrap the keyring is sealed under %s, want the new key %s", id, newKey.ID())
	}
	if ring := openRing(t, newKey, store.raw()); ring.Keys[0].ID != mustSigningKey(t, a).ID {
		t.Error("rewrap changed the keys")
	}
	if err := b.Reload(t.Context()); err != nil {
		t.Errorf("an instance with both keys cannot read the rewrapped keyring: %v", err)
	}
	if err := c.Reload(t.Context()); !errors.Is(err, masterkey.ErrUnknownKey) {
		t.Errorf("an instance with only the old key: Reload = %v, want ErrUnknownKey", err)
	}
	if _, err := c.SigningKey(); err != nil {
		t.Error("a failed Reload dropped the keys")
	}
	// b rotates meanwhile: it seals under the old key, which every instance
	// of the overlap still opens; a second rewrap puts it back under the
	// new one.
	if err := b.Rotate(t.Context(), t0); err != nil {
		t.Fatal(err)
	}
	if id, _ := masterkey.SealedBy(store.raw()); id != oldKey.ID() {
		t.Fatalf("b sealed under %s, want its first key", id)
	}
	if err := RewrapKeyring(t.Context(), store, Sealing{Sealer: newKey.Accepting(oldKey), Name: ringName}); err != nil {
		t.Fatal(err)
	}
	// Step 3: instances switch to the new key alone.
	d, err := LoadOrCreate(t.Context(), store, EdDSA, sealedWith(newKey), WithClock(func() time.Time { return t0 }))
	if err != nil {
		t.Fatal(err)
	}
	if ring := openRing(t, newKey, store.raw()); len(ring.Keys) != 2 || len(d.Published()) != 2 {
		t.Error("the rotation made during the overlap was lost")
	}
	// A rewrap also seals a keyring in the clear.
	plain := &memStore{}
	if _, err := LoadOrCreate(t.Context(), plain, EdDSA); err != nil {
		t.Fatal(err)
	}
	if err := RewrapKeyring(t.Context(), plain, Sealing{Sealer: newKey, Name: ringName}); err != nil {
		t.Fatal(err)
	}
	if _, ok := masterkey.SealedBy(plain.raw()); !ok {
		t.Error("rewrap left a keyring in the clear")
	}
	if !slices.Equal(newKey.IDs(), []string{newKey.ID()}) {
		t.Error("Accepting changed its receiver")
	}
}
