package masterkey_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/identityd/identity/masterkey"
)

func randomKey(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, masterkey.Size)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func mustNew(t testing.TB, raw ...[]byte) *masterkey.Keys {
	t.Helper()
	k, err := masterkey.New(raw...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var name = []byte("identity:keyring")

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	raw := randomKey(t)
	k := mustNew(t, raw)
	plain := []byte(`{"secret":"the keyring"}`)
	a, err := k.Seal(plain, name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := k.Seal(plain, name)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Error("two seals of the same plaintext are equal: the nonce must be fresh each time")
	}
	for _, blob := range [][]byte{a, b} {
		got, err := k.Open(blob, name)
		if err != nil || !bytes.Equal(got, plain) {
			t.Fatalf("Open = %q, %v; want the plaintext", got, err)
		}
		if bytes.Contains(blob, plain) || bytes.Contains(blob, raw) {
			t.Error("the sealed blob holds the plaintext or the key")
		}
		if id, ok := masterkey.SealedBy(blob); !ok || id != k.ID() {
			t.Errorf("SealedBy = %q, %t; want %q", id, ok, k.ID())
		}
	}
	// The envelope names its version, algorithm and key id.
	var env map[string]any
	if err := json.Unmarshal(a, &env); err != nil {
		t.Fatal(err)
	}
	if env["v"] != 1.0 || env["alg"] != "A256GCM" || env["kid"] != k.ID() || env["nonce"] == nil || env["ciphertext"] == nil {
		t.Errorf("envelope = %v", env)
	}
}

func TestKeyIDRevealsNothing(t *testing.T) {
	t.Parallel()
	raw := randomKey(t)
	id := mustNew(t, raw).ID()
	if len(id) != 16 {
		t.Errorf("id %q: want 16 hex digits", id)
	}
	for _, enc := range encodings(raw) {
		if strings.Contains(enc, id) || strings.Contains(id, enc[:8]) {
			t.Errorf("the key id %q overlaps the key's encoding %q", id, enc[:8])
		}
	}
	if mustNew(t, randomKey(t)).ID() == id {
		t.Error("two keys share an id")
	}
}

func TestOpenRefuses(t *testing.T) {
	t.Parallel()
	raw := randomKey(t)
	k := mustNew(t, raw)
	blob, err := k.Seal([]byte("plaintext"), name)
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]any
	if err := json.Unmarshal(blob, &env); err != nil {
		t.Fatal(err)
	}
	reencode := func(change func(map[string]any)) []byte {
		e := map[string]any{}
		for k, v := range env {
			e[k] = v
		}
		change(e)
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	flip := func(field string) func(map[string]any) {
		return func(e map[string]any) {
			b, _ := base64.StdEncoding.DecodeString(e[field].(string))
			b[len(b)/2] ^= 1
			e[field] = base64.StdEncoding.EncodeToString(b)
		}
	}
	other := mustNew(t, randomKey(t))
	tests := []struct {
		name string
		keys *masterkey.Keys
		blob []byte
		ad   []byte
		want error
	}{
		{"wrong key", other, blob, name, masterkey.ErrUnknownKey},
		{"moved to another name", k, blob, []byte("other:keyring"), masterkey.ErrOpen},
		{"no name", k, blob, nil, masterkey.ErrOpen},
		{"ciphertext altered", k, reencode(flip("ciphertext")), name, masterkey.ErrOpen},
		{"nonce altered", k, reencode(flip("nonce")), name, masterkey.ErrOpen},
		{"key id changed", k, reencode(func(e map[string]any) { e["kid"] = other.ID() }), name, masterkey.ErrUnknownKey},
		{"version changed", k, reencode(func(e map[string]any) { e["v"] = 2 }), name, masterkey.ErrMalformed},
		{"alg changed", k, reencode(func(e map[string]any) { e["alg"] = "none" }), name, masterkey.ErrMalformed},
		{"extra field", k, reencode(func(e map[string]any) { e["plaintext"] = "x" }), name, masterkey.ErrMalformed},
		{"short nonce", k, reencode(func(e map[string]any) { e["nonce"] = "AAAA" }), name, masterkey.ErrMalformed},
		{"truncated", k, blob[:len(blob)-2], name, masterkey.ErrMalformed},
		{"trailing data", k, append(bytes.Clone(blob), ` {}`...), name, masterkey.ErrMalformed},
		{"plaintext JSON", k, []byte(`{"v":1,"keys":[]}`), name, masterkey.ErrMalformed},
		{"empty", k, []byte{}, name, masterkey.ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.keys.Open(tc.blob, tc.ad)
			if !errors.Is(err, tc.want) || got != nil {
				t.Fatalf("Open = %q, %v; want %v", got, err, tc.want)
			}
			for _, enc := range encodings(raw) {
				if strings.Contains(err.Error(), enc) {
					t.Errorf("error %q holds the key", err)
				}
			}
		})
	}
}

