// Package masterkey seals secrets at rest under the operator's master keys
// (IDENTITY_MASTER_KEY_FILE): AES-256-GCM, as ZITADEL's masterkey and Ory
// Hydra's system secret do, so that what the store holds (the signing
// keyring) is useless to a reader of the store without a key that never
// enters it.
//
// A Keys holds one or more master keys: the first seals, every one opens, so
// instances keep reading during a master-key rotation (see the README). A
// sealed blob is a small JSON envelope naming the master key that sealed it
// by an id derived from the key (never the key itself) and binding the name
// the caller stores it under: a blob copied to another name does not open.
//
// It is not a key-management service: it neither makes, stores nor rotates
// master keys (the operator provisions the file), and it knows nothing of
// what it seals.
package masterkey

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Size is the size of a master key: 32 bytes, for AES-256.
const Size = 32

// Errors from Open. They name master keys by id only: no error of this
// package holds key material or plaintext.
var (
	// ErrUnknownKey: the blob was sealed under a master key that is not
	// among the configured ones (a wrong or missing key file).
	ErrUnknownKey = errors.New("masterkey: sealed under a master key that is not configured")
	// ErrOpen: the blob names a configured key but does not open under it:
	// it was altered, or moved from the name it was sealed for.
	ErrOpen = errors.New("masterkey: the sealed blob does not open (altered, or stored under another name than it was sealed for)")
	// ErrMalformed: not a sealed blob of a version this package reads.
	ErrMalformed = errors.New("masterkey: not a sealed blob")
)

// Keys is an ordered set of master keys: the first seals, all of them open.
// It is safe for concurrent use.
type Keys struct {
	keys []masterKey
}

type masterKey struct {
	id   string
	aead cipher.AEAD
}

// New returns Keys from raw master keys, each Size bytes; raw[0] seals.
// Keys keeps no reference to raw: the caller may clear it.
func New(raw ...[]byte) (*Keys, error) {
	if len(raw) == 0 {
		return nil, errors.New("masterkey: no master key")
	}
	k := &Keys{}
	for i, b := range raw {
		mk, err := newMasterKey(b)
		if err != nil {
			return nil, fmt.Errorf("masterkey: key %d: %w", i+1, err)
		}
		if k.has(mk.id) {
			return nil, fmt.Errorf("masterkey: key %d: the same key (id %s) is given twice", i+1, mk.id)
		}
		k.keys = append(k.keys, mk)
	}
	return k, nil
}

