package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
)

// ed25519KeysDir is a --keys-dir holding one Ed25519 key, "k1".
func ed25519KeysDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "k1.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "refresh.key"), []byte(rand.Text()+rand.Text()), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// With --keys-dir the keys decide the algorithm: a --signing-alg that
// names another one stops the start with a message saying both, instead of
// a log line claiming one algorithm while tokens carry another.
func TestSigningAlgMustMatchTheKeysDir(t *testing.T) {
	dir := ed25519KeysDir(t)
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr bool
	}{
		{"unset follows the keys", nil, nil, false},
		{"the keys' own alg", []string{"--signing-alg", "EdDSA"}, nil, false},
		{"another alg by flag", []string{"--signing-alg", "ES256"}, nil, true},
		{"another alg by variable", nil, map[string]string{"IDENTITY_SIGNING_ALG": "RS256"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := parseConfig(append([]string{"--keys-dir", dir}, tc.args...), &bytes.Buffer{})
			if err != nil {
				t.Fatal(err)
			}
			keys, err := loadKeys(t.Context(), c, tokenstore.NewMemory(), "", slog.New(slog.DiscardHandler))
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("loadKeys: %v", err)
				}
				if got := signingAlg(keys); got != token.EdDSA {
					t.Errorf("signing alg = %s, want EdDSA (the key's)", got)
				}
				return
			}
			if err == nil {
				t.Fatal("loadKeys accepted a --signing-alg the keys do not have")
			}
			for _, want := range []string{"--signing-alg", c.SigningAlg, "EdDSA", "k1.pem", dir} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

// The whole start fails, before it listens, and says why.
func TestStartRefusesAMismatchedSigningAlg(t *testing.T) {
	clearEnv(t)
	dir := ed25519KeysDir(t)
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"--keys-dir", dir, "--signing-alg", "ES256", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, &stdout, &stderr)
	if code := exitCode(err, &stderr); code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr.String())
	}
	if got := stderr.String(); !strings.Contains(got, "is ES256, but the signing key") || strings.Contains(got, "identityd listening") {
		t.Errorf("stderr:\n%s\nwant the mismatch reported and no listening line", got)
	}
}
