package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/server"
)

// secrets collects what must never reach identityd's log, by kind, and
// registers each with the harness (Remember), which checks the whole log
// again when the test ends.
type secrets struct {
	d     *identityd
	kinds map[string][]string
}

func (s *secrets) add(kind string, values ...string) {
	for _, v := range values {
		if len(v) < 8 {
			continue // would match by chance; the harness skips them too
		}
		s.kinds[kind] = append(s.kinds[kind], v)
		s.d.Remember(v)
	}
}

// addBytes adds key material in every spelling a log could carry it in.
func (s *secrets) addBytes(kind string, b []byte) {
	s.add(kind, string(b), hex.EncodeToString(b),
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b))
}

// addPair adds both tokens and the access token's signature alone.
func (s *secrets) addPair(p tokenPair) {
	s.add("access token", p.AccessToken)
	if i := strings.LastIndexByte(p.AccessToken, '.'); i >= 0 {
		s.add("access token signature", p.AccessToken[i+1:])
	}
	s.add("refresh token", p.RefreshToken)
}

// A full session against a real identityd logging at debug level (one line
// per request, and everything else it says): logins over REST, gRPC and
// in browser mode, verify, WhoAmI, refresh, logout, failed logins, a weak
// password refused, admin calls that create a user and set a password, and
// a login that rehashes a stored hash. Afterwards every log line is
// searched for every password, access token, refresh token, password hash
// (read from the store) and key it used.
func TestNothingSecretInTheLog(t *testing.T) {
	t.Parallel()
	d := startIdentityd(t, opts{flags: map[string]string{"log-level": "debug"}})
	sec := &secrets{d: d, kinds: map[string][]string{}}
	sec.add("password", d.Password)

	// Users: bob by identityctl (identityd's parameters), carol straight
	// in the store with test-cheap parameters (her first login rehashes).
	bobPW := "pw-bob-" + randomHex(12)
	addUser(t, d, "bob", bobPW, "reader")
	carolPW := testidentityd.AddUser(t, d.Store(t), "carol", "")
	sec.add("password", bobPW, carolPW)
	carolHash := storedHash(t, d, "carol")
	sec.add("password hash", carolHash)

	// Logins, verify, WhoAmI, refresh, logout: REST.
	alice := d.login(t, d.Username, d.Password)
	sec.addPair(alice)
	requireIdentity(t, d.verifyREST(t, alice.AccessToken))
	requireIdentity(t, d.meREST(t, alice.AccessToken))
	rotated := d.refresh(t, alice.RefreshToken)
	sec.addPair(rotated)
	if r := d.logoutREST(t, rotated.RefreshToken, false); r.status != http.StatusOK {
		t.Fatalf("logout: %v", r)
	}
	// ... and gRPC.
	bob := d.loginVia(t, viaGRPC, "bob", bobPW)
	sec.addPair(bob)
	if _, f := d.verifyVia(t, viaGRPC, bob.AccessToken); f != nil {
		t.Fatalf("gRPC verify: %v", f)
	}
	if _, f := d.whoAmIVia(t, viaGRPC, bob.AccessToken); f != nil {
		t.Fatalf("gRPC WhoAmI: %v", f)
	}
	bob2, f := d.refreshVia(t, viaGRPC, bob.RefreshToken)
	if f != nil {
		t.Fatalf("gRPC refresh: %v", f)
	}
	sec.addPair(bob2)
	bob3 := d.loginVia(t, viaGRPC, "bob", bobPW)
	sec.addPair(bob3)
	// A refresh token reused after the grace window (1s) revokes its
	// session: theft detection.
	testidentityd.Eventually(t, 10*time.Second, func() error {
		_, f := d.refreshVia(t, viaREST, bob.RefreshToken)
		if f == nil || f.reason != "REFRESH_TOKEN_REUSED" {
			return fmt.Errorf("reuse of a rotated-out refresh token: %v, want REFRESH_TOKEN_REUSED", f)
		}
		return nil
	})
	if f := d.logoutVia(t, viaGRPC, bob3.RefreshToken, true); f != nil {
		t.Fatalf("gRPC logout: %v", f)
	}

	// Browser mode: the refresh token travels in a cookie.
	browser := http.Header{"Content-Type": {"application/json"}, server.HeaderClient: {server.ClientBrowser}}
	r := d.do(t, http.MethodPost, "/v1/login", jsonBody(t, map[string]string{"username": "carol", "password": carolPW}), browser)
	cookie := refreshCookie(t, r)
	sec.add("refresh token", cookie)
	sec.add("access token", browserAccessToken(t, r))
	cookieHeader := browser.Clone()
	cookieHeader.Set("Origin", d.BaseURL)
	cookieHeader.Set("Cookie", server.RefreshCookie+"="+cookie)
	r = d.do(t, http.MethodPost, "/v1/refresh", strings.NewReader("{}"), cookieHeader)
	sec.add("refresh token", refreshCookie(t, r))
	sec.add("access token", browserAccessToken(t, r))

	// carol's first login stored a hash with identityd's parameters.
	rehashed := storedHash(t, d, "carol")
	if rehashed == carolHash || !strings.HasPrefix(rehashed, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Errorf("carol's hash after her login %.32q…: want it rehashed with identityd's parameters (m=19456,t=2,p=1)", rehashed)
	}
	sec.add("password hash", rehashed)

	// Failed logins: a wrong password (near the right one), an unknown
	// user, a bad access token.
	wrong := d.Password + "x"
	sec.add("password", wrong, "unknown-user-password")
	requireError(t, d.loginREST(t, d.Username, wrong), http.StatusUnauthorized, "INVALID_CREDENTIALS")
	requireError(t, d.loginREST(t, "mallory", "unknown-user-password"), http.StatusUnauthorized, "INVALID_CREDENTIALS")
	requireError(t, d.verifyREST(t, alice.AccessToken+"x"), http.StatusUnauthorized, "TOKEN_INVALID")

	// Admin calls, as alice (role admin): create a user, refuse a weak
	// password, set a password, list.
	admin := d.login(t, d.Username, d.Password)
	sec.addPair(admin)
	api := identityv1.NewAdminServiceClient(d.Conn)
	ctx := bearerContext(t, admin.AccessToken)
	doraPW, newDoraPW, weak := "pw-dora-"+randomHex(12), "pw-dora-new-"+randomHex(12), "password1"
	sec.add("password", doraPW, newDoraPW, weak)
	if _, err := api.CreateUser(ctx, &identityv1.CreateUserRequest{Username: "dora", Password: doraPW, Roles: []string{"reader"}}); err != nil {
		t.Fatalf("admin CreateUser: %v", err)
	}
	_, err := api.CreateUser(ctx, &identityv1.CreateUserRequest{Username: "eve", Password: weak})
	requireStatusError(t, err, codes.InvalidArgument, "PASSWORD_TOO_WEAK")
	if _, err := api.UpdateUser(ctx, &identityv1.UpdateUserRequest{Username: "dora", Password: &newDoraPW}); err != nil {
		t.Fatalf("admin UpdateUser: %v", err)
	}
	if _, err := api.ListUsers(ctx, &identityv1.ListUsersRequest{}); err != nil {
		t.Fatalf("admin ListUsers: %v", err)
	}
	sec.addPair(d.login(t, "dora", newDoraPW))

	for _, name := range []string{d.Username, "bob", "dora"} {
		sec.add("password hash", storedHash(t, d, name))
	}
	addKeyMaterial(t, d, sec)

	d.Stop() // every line is written
	log := d.Log.String()
	// The log is not empty of what the test did: one debug line per call.
	for _, method := range []string{"Login", "Refresh", "Logout", "Verify", "WhoAmI", "CreateUser", "UpdateUser"} {
		if !strings.Contains(log, method) {
			t.Errorf("no log line names %s: was the log level debug?\n%s", method, d.Log.Tail(4<<10))
		}
	}
	for i, line := range strings.Split(log, "\n") {
		for kind, values := range sec.kinds {
			for _, v := range values {
				if strings.Contains(line, v) {
					t.Errorf("log line %d holds a %s (%d bytes)", i+1, kind, len(v))
				}
			}
		}
	}
	for _, kind := range []string{"password", "access token", "refresh token", "password hash", "signing key", "refresh-token secret"} {
		if len(sec.kinds[kind]) == 0 {
			t.Errorf("the test collected no %s to look for", kind)
		}
	}
}

