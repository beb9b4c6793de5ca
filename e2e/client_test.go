package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

var httpClient = &http.Client{Timeout: 15 * time.Second}

// response is one REST answer, read in full.
type response struct {
	method, path string
	status       int
	header       http.Header
	body         []byte
}

func (r response) String() string {
	body := string(r.body)
	if len(body) > 600 {
		body = body[:600] + "…"
	}
	return fmt.Sprintf("%s %s → %d %s", r.method, r.path, r.status, body)
}

// do sends one request. A transport error fails the test: every request
// here must get an HTTP answer.
func (d *identityd) do(t testing.TB, method, path string, body io.Reader, header http.Header) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, d.BaseURL+path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	client := httpClient
	if d.ClientTLS != nil {
		client = d.HTTP // trusts the test CA
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return response{method: method, path: path, status: resp.StatusCode, header: resp.Header, body: b}
}

// post sends v as a JSON body.
func (d *identityd) post(t testing.TB, path string, v any) response {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return d.do(t, http.MethodPost, path, bytes.NewReader(b), http.Header{"Content-Type": {"application/json"}})
}

func (d *identityd) loginREST(t testing.TB, username, password string) response {
	t.Helper()
	return d.post(t, "/v1/login", map[string]string{"username": username, "password": password})
}

func (d *identityd) refreshREST(t testing.TB, refreshToken string) response {
	t.Helper()
	return d.post(t, "/v1/refresh", map[string]string{"refresh_token": refreshToken})
}

func (d *identityd) logoutREST(t testing.TB, refreshToken string, all bool) response {
	t.Helper()
	return d.post(t, "/v1/logout", map[string]any{"refresh_token": refreshToken, "all_sessions": all})
}

func (d *identityd) verifyREST(t testing.TB, token string) response {
	t.Helper()
	return d.post(t, "/v1/verify", map[string]string{"token": token})
}

func (d *identityd) meREST(t testing.TB, accessToken string) response {
	t.Helper()
	return d.do(t, http.MethodGet, "/v1/me", nil, http.Header{"Authorization": {"Bearer " + accessToken}})
}

// tokenPair is TokenPair as JSON. Decoding into int64 and time.Time already
// checks that expires_in is a number and the timestamps are RFC 3339.
type tokenPair struct {
	AccessToken           string    `json:"access_token"`
	TokenType             string    `json:"token_type"`
	ExpiresIn             int64     `json:"expires_in"`
	AccessTokenExpiresAt  time.Time `json:"access_token_expires_at"`
	RefreshToken          string    `json:"refresh_token"`
	RefreshTokenExpiresAt time.Time `json:"refresh_token_expires_at"`
	SessionID             string    `json:"session_id"`
}

// identity is VerifyResponse as JSON.
type identity struct {
	Subject   string    `json:"subject"`
	Username  string    `json:"username"`
	Roles     []string  `json:"roles"`
	SessionID string    `json:"session_id"`
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// login logs in over REST and requires success.
func (d *identityd) login(t testing.TB, username, password string) tokenPair {
	t.Helper()
	return d.requireTokenPair(t, d.loginREST(t, username, password))
}

// refresh rotates over REST and requires success.
func (d *identityd) refresh(t testing.TB, refreshToken string) tokenPair {
	t.Helper()
	return d.requireTokenPair(t, d.refreshREST(t, refreshToken))
}

func (d *identityd) requireTokenPair(t testing.TB, r response) tokenPair {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("want 200 and a TokenPair: %v", r)
	}
	var tp tokenPair
	if err := json.Unmarshal(r.body, &tp); err != nil {
		t.Fatalf("TokenPair does not decode (%v): %v", err, r)
	}
	if tp.AccessToken == "" || tp.RefreshToken == "" || tp.SessionID == "" {
		t.Fatalf("TokenPair lacks a token or the session id: %v", r)
	}
	d.Remember(tp.AccessToken, tp.RefreshToken)
	return tp
}

