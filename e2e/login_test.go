package e2e

import (
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// testLoginVerifyWhoAmI follows one login through Verify and WhoAmI on both
// protocols and holds every field to docs/api.md: names, JSON types, values.
func testLoginVerifyWhoAmI(t *testing.T, d *identityd) {
	before := time.Now()

	r := d.loginREST(t, d.Username, d.Password)
	tp := d.requireTokenPair(t, r)
	requireTokenPairJSON(t, r)

	const accessTTL = 60 // the shared instance runs with --access-ttl 1m
	if tp.TokenType != "Bearer" {
		t.Errorf("token_type = %q, want \"Bearer\"", tp.TokenType)
	}
	if tp.ExpiresIn != accessTTL {
		t.Errorf("expires_in = %d, want %d (--access-ttl 1m)", tp.ExpiresIn, accessTTL)
	}
	if d := tp.AccessTokenExpiresAt.Sub(before.Add(accessTTL * time.Second)); d < -2*time.Second || d > 5*time.Second {
		t.Errorf("access_token_expires_at = %v, want about login time + 60s (off by %v)", tp.AccessTokenExpiresAt, d)
	}
	if !tp.RefreshTokenExpiresAt.After(tp.AccessTokenExpiresAt) || tp.RefreshTokenExpiresAt.After(before.Add(2*time.Hour+5*time.Second)) {
		t.Errorf("refresh_token_expires_at = %v, want after the access token's expiry and within --refresh-absolute-ttl 2h", tp.RefreshTokenExpiresAt)
	}
	if looksLikeJWT(tp.RefreshToken) {
		t.Errorf("the refresh token is a JWT; docs/api.md promises an opaque one")
	}

	// The access token itself: RFC 9068 header and the claims docs/api.md lists.
	tok := decodeJWT(t, tp.AccessToken)
	if tok.header["typ"] != "at+jwt" || tok.header["alg"] != "EdDSA" {
		t.Errorf("JWT header typ %v alg %v, want at+jwt and EdDSA", tok.header["typ"], tok.header["alg"])
	}
	if kid, _ := tok.header["kid"].(string); kid == "" {
		t.Errorf("JWT header has no kid: %v", tok.header)
	}
	c := tok.claims
	sub, _ := c["sub"].(string)
	iat, exp := claimInt(t, c, "iat"), claimInt(t, c, "exp")
	nbf := claimInt(t, c, "nbf")
	for name, want := range map[string]any{"iss": "identity", "sid": tp.SessionID, "preferred_username": d.Username} {
		if c[name] != want {
			t.Errorf("claim %s = %v, want %v", name, c[name], want)
		}
	}
	if aud := c["aud"]; aud != "identity" && !reflect.DeepEqual(aud, []any{"identity"}) {
		t.Errorf("claim aud = %v, want \"identity\"", aud)
	}
	if sub == "" || sub == d.Username {
		t.Errorf("claim sub = %q, want a stable user id (not empty, not the username)", sub)
	}
	if jti, _ := c["jti"].(string); jti == "" {
		t.Errorf("claim jti missing")
	}
	if exp-iat != tp.ExpiresIn || exp != tp.AccessTokenExpiresAt.Unix() || nbf > iat {
		t.Errorf("claims iat %d nbf %d exp %d disagree with expires_in %d / access_token_expires_at %v", iat, nbf, exp, tp.ExpiresIn, tp.AccessTokenExpiresAt)
	}
	if roles, _ := c["roles"].([]any); !slices.Contains(roles, any("admin")) {
		t.Errorf("claim roles = %v, want to contain \"admin\" (the bootstrap user's role)", c["roles"])
	}

	// Verify and WhoAmI over REST: the same identity, exact JSON shape.
	want := identity{
		Subject: sub, Username: d.Username, SessionID: tp.SessionID,
		IssuedAt: time.Unix(iat, 0).UTC(), ExpiresAt: time.Unix(exp, 0).UTC(),
	}
	vr := d.verifyREST(t, tp.AccessToken)
	requireIdentityJSON(t, vr)
	checkIdentity(t, "REST Verify", requireIdentity(t, vr), want)

	mr := d.meREST(t, tp.AccessToken)
	requireIdentityJSON(t, mr)
	checkIdentity(t, "REST WhoAmI", requireIdentity(t, mr), want)
	if !reflect.DeepEqual(decodeObject(t, vr), decodeObject(t, mr)) {
		t.Errorf("GET /v1/me and POST /v1/verify disagree:\n%v\n%v", vr, mr)
	}

	// The same over gRPC.
	gv, err := d.API.Verify(rpcContext(t), &identityv1.VerifyRequest{Token: tp.AccessToken})
	if err != nil {
		t.Fatalf("gRPC Verify: %v", err)
	}
	checkIdentity(t, "gRPC Verify", fromProto(gv), want)
	gw, err := d.API.WhoAmI(bearerContext(t, tp.AccessToken), &identityv1.WhoAmIRequest{})
	if err != nil {
		t.Fatalf("gRPC WhoAmI: %v", err)
	}
	checkIdentity(t, "gRPC WhoAmI", fromProto(gw), want)

	// A gRPC login gives a session of its own whose token REST accepts.
	gp, err := d.API.Login(rpcContext(t), &identityv1.LoginRequest{Username: d.Username, Password: d.Password})
	if err != nil {
		t.Fatalf("gRPC Login: %v", err)
	}
	d.Remember(gp.GetAccessToken(), gp.GetRefreshToken())
	if gp.GetTokenType() != "Bearer" || gp.GetExpiresIn() != accessTTL || gp.GetSessionId() == "" ||
		gp.GetAccessTokenExpiresAt() == nil || gp.GetRefreshTokenExpiresAt() == nil || gp.GetRefreshToken() == "" {
		t.Errorf("gRPC Login TokenPair incomplete: type %q expires_in %d session %q", gp.GetTokenType(), gp.GetExpiresIn(), gp.GetSessionId())
	}
	if gp.GetSessionId() == tp.SessionID || gp.GetRefreshToken() == tp.RefreshToken {
		t.Errorf("two logins share a session or a refresh token")
	}
	id := requireIdentity(t, d.verifyREST(t, gp.GetAccessToken()))
	if id.SessionID != gp.GetSessionId() || id.Subject != sub {
		t.Errorf("REST Verify of a gRPC login: session %q subject %q, want %q %q", id.SessionID, id.Subject, gp.GetSessionId(), sub)
	}
}

// requireTokenPairJSON checks the TokenPair JSON names and types exactly:
// snake_case, expires_in a JSON number, timestamps RFC 3339 strings.
func requireTokenPairJSON(t testing.TB, r response) {
	t.Helper()
	m := decodeObject(t, r)
	requireKeys(t, r, m, "access_token", "token_type", "expires_in", "access_token_expires_at",
		"refresh_token", "refresh_token_expires_at", "session_id")
	if n, ok := m["expires_in"].(json.Number); !ok {
		t.Errorf("expires_in is %T, want a JSON number: %v", m["expires_in"], r)
	} else if _, err := n.Int64(); err != nil {
		t.Errorf("expires_in = %s, want an integer", n)
	}
	for _, k := range []string{"access_token", "token_type", "refresh_token", "session_id"} {
		if _, ok := m[k].(string); !ok {
			t.Errorf("%s is %T, want a string", k, m[k])
		}
	}
	requireRFC3339(t, m, "access_token_expires_at", "refresh_token_expires_at")
}

// requireIdentityJSON checks the VerifyResponse JSON names and types.
func requireIdentityJSON(t testing.TB, r response) {
	t.Helper()
	m := decodeObject(t, r)
	requireKeys(t, r, m, "subject", "username", "roles", "session_id", "issued_at", "expires_at")
	for _, k := range []string{"subject", "username", "session_id"} {
		if _, ok := m[k].(string); !ok {
			t.Errorf("%s is %T, want a string", k, m[k])
		}
	}
	roles, ok := m["roles"].([]any)
	if !ok {
		t.Errorf("roles is %T, want an array", m["roles"])
	}
	for _, role := range roles {
		if _, ok := role.(string); !ok {
			t.Errorf("roles holds %T, want strings", role)
		}
	}
	requireRFC3339(t, m, "issued_at", "expires_at")
}

func requireKeys(t testing.TB, r response, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %v", k, r)
		}
	}
	for k := range m {
		if !slices.Contains(keys, k) {
			t.Errorf("JSON has unexpected key %q (the contract uses snake_case proto names): %v", k, r)
		}
	}
}