func jsonBody(t *testing.T, v any) *bytes.Reader {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(b)
}

// browserAccessToken is the access token of a browser-mode answer (whose
// refresh token is only in the cookie).
func browserAccessToken(t *testing.T, r response) string {
	t.Helper()
	var p tokenPair
	if err := json.Unmarshal(r.body, &p); err != nil || r.status != http.StatusOK || p.AccessToken == "" {
		t.Fatalf("%v: want a TokenPair with an access token (%v)", r, err)
	}
	return p.AccessToken
}

func refreshCookie(t *testing.T, r response) string {
	t.Helper()
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == server.RefreshCookie && c.Value != "" {
			return c.Value
		}
	}
	t.Fatalf("%v: no %s cookie", r, server.RefreshCookie)
	return ""
}

// storedHash is the PHC string the store holds for username.
func storedHash(t *testing.T, d *identityd, username string) string {
	t.Helper()
	u, err := d.Store(t).UserByName(t.Context(), username)
	if err != nil {
		t.Fatalf("user %s in the store: %v", username, err)
	}
	if !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
		t.Fatalf("user %s: stored hash %.12q… is not a PHC string", username, u.PasswordHash)
	}
	return u.PasswordHash
}

// addKeyMaterial adds the keyring identityd keeps in the store: the raw
// document, each private key (PKCS#8 DER) and the refresh-token secret.
func addKeyMaterial(t *testing.T, d *identityd, sec *secrets) {
	t.Helper()
	raw, err := d.Store(t).Keyring(t.Context())
	if err != nil || len(raw) == 0 {
		t.Fatalf("keyring in the store: %d bytes, %v", len(raw), err)
	}
	sec.addBytes("keyring document", raw)
	// The stored keyring is sealed under the master key: open it as
	// identityd does, for the real keys and secret to look for.
	ring := d.StoredKeyring(t)
	if plain, err := json.Marshal(ring); err == nil {
		sec.addBytes("keyring document", plain)
	}
	for _, k := range ring.Keys {
		der, err := x509.MarshalPKCS8PrivateKey(k.Private)
		if err != nil {
			t.Fatalf("key %s: %v", k.ID, err)
		}
		sec.addBytes("signing key", der)
		if ed, ok := k.Private.(ed25519.PrivateKey); ok {
			sec.addBytes("signing key", ed.Seed())
		}
	}
	sec.addBytes("refresh-token secret", ring.RefreshSecret)
}
