package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestFailureLog: 2,000 store failures at once write a few lines, not
// 2,000; every line left out is counted in a later line's suppressed, so
// lines plus suppressed add up to the failures; answers that are not the
// server's fault write nothing.
func TestFailureLog(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := newFailureLog(slog.New(slog.NewJSONHandler(&buf, nil)))
	ctx := t.Context()
	unavailable := status.Error(codes.Unavailable, "the session store is unavailable")
	for range 10 {
		l.failed(ctx, "/m", errors.New("not found"), status.Error(codes.NotFound, "no such session"))
	}
	if buf.Len() != 0 {
		t.Fatalf("a NOT_FOUND answer was logged: %s", buf.String())
	}
	const failures = 2000
	for range failures {
		l.failed(ctx, "/identity.v1.IdentityService/Refresh", errors.New("redis: connection pool timeout"), unavailable)
	}
	// Past the rate's interval a line is written again, with the count of
	// those left out.
	time.Sleep(2 * time.Second / failureLogRate)
	l.failed(ctx, "/identity.v1.IdentityService/Refresh", errors.New("redis: connection pool timeout"), unavailable)

	lines, suppressed := 0, int64(0)
	for line := range strings.Lines(buf.String()) {
		var rec struct {
			Level, Msg, Method, Error string
			Suppressed                int64
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%v: %s", err, line)
		}
		if rec.Level != "WARN" || rec.Msg != "request failed" || rec.Method == "" || rec.Error == "" {
			t.Errorf("line %s", line)
		}
		lines++
		suppressed += rec.Suppressed
	}
	if lines > failures/4 {
		t.Errorf("%d failures at once wrote %d lines", failures, lines)
	}
	if suppressed == 0 {
		t.Error("no line says how many were left out")
	}
	if got := int64(lines) + suppressed; got != failures+1 {
		t.Errorf("%d lines + %d suppressed = %d, want the %d failures", lines, suppressed, got, failures+1)
	}
}