// requireIdentity requires a 200 VerifyResponse.
func requireIdentity(t testing.TB, r response) identity {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("want 200 and a VerifyResponse: %v", r)
	}
	var id identity
	if err := json.Unmarshal(r.body, &id); err != nil {
		t.Fatalf("VerifyResponse does not decode (%v): %v", err, r)
	}
	return id
}

// decodeObject parses a JSON object, keeping numbers as json.Number so a
// number and a numeric string stay distinguishable.
func decodeObject(t testing.TB, r response) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		t.Fatalf("body is not a JSON object (%v): %v", err, r)
	}
	return m
}

// httpCodes are the gRPC codes grpc-gateway maps to each HTTP status the
// contract uses.
var httpCodes = map[int]codes.Code{
	http.StatusBadRequest:         codes.InvalidArgument,
	http.StatusUnauthorized:       codes.Unauthenticated,
	http.StatusNotFound:           codes.NotFound,
	http.StatusTooManyRequests:    codes.ResourceExhausted,
	http.StatusServiceUnavailable: codes.Unavailable,
	// Never right, but mapped so a test can report what it got.
	http.StatusInternalServerError: codes.Internal,
}

// errorInfo is the google.rpc.ErrorInfo found in an error body.
type errorInfo struct {
	Reason   string
	Domain   string
	Metadata map[string]any
}

// requireError checks an error answer against the contract: the status, a
// JSON body {code, message, details} whose details hold one
// google.rpc.ErrorInfo with domain "identity" and the reason (any non-empty
// reason when reason is ""), the gRPC code matching the status, and the
// headers that go with 401 and 429.
func requireError(t testing.TB, r response, wantStatus int, reason string) errorInfo {
	t.Helper()
	if r.status != wantStatus {
		t.Fatalf("want HTTP %d %s: %v", wantStatus, reason, r)
	}
	return checkErrorShape(t, r, reason)
}

// requireErrorIn is requireError for answers the contract leaves open
// between a few (status, reason) pairs.
func requireErrorIn(t testing.TB, r response, allowed ...statusReason) errorInfo {
	t.Helper()
	for _, a := range allowed {
		if r.status == a.status {
			return checkErrorShape(t, r, a.reason)
		}
	}
	t.Fatalf("want one of %v: %v", allowed, r)
	return errorInfo{}
}

type statusReason struct {
	status int
	reason string
}

func (s statusReason) String() string { return fmt.Sprintf("%d %s", s.status, s.reason) }

func checkErrorShape(t testing.TB, r response, reason string) errorInfo {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.Contains(ct, "json") {
		t.Errorf("error Content-Type = %q, want JSON: %v", ct, r)
	}
	m := decodeObject(t, r)
	code, ok := m["code"].(json.Number)
	if !ok {
		t.Fatalf("error body: code is not a number: %v", r)
	}
	if _, ok := m["message"].(string); !ok {
		t.Errorf("error body: message is not a string: %v", r)
	}
	if want, ok := httpCodes[r.status]; ok && code.String() != strconv.Itoa(int(want)) {
		t.Errorf("error body: code = %s, want %d (%v) for HTTP %d: %v", code, want, want, r.status, r)
	}
	details, ok := m["details"].([]any)
	if !ok {
		t.Fatalf("error body: details is not an array: %v", r)
	}
	var infos []errorInfo
	for _, d := range details {
		dm, ok := d.(map[string]any)
		if !ok {
			t.Fatalf("error body: a detail is not an object: %v", r)
		}
		if dm["@type"] != "type.googleapis.com/google.rpc.ErrorInfo" {
			continue
		}
		info := errorInfo{}
		info.Reason, _ = dm["reason"].(string)
		info.Domain, _ = dm["domain"].(string)
		info.Metadata, _ = dm["metadata"].(map[string]any)
		infos = append(infos, info)
	}
	if len(infos) != 1 {
		t.Fatalf("error body: want exactly one google.rpc.ErrorInfo detail, got %d: %v", len(infos), r)
	}
	info := infos[0]
	if info.Domain != "identity" {
		t.Errorf("ErrorInfo.domain = %q, want \"identity\": %v", info.Domain, r)
	}
	if reason == "" && info.Reason == "" || reason != "" && info.Reason != reason {
		t.Errorf("ErrorInfo.reason = %q, want %q: %v", info.Reason, reason, r)
	}
	switch r.status {
	case http.StatusUnauthorized:
		// RFC 6750 §3: the scheme, then the error code among the parameters.
		wa := r.header.Get("WWW-Authenticate")
		if !strings.HasPrefix(wa, "Bearer") || !strings.Contains(wa, `error="invalid_token"`) {
			t.Errorf("401 WWW-Authenticate = %q, want Bearer error=\"invalid_token\": %v", wa, r)
		}
	case http.StatusTooManyRequests:
		ra := r.header.Get("Retry-After")
		if n, err := strconv.Atoi(ra); err != nil || n <= 0 {
			if _, err := http.ParseTime(ra); err != nil {
				t.Errorf("429 Retry-After = %q, want delay-seconds > 0 or an HTTP date: %v", ra, r)
			}
		}
	}
	return info
}

