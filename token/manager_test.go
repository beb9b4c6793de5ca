package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

func publishedIDs(m *Manager) []string {
	var ids []string
	for _, k := range m.Published() {
		ids = append(ids, k.ID)
	}
	return ids
}

func mustSigningKey(t *testing.T, m *Manager) SigningKey {
	t.Helper()
	k, err := m.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestLoadOrCreateCreatesOnceAndReuses(t *testing.T) {
	t.Parallel()
	s := newSetup(t, EdDSA)
	if s.store.swaps != 1 {
		t.Fatalf("swaps = %d, want 1", s.store.swaps)
	}
	first := mustSigningKey(t, s.m)
	again, err := LoadOrCreate(t.Context(), s.store, EdDSA, WithClock(s.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustSigningKey(t, again); got.ID != first.ID {
		t.Errorf("second instance signs with %s, first with %s", got.ID, first.ID)
	}
	if s.store.swaps != 1 {
		t.Errorf("loading an existing keyring wrote to the store (%d swaps)", s.store.swaps)
	}
	// A token from one instance verifies on the other.
	v, err := NewVerifier(again, WithClock(s.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(s.issue(t, alice)); err != nil {
		t.Errorf("cross-instance Verify: %v", err)
	}
}

// Instances starting together all read "no keyring", all try to create
// one, and must still end up with the same keys.
func TestLoadOrCreateRaceConverges(t *testing.T) {
	t.Parallel()
	const instances = 4
	for round := range 10 {
		store := &memStore{barrierReads: instances}
		store.barrier.Add(instances)
		managers := make([]*Manager, instances)
		errs := make([]error, instances)
		var wg sync.WaitGroup
		for i := range instances {
			wg.Go(func() {
				managers[i], errs[i] = LoadOrCreate(t.Context(), store, EdDSA)
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, instance %d: %v", round, i, err)
			}
		}
		if store.swaps != 1 {
			t.Errorf("round %d: %d keyrings written, want 1", round, store.swaps)
		}
		want := mustSigningKey(t, managers[0]).ID
		for i, m := range managers {
			if got := mustSigningKey(t, m).ID; got != want {
				t.Errorf("round %d: instance %d signs with %s, instance 0 with %s", round, i, got, want)
			}
			if !slices.Equal(m.Refresh().secret, managers[0].Refresh().secret) {
				t.Errorf("round %d: instance %d has another refresh secret", round, i)
			}
		}
	}
}

func TestRotateOverlap(t *testing.T) {
	t.Parallel()
	s := newSetup(t, EdDSA) // TTL 15m, leeway 30s, publish ahead 1m
	old := mustSigningKey(t, s.m)
	oldTok := s.issue(t, alice)

	if err := s.m.Rotate(t.Context(), t0); err != nil {
		t.Fatal(err)
	}
	ring := s.store.ring(t)
	if len(ring.Keys) != 2 {
		t.Fatalf("keyring has %d keys after rotation, want 2", len(ring.Keys))
	}
	next := ring.Keys[1]
	if want := t0.Add(time.Minute); !next.ActiveAt.Equal(want) {
		t.Errorf("new key active at %v, want %v", next.ActiveAt, want)
	}
	if want := t0.Add(time.Minute + 15*time.Minute + 30*time.Second); !ring.Keys[0].RetireAt.Equal(want) {
		t.Errorf("old key retires at %v, want %v", ring.Keys[0].RetireAt, want)
	}

	// Published ahead: in the JWKS and verifying, not yet signing.
	if ids := publishedIDs(s.m); !slices.Contains(ids, next.ID) || !slices.Contains(ids, old.ID) {
		t.Errorf("published %v, want both %s and %s", ids, old.ID, next.ID)
	}
	if got := mustSigningKey(t, s.m); got.ID != old.ID {
		t.Errorf("before activation signs with %s, want the old %s", got.ID, old.ID)
	}

	// At activation the new key signs; the old one still verifies.
	s.clock.Set(t0.Add(time.Minute))
	if got := mustSigningKey(t, s.m); got.ID != next.ID {
		t.Errorf("after activation signs with %s, want %s", got.ID, next.ID)
	}
	lastOld := func() string { // what the old key signed last, just before activation
		c := newClock(t0.Add(time.Minute - time.Second))
		m, err := LoadOrCreate(t.Context(), s.store, EdDSA, WithClock(c.Now))
		if err != nil {
			t.Fatal(err)
		}
		iss, err := NewIssuer(m)
		if err != nil {
			t.Fatal(err)
		}
		tok, _, err := iss.Issue(alice, c.Now(), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if h, _ := segments(t, tok); h["kid"] != old.ID {
			t.Fatalf("token before activation has kid %v, want %s", h["kid"], old.ID)
		}
		return tok
	}()
	newTok := s.issue(t, alice)
	if h, _ := segments(t, newTok); h["kid"] != next.ID {
		t.Errorf("new token kid %v, want %s", h["kid"], next.ID)
	}
	for name, tok := range map[string]string{"old": oldTok, "last old": lastOld, "new": newTok} {
		if _, err := s.ver.Verify(tok); err != nil {
			t.Errorf("%s token right after activation: %v", name, err)
		}
	}

	// The last token the old key signed expires at t0+1m-1s+15m and is
	// honoured with leeway until t0+16m29s, a second before its key retires.
	s.clock.Set(t0.Add(time.Minute + 15*time.Minute + 28*time.Second))
	if _, err := s.ver.Verify(lastOld); err != nil {
		t.Errorf("last old token within leeway, before retirement: %v", err)
	}
	s.clock.Set(ring.Keys[0].RetireAt)
	if _, err := s.ver.Verify(lastOld); !errors.Is(err, ErrInvalid) {
		t.Errorf("token of a retired key: %v, want ErrInvalid", err)
	}
	if ids := publishedIDs(s.m); slices.Contains(ids, old.ID) {
		t.Errorf("retired key still published: %v", ids)
	}

	// The next rotation drops the retired key from the store.
	if err := s.m.Rotate(t.Context(), s.clock.Now()); err != nil {
		t.Fatal(err)
	}
	for _, k := range s.store.ring(t).Keys {
		if k.ID == old.ID {
			t.Error("retired key kept in the keyring after the next rotation")
		}
	}
}

func TestReloadPicksUpAnotherInstancesRotation(t *testing.T) {
	t.Parallel()
	s := newSetup(t, EdDSA)
	other, err := LoadOrCreate(t.Context(), s.store, EdDSA, WithClock(s.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Rotate(t.Context(), t0); err != nil {
		t.Fatal(err)
	}
	newID := s.store.ring(t).Keys[1].ID
	if _, _, ok := s.m.Key(newID); ok {
		t.Fatal("instance knows the new key before reloading")
	}
	if err := s.m.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := s.m.Key(newID); !ok {
		t.Error("instance does not know the new key after Reload")
	}
	// Reload keeps the keys in use when the store fails.
	s.store.mu.Lock()
	s.store.failRead = errors.New("redis down")
	s.store.mu.Unlock()
	if err := s.m.Reload(t.Context()); err == nil {
		t.Error("Reload hid a store error")
	}
	if _, _, ok := s.m.Key(newID); !ok {
		t.Error("a failed Reload dropped the keys")
	}
}

func TestConcurrentRotationsAllLand(t *testing.T) {
	t.Parallel()
	s := newSetup(t, EdDSA)
	managers := []*Manager{s.m}
	for range 3 {
		m, err := LoadOrCreate(t.Context(), s.store, EdDSA, WithClock(s.clock.Now))
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
	if n := len(s.store.ring(t).Keys); n != 5 {
		t.Errorf("keyring has %d keys, want 5 (1 + one per rotation, none lost to a race)", n)
	}
}

// Instances on the same schedule rotate once between them.
func TestRotateIfOlder(t *testing.T) {
	t.Parallel()
	s := newSetup(t, EdDSA)
	other, err := LoadOrCreate(t.Context(), s.store, EdDSA, WithClock(s.clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	const maxAge = 24 * time.Hour
	if rotated, err := s.m.RotateIfOlder(t.Context(), t0.Add(maxAge-time.Second), maxAge); err != nil || rotated {
		t.Fatalf("young key: RotateIfOlder = %v, %v", rotated, err)
	}
	late := t0.Add(maxAge)
	var count int
	for _, m := range []*Manager{s.m, other, s.m} {
		rotated, err := m.RotateIfOlder(t.Context(), late, maxAge)
		if err != nil {
			t.Fatal(err)
		}
		if rotated {
			count++
		}
	}
	if n := len(s.store.ring(t).Keys); count != 1 || n != 2 {
		t.Errorf("%d rotations, %d keys; want 1 rotation, 2 keys", count, n)
	}
}

func TestManagerJWKS(t *testing.T) {
	t.Parallel()
	s := newSetup(t, ES256)
	doc, err := s.m.JWKS()
	if err != nil {
		t.Fatal(err)
	}
	ks, err := ParseJWKS(doc)
	if err != nil {
		t.Fatal(err)
	}
	jwks := s.m.PublicJWKs()
	if len(jwks) != 1 || len(ks.Keys()) != 1 || jwks[0].Kid != ks.Keys()[0].ID || jwks[0].Kty != "EC" {
		t.Errorf("JWKS %s and PublicJWKs %+v disagree", doc, jwks)
	}
}

func TestAlgorithmChangeRotatesOnce(t *testing.T) {
	t.Parallel()
	s := newSetup(t, EdDSA)
	ed := mustSigningKey(t, s.m)
	var es *Manager
	for range 3 { // three ES256 instances start; one new key between them
		var err error
		if es, err = LoadOrCreate(t.Context(), s.store, ES256, WithClock(s.clock.Now)); err != nil {
			t.Fatal(err)
		}
	}
	ring := s.store.ring(t)
	if len(ring.Keys) != 2 || ring.Keys[1].Alg != ES256 {
		t.Fatalf("keyring %v, want the EdDSA key and one ES256 key", ring.Keys)
	}
	if got := mustSigningKey(t, es); got.ID != ed.ID {
		t.Errorf("ES256 key signs before its publish-ahead delay")
	}
	s.clock.Advance(time.Minute)
	if got := mustSigningKey(t, es); got.Alg != ES256 {
		t.Errorf("after the delay signs with %s, want ES256", got.Alg)
	}
}

func TestHS256KeysAreNeverPublished(t *testing.T) {
	t.Parallel()
	s := newSetup(t, HS256)
	if p := s.m.Published(); len(p) != 0 {
		t.Errorf("published %v, want nothing", p)
	}
	if _, err := s.ver.Verify(s.issue(t, alice)); err != nil {
		t.Errorf("server-side HS256 Verify: %v", err)
	}
}

func TestLoadOrCreateRefusesBadInput(t *testing.T) {
	t.Parallel()
	if _, err := LoadOrCreate(t.Context(), &memStore{}, "PS256"); err == nil {
		t.Error("unsupported alg accepted")
	}
	if _, err := LoadOrCreate(t.Context(), &memStore{blob: []byte(`{"v":1}`)}, EdDSA); err == nil {
		t.Error("a keyring without keys accepted")
	}
	if _, err := LoadOrCreate(t.Context(), &memStore{failRead: errors.New("down")}, EdDSA); err == nil {
		t.Error("store error hidden")
	}
}

func TestKeyringJSON(t *testing.T) {
	t.Parallel()
	for _, alg := range allAlgs {
		ring, err := NewKeyring(alg, t0, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		ring.Keys[0].RetireAt = t0.Add(time.Hour)
		b, err := json.Marshal(ring)
		if err != nil {
			t.Fatal(err)
		}
		var back Keyring
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		k, bk := ring.Keys[0], back.Keys[0]
		pub, _ := k.public()
		bpub, _ := bk.public()
		type equaler interface{ Equal(crypto.PublicKey) bool }
		same := false
		if e, ok := pub.(equaler); ok {
			same = e.Equal(bpub)
		} else {
			same = slices.Equal(pub.([]byte), bpub.([]byte))
		}
		if !same || bk.ID != k.ID || bk.Alg != alg || !bk.ActiveAt.Equal(k.ActiveAt) || !bk.RetireAt.Equal(k.RetireAt) ||
			!slices.Equal(back.RefreshSecret, ring.RefreshSecret) {
			t.Errorf("%s: keyring changed in a JSON round trip", alg)
		}
	}

	valid, _ := NewKeyring(EdDSA, t0, rand.Reader)
	mislabelled := valid
	mislabelled.Keys = []Key{valid.Keys[0]}
	mislabelled.Keys[0].Alg = ES256
	dup := valid
	dup.Keys = []Key{valid.Keys[0], valid.Keys[0]}
	short := valid
	short.RefreshSecret = short.RefreshSecret[:16]
	badKID := valid
	badKID.Keys = []Key{valid.Keys[0]}
	badKID.Keys[0].ID = "a/b"
	for name, r := range map[string]Keyring{"mislabelled": mislabelled, "duplicate kid": dup, "short secret": short, "bad kid": badKID, "empty": {}} {
		if _, err := json.Marshal(r); err == nil {
			t.Errorf("%s keyring marshalled", name)
		}
	}
	for name, b := range map[string]string{
		"not JSON":     `{`,
		"version 2":    `{"v":2}`,
		"bad DER":      `{"v":1,"keys":[{"kid":"a","alg":"EdDSA","key":"AAAA"}],"refresh_secret":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`,
		"short HS key": `{"v":1,"keys":[{"kid":"a","alg":"HS256","key":"AAAA"}],"refresh_secret":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`,
	} {
		var r Keyring
		if err := json.Unmarshal([]byte(b), &r); err == nil {
			t.Errorf("%s: keyring accepted", name)
		}
	}
}

// writeKey writes priv to dir/name in the given PEM form.
func writeKey(t *testing.T, dir, name string, priv any, form string) {
	t.Helper()
	var block *pem.Block
	switch form {
	case "pkcs8":
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	case "sec1":
		der, err := x509.MarshalECPrivateKey(priv.(*ecdsa.PrivateKey))
		if err != nil {
			t.Fatal(err)
		}
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: der}
	case "pkcs1":
		block = &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(priv.(*rsa.PrivateKey))}
	}
	if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoadDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	writeKey(t, dir, "2026-01-ed.pem", ed, "pkcs8")
	writeKey(t, dir, "2026-02-ec.pem", ec, "sec1")
	writeKey(t, dir, "2026-03-rsa.pem", rk, "pkcs1")
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("ignored"), 0o600); err != nil {
		t.Fatal(err)
	}
	secret := []byte("0123456789abcdef0123456789abcdef")
	if _, err := LoadDir(dir); err == nil {
		t.Fatal("LoadDir without refresh.key succeeded")
	}
	if err := os.WriteFile(filepath.Join(dir, "refresh.key"), secret[:31], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDir(dir); err == nil {
		t.Fatal("LoadDir with a 31-byte refresh.key succeeded")
	}
	if err := os.WriteFile(filepath.Join(dir, "refresh.key"), secret, 0o600); err != nil {
		t.Fatal(err)
	}

	clk := newClock(t0)
	m, err := LoadDir(dir, WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustSigningKey(t, m); got.ID != "2026-03-rsa" || got.Alg != RS256 {
		t.Errorf("signing key %s (%s), want the lexically last, 2026-03-rsa (RS256)", got.ID, got.Alg)
	}
	if ids := publishedIDs(m); !slices.Equal(ids, []string{"2026-01-ed", "2026-02-ec", "2026-03-rsa"}) {
		t.Errorf("published %v", ids)
	}
	if _, alg, ok := m.Key("2026-02-ec"); !ok || alg != ES256 {
		t.Errorf("Key(2026-02-ec) = %s, %v", alg, ok)
	}
	if !slices.Equal(m.Refresh().secret, secret) {
		t.Error("refresh.key not used verbatim")
	}
	if err := m.Rotate(t.Context(), t0); !errors.Is(err, ErrKeysOnDisk) {
		t.Errorf("Rotate = %v, want ErrKeysOnDisk", err)
	}
	if _, err := m.RotateIfOlder(t.Context(), t0, 0); !errors.Is(err, ErrKeysOnDisk) {
		t.Errorf("RotateIfOlder = %v, want ErrKeysOnDisk", err)
	}

	// Rotation on disk: a new file that sorts last signs after Reload.
	_, ed2, _ := ed25519.GenerateKey(rand.Reader)
	writeKey(t, dir, "2026-04-ed.pem", ed2, "pkcs8")
	if err := m.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := mustSigningKey(t, m); got.ID != "2026-04-ed" {
		t.Errorf("after Reload signs with %s, want 2026-04-ed", got.ID)
	}

	// A broken file fails Reload and keeps the keys in use.
	if err := os.WriteFile(filepath.Join(dir, "2026-05-bad.pem"), []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Reload(t.Context()); err == nil {
		t.Error("Reload accepted a broken key file")
	}
	if got := mustSigningKey(t, m); got.ID != "2026-04-ed" {
		t.Errorf("failed Reload changed the signing key to %s", got.ID)
	}
}

func TestLoadDirRefusesWeakKeys(t *testing.T) {
	t.Parallel()
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	for name, priv := range map[string]any{"p384": p384, "rsa1024": rsa1024} {
		dir := t.TempDir()
		writeKey(t, dir, name+".pem", priv, "pkcs8")
		if err := os.WriteFile(filepath.Join(dir, "refresh.key"), make([]byte, 32), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadDir(dir); err == nil {
			t.Errorf("%s key accepted", name)
		}
	}
	if _, err := LoadDir(t.TempDir()); err == nil {
		t.Error("empty keys dir accepted")
	}
}
