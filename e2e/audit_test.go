package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testredis"
)

// identityd with --audit-redis-stream: the audit events of REST calls
// are JSON records of its log (--log-format json) with the HTTP client's
// address and User-Agent, and entries of the stream, which stays near
// --audit-stream-max-len however many events it gets.
func TestAuditStream(t *testing.T) {
	t.Parallel()
	srv := testredis.NewServer(t)
	const maxLen, failures = 50, 300
	pw := "pw-" + randomHex(12)
	d := startIdentityd(t, opts{redis: srv, password: pw, flags: map[string]string{
		"audit-redis-stream":   "audit:identity",
		"audit-stream-max-len": fmt.Sprint(maxLen),
		"log-format":           "json",
	}})
	d.Remember(pw)
	pair := d.requireTokenPair(t, d.loginREST(t, "alice", pw))
	d.Remember(pair.AccessToken, pair.RefreshToken)
	wrong := "wrong-" + randomHex(12)
	d.Remember(wrong)
	for range failures {
		// Past --login-failures-per-user-address these are RATE_LIMITED:
		// login.failed events all the same.
		if r := d.loginREST(t, "alice", wrong); r.status != http.StatusUnauthorized && r.status != http.StatusTooManyRequests {
			t.Fatalf("wrong password: %v", r)
		}
	}

	rdb := srv.Client(t)
	testidentityd.Eventually(t, 30*time.Second, func() error {
		last, err := rdb.XRevRangeN(t.Context(), "audit:identity", "+", "-", 1).Result()
		if err != nil || len(last) != 1 {
			return fmt.Errorf("XREVRANGE: %v %v", last, err)
		}
		if v := last[0].Values; v["event"] != "login.failed" || v["reason"] != "RATE_LIMITED" || v["client_address"] != "127.0.0.1" {
			return fmt.Errorf("last entry %v, want the last failed login", v)
		}
		return nil
	})
	if n, err := rdb.XLen(t.Context(), "audit:identity").Result(); err != nil || n < maxLen || n > maxLen+200 {
		t.Errorf("XLEN %d (%v) after %d events, want about %d (at most a stream node more)", n, err, failures+1, maxLen)
	}
	metrics := d.do(t, http.MethodGet, "/metrics", nil, nil)
	if !strings.Contains(string(metrics.body), "\nidentity_audit_events_dropped_total 0\n") {
		t.Errorf("identity_audit_events_dropped_total is not 0 in /metrics")
	}

	d.Stop()
	var events []map[string]any
	sc := bufio.NewScanner(strings.NewReader(d.Log.String()))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil || rec["msg"] != "audit" {
			continue
		}
		events = append(events, rec["audit"].(map[string]any))
	}
	if len(events) != failures+1 {
		t.Fatalf("%d audit records in the log, want %d", len(events), failures+1)
	}
	first := events[0]
	if first["event"] != "login.succeeded" || first["username"] != "alice" || first["session_id"] != pair.SessionID ||
		first["client_address"] != "127.0.0.1" || !strings.HasPrefix(fmt.Sprint(first["user_agent"]), "Go-http-client/") {
		t.Errorf("first audit record %v, want alice's login from 127.0.0.1 by Go's HTTP client", first)
	}
	if e := events[1]; e["event"] != "login.failed" || e["reason"] != "INVALID_CREDENTIALS" || e["detail"] != "wrong_password" {
		t.Errorf("second audit record %v, want the wrong password", e)
	}
}
