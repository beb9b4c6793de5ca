package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/identityd/identity/audit"
)

var t0 = time.Date(2026, 12, 3, 15, 4, 5, 6000, time.FixedZone("CET", 3600))

// records parses a JSON log: one record per line, the audit ones only.
func records(t *testing.T, log string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("not a JSON record: %q: %v", sc.Text(), err)
		}
		if rec["msg"] != audit.Message {
			continue
		}
		fields, ok := rec[audit.Group].(map[string]any)
		if !ok {
			t.Fatalf("audit record without its %q group: %v", audit.Group, rec)
		}
		if rec["level"] != "INFO" {
			t.Errorf("audit record at level %v, want INFO", rec["level"])
		}
		out = append(out, fields)
	}
	return out
}

// An event is one JSON record, its fields in the audit group with the
// schema's names; empty fields are left out, the time is UTC.
func TestLogSinkJSON(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	sink := audit.NewLogSink(slog.New(slog.NewJSONHandler(&buf, nil)))
	sink.Record(t.Context(), audit.Event{
		Name: audit.UserRolesChanged, Time: t0, Subject: "u1", Username: "alice",
		ClientAddress: "203.0.113.7", UserAgent: "curl/8", Outcome: audit.Success,
		Actor: "u0", ActorUsername: "root", Roles: []string{"admin", "ops"},
	})
	sink.Record(t.Context(), audit.Event{
		Name: audit.UserSessionsRevoked, Time: t0, Username: "bob", Outcome: audit.Failure,
		Reason: "NOT_FOUND", Cause: "admin", Sessions: 2,
	})
	recs := records(t, buf.String())
	if len(recs) != 2 {
		t.Fatalf("%d audit records, want 2: %s", len(recs), buf.String())
	}
	want := map[string]any{
		"event": "user.roles_changed", "time": "2026-12-03T14:04:05.000006Z", "outcome": "success",
		"subject": "u1", "username": "alice", "client_address": "203.0.113.7", "user_agent": "curl/8",
		"actor": "u0", "actor_username": "root", "roles": []any{"admin", "ops"},
	}
	if got, _ := json.Marshal(recs[0]); string(got) != mustJSON(t, want) {
		t.Errorf("record\n%s\nwant\n%s", got, mustJSON(t, want))
	}
	want = map[string]any{
		"event": "user.sessions_revoked", "time": "2026-12-03T14:04:05.000006Z", "outcome": "failure",
		"reason": "NOT_FOUND", "username": "bob", "cause": "admin", "sessions": 2.0,
	}
	if got, _ := json.Marshal(recs[1]); string(got) != mustJSON(t, want) {
		t.Errorf("record\n%s\nwant\n%s", got, mustJSON(t, want))
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// What a client chose is bounded and stripped of control characters: a
// User-Agent cannot forge a second log line or grow the record.
func TestLogSinkBoundsClientFields(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	sink := audit.NewLogSink(slog.New(slog.NewTextHandler(&buf, nil)))
	sink.Record(t.Context(), audit.Event{
		Name: audit.LoginFailed, Time: t0, Outcome: audit.Failure, Reason: "INVALID_CREDENTIALS",
		Username:  "eve\nlevel=INFO msg=audit audit.event=login.succeeded",
		UserAgent: strings.Repeat("é", 1000),
	})
	out := buf.String()
	if strings.Count(out, "\n") != 1 {
		t.Fatalf("one event, %d lines: %q", strings.Count(out, "\n"), out)
	}
	if !strings.Contains(out, `audit.username="evelevel=INFO msg=audit audit.event=login.succeeded"`) {
		t.Errorf("username not stripped of its newline: %s", out)
	}
	if !strings.Contains(out, "audit.user_agent="+strings.Repeat("é", 128)+"\n") {
		t.Errorf("user agent not cut to 256 bytes on a character boundary: %s", out)
	}
}

// The events are info records: a log at warn holds none.
func TestLogSinkFollowsLevel(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	sink := audit.NewLogSink(slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	sink.Record(t.Context(), audit.Event{Name: audit.LoginSucceeded, Time: t0, Outcome: audit.Success})
	if buf.Len() != 0 {
		t.Errorf("written below the log's level: %s", buf.String())
	}
	if sink.Enabled(t.Context()) {
		t.Error("Enabled on a log at warn")
	}
	if (audit.Sinks{sink}).Enabled(t.Context()) {
		t.Error("Sinks enabled with its only sink not")
	}
	if !(audit.Sinks{sink, &countSink{}}).Enabled(t.Context()) {
		t.Error("Sinks not enabled with one sink enabled")
	}
}

type countSink struct{ n int }

func (c *countSink) Record(context.Context, audit.Event) { c.n++ }
func (c *countSink) Enabled(context.Context) bool        { return true }

func TestSinks(t *testing.T) {
	t.Parallel()
	a, b := &countSink{}, &countSink{}
	audit.Sinks{a, b}.Record(t.Context(), audit.Event{Name: audit.KeysRotated})
	if a.n != 1 || b.n != 1 {
		t.Errorf("sinks got %d and %d events, want 1 each", a.n, b.n)
	}
}