func requireRFC3339(t testing.TB, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		s, ok := m[k].(string)
		if !ok {
			t.Errorf("%s is %T, want an RFC 3339 string", k, m[k])
			continue
		}
		if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
			t.Errorf("%s = %q is not RFC 3339: %v", k, s, err)
		}
	}
}

func claimInt(t testing.TB, claims map[string]any, name string) int64 {
	t.Helper()
	n, ok := claims[name].(json.Number)
	if !ok {
		t.Fatalf("claim %s = %v (%T), want a NumericDate", name, claims[name], claims[name])
	}
	i, err := n.Int64()
	if err != nil {
		t.Fatalf("claim %s = %s, want whole seconds", name, n)
	}
	return i
}

func fromProto(v *identityv1.VerifyResponse) identity {
	return identity{
		Subject: v.GetSubject(), Username: v.GetUsername(), Roles: v.GetRoles(), SessionID: v.GetSessionId(),
		IssuedAt: v.GetIssuedAt().AsTime(), ExpiresAt: v.GetExpiresAt().AsTime(),
	}
}

// checkIdentity compares an answer with the expected identity; roles must
// contain "admin" (the bootstrap user's role).
func checkIdentity(t testing.TB, what string, got, want identity) {
	t.Helper()
	if got.Subject != want.Subject || got.Username != want.Username || got.SessionID != want.SessionID {
		t.Errorf("%s: subject %q username %q session %q, want %q %q %q", what,
			got.Subject, got.Username, got.SessionID, want.Subject, want.Username, want.SessionID)
	}
	if !got.IssuedAt.Equal(want.IssuedAt) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("%s: issued_at %v expires_at %v, want the token's iat %v and exp %v", what,
			got.IssuedAt, got.ExpiresAt, want.IssuedAt, want.ExpiresAt)
	}
	if !slices.Contains(got.Roles, "admin") {
		t.Errorf("%s: roles %v, want to contain \"admin\"", what, got.Roles)
	}
}

