package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
)

// TestKeyWithdrawnFromKeysDir: a token signed with a key later removed from
// --keys-dir stops verifying within --key-reload, although Verify has it in
// its cache of verified tokens: cached tokens die with their key. Tokens of
// the key left keep verifying, and new logins are signed with it. On the
// way, with a key the test holds: a genuine signature on a token that
// claims to live longer than --access-ttl plus --leeway is TOKEN_INVALID.
func TestKeyWithdrawnFromKeysDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	stays := writeKey(t, dir, "a-stays")
	writeKey(t, dir, "b-withdrawn") // sorts last: it signs
	if err := os.WriteFile(filepath.Join(dir, "refresh.key"), []byte(rand.Text()+rand.Text()), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startIdentityd(t, opts{flags: map[string]string{"keys-dir": dir, "key-reload": "1s"}})

	tok := d.login(t, d.Username, d.Password).AccessToken
	if kid := decodeJWT(t, tok).header["kid"]; kid != "b-withdrawn" {
		t.Fatalf("token signed by kid %v, want b-withdrawn (the last key file)", kid)
	}
	for _, p := range protocols { // now in the verified-token cache
		if _, f := d.verifyVia(t, p, tok); f != nil {
			t.Fatalf("Verify over %s before the key goes: %v", p, f)
		}
	}

	if err := os.Remove(filepath.Join(dir, "b-withdrawn.pem")); err != nil {
		t.Fatal(err)
	}
	testidentityd.Eventually(t, 15*time.Second, func() error {
		_, err := d.API.Verify(rpcContext(t), &identityv1.VerifyRequest{Token: tok})
		if err == nil {
			return fmt.Errorf("the token of the withdrawn key still verifies")
		}
		return nil
	})
	d.requireTokenRejected(t, tok, "TOKEN_INVALID")
	_, err := d.API.Verify(rpcContext(t), &identityv1.VerifyRequest{Token: tok})
	requireStatusError(t, err, codes.Unauthenticated, "TOKEN_INVALID")

	next := d.login(t, d.Username, d.Password).AccessToken
	if kid := decodeJWT(t, next).header["kid"]; kid != "a-stays" {
		t.Errorf("after the withdrawal, a token signed by kid %v, want a-stays", kid)
	}
	if _, f := d.verifyVia(t, viaGRPC, next); f != nil {
		t.Errorf("a token of the key left: %v", f)
	}

	// Signed with the key left, re-dated (e2e runs --access-ttl 1m, --leeway 0s).
	claims := decodeJWT(t, next).claims
	iat := claimInt(t, claims, "iat")
	redated := func(exp int64) string {
		c := maps.Clone(claims)
		c["exp"] = exp
		input := decodeJWT(t, next).raw[0] + "." + encodeSegment(t, c)
		return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(stays, []byte(input)))
	}
	if _, f := d.verifyVia(t, viaGRPC, redated(iat+60)); f != nil {
		t.Fatalf("re-signed with the access TTL's lifetime: %v (the re-signing is broken)", f)
	}
	year3000 := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	d.requireTokenRejected(t, redated(year3000), "TOKEN_INVALID")
	d.requireTokenRejected(t, redated(iat+61), "TOKEN_INVALID")
}

// writeKey writes a new Ed25519 key to dir/<kid>.pem (PKCS#8).
func writeKey(t *testing.T, dir, kid string) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, kid+".pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return priv
}
