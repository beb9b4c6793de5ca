package server_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
)

// TestRequestLogLevels: the per-call "finished call" line is written when
// the log level is debug and not otherwise (the interceptor is skipped, for
// speed); a failure that is the client's (INVALID_ARGUMENT) stays quiet at
// info.
func TestRequestLogLevels(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		level    slog.Level
		wantLine bool
	}{
		{slog.LevelDebug, true},
		{slog.LevelInfo, false},
	} {
		t.Run(tc.level.String(), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			var logs testidentityd.LockedBuffer
			s := testidentityd.StartInProcess(t, testidentityd.InProcessLogger(
				slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: tc.level}))))

			if _, err := healthpb.NewHealthClient(s.Conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatal(err)
			}
			if _, err := identityv1.NewIdentityServiceClient(s.Conn).Verify(ctx, &identityv1.VerifyRequest{}); err == nil {
				t.Fatal("Verify without a token: no error")
			}
			got := strings.Count(logs.String(), "finished call")
			if tc.wantLine && got != 2 || !tc.wantLine && got != 0 {
				t.Errorf("%d \"finished call\" lines at level %v, want %d per call (2 calls)\n%s",
					got, tc.level, map[bool]int{true: 1, false: 0}[tc.wantLine], logs.String())
			}
		})
	}
}

// TestRESTCallsAreLoggedLikeGRPC: a REST call goes through the same
// logging interceptor as a gRPC call (one "finished call" line at debug,
// naming the RPC).
func TestRESTCallsAreLoggedLikeGRPC(t *testing.T) {
	t.Parallel()
	var logs testidentityd.LockedBuffer
	s := testidentityd.StartInProcess(t, testidentityd.InProcessLogger(
		slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	resp, err := http.Post(s.BaseURL+"/v1/verify", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("POST /v1/verify {}: %d, want 400", resp.StatusCode)
	}
	var lines []string
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, "finished call") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "Verify") || !strings.Contains(lines[0], "InvalidArgument") {
		t.Errorf("want one finished-call line for Verify, InvalidArgument; got %q\n%s", lines, logs.String())
	}
}