func newMasterKey(b []byte) (masterKey, error) {
	if len(b) != Size {
		return masterKey{}, fmt.Errorf("a master key is %d bytes, got %d (make one with: openssl rand -base64 32)", Size, len(b))
	}
	if subtle.ConstantTimeCompare(b, make([]byte, Size)) == 1 {
		return masterKey{}, errors.New("the master key is all zero bytes: not a random key")
	}
	block, err := aes.NewCipher(b)
	if err != nil {
		return masterKey{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return masterKey{}, err
	}
	return masterKey{id: keyID(b), aead: aead}, nil
}

// keyID names a master key without revealing it: the first 8 bytes of a
// SHA-256 over a fixed label and the key, in hex. The label keeps the id
// from being the plain hash of the key, which other tools may print.
func keyID(b []byte) string {
	h := sha256.New()
	h.Write([]byte("identity master key id\x00"))
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Parse reads master keys from the text of a key file: one key per line,
// base64 (standard alphabet, padded, as `openssl rand -base64 32` prints)
// of Size random bytes. The first key seals; the others only open. Blank
// lines and lines starting with # are ignored. Errors name the line, never
// its content.
func Parse(text []byte) (*Keys, error) {
	var raw [][]byte
	defer func() {
		for _, b := range raw {
			clear(b)
		}
	}()
	for i, line := range strings.Split(string(text), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("masterkey: line %d: not base64 (make a key with: openssl rand -base64 32)", i+1)
		}
		if len(b) != Size {
			return nil, fmt.Errorf("masterkey: line %d: a master key is %d bytes, this line holds %d (make one with: openssl rand -base64 32)", i+1, Size, len(b))
		}
		raw = append(raw, b)
	}
	if len(raw) == 0 {
		return nil, errors.New("masterkey: no master key in the file (make one with: openssl rand -base64 32)")
	}
	return New(raw...)
}

// LoadFile reads master keys from the file at path (see Parse).
func LoadFile(path string) (*Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	k, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// ID is the id of the master key that seals.
func (k *Keys) ID() string { return k.keys[0].id }

// IDs are the ids of every key, the sealing one first.
func (k *Keys) IDs() []string {
	ids := make([]string, len(k.keys))
	for i, mk := range k.keys {
		ids[i] = mk.id
	}
	return ids
}

func (k *Keys) has(id string) bool {
	return slices.ContainsFunc(k.keys, func(mk masterKey) bool { return mk.id == id })
}

// Accepting returns Keys that seal as k does and also open with the keys
// of others (for a rewrap: seal under the new key, open what the old one
// sealed).
func (k *Keys) Accepting(others ...*Keys) *Keys {
	out := &Keys{keys: slices.Clone(k.keys)}
	for _, o := range others {
		for _, mk := range o.keys {
			if !out.has(mk.id) {
				out.keys = append(out.keys, mk)
			}
		}
	}
	return out
}

// envelopeVersion is bumped on any incompatible change of the envelope.
const (
	envelopeVersion = 1
	envelopeAlg     = "A256GCM"
)

// envelope is the stored form of a sealed blob.
type envelope struct {
	Version    int    `json:"v"`
	Alg        string `json:"alg"`
	KeyID      string `json:"kid"`
	Nonce      []byte `json:"nonce"`
	Ciphertext []byte `json:"ciphertext"`
}

// boundData is what GCM authenticates besides the ciphertext: the
// envelope's version, algorithm and key id (so none can be changed) and the
// caller's additional data (the name the blob is stored under). The key id
// has a fixed length, so the caller's part cannot shift into it.
func boundData(kid string, ad []byte) []byte {
	return fmt.Appendf(nil, "identity masterkey v%d %s %s\x00%s", envelopeVersion, envelopeAlg, kid, ad)
}

// Seal encrypts plaintext under the first key, bound to additionalData
// (the name the blob will be stored under): Open must be given the same.
// Each call draws a fresh nonce, so sealing the same plaintext twice gives
// two different blobs.
func (k *Keys) Seal(plaintext, additionalData []byte) ([]byte, error) {
	mk := k.keys[0]
	// The nonce always comes from the system's source, never an injected
	// one: a repeated nonce under GCM gives the key's authenticator away.
	nonce := make([]byte, mk.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("masterkey: nonce: %w", err)
	}
	ct := mk.aead.Seal(nil, nonce, plaintext, boundData(mk.id, additionalData))
	return json.Marshal(envelope{Version: envelopeVersion, Alg: envelopeAlg, KeyID: mk.id, Nonce: nonce, Ciphertext: ct})
}

// Open decrypts a blob from Seal, given the additionalData it was sealed
// with, under whichever configured key sealed it.
func (k *Keys) Open(sealed, additionalData []byte) ([]byte, error) {
	e, err := parseEnvelope(sealed)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(k.keys, func(mk masterKey) bool { return mk.id == e.KeyID })
	if i < 0 {
		return nil, fmt.Errorf("%w: the blob names master key %s, the configured ones are %s",
			ErrUnknownKey, e.KeyID, strings.Join(k.IDs(), ", "))
	}
	mk := k.keys[i]
	if len(e.Nonce) != mk.aead.NonceSize() {
		return nil, fmt.Errorf("%w: bad nonce size", ErrMalformed)
	}
	plain, err := mk.aead.Open(nil, e.Nonce, e.Ciphertext, boundData(mk.id, additionalData))
	if err != nil {
		return nil, fmt.Errorf("%w (master key %s)", ErrOpen, mk.id)
	}
	return plain, nil
}

// SealedBy returns the id of the master key that sealed blob, and false if
// blob is not a sealed blob. It checks nothing cryptographic.
func SealedBy(blob []byte) (string, bool) {
	e, err := parseEnvelope(blob)
	if err != nil {
		return "", false
	}
	return e.KeyID, true
}

func parseEnvelope(b []byte) (envelope, error) {
	var e envelope
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&e); err != nil || d.More() {
		return envelope{}, ErrMalformed
	}
	if e.Version != envelopeVersion || e.Alg != envelopeAlg || e.KeyID == "" || e.Ciphertext == nil {
		return envelope{}, fmt.Errorf("%w (version %d, alg %q)", ErrMalformed, e.Version, e.Alg)
	}
	return e, nil
}
