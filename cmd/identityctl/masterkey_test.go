package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/identityd/identity/masterkey"
	"github.com/identityd/identity/token"
)

// masterKeyFile writes a key file of fresh random keys, as `openssl rand
// -base64 32` makes them, and returns its path and its keys. The keys are
// secrets of h: no output may show them.
func (h *harness) masterKeyFile(lines ...string) (string, *masterkey.Keys) {
	h.t.Helper()
	if len(lines) == 0 {
		b := make([]byte, masterkey.Size)
		rand.Read(b)
		lines = []string{base64.StdEncoding.EncodeToString(b)}
	}
	h.secrets = append(h.secrets, lines...)
	path := filepath.Join(h.t.TempDir(), "master.key")
	text := strings.Join(lines, "\n") + "\n"
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		h.t.Fatal(err)
	}
	k, err := masterkey.Parse([]byte(text))
	if err != nil {
		h.t.Fatal(err)
	}
	return path, k
}

func newKeyLine() string {
	b := make([]byte, masterkey.Size)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func (h *harness) storedKeyring() []byte {
	h.t.Helper()
	b, err := h.store.Keyring(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

func (h *harness) sealing(k *masterkey.Keys) token.Option {
	return token.WithSealing(token.Sealing{Sealer: k, Name: h.store.KeyringKey()})
}

// TestKeyCommandsOnASealedKeyring: key list and rotate open the keyring
// with --master-key-file, refuse it without the right one, and say what
// to give.
func TestKeyCommandsOnASealedKeyring(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := t.Context()
	oldFile, oldKey := h.masterKeyFile()
	m, err := token.LoadOrCreate(ctx, h.store, token.EdDSA, h.sealing(oldKey)) // identityd's first start
	if err != nil {
		t.Fatal(err)
	}
	first, _ := m.SigningKey()
	blob := h.storedKeyring()

	r := h.run("", "key", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "sealed under a master key: give identityd's key file with --master-key-file (IDENTITY_MASTER_KEY_FILE)") {
		t.Errorf("key list without a master key: %+v", r)
	}
	wrongFile, wrongKey := h.masterKeyFile()
	for _, args := range [][]string{{"key", "list"}, {"key", "rotate"}} {
		r = h.run("", append(args, "--master-key-file", wrongFile)...)
		if r.code != 1 || !strings.Contains(r.stderr, "nothing was changed (check --master-key-file)") ||
			!strings.Contains(r.stderr, oldKey.ID()) || !strings.Contains(r.stderr, wrongKey.ID()) {
			t.Errorf("%q with a wrong master key: %+v", args, r)
		}
	}
	if !bytes.Equal(h.storedKeyring(), blob) {
		t.Fatal("a refused command changed the keyring")
	}
	r = h.run("", "key", "list", "--master-key-file", filepath.Join(t.TempDir(), "missing"))
	if r.code != 1 || !strings.Contains(r.stderr, "--master-key-file: open ") {
		t.Errorf("key list with a missing key file: %+v", r)
	}

	checkTable(t, rows(h.ok("", "key", "list", "--master-key-file", oldFile)), [][]string{
		{"KID", "ALG", "SIGNING", "CREATED", "ACTIVE_AT", "RETIRE_AT"},
		{first.ID, "EdDSA", "yes", "*", "*", "-"},
	})
	h.env["IDENTITY_MASTER_KEY_FILE"] = oldFile
	if ks := rows(h.ok("", "key", "rotate")); len(ks) != 3 {
		t.Fatalf("key rotate: %q", ks)
	}
	if id, _ := masterkey.SealedBy(h.storedKeyring()); id != oldKey.ID() {
		t.Errorf("after key rotate the keyring is sealed under %q, want %s", id, oldKey.ID())
	}
	if err := m.Reload(ctx); err != nil || len(m.Published()) != 2 {
		t.Errorf("identityd after the rotation: %v, %d keys", err, len(m.Published()))
	}
}

// TestKeyRewrap: the master-key rotation, with instances that hold the new
// key as accepted reading through it.
func TestKeyRewrap(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := t.Context()
	oldLine, newLine := newKeyLine(), newKeyLine()
	oldFile, oldKey := h.masterKeyFile(oldLine)
	newFile, newKey := h.masterKeyFile(newLine)
	_, overlapKeys := h.masterKeyFile(oldLine, newLine)

	r := h.run("", "key", "rewrap", "--master-key-file", oldFile)
	if r.code != 2 || !strings.Contains(r.stderr, "--new-master-key-file is required") {
		t.Errorf("key rewrap without --new-master-key-file: %+v", r)
	}
	r = h.run("", "key", "rewrap", "--new-master-key-file", newFile)
	if r.code != 1 || !strings.Contains(r.stderr, "no signing keys in the store yet") {
		t.Errorf("key rewrap on an empty store: %+v", r)
	}
	url := h.env["IDENTITY_REDIS_URL"]
	delete(h.env, "IDENTITY_REDIS_URL")
	r = h.run("", "--server", "127.0.0.1:1", "--token", "x", "key", "rewrap", "--new-master-key-file", newFile)
	if r.code != 2 || !strings.Contains(r.stderr, "key rewrap works on the store: give --redis-url") {
		t.Errorf("key rewrap against a server: %+v", r)
	}
	h.env["IDENTITY_REDIS_URL"] = url

	a, err := token.LoadOrCreate(ctx, h.store, token.EdDSA, h.sealing(oldKey))
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := a.SigningKey()
	// Step 1: instance b has the new key as accepted, c has only the old.
	b, err := token.LoadOrCreate(ctx, h.store, token.EdDSA, h.sealing(overlapKeys))
	if err != nil {
		t.Fatal(err)
	}
	// The new key alone does not open the old keyring: the rewrap needs
	// the old file.
	r = h.run("", "key", "rewrap", "--new-master-key-file", newFile)
	if r.code != 1 || !strings.Contains(r.stderr, "nothing was changed") {
		t.Errorf("key rewrap without the old key: %+v", r)
	}
	// Step 2.
	out := h.ok("", "key", "rewrap", "--master-key-file", oldFile, "--new-master-key-file", newFile)
	if want := "sealed the keyring under master key " + newKey.ID() + " (it was under " + oldKey.ID() + ")\n"; out != want {
		t.Errorf("key rewrap printed %q, want %q", out, want)
	}
	if id, _ := masterkey.SealedBy(h.storedKeyring()); id != newKey.ID() {
		t.Fatalf("after key rewrap the keyring is sealed under %q", id)
	}
	if err := b.Reload(ctx); err != nil {
		t.Errorf("an instance holding both keys cannot read after the rewrap: %v", err)
	}
	if err := a.Reload(ctx); err == nil {
		t.Error("an instance with only the old key read the rewrapped keyring")
	}
	if sk, err := a.SigningKey(); err != nil || sk.ID != signer.ID {
		t.Error("an instance without the new key lost its keys")
	}
	// Again, with the env variables: a no-op in effect, reported so.
	h.env["IDENTITY_NEW_MASTER_KEY_FILE"] = newFile
	got := decode[rewrapped](t, h.ok("", "key", "rewrap", "--json"))
	if got.MasterKey != newKey.ID() || got.Previous != newKey.ID() {
		t.Errorf("second rewrap: %+v", got)
	}
	// Step 3: the new key alone.
	if m, err := token.LoadOrCreate(ctx, h.store, token.EdDSA, h.sealing(newKey)); err != nil {
		t.Errorf("an instance on the new key: %v", err)
	} else if sk, _ := m.SigningKey(); sk.ID != signer.ID {
		t.Error("the rewraps changed the signing key")
	}
}

// TestKeyRewrapSealsAKeyringInTheClear: after a trial with
// --insecure-plaintext-keys, a rewrap seals the keyring.
func TestKeyRewrapSealsAKeyringInTheClear(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	if _, err := token.LoadOrCreate(t.Context(), h.store, token.EdDSA); err != nil {
		t.Fatal(err)
	}
	newFile, newKey := h.masterKeyFile()
	out := h.ok("", "key", "rewrap", "--new-master-key-file", newFile)
	if want := "sealed the keyring (it was in the clear) under master key " + newKey.ID() + "\n"; out != want {
		t.Errorf("key rewrap printed %q, want %q", out, want)
	}
	if id, _ := masterkey.SealedBy(h.storedKeyring()); id != newKey.ID() {
		t.Errorf("the keyring is sealed under %q, want %s", id, newKey.ID())
	}
}