func TestSeveralKeys(t *testing.T) {
	t.Parallel()
	oldRaw, newRaw := randomKey(t), randomKey(t)
	old := mustNew(t, oldRaw)
	sealedOld, err := old.Seal([]byte("ring"), name)
	if err != nil {
		t.Fatal(err)
	}
	// The new key given as accepted: old still seals, both open.
	overlap := mustNew(t, oldRaw, newRaw)
	if overlap.ID() != old.ID() || len(overlap.IDs()) != 2 {
		t.Fatalf("IDs = %v, want the old key first", overlap.IDs())
	}
	next := mustNew(t, newRaw)
	sealedNew, err := next.Seal([]byte("ring"), name)
	if err != nil {
		t.Fatal(err)
	}
	for _, blob := range [][]byte{sealedOld, sealedNew} {
		if got, err := overlap.Open(blob, name); err != nil || string(got) != "ring" {
			t.Errorf("overlap Open = %q, %v", got, err)
		}
	}
	if _, err := next.Open(sealedOld, name); !errors.Is(err, masterkey.ErrUnknownKey) {
		t.Errorf("the new key alone opens the old blob: %v", err)
	}
	// Accepting: seal under the new key, open the old blob too.
	rewrap := next.Accepting(old)
	if rewrap.ID() != next.ID() || strings.Join(rewrap.IDs(), ",") != next.ID()+","+old.ID() {
		t.Errorf("Accepting IDs = %v", rewrap.IDs())
	}
	if _, err := rewrap.Open(sealedOld, name); err != nil {
		t.Error(err)
	}
	blob, err := rewrap.Seal([]byte("ring"), name)
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := masterkey.SealedBy(blob); id != next.ID() {
		t.Errorf("Accepting seals under %s, want the new key %s", id, next.ID())
	}
	if _, err := masterkey.New(oldRaw, oldRaw); err == nil {
		t.Error("New accepts one key twice")
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	a, b := randomKey(t), randomKey(t)
	ka, kb := mustNew(t, a).ID(), mustNew(t, b).ID()
	enc := base64.StdEncoding.EncodeToString
	k, err := masterkey.Parse([]byte("# current\n" + enc(a) + "\r\n\n  " + enc(b) + "  \n"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(k.IDs(), ",") != ka+","+kb {
		t.Errorf("IDs = %v, want %s,%s", k.IDs(), ka, kb)
	}
	short := enc(a[:31])
	bad := []struct{ name, text, want string }{
		{"empty", "", "no master key"},
		{"only comments", "# nothing\n\n", "no master key"},
		{"not base64", "not a key!\n", "line 1: not base64"},
		{"31 bytes", "# c\n" + short, "line 2: a master key is 32 bytes, this line holds 31"},
		{"64 bytes", enc(append(bytes.Clone(a), b...)), "holds 64"},
		{"raw bytes", string(a), "line 1"},
		{"all zero", enc(make([]byte, 32)), "all zero"},
		{"twice", enc(a) + "\n" + enc(a), "twice"},
	}
	for _, tc := range bad {
		_, err := masterkey.Parse([]byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Parse error = %v, want one with %q", tc.name, err, tc.want)
			continue
		}
		for _, s := range append(encodings(a), short) {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q holds key material", tc.name, err)
			}
		}
	}
}

func TestLoadFile(t *testing.T) {
	t.Parallel()
	raw := randomKey(t)
	path := filepath.Join(t.TempDir(), "master.key")
	// What `openssl rand -base64 32 > master.key` writes.
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(raw)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k, err := masterkey.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if k.ID() != mustNew(t, raw).ID() {
		t.Error("LoadFile read another key")
	}
	if _, err := masterkey.LoadFile(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// encodings are the forms a key could leak in.
func encodings(b []byte) []string {
	return []string{
		string(b),
		hex.EncodeToString(b),
		strings.ToUpper(hex.EncodeToString(b)),
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
	}
}

func FuzzOpen(f *testing.F) {
	k, err := masterkey.New(bytes.Repeat([]byte{7}, masterkey.Size))
	if err != nil {
		f.Fatal(err)
	}
	blob, err := k.Seal([]byte("plaintext"), name)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob)
	f.Add([]byte(`{"v":1,"alg":"A256GCM","kid":"x","nonce":"","ciphertext":""}`))
	f.Add([]byte(`{"v":1,"keys":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		plain, err := k.Open(b, name)
		if err == nil && !bytes.Equal(plain, []byte("plaintext")) {
			t.Fatalf("Open accepted a forged blob: %q", plain)
		}
		masterkey.SealedBy(b)
	})
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)) + "\n"))
	f.Add([]byte("# comment\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := masterkey.Parse(b)
		if err == nil && len(k.IDs()) == 0 {
			t.Fatal("Parse returned Keys without a key")
		}
	})
}