// requireStatusError checks a gRPC failure: the code and one ErrorInfo
// detail with domain "identity" and the reason.
func requireStatusError(t testing.TB, err error, code codes.Code, reason string) *status.Status {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || err == nil {
		t.Fatalf("want gRPC %v %s, got %v", code, reason, err)
	}
	if st.Code() != code {
		t.Fatalf("want gRPC %v %s, got %v: %q (details %v)", code, reason, st.Code(), st.Message(), st.Details())
	}
	var infos []*errdetails.ErrorInfo
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			infos = append(infos, info)
		}
	}
	if len(infos) != 1 {
		t.Fatalf("gRPC %v: want exactly one ErrorInfo detail, got %v", code, st.Details())
	}
	if infos[0].GetDomain() != "identity" || infos[0].GetReason() != reason {
		t.Errorf("gRPC %v: ErrorInfo {reason %q, domain %q}, want {%q, \"identity\"}", code, infos[0].GetReason(), infos[0].GetDomain(), reason)
	}
	return st
}

// bearerContext carries the access token as gRPC authorization metadata.
func bearerContext(t testing.TB, token string) context.Context {
	return metadata.AppendToOutgoingContext(rpcContext(t), "authorization", "Bearer "+token)
}

// via names the protocol a table-driven test speaks.
type via string

const (
	viaREST via = "REST"
	viaGRPC via = "gRPC"
)

var protocols = []via{viaREST, viaGRPC}

// failure is an error answer reduced to what both protocols share: the gRPC
// code (REST's HTTP status mapped back) and the ErrorInfo reason. Its shape
// was checked on the way.
type failure struct {
	code   codes.Code
	reason string
	raw    string
}

func (f *failure) String() string {
	if f == nil {
		return "success"
	}
	return fmt.Sprintf("%v %s (%s)", f.code, f.reason, f.raw)
}

func restFailure(t testing.TB, r response) *failure {
	t.Helper()
	if r.status == http.StatusOK {
		return nil
	}
	code, ok := httpCodes[r.status]
	if !ok {
		t.Fatalf("unexpected HTTP status: %v", r)
	}
	info := checkErrorShape(t, r, "")
	return &failure{code: code, reason: info.Reason, raw: r.String()}
}

func grpcFailure(t testing.TB, err error) *failure {
	t.Helper()
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a gRPC status: %v", err)
	}
	f := &failure{code: st.Code(), raw: fmt.Sprintf("%v: %s", st.Code(), st.Message())}
	n := 0
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			n++
			f.reason = info.GetReason()
			if info.GetDomain() != "identity" {
				t.Errorf("ErrorInfo domain %q, want \"identity\": %v", info.GetDomain(), f.raw)
			}
		}
	}
	if n != 1 {
		t.Errorf("want exactly one ErrorInfo detail, got %d: %v", n, st.Details())
	}
	return f
}

func requireFailure(t testing.TB, f *failure, code codes.Code, reason string) {
	t.Helper()
	if f == nil || f.code != code || f.reason != reason {
		t.Fatalf("want %v %s, got %v", code, reason, f)
	}
}

func requireSuccess(t testing.TB, f *failure) {
	t.Helper()
	if f != nil {
		t.Fatalf("want success, got %v", f)
	}
}

