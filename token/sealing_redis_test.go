package token_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/masterkey"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
)

// The keyring sealed in a real Redis: what a reader of the key gets, and
// what the Manager does when the blob is moved, in the clear, or sealed
// under a key being rotated out.

type redisCorner struct {
	client *redis.Client
	store  *tokenstore.Redis
}

// newCorner is a store under a key prefix of its own in the test Redis.
func newCorner(t *testing.T, client *redis.Client) redisCorner {
	t.Helper()
	return redisCorner{client, tokenstore.NewRedis(client, tokenstore.WithPrefix(testredis.KeyPrefix(t, client)))}
}

func (c redisCorner) sealing(k *masterkey.Keys) token.Sealing {
	return token.Sealing{Sealer: k, Name: c.store.KeyringKey()}
}

func (c redisCorner) get(t *testing.T) []byte {
	t.Helper()
	b, err := c.client.Get(t.Context(), c.store.KeyringKey()).Bytes()
	if err != nil {
		t.Fatalf("GET %s: %v", c.store.KeyringKey(), err)
	}
	return b
}

func masterKeys(t *testing.T, raw ...[]byte) *masterkey.Keys {
	t.Helper()
	k, err := masterkey.New(raw...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// encoded is b in each encoding a secret could be stored in.
func encoded(b []byte) [][]byte {
	out := [][]byte{b, []byte(hex.EncodeToString(b))}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		out = append(out, []byte(enc.EncodeToString(b)))
	}
	return out
}

func requireNoSecret(t *testing.T, blob []byte, ring token.Keyring) {
	t.Helper()
	secrets := [][]byte{ring.RefreshSecret}
	for _, k := range ring.Keys {
		if p, ok := k.Private.(ed25519.PrivateKey); ok {
			secrets = append(secrets, p.Seed())
		}
		der, err := x509.MarshalPKCS8PrivateKey(k.Private)
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, der)
	}
	for _, s := range secrets {
		for _, form := range encoded(s) {
			if bytes.Contains(blob, form) {
				t.Fatal("the stored keyring holds a private key or the refresh secret")
			}
		}
	}
}

