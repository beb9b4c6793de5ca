package server_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/identityd/identity/audit"
	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/server"
)

// grpcUA stands for the gRPC client's User-Agent ("grpc-go/1.x.y") in an
// expected event.
const grpcUA = "grpc-go/*"

// A scenario that touches every audited path produces exactly the expected
// events, in order, with the expected fields, as one JSON log record each;
// on Redis the stream gets the same events. No password, token, hash or
// key of the scenario appears in the log or the stream. On both stores.
func TestAuditEvents(t *testing.T) {
	t.Parallel()
	for _, store := range []string{"memory", "redis"} {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			testAuditScenario(t, store)
		})
	}
}

func testAuditScenario(t *testing.T, store string) {
	log := &testidentityd.LockedBuffer{}
	opts := []testidentityd.InProcessOption{
		testidentityd.InProcessLogger(slog.New(slog.NewJSONHandler(log, nil))),
		testidentityd.InProcessConfig(func(c *server.Config) {
			// The test client is the proxy: its X-Forwarded-For is believed.
			c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
			// Any earlier refresh token is reuse at once.
			c.RefreshGrace = 0
		}),
	}
	var streamKey string
	var rdb *redis.Client
	if store == "redis" {
		rdb = testredis.Start(t)
		streamKey = testredis.KeyPrefix(t, rdb) + "audit"
		opts = append(opts, testidentityd.InProcessRedisURL(testredis.URL(t)), testidentityd.InProcessAuditStream(streamKey, 1000))
	}
	p := testidentityd.StartInProcess(t, opts...)
	suffix := strings.ToLower(rand.Text()[:8])
	adminName, bobName := "root-"+suffix, "bob-"+suffix
	adminPW := testidentityd.AddUser(t, p.Store, adminName, "", "admin")
	bobPW := testidentityd.AddUser(t, p.Store, bobName, "")
	adminUser, _ := p.Store.UserByName(t.Context(), adminName)
	bobUser, _ := p.Store.UserByName(t.Context(), bobName)
	adminID, bobID := adminUser.ID, bobUser.ID
	secrets := []string{adminPW, bobPW, adminUser.PasswordHash, bobUser.PasswordHash}
	pairs := func(ps ...*identityv1.TokenPair) {
		for _, p := range ps {
			secrets = append(secrets, p.GetAccessToken(), p.GetRefreshToken())
		}
	}
	bearer := func(pair *identityv1.TokenPair) context.Context {
		return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+pair.GetAccessToken())
	}
	rest := func(path, body string, xff string) *identityv1.TokenPair {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, p.BaseURL+path, strings.NewReader(body))
		req.Header.Set("User-Agent", "audit-test/1.0")
		req.Header.Set("Content-Type", "application/json")
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		resp, err := p.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
		}
		pair := &identityv1.TokenPair{}
		if err := protojson.Unmarshal(b, pair); err != nil {
			t.Fatal(err)
		}
		return pair
	}
	adm := identityv1.NewAdminServiceClient(p.Conn)
	var want []map[string]string
	expect := func(fields ...string) {
		m := map[string]string{}
		for i := 0; i < len(fields); i += 2 {
			m[fields[i]] = fields[i+1]
		}
		want = append(want, m)
	}
	ok := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	grpcCaller := []string{"client_address", "127.0.0.1", "user_agent", grpcUA}
	asAdmin := []string{"actor", adminID, "actor_username", adminName}
	with := func(groups ...[]string) []string { return slices.Concat(groups...) }

	// Logins: an admin over gRPC, bob over REST through a proxy, bob with
	// a wrong password.
	admin := p.Login(t, adminName, adminPW)
	expect(with([]string{"event", "login.succeeded", "outcome", "success", "subject", adminID, "username", adminName, "session_id", admin.GetSessionId()}, grpcCaller)...)
	first := rest("/v1/login", `{"username":"`+bobName+`","password":"`+bobPW+`"}`, "203.0.113.7")
	expect("event", "login.succeeded", "outcome", "success", "subject", bobID, "username", bobName, "session_id", first.GetSessionId(),
		"client_address", "203.0.113.7", "user_agent", "audit-test/1.0")
	wrongPW := "wrong-" + bobPW
	secrets = append(secrets, wrongPW)
	_, err := p.API.Login(t.Context(), &identityv1.LoginRequest{Username: bobName, Password: wrongPW})
	if authn.Reason(err) != identityv1.ErrorReason_INVALID_CREDENTIALS {
		t.Fatalf("wrong password: %v", err)
	}
	expect(with([]string{"event", "login.failed", "outcome", "failure", "reason", "INVALID_CREDENTIALS", "detail", "wrong_password", "username", bobName}, grpcCaller)...)

	// Refresh over REST (straight from the test client), then the old
	// refresh token again: reuse.
	second := rest("/v1/refresh", `{"refresh_token":"`+first.GetRefreshToken()+`"}`, "")
	rotated := time.Now()
	expect("event", "session.refreshed", "outcome", "success", "subject", bobID, "username", bobName, "session_id", first.GetSessionId(),
		"client_address", "127.0.0.1", "user_agent", "audit-test/1.0")
	// With no grace, a reuse is one presented in a later millisecond than
	// the rotation (the store's resolution): wait for the clock to get there.
	for !time.Now().After(rotated.Add(2 * time.Millisecond)) {
		time.Sleep(time.Millisecond)
	}
	_, err = p.API.Refresh(t.Context(), &identityv1.RefreshRequest{RefreshToken: first.GetRefreshToken()})
	if authn.Reason(err) != identityv1.ErrorReason_REFRESH_TOKEN_REUSED {
		t.Fatalf("reuse: %v", err)
	}
	expect(with([]string{"event", "session.reuse_detected", "outcome", "failure", "reason", "REFRESH_TOKEN_REUSED", "subject", bobID,
		"session_id", first.GetSessionId(), "cause", "reuse"}, grpcCaller)...)

	// Logout of one session.
	third := p.Login(t, bobName, bobPW)
	expect(with([]string{"event", "login.succeeded", "outcome", "success", "subject", bobID, "username", bobName, "session_id", third.GetSessionId()}, grpcCaller)...)
	p.Logout(t, third)
	expect(with([]string{"event", "session.logged_out", "outcome", "success", "subject", bobID, "session_id", third.GetSessionId()}, grpcCaller)...)

	// Self-service: change the password, sign another device out.
	fourth := p.Login(t, bobName, bobPW)
	expect(with([]string{"event", "login.succeeded", "outcome", "success", "subject", bobID, "username", bobName, "session_id", fourth.GetSessionId()}, grpcCaller)...)
	bobPW2 := testidentityd.RandomPassword()
	secrets = append(secrets, bobPW2)
	asBob := []string{"actor", bobID, "actor_username", bobName}
	_, err = p.API.ChangePassword(bearer(fourth), &identityv1.ChangePasswordRequest{CurrentPassword: wrongPW, NewPassword: bobPW2})
	if authn.Reason(err) != identityv1.ErrorReason_INVALID_CREDENTIALS {
		t.Fatalf("ChangePassword with a wrong current password: %v", err)
	}
	expect(with([]string{"event", "user.password_changed", "outcome", "failure", "reason", "INVALID_CREDENTIALS", "detail", "wrong_password",
		"subject", bobID, "username", bobName, "session_id", fourth.GetSessionId()}, asBob, grpcCaller)...)
	_, err = p.API.ChangePassword(bearer(fourth), &identityv1.ChangePasswordRequest{CurrentPassword: bobPW, NewPassword: bobPW2})
	ok(err)
	expect(with([]string{"event", "user.password_changed", "outcome", "success", "subject", bobID, "username", bobName, "session_id", fourth.GetSessionId()}, asBob, grpcCaller)...)
	fifth := p.Login(t, bobName, bobPW2)
	expect(with([]string{"event", "login.succeeded", "outcome", "success", "subject", bobID, "username", bobName, "session_id", fifth.GetSessionId()}, grpcCaller)...)
	_, err = p.API.RevokeMySession(bearer(fifth), &identityv1.RevokeMySessionRequest{SessionId: fourth.GetSessionId()})
	ok(err)
	expect(with([]string{"event", "session.revoked", "outcome", "success", "subject", bobID, "username", bobName, "session_id", fourth.GetSessionId()}, asBob, grpcCaller)...)

	// Administration.
	update := func(req *identityv1.UpdateUserRequest) error {
		_, err := adm.UpdateUser(bearer(admin), req)
		return err
	}
	ok(update(&identityv1.UpdateUserRequest{Username: bobName, Disabled: proto.Bool(true)}))
	expect(with([]string{"event", "user.disabled", "outcome", "success", "subject", bobID, "username", bobName, "cause", "disable"}, asAdmin, grpcCaller)...)
	_, err = p.API.Login(t.Context(), &identityv1.LoginRequest{Username: bobName, Password: bobPW2})
	if authn.Reason(err) != identityv1.ErrorReason_INVALID_CREDENTIALS {
		t.Fatalf("login of a disabled user: %v", err)
	}
	expect(with([]string{"event", "login.failed", "outcome", "failure", "reason", "INVALID_CREDENTIALS", "detail", "account_disabled", "username", bobName}, grpcCaller)...)
	_, err = p.API.Login(t.Context(), &identityv1.LoginRequest{Username: "nobody-" + suffix, Password: bobPW2})
	if authn.Reason(err) != identityv1.ErrorReason_INVALID_CREDENTIALS {
		t.Fatalf("login of an unknown user: %v", err)
	}
	expect(with([]string{"event", "login.failed", "outcome", "failure", "reason", "INVALID_CREDENTIALS", "detail", "unknown_user", "username", "nobody-" + suffix}, grpcCaller)...)
	ok(update(&identityv1.UpdateUserRequest{Username: bobName, Disabled: proto.Bool(false)}))
	expect(with([]string{"event", "user.enabled", "outcome", "success", "subject", bobID, "username", bobName}, asAdmin, grpcCaller)...)
	ok(update(&identityv1.UpdateUserRequest{Username: bobName, SetRoles: true, Roles: []string{"ops", "billing"}}))
	expect(with([]string{"event", "user.roles_changed", "outcome", "success", "subject", bobID, "username", bobName, "roles", "billing,ops"}, asAdmin, grpcCaller)...)
	bobPW3 := testidentityd.RandomPassword()
	secrets = append(secrets, bobPW3)
	ok(update(&identityv1.UpdateUserRequest{Username: bobName, Password: proto.String(bobPW3)}))
	expect(with([]string{"event", "user.password_changed", "outcome", "success", "subject", bobID, "username", bobName, "cause", "password_change"}, asAdmin, grpcCaller)...)
	err = update(&identityv1.UpdateUserRequest{Username: "nobody-" + suffix, Disabled: proto.Bool(true)})
	if authn.Reason(err) != identityv1.ErrorReason_NOT_FOUND {
		t.Fatalf("disabling an unknown user: %v", err)
	}
	expect(with([]string{"event", "user.disabled", "outcome", "failure", "reason", "NOT_FOUND", "username", "nobody-" + suffix, "cause", "disable"}, asAdmin, grpcCaller)...)
	carolPW := testidentityd.RandomPassword()
	secrets = append(secrets, carolPW)
	carol, err := adm.CreateUser(bearer(admin), &identityv1.CreateUserRequest{Username: "carol-" + suffix, Password: carolPW, Roles: []string{"viewer"}})
	ok(err)
	expect(with([]string{"event", "user.created", "outcome", "success", "subject", carol.GetId(), "username", "carol-" + suffix, "roles", "viewer"}, asAdmin, grpcCaller)...)

	// Log out everywhere, and an admin's revoke-all.
	sixth := p.Login(t, bobName, bobPW3)
	expect(with([]string{"event", "login.succeeded", "outcome", "success", "subject", bobID, "username", bobName, "session_id", sixth.GetSessionId()}, grpcCaller)...)
	_, err = p.API.Logout(t.Context(), &identityv1.LogoutRequest{RefreshToken: sixth.GetRefreshToken(), AllSessions: true})
	ok(err)
	expect(with([]string{"event", "user.sessions_revoked", "outcome", "success", "subject", bobID, "session_id", sixth.GetSessionId(), "cause", "logout_all"}, grpcCaller)...)
	seventh := p.Login(t, bobName, bobPW3)
	expect(with([]string{"event", "login.succeeded", "outcome", "success", "subject", bobID, "username", bobName, "session_id", seventh.GetSessionId()}, grpcCaller)...)
	_, err = adm.RevokeSession(bearer(admin), &identityv1.RevokeSessionRequest{SessionId: seventh.GetSessionId()})
	ok(err)
	expect(with([]string{"event", "session.revoked", "outcome", "success", "subject", bobID, "session_id", seventh.GetSessionId(), "cause", "admin"}, asAdmin, grpcCaller)...)
	eighth := p.Login(t, bobName, bobPW3)
	expect(with([]string{"event", "login.succeeded", "outcome", "success", "subject", bobID, "username", bobName, "session_id", eighth.GetSessionId()}, grpcCaller)...)
	n, err := adm.RevokeUserSessions(bearer(admin), &identityv1.RevokeUserSessionsRequest{Username: bobName})
	ok(err)
	if n.GetRevoked() != 1 {
		t.Fatalf("RevokeUserSessions revoked %d, want 1", n.GetRevoked())
	}
	expect(with([]string{"event", "user.sessions_revoked", "outcome", "success", "username", bobName, "cause", "admin", "sessions", "1"}, asAdmin, grpcCaller)...)

	// Key rotation.
	ks, err := adm.RotateKeys(bearer(admin), &identityv1.RotateKeysRequest{})
	ok(err)
	newest := slices.MaxFunc(ks.GetKeys(), func(a, b *identityv1.SigningKey) int {
		return a.GetCreatedAt().AsTime().Compare(b.GetCreatedAt().AsTime())
	})
	expect(with([]string{"event", "keys.rotated", "outcome", "success", "key_id", newest.GetKid()}, asAdmin, grpcCaller)...)

	pairs(admin, first, second, third, fourth, fifth, sixth, seventh, eighth)
	for _, name := range []string{adminName, bobName, "carol-" + suffix} {
		u, err := p.Store.UserByName(t.Context(), name)
		ok(err)
		secrets = append(secrets, u.PasswordHash)
	}
	if k, err := p.Keys.SigningKey(); err == nil {
		if seed, isEd := k.Private.(ed25519.PrivateKey); isEd {
			secrets = append(secrets, encodings(seed.Seed())...)
		}
	}

	got := auditRecords(t, log.String())
	checkEvents(t, "log", got, want)
	requireNoSecrets(t, "the log", log.String(), secrets)

	if store == "redis" {
		var entries []map[string]string
		testidentityd.Eventually(t, 30*time.Second, func() error {
			xs, err := rdb.XRange(t.Context(), streamKey, "-", "+").Result()
			if err != nil {
				return err
			}
			entries = entries[:0]
			for _, x := range xs {
				m := map[string]string{}
				for k, v := range x.Values {
					m[k] = fmt.Sprint(v)
				}
				entries = append(entries, m)
			}
			if len(entries) < len(want) {
				return fmt.Errorf("%d entries in the stream, want %d", len(entries), len(want))
			}
			return nil
		})
		checkEvents(t, "stream", entries, want)
		if !slices.EqualFunc(entries, got, func(a, b map[string]string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }) {
			t.Errorf("the stream's entries differ from the log's records:\nstream %v\nlog    %v", entries, got)
		}
		var all strings.Builder
		for _, e := range entries {
			fmt.Fprintln(&all, e)
		}
		requireNoSecrets(t, "the stream", all.String(), secrets)
		if p.AuditStream.Dropped() != 0 {
			t.Errorf("%d events dropped", p.AuditStream.Dropped())
		}
	}
}