func (d *identityd) loginVia(t testing.TB, p via, username, password string) tokenPair {
	t.Helper()
	if p == viaREST {
		return d.login(t, username, password)
	}
	resp, err := d.API.Login(rpcContext(t), &identityv1.LoginRequest{Username: username, Password: password})
	if err != nil {
		t.Fatalf("gRPC Login: %v", err)
	}
	tp := pairFromProto(resp)
	d.Remember(tp.AccessToken, tp.RefreshToken)
	return tp
}

func (d *identityd) refreshVia(t testing.TB, p via, refreshToken string) (tokenPair, *failure) {
	t.Helper()
	if p == viaREST {
		r := d.refreshREST(t, refreshToken)
		if f := restFailure(t, r); f != nil {
			return tokenPair{}, f
		}
		return d.requireTokenPair(t, r), nil
	}
	resp, err := d.API.Refresh(rpcContext(t), &identityv1.RefreshRequest{RefreshToken: refreshToken})
	if f := grpcFailure(t, err); f != nil {
		return tokenPair{}, f
	}
	tp := pairFromProto(resp)
	d.Remember(tp.AccessToken, tp.RefreshToken)
	return tp, nil
}

func (d *identityd) logoutVia(t testing.TB, p via, refreshToken string, all bool) *failure {
	t.Helper()
	if p == viaREST {
		r := d.logoutREST(t, refreshToken, all)
		if f := restFailure(t, r); f != nil {
			return f
		}
		if m := decodeObject(t, r); len(m) != 0 {
			t.Errorf("logout answered %v, want {}", r)
		}
		return nil
	}
	_, err := d.API.Logout(rpcContext(t), &identityv1.LogoutRequest{RefreshToken: refreshToken, AllSessions: all})
	return grpcFailure(t, err)
}

// verifyVia checks an access token with Verify.
func (d *identityd) verifyVia(t testing.TB, p via, token string) (identity, *failure) {
	t.Helper()
	if p == viaREST {
		r := d.verifyREST(t, token)
		if f := restFailure(t, r); f != nil {
			return identity{}, f
		}
		return requireIdentity(t, r), nil
	}
	resp, err := d.API.Verify(rpcContext(t), &identityv1.VerifyRequest{Token: token})
	if f := grpcFailure(t, err); f != nil {
		return identity{}, f
	}
	return fromProto(resp), nil
}

// whoAmIVia checks an access token with WhoAmI (Authorization: Bearer).
func (d *identityd) whoAmIVia(t testing.TB, p via, token string) (identity, *failure) {
	t.Helper()
	if p == viaREST {
		r := d.meREST(t, token)
		if f := restFailure(t, r); f != nil {
			return identity{}, f
		}
		return requireIdentity(t, r), nil
	}
	resp, err := d.API.WhoAmI(bearerContext(t, token), &identityv1.WhoAmIRequest{})
	if f := grpcFailure(t, err); f != nil {
		return identity{}, f
	}
	return fromProto(resp), nil
}

// requireTokenRejected checks that every way of presenting an access token
// (Verify and WhoAmI, REST and gRPC) refuses it with this reason.
func (d *identityd) requireTokenRejected(t testing.TB, token, reason string) {
	t.Helper()
	for _, p := range protocols {
		_, f := d.verifyVia(t, p, token)
		requireFailure(t, f, codes.Unauthenticated, reason)
		_, f = d.whoAmIVia(t, p, token)
		requireFailure(t, f, codes.Unauthenticated, reason)
	}
}

func pairFromProto(p *identityv1.TokenPair) tokenPair {
	return tokenPair{
		AccessToken: p.GetAccessToken(), TokenType: p.GetTokenType(), ExpiresIn: int64(p.GetExpiresIn()),
		AccessTokenExpiresAt: p.GetAccessTokenExpiresAt().AsTime(), RefreshToken: p.GetRefreshToken(),
		RefreshTokenExpiresAt: p.GetRefreshTokenExpiresAt().AsTime(), SessionID: p.GetSessionId(),
	}
}