func TestSealedKeyringInRedis(t *testing.T) {
	t.Parallel()
	client := testredis.Start(t)
	mkRaw := randomBytes(t, masterkey.Size)
	mk := masterKeys(t, mkRaw)

	t.Run("a reader of the key gets no secret", func(t *testing.T) {
		t.Parallel()
		c := newCorner(t, client)
		m, err := token.LoadOrCreate(t.Context(), c.store, token.EdDSA, token.WithSealing(c.sealing(mk)))
		if err != nil {
			t.Fatal(err)
		}
		blob := c.get(t)
		if id, ok := masterkey.SealedBy(blob); !ok || id != mk.ID() {
			t.Fatalf("GET keyring: not sealed under the master key (%q, %t)", id, ok)
		}
		ring, err := c.sealing(mk).Open(blob)
		if err != nil {
			t.Fatal(err)
		}
		if sk, _ := m.SigningKey(); ring.Keys[0].ID != sk.ID {
			t.Fatal("the stored keyring is not the Manager's")
		}
		requireNoSecret(t, blob, ring)
		for _, form := range encoded(mkRaw) {
			if bytes.Contains(blob, form) {
				t.Fatal("the stored keyring holds the master key")
			}
		}
	})

	t.Run("instances racing at first start converge", func(t *testing.T) {
		t.Parallel()
		c := newCorner(t, client)
		const instances = 4
		managers := make([]*token.Manager, instances)
		errs := make([]error, instances)
		var wg sync.WaitGroup
		for i := range instances {
			wg.Go(func() {
				managers[i], errs[i] = token.LoadOrCreate(t.Context(), c.store, token.EdDSA, token.WithSealing(c.sealing(mk)))
			})
		}
		wg.Wait()
		ring, err := c.sealing(mk).Open(c.get(t))
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range managers {
			if errs[i] != nil {
				t.Fatalf("instance %d: %v", i, errs[i])
			}
			sk, _ := m.SigningKey()
			tok := m.Refresh().Encode("s.1", 1, "AAAAAAAAAAAAAAAAAAAAAA")
			want, _ := token.NewRefresh(ring.RefreshSecret)
			if len(ring.Keys) != 1 || sk.ID != ring.Keys[0].ID || tok != want.Encode("s.1", 1, "AAAAAAAAAAAAAAAAAAAAAA") {
				t.Errorf("instance %d is not on the stored keyring", i)
			}
		}
	})

	t.Run("a blob moved to another key does not open", func(t *testing.T) {
		t.Parallel()
		from, to := newCorner(t, client), newCorner(t, client)
		if _, err := token.LoadOrCreate(t.Context(), from.store, token.EdDSA, token.WithSealing(from.sealing(mk))); err != nil {
			t.Fatal(err)
		}
		blob := from.get(t)
		if err := client.Set(t.Context(), to.store.KeyringKey(), blob, 0).Err(); err != nil {
			t.Fatal(err)
		}
		_, err := token.LoadOrCreate(t.Context(), to.store, token.EdDSA, token.WithSealing(to.sealing(mk)))
		if !errors.Is(err, masterkey.ErrOpen) {
			t.Fatalf("LoadOrCreate on the moved blob: %v, want masterkey.ErrOpen", err)
		}
		if !bytes.Equal(to.get(t), blob) {
			t.Error("the refused blob was overwritten")
		}
	})

	t.Run("a wrong master key changes nothing", func(t *testing.T) {
		t.Parallel()
		c := newCorner(t, client)
		if _, err := token.LoadOrCreate(t.Context(), c.store, token.EdDSA, token.WithSealing(c.sealing(mk))); err != nil {
			t.Fatal(err)
		}
		blob := c.get(t)
		wrong := masterKeys(t, randomBytes(t, masterkey.Size))
		if _, err := token.LoadOrCreate(t.Context(), c.store, token.ES256, token.WithSealing(c.sealing(wrong))); !errors.Is(err, masterkey.ErrUnknownKey) {
			t.Fatalf("wrong master key: %v, want masterkey.ErrUnknownKey", err)
		}
		if _, err := token.LoadOrCreate(t.Context(), c.store, token.EdDSA); !errors.Is(err, token.ErrKeyringSealed) {
			t.Fatalf("no master key: %v, want token.ErrKeyringSealed", err)
		}
		if !bytes.Equal(c.get(t), blob) {
			t.Error("a refused start changed the stored keyring")
		}
	})

	t.Run("a keyring in the clear is sealed in place", func(t *testing.T) {
		t.Parallel()
		c := newCorner(t, client)
		old, err := token.LoadOrCreate(t.Context(), c.store, token.EdDSA) // as an older version stored it
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := masterkey.SealedBy(c.get(t)); ok {
			t.Fatal("without a master key the keyring is sealed")
		}
		m, err := token.LoadOrCreate(t.Context(), c.store, token.EdDSA, token.WithSealing(c.sealing(mk)))
		if err != nil {
			t.Fatal(err)
		}
		blob := c.get(t)
		if id, ok := masterkey.SealedBy(blob); !ok || id != mk.ID() {
			t.Fatal("the keyring in the clear was not sealed")
		}
		ring, err := c.sealing(mk).Open(blob)
		if err != nil {
			t.Fatal(err)
		}
		requireNoSecret(t, blob, ring)
		a, _ := old.SigningKey()
		b, _ := m.SigningKey()
		if a.ID != b.ID || old.Refresh().Encode("s.1", 3, "AAAAAAAAAAAAAAAAAAAAAA") != m.Refresh().Encode("s.1", 3, "AAAAAAAAAAAAAAAAAAAAAA") {
			t.Error("the migration changed the keys")
		}
	})

	t.Run("rewrap with overlap", func(t *testing.T) {
		t.Parallel()
		c := newCorner(t, client)
		newRaw := randomBytes(t, masterkey.Size)
		newKey := masterKeys(t, newRaw)
		if _, err := token.LoadOrCreate(t.Context(), c.store, token.EdDSA, token.WithSealing(c.sealing(mk))); err != nil {
			t.Fatal(err)
		}
		// Every instance gets the new key as accepted, the old one sealing.
		overlap, err := token.LoadOrCreate(t.Context(), c.store, token.EdDSA, token.WithSealing(c.sealing(masterKeys(t, mkRaw, newRaw))))
		if err != nil {
			t.Fatal(err)
		}
		before, _ := overlap.SigningKey()
		if err := token.RewrapKeyring(t.Context(), c.store, c.sealing(newKey.Accepting(mk))); err != nil {
			t.Fatal(err)
		}
		blob := c.get(t)
		if id, _ := masterkey.SealedBy(blob); id != newKey.ID() {
			t.Fatalf("after rewrap: sealed under %s, want %s", id, newKey.ID())
		}
		if _, err := c.sealing(mk).Open(blob); !errors.Is(err, masterkey.ErrUnknownKey) {
			t.Errorf("the old key alone still opens the rewrapped keyring: %v", err)
		}
		if err := overlap.Reload(t.Context()); err != nil {
			t.Fatalf("an instance holding both keys cannot read after the rewrap: %v", err)
		}
		if after, _ := overlap.SigningKey(); after.ID != before.ID {
			t.Error("the rewrap changed the signing key")
		}
		if _, err := token.LoadOrCreate(t.Context(), c.store, token.EdDSA, token.WithSealing(c.sealing(newKey))); err != nil {
			t.Errorf("an instance with only the new key: %v", err)
		}
	})
}