// auditRecords are the audit records of a JSON log, their fields as
// strings (roles joined with commas, as the stream has them).
func auditRecords(t *testing.T, log string) []map[string]string {
	t.Helper()
	var out []map[string]string
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("a log line that is not one JSON record: %q: %v", sc.Text(), err)
		}
		if rec["msg"] != audit.Message {
			continue
		}
		if rec["level"] != "INFO" {
			t.Errorf("audit record at %v, want INFO", rec["level"])
		}
		fields, _ := rec[audit.Group].(map[string]any)
		m := map[string]string{}
		for k, v := range fields {
			switch v := v.(type) {
			case string:
				m[k] = v
			case float64:
				m[k] = strconv.FormatFloat(v, 'f', -1, 64)
			case []any:
				var parts []string
				for _, p := range v {
					parts = append(parts, fmt.Sprint(p))
				}
				m[k] = strings.Join(parts, ",")
			default:
				t.Errorf("field %s of unexpected type %T", k, v)
			}
		}
		out = append(out, m)
	}
	return out
}

// checkEvents compares events with want, field by field: every field, no
// more (the time is checked for its form only, a gRPC User-Agent for its
// prefix).
func checkEvents(t *testing.T, where string, got, want []map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d events, want %d", where, len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		g := maps(got[i])
		ts, err := time.Parse(time.RFC3339Nano, g["time"])
		if err != nil || !strings.HasSuffix(g["time"], "Z") || ts.IsZero() {
			t.Errorf("%s: event %d: time %q is not RFC 3339 UTC", where, i, g["time"])
		}
		delete(g, "time")
		if want[i]["user_agent"] == grpcUA && strings.HasPrefix(g["user_agent"], "grpc-go/") {
			g["user_agent"] = grpcUA
		}
		if fmt.Sprint(g) != fmt.Sprint(want[i]) {
			t.Errorf("%s: event %d:\n got %v\nwant %v", where, i, g, want[i])
		}
	}
	if t.Failed() {
		for i, g := range got {
			t.Logf("%s: event %d: %v", where, i, g)
		}
	}
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func requireNoSecrets(t *testing.T, where, text string, secrets []string) {
	t.Helper()
	for i, s := range secrets {
		if s == "" {
			t.Fatalf("secret %d is empty: the scenario lost one", i)
		}
		if strings.Contains(text, s) {
			t.Errorf("%s holds secret %d (%d bytes)", where, i, len(s))
		}
	}
}

// encodings are b as it could be written: hex and the base64s.
func encodings(b []byte) []string {
	return []string{hex.EncodeToString(b), base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b)}
}
