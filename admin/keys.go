package admin

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/identityd/identity/token"
)

// ErrNoKeyring: the store holds no signing keys yet (identityd makes them at
// its first start).
var ErrNoKeyring = errors.New("admin: no signing keys in the store yet")

// StoreKeys lists the signing keys kept in the store and rotates them
// through a token.Manager. Listing only reads: it never creates a keyring
// or changes its algorithm, so `identityctl key list` is safe whatever
// --signing-alg says.
type StoreKeys struct {
	store   token.KeyringStore
	sealing token.Sealing
	manager func(context.Context) (*token.Manager, error)
	now     func() time.Time
}

// NewStoreKeys returns StoreKeys over the keyring in store, opened with
// sealing (the Manager's: token.Manager.Sealing). manager returns the
// Manager to rotate with; it is called only by Rotate, so a caller that
// builds one on demand (identityctl) does so only to rotate.
func NewStoreKeys(store token.KeyringStore, sealing token.Sealing, manager func(context.Context) (*token.Manager, error), now func() time.Time) *StoreKeys {
	return &StoreKeys{store: store, sealing: sealing, manager: manager, now: now}
}

// List returns the keys not yet retired, oldest first.
func (k *StoreKeys) List(ctx context.Context) ([]Key, error) {
	raw, err := k.store.Keyring(ctx)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, ErrNoKeyring
	}
	ring, err := k.sealing.Open(raw)
	if err != nil {
		return nil, fmt.Errorf("admin: read keyring: %w", err)
	}
	return keysOf(ring, k.now()), nil
}

// Rotate adds a key (it signs after the Manager's publish-ahead delay) and
// returns the keys after it. It needs an existing keyring: rotating is not
// the way to make the first one.
func (k *StoreKeys) Rotate(ctx context.Context) ([]Key, error) {
	raw, err := k.store.Keyring(ctx)
	if err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, ErrNoKeyring
	}
	m, err := k.manager(ctx)
	if err != nil {
		return nil, err
	}
	if err := m.Rotate(ctx, k.now()); err != nil {
		return nil, err
	}
	return k.List(ctx)
}

// keysOf describes ring's keys at now. The signing key is chosen as
// token.Keyring does: the newest ActiveAt among the keys active and not
// retired at now, the later in the ring on a tie.
func keysOf(ring token.Keyring, now time.Time) []Key {
	out := make([]Key, 0, len(ring.Keys))
	signer := -1
	for _, rk := range ring.Keys {
		retired := !rk.RetireAt.IsZero() && !now.Before(rk.RetireAt)
		if retired {
			continue
		}
		out = append(out, Key{ID: rk.ID, Alg: rk.Alg, CreatedAt: rk.Created, ActiveAt: rk.ActiveAt, RetireAt: rk.RetireAt})
		i := len(out) - 1
		if !rk.ActiveAt.After(now) && (signer < 0 || !rk.ActiveAt.Before(out[signer].ActiveAt)) {
			signer = i
		}
	}
	if signer >= 0 {
		out[signer].Signing = true
	}
	slices.SortStableFunc(out, func(a, b Key) int { return cmp.Compare(a.ActiveAt.UnixNano(), b.ActiveAt.UnixNano()) })
	return out
}

// DirKeys describes keys a token.Manager loaded from a directory: files
// carry no dates, and rotation is done by adding a file (Rotate returns
// token.ErrKeysOnDisk).
type DirKeys struct{ m *token.Manager }

// NewDirKeys returns DirKeys over m (from token.LoadDir).
func NewDirKeys(m *token.Manager) *DirKeys { return &DirKeys{m: m} }

// List re-reads the directory and returns its keys, ordered by kid (the
// last one signs).
func (k *DirKeys) List(ctx context.Context) ([]Key, error) {
	if err := k.m.Reload(ctx); err != nil {
		return nil, err
	}
	signing, err := k.m.SigningKey()
	if err != nil {
		return nil, err
	}
	pub := k.m.Published()
	out := make([]Key, len(pub))
	for i, p := range pub {
		out[i] = Key{ID: p.ID, Alg: p.Alg, Signing: p.ID == signing.ID}
	}
	return out, nil
}

// Rotate returns token.ErrKeysOnDisk.
func (k *DirKeys) Rotate(context.Context) ([]Key, error) { return nil, token.ErrKeysOnDisk }