// testInvalidCredentials: a wrong password and an unknown user get the same
// answer, so the answer does not reveal which usernames exist.
func testInvalidCredentials(t *testing.T, d *identityd) {
	wrong := "wrong-" + d.Password
	d.Remember(wrong)

	badPassword := d.loginREST(t, d.Username, wrong)
	unknownUser := d.loginREST(t, "nobody-"+randomHex(4), d.Password)
	requireError(t, badPassword, http.StatusUnauthorized, "INVALID_CREDENTIALS")
	requireError(t, unknownUser, http.StatusUnauthorized, "INVALID_CREDENTIALS")
	if !reflect.DeepEqual(decodeObject(t, badPassword), decodeObject(t, unknownUser)) {
		t.Errorf("wrong password and unknown user answer differently:\n%v\n%v", badPassword, unknownUser)
	}
	if a, b := badPassword.header.Get("WWW-Authenticate"), unknownUser.header.Get("WWW-Authenticate"); a != b {
		t.Errorf("WWW-Authenticate differs: %q vs %q", a, b)
	}

	_, err1 := d.API.Login(rpcContext(t), &identityv1.LoginRequest{Username: d.Username, Password: wrong})
	_, err2 := d.API.Login(rpcContext(t), &identityv1.LoginRequest{Username: "nobody-" + randomHex(4), Password: d.Password})
	s1 := requireStatusError(t, err1, codes.Unauthenticated, "INVALID_CREDENTIALS")
	s2 := requireStatusError(t, err2, codes.Unauthenticated, "INVALID_CREDENTIALS")
	if s1.Message() != s2.Message() || len(s1.Details()) != len(s2.Details()) {
		t.Errorf("gRPC: wrong password and unknown user answer differently: %v vs %v", s1.Proto(), s2.Proto())
	}

	// Inputs that must never log anyone in nor break the server.
	tests := []struct {
		name, username, password string
		allowed                  []statusReason
	}{
		{"empty username", "", d.Password, []statusReason{{400, "INVALID_REQUEST"}}},
		{"empty password", d.Username, "", []statusReason{{400, "INVALID_REQUEST"}}},
		{"NUL in username", d.Username[:2] + "\x00" + d.Username[2:], d.Password, badLogin},
		{"newline after username", d.Username + "\n", d.Password, badLogin},
		{"password of 1025 bytes", d.Username, strings.Repeat("p", 1025), badLogin},
		{"correct password with a suffix", d.Username, d.Password + "x", []statusReason{{401, "INVALID_CREDENTIALS"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireErrorIn(t, d.loginREST(t, tt.username, tt.password), tt.allowed...)
		})
	}
}

// badLogin: a refused login input may be either kind of error, these tests
// do not pin which (docs/api.md, Login: INVALID_REQUEST for a field empty or
// over 1,024 bytes, INVALID_CREDENTIALS for a username no account can have).
var badLogin = []statusReason{{400, "INVALID_REQUEST"}, {401, "INVALID_CREDENTIALS"}}

// testUsernameNFC: usernames are compared after NFC normalisation, so the
// decomposed spelling of a name logs in to the same account.
func testUsernameNFC(t *testing.T, d *identityd) {
	const nfc, nfd = "zo\u00eb", "zoe\u0308" // "zoë" precomposed and decomposed
	pw := "pw-" + randomHex(12)
	addUser(t, d, nfc, pw, "reader")

	a := d.login(t, nfc, pw)
	b := d.login(t, nfd, pw)
	ida := requireIdentity(t, d.verifyREST(t, a.AccessToken))
	idb := requireIdentity(t, d.verifyREST(t, b.AccessToken))
	if ida.Subject != idb.Subject || idb.Username != nfc {
		t.Errorf("NFD login: subject %q username %q, want the NFC account %q %q", idb.Subject, idb.Username, ida.Subject, nfc)
	}
}

// testOperationalEndpoints: health, readiness, metrics, gRPC health and
// reflection.
func testOperationalEndpoints(t *testing.T, d *identityd) {
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := d.do(t, http.MethodGet, path, nil, nil); r.status != http.StatusOK {
			t.Errorf("%v", r)
		} else if path == "/metrics" && !strings.Contains(string(r.body), "# TYPE ") {
			t.Errorf("/metrics is not Prometheus text: %.200s", r.body)
		}
	}

	hc, err := grpc_health_v1.NewHealthClient(d.Conn).Check(rpcContext(t), &grpc_health_v1.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Errorf("grpc.health.v1.Health/Check: %v %v, want SERVING", hc.GetStatus(), err)
	}

	stream, err := reflectionpb.NewServerReflectionClient(d.Conn).ServerReflectionInfo(rpcContext(t))
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	err = stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	})
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	if !slices.Contains(names, "identity.v1.IdentityService") {
		t.Errorf("reflection lists %v, want identity.v1.IdentityService among them", names)
	}
	stream.CloseSend()
}
