package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Sealer encrypts the keyring at rest; package masterkey's Keys is the one
// identity uses. Open must refuse what Seal did not make for the same
// additional data, and errors must not hold key material or plaintext.
type Sealer interface {
	Seal(plaintext, additionalData []byte) ([]byte, error)
	Open(sealed, additionalData []byte) ([]byte, error)
}

// Sealing says how the stored keyring is protected: sealed by Sealer and
// bound to Name, the store key that holds it (tokenstore.Redis.KeyringKey),
// so a blob copied under another name does not open. The zero Sealing keeps
// the keyring in the clear: right for the embedded store, whose keyring
// never leaves memory, and for --insecure-plaintext-keys.
type Sealing struct {
	Sealer Sealer
	Name   string
}

// WithSealing makes the Manager store its keyring sealed (Manager).
func WithSealing(s Sealing) Option { return func(c *config) { c.sealing = s } }

var (
	// ErrNoKeyring: the store holds no keyring yet.
	ErrNoKeyring = errors.New("token: no keyring in the store")
	// ErrKeyringSealed: the stored keyring is sealed, and no Sealer was
	// given to open it.
	ErrKeyringSealed = errors.New("token: the stored keyring is sealed under a master key, and none is configured")
)

// open decodes a keyring blob as read from the store. A blob in the clear
// (the JSON of Keyring.MarshalJSON: an older version, or no Sealer) opens
// with or without a Sealer; inClear says which it was, so the Manager can
// seal it. A sealed blob needs the Sealer that sealed it.
func (s Sealing) open(blob []byte) (ring Keyring, inClear bool, err error) {
	if isClearKeyring(blob) {
		if err := json.Unmarshal(blob, &ring); err != nil {
			return Keyring{}, false, err
		}
		return ring, true, nil
	}
	if s.Sealer == nil {
		return Keyring{}, false, ErrKeyringSealed
	}
	plain, err := s.Sealer.Open(blob, []byte(s.Name))
	if err != nil {
		return Keyring{}, false, fmt.Errorf("token: open the keyring stored at %q: %w", s.Name, err)
	}
	defer clear(plain)
	if err := json.Unmarshal(plain, &ring); err != nil {
		return Keyring{}, false, err
	}
	return ring, false, nil
}

// Open decodes a keyring blob read from the store (see WithSealing):
// sealed, or in the clear as an older version or an insecure setup wrote it.
func (s Sealing) Open(blob []byte) (Keyring, error) {
	ring, _, err := s.open(blob)
	return ring, err
}

// seal encodes ring for the store: its JSON, sealed when there is a Sealer.
func (s Sealing) seal(ring Keyring) ([]byte, error) {
	b, err := json.Marshal(ring)
	if err != nil {
		return nil, err
	}
	if s.Sealer == nil {
		return b, nil
	}
	defer clear(b)
	return s.Sealer.Seal(b, []byte(s.Name))
}

// isClearKeyring tells a keyring stored in the clear from a sealed blob: the
// former is the JSON object of wireKeyring, with its "keys" member; a
// sealed blob is whatever the Sealer makes of it and has none.
func isClearKeyring(b []byte) bool {
	var probe struct {
		Keys json.RawMessage `json:"keys"`
	}
	return json.Unmarshal(b, &probe) == nil && probe.Keys != nil
}

// RewrapKeyring seals the stored keyring again under s (for a master-key
// rotation: s.Sealer seals with the new key and opens with the old and the
// new), or seals one stored in the clear. It changes nothing else, and the
// compare-and-swap keeps a rotation made meanwhile: a lost race is retried
// on the new keyring. Instances re-read the keyring on their next Reload;
// they need a key that opens the result.
func RewrapKeyring(ctx context.Context, store KeyringStore, s Sealing) error {
	if s.Sealer == nil {
		return errors.New("token: rewrap needs a Sealer")
	}
	for range maxSwapAttempts {
		raw, err := store.Keyring(ctx)
		if err != nil {
			return fmt.Errorf("token: read keyring: %w", err)
		}
		if raw == nil {
			return ErrNoKeyring
		}
		ring, _, err := s.open(raw)
		if err != nil {
			return err
		}
		sealed, err := s.seal(ring)
		if err != nil {
			return err
		}
		swapped, err := store.SwapKeyring(ctx, raw, sealed)
		if err != nil {
			return fmt.Errorf("token: store keyring: %w", err)
		}
		if swapped {
			return nil
		}
	}
	return fmt.Errorf("token: rewrap: gave up after %d conflicts", maxSwapAttempts)
}
