package admin_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/identityd/identity/admin"
	"github.com/identityd/identity/masterkey"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
)

func TestStoreKeys(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	now := t0
	clock := func() time.Time { return now }
	store := tokenstore.NewMemory(tokenstore.WithClock(clock))
	defer store.Close()
	calls := 0
	var m *token.Manager
	keys := admin.NewStoreKeys(store, token.Sealing{}, func(context.Context) (*token.Manager, error) { calls++; return m, nil }, clock)

	if _, err := keys.List(ctx); !errors.Is(err, admin.ErrNoKeyring) {
		t.Fatalf("List on an empty store: err = %v, want ErrNoKeyring", err)
	}
	if _, err := keys.Rotate(ctx); !errors.Is(err, admin.ErrNoKeyring) || calls != 0 {
		t.Fatalf("Rotate on an empty store: err = %v (manager calls %d), want ErrNoKeyring", err, calls)
	}
	if raw, _ := store.Keyring(ctx); raw != nil {
		t.Fatal("Rotate on an empty store made a keyring")
	}

	var err error
	m, err = token.LoadOrCreate(ctx, store, token.EdDSA,
		token.WithClock(clock), token.WithAccessTTL(10*time.Minute), token.WithLeeway(0), token.WithPublishAhead(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// signing checks List's choice against the Manager's own.
	signing := func(ks []admin.Key) string {
		t.Helper()
		var id string
		for _, k := range ks {
			if k.Signing {
				if id != "" {
					t.Errorf("two signing keys: %+v", ks)
				}
				id = k.ID
			}
		}
		sk, err := m.SigningKey()
		if err != nil {
			t.Fatal(err)
		}
		if id != sk.ID {
			t.Errorf("List says %q signs, the Manager signs with %q", id, sk.ID)
		}
		return id
	}

	ks, err := keys.List(ctx)
	if err != nil || len(ks) != 1 {
		t.Fatalf("List = %+v, %v; want one key", ks, err)
	}
	first := ks[0]
	if first.Alg != token.EdDSA || !first.CreatedAt.Equal(t0) || !first.ActiveAt.Equal(t0) || !first.RetireAt.IsZero() {
		t.Errorf("first key = %+v", first)
	}
	signing(ks)
	if calls != 0 {
		t.Errorf("List asked for a Manager %d times: listing must not need one", calls)
	}

	// Rotate: the new key is published a minute ahead of signing; the old
	// one retires an access TTL after the new one takes over.
	ks, err = keys.Rotate(ctx)
	if err != nil || len(ks) != 2 || calls != 1 {
		t.Fatalf("Rotate = %+v, %v (manager calls %d)", ks, err, calls)
	}
	second := ks[1]
	if ks[0].ID != first.ID || !ks[0].RetireAt.Equal(t0.Add(11*time.Minute)) {
		t.Errorf("old key after rotation = %+v, want retiring at %v", ks[0], t0.Add(11*time.Minute))
	}
	if !second.ActiveAt.Equal(t0.Add(time.Minute)) || !second.RetireAt.IsZero() {
		t.Errorf("new key = %+v, want active at %v", second, t0.Add(time.Minute))
	}
	if got := signing(ks); got != first.ID {
		t.Errorf("signing before the new key is active = %q, want %q", got, first.ID)
	}

	now = t0.Add(time.Minute)
	ks, _ = keys.List(ctx)
	if got := signing(ks); got != second.ID || len(ks) != 2 {
		t.Errorf("signing once the new key is active = %q among %d, want %q", got, len(ks), second.ID)
	}

	now = t0.Add(11 * time.Minute)
	ks, _ = keys.List(ctx)
	if len(ks) != 1 || ks[0].ID != second.ID || !ks[0].Signing {
		t.Errorf("after the old key retires: %+v, want only %s", ks, second.ID)
	}
}

// A sealed keyring lists with the Manager's sealing, and only with it.
func TestStoreKeysSealed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store := tokenstore.NewMemory()
	defer store.Close()
	raw := make([]byte, masterkey.Size)
	rand.Read(raw)
	mk, err := masterkey.New(raw)
	if err != nil {
		t.Fatal(err)
	}
	sealing := token.Sealing{Sealer: mk, Name: "identity:keyring"}
	m, err := token.LoadOrCreate(ctx, store, token.EdDSA, token.WithSealing(sealing))
	if err != nil {
		t.Fatal(err)
	}
	manager := func(context.Context) (*token.Manager, error) { return m, nil }
	ks, err := admin.NewStoreKeys(store, m.Sealing(), manager, time.Now).List(ctx)
	if sk, _ := m.SigningKey(); err != nil || len(ks) != 1 || ks[0].ID != sk.ID || !ks[0].Signing {
		t.Fatalf("List of a sealed keyring = %+v, %v", ks, err)
	}
	if _, err := admin.NewStoreKeys(store, token.Sealing{}, manager, time.Now).List(ctx); !errors.Is(err, token.ErrKeyringSealed) {
		t.Errorf("List without the master key: %v, want token.ErrKeyringSealed", err)
	}
}

func TestDirKeys(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, kid := range []string{"2030-01", "2030-02"} {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		if err := os.WriteFile(filepath.Join(dir, kid+".pem"), pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	if err := os.WriteFile(filepath.Join(dir, "refresh.key"), secret, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := token.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	keys := admin.NewDirKeys(m)
	ks, err := keys.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) != 2 || ks[0].ID != "2030-01" || ks[0].Signing || ks[1].ID != "2030-02" || !ks[1].Signing || ks[1].Alg != token.EdDSA {
		t.Errorf("List = %+v, want 2030-01 then 2030-02 signing", ks)
	}
	if _, err := keys.Rotate(t.Context()); !errors.Is(err, token.ErrKeysOnDisk) {
		t.Errorf("Rotate: err = %v, want ErrKeysOnDisk", err)
	}
}
