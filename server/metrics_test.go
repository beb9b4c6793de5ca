package server_test

import (
	"bufio"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/server"
)

// scrape is one /metrics answer: series (name and labels as written) →
// value.
type scrape struct {
	text   string
	series map[string]float64
}

var seriesLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$`)

func scrapeMetrics(t *testing.T, base string) scrape {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	s := scrape{text: string(raw), series: map[string]float64{}}
	sc := bufio.NewScanner(strings.NewReader(s.text))
	for sc.Scan() {
		m := seriesLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		s.series[m[1]+m[2]] = v
	}
	return s
}

// value is the series of name whose labels include every pair given
// ("route", "POST /v1/login", ...); ok is false when there is none.
func (s scrape) value(name string, labels ...string) (float64, bool) {
	for k, v := range s.series {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		all := true
		for i := 0; i+1 < len(labels); i += 2 {
			all = all && strings.Contains(k, labels[i]+`="`+labels[i+1]+`"`)
		}
		if all {
			return v, true
		}
	}
	return 0, false
}

// After a login, verifications, a refresh, a reuse and a logout, /metrics
// has the service's metrics with the counts they caused, the HTTP routes
// as patterns (never a raw path), and the Go and process collectors.
func TestMetricsAfterASession(t *testing.T) {
	t.Parallel()
	ls := startLiveServer(t, func(c *server.Config) {
		c.LoginFailuresPerUser = 1
		c.RefreshGrace = time.Nanosecond // a second use of a rotated token is a reuse
	})
	pair := func(a answer) (access, refresh string) {
		t.Helper()
		if a.status != http.StatusOK {
			t.Fatalf("%d %v", a.status, a.body)
		}
		return a.str("access_token"), a.str("refresh_token")
	}
	at, rt := pair(ls.do(t, call{path: "/v1/login", body: aliceLogin}))
	for range 2 { // a cache miss, then a hit
		if a := ls.do(t, call{path: "/v1/verify", body: `{"token":"` + at + `"}`}); a.status != http.StatusOK {
			t.Fatalf("verify: %d %v", a.status, a.body)
		}
	}
	pair(ls.do(t, call{path: "/v1/refresh", body: `{"refresh_token":"` + rt + `"}`}))
	time.Sleep(2 * time.Millisecond) // the stores keep milliseconds: now past the 1ns grace
	if a := ls.do(t, call{path: "/v1/refresh", body: `{"refresh_token":"` + rt + `"}`}); a.status != http.StatusUnauthorized {
		t.Fatalf("reusing a rotated refresh token: %d %v", a.status, a.body)
	}
	_, rt = pair(ls.do(t, call{path: "/v1/login", body: aliceLogin}))
	if a := ls.do(t, call{path: "/v1/logout", body: `{"refresh_token":"` + rt + `"}`}); a.status != http.StatusOK {
		t.Fatalf("logout: %d %v", a.status, a.body)
	}
	bob := `{"username":"bob","password":"nope"}`
	if a := ls.do(t, call{path: "/v1/login", body: bob}); a.status != http.StatusUnauthorized {
		t.Fatalf("bad login: %d", a.status)
	}
	if a := ls.do(t, call{path: "/v1/login", body: bob}); a.status != http.StatusTooManyRequests {
		t.Fatalf("bad login over the per-user limit: %d", a.status)
	}
	ls.do(t, call{method: http.MethodGet, path: "/v1/no-such-path-" + strconv.Itoa(12345)})
	ls.do(t, call{method: http.MethodGet, path: server.JWKSPath})

	m := scrapeMetrics(t, ls.base)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64 // -1: present, any value
	}{
		{"identity_logins_total", []string{"result", "ok"}, 2},
		{"identity_logins_total", []string{"result", "INVALID_CREDENTIALS"}, 1},
		{"identity_logins_total", []string{"result", "RATE_LIMITED"}, 1},
		{"identity_refreshes_total", []string{"result", "ok"}, 1},
		{"identity_refreshes_total", []string{"result", "REFRESH_TOKEN_REUSED"}, 1},
		{"identity_refresh_reuse_detected_total", nil, 1},
		{"identity_sessions_revoked_total", []string{"cause", "reuse"}, 1},
		{"identity_sessions_revoked_total", []string{"cause", "logout"}, 1},
		{"identity_sessions_revoked_total", []string{"cause", "logout_all"}, 0},
		{"identity_sessions_revoked_total", []string{"cause", "admin"}, 0},
		{"identity_sessions_revoked_total", []string{"cause", "password_change"}, 0},
		{"identity_sessions_revoked_total", []string{"cause", "disable"}, 0},
		{"identity_rate_limit_refusals_total", []string{"limit", "login_user"}, 1},
		{"identity_rate_limit_refusals_total", []string{"limit", "login_ip"}, 0},
		{"identity_rate_limit_refusals_total", []string{"limit", "login_hash_queue"}, 0},
		{"identity_rate_limit_refusals_total", []string{"limit", "revocation_watchers"}, 0},
		{"identity_verify_cache_hits_total", nil, -1},
		{"identity_verify_cache_misses_total", nil, -1},
		{"identity_verify_cache_entries", nil, -1},
		{"identity_http_requests_total", []string{"route", "POST /v1/login", "code", "200"}, 2},
		{"identity_http_requests_total", []string{"route", "POST /v1/login", "code", "401"}, 1},
		{"identity_http_requests_total", []string{"route", "POST /v1/login", "code", "429"}, 1},
		{"identity_http_requests_total", []string{"route", "POST /v1/verify", "code", "200"}, 2},
		{"identity_http_requests_total", []string{"route", "POST /v1/refresh", "code", "401"}, 1},
		{"identity_http_requests_total", []string{"route", "GET " + server.JWKSPath, "code", "200"}, 1},
		{"identity_http_requests_total", []string{"route", "other", "code", "404"}, 1},
		{"identity_store_up", nil, 1},
		{"identity_store_errors_total", nil, 0},
		{"identity_revocation_feed_last_sync_timestamp_seconds", nil, -1},
		{"identity_revocation_feed_fresh", nil, -1},
		{"identity_revocation_watchers", nil, 0},
		{"identity_password_hash_queue_depth", nil, 0},
		{"identity_password_hash_expected_wait_seconds", nil, -1},
		{"identity_password_hash_duration_seconds", nil, -1},
		{"identity_build_info", nil, 1},
		{"grpc_server_handled_total", []string{"grpc_method", "Login", "grpc_code", "OK"}, 2},
		{"go_goroutines", nil, -1},
		{"process_cpu_seconds_total", nil, -1},
		{"process_resident_memory_bytes", nil, -1},
		{"process_open_fds", nil, -1},
	} {
		got, ok := m.value(tc.name, tc.labels...)
		switch {
		case !ok:
			t.Errorf("no %s%v in /metrics", tc.name, tc.labels)
		case tc.want >= 0 && got != tc.want:
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	if d, _ := m.value("identity_password_hash_duration_seconds"); d <= 0 {
		t.Errorf("identity_password_hash_duration_seconds = %v after logins, want the measured hash time", d)
	}
	if hits, _ := m.value("identity_verify_cache_hits_total"); hits < 1 {
		t.Errorf("the second Verify of a token was not a cache hit (hits %v)", hits)
	}
	if strings.Contains(m.text, "no-such-path") {
		t.Error("a raw request path reached a metric label")
	}

	t.Run("promtool check metrics", func(t *testing.T) {
		promtool := testidentityd.RequireTool(t, "promtool")
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(m.text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	})
}

// Sessions ended through AdminService are counted by cause: disabling an
// account, setting a password, an administrator's revocation.
func TestMetricsRevocationCausesOfAdmin(t *testing.T) {
	t.Parallel()
	s := testidentityd.StartInProcess(t)
	pw := testidentityd.AddUser(t, s.Store, "root", "", "admin")
	root := s.Login(t, "root", pw)
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+root.GetAccessToken())
	adm := identityv1.NewAdminServiceClient(s.Conn)
	for _, name := range []string{"carol", "dave", "erin"} {
		pw := testidentityd.AddUser(t, s.Store, name, "")
		s.Login(t, name, pw)
		if name == "carol" {
			s.Login(t, name, pw)
		}
	}
	disabled, newPassword := true, "another-long-password"
	if _, err := adm.UpdateUser(ctx, &identityv1.UpdateUserRequest{Username: "carol", Disabled: &disabled}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.UpdateUser(ctx, &identityv1.UpdateUserRequest{Username: "dave", Password: &newPassword}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.RevokeUserSessions(ctx, &identityv1.RevokeUserSessionsRequest{Username: "erin"}); err != nil {
		t.Fatal(err)
	}
	m := scrapeMetrics(t, s.BaseURL)
	for cause, want := range map[string]float64{"disable": 2, "password_change": 1, "admin": 1, "logout": 0} {
		if got, _ := m.value("identity_sessions_revoked_total", "cause", cause); got != want {
			t.Errorf("identity_sessions_revoked_total{cause=%q} = %v, want %v", cause, got, want)
		}
	}
}
