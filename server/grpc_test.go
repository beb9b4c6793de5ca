package server_test

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/identityd/identity/authn"
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

// rawCodec sends a []byte as the request message, as is: what a client
// with a broken encoder would put on the wire.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return v.([]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { return nil }
func (rawCodec) Name() string                       { return "proto" }

// A request message grpc-go cannot read (over 4 MiB, or not protobuf) is
// refused before any handler runs; it still gets the contract's shape:
// INVALID_ARGUMENT with ErrorInfo INVALID_REQUEST, on unary and streaming
// methods alike, not a bare RESOURCE_EXHAUSTED or INTERNAL.
func TestUnreadableRequestMessages(t *testing.T) {
	t.Parallel()
	s := testidentityd.StartInProcess(t)
	ctx := t.Context()
	huge := strings.Repeat("a", 5<<20)
	requireInvalidRequest := func(what string, err error) {
		t.Helper()
		st, _ := status.FromError(err)
		if st.Code() != codes.InvalidArgument || authn.Reason(err) != identityv1.ErrorReason_INVALID_REQUEST || st.Message() == "" {
			t.Errorf("%s: %v (details %v), want INVALID_ARGUMENT with ErrorInfo INVALID_REQUEST", what, err, st.Details())
		}
	}

	_, err := s.API.Login(ctx, &identityv1.LoginRequest{Username: huge, Password: "x"})
	requireInvalidRequest("Login, 5 MiB", err)
	_, err = s.API.Verify(ctx, &identityv1.VerifyRequest{Token: huge})
	requireInvalidRequest("Verify, 5 MiB", err)
	_, err = identityv1.NewAdminServiceClient(s.Conn).ListUsers(ctx, &identityv1.ListUsersRequest{})
	if authn.Reason(err) == identityv1.ErrorReason_INVALID_REQUEST {
		t.Errorf("a small admin request refused as unreadable: %v", err)
	}
	var out identityv1.TokenPair
	err = s.Conn.Invoke(ctx, identityv1.IdentityService_Login_FullMethodName, []byte{0xff, 0xff, 0xff}, &out, grpc.ForceCodec(rawCodec{}))
	requireInvalidRequest("Login, not protobuf", err)

	// WatchRevocations is for services: the check of the message comes
	// after the token's.
	svcPW := testidentityd.AddUser(t, s.Store, "svc", "", authn.ServiceRole)
	svc := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+s.Login(t, "svc", svcPW).GetAccessToken())
	stream, err := s.API.WatchRevocations(svc, &identityv1.WatchRevocationsRequest{Cursor: huge})
	if err == nil {
		_, err = stream.Recv()
	}
	requireInvalidRequest("WatchRevocations, 5 MiB", err)

	// Past twice the cap grpc-go refuses the message itself, before the
	// codec (codec.go): refused all the same, but in its own words.
	_, err = s.API.Login(ctx, &identityv1.LoginRequest{Username: strings.Repeat("a", 9<<20), Password: "x"})
	if c := status.Code(err); c != codes.ResourceExhausted && c != codes.InvalidArgument {
		t.Errorf("Login, 9 MiB: %v, want it refused", err)
	}

	// Just under the cap is read, and answered by the handler.
	_, err = s.API.Login(ctx, &identityv1.LoginRequest{Username: strings.Repeat("a", 4<<20-64), Password: "x"})
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "username") {
		t.Errorf("Login just under 4 MiB: %v, want the handler's refusal of the username", err)
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
