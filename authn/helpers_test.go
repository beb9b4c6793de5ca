package authn_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/identityd/identity/authn"
	"github.com/identityd/identity/examples/greeter"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
)

// quiet keeps the verifiers' background warnings out of the test output
// unless a test fails (they are expected: streams are dropped on purpose).
// mustRemote is authn.NewRemote for options the test knows are valid.
func mustRemote(t testing.TB, conn grpc.ClientConnInterface, opts ...authn.RemoteOption) *authn.Remote {
	t.Helper()
	r, err := authn.NewRemote(conn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func quiet(t testing.TB) authn.VerifierOption {
	return authn.WithLogger(quietLogger(t))
}

// quietLogger logs through t.Log.
func quietLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t testing.TB }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// wantStatus fails t unless err is a status with code and (if reason is
// not ERROR_REASON_UNSPECIFIED) the identity ErrorInfo reason.
func wantStatus(t testing.TB, err error, code codes.Code, reason identityv1.ErrorReason) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("error = %v; want code %v", err, code)
	}
	if reason != identityv1.ErrorReason_ERROR_REASON_UNSPECIFIED && authn.Reason(err) != reason {
		t.Fatalf("error = %v (reason %v); want reason %v", err, authn.Reason(err), reason)
	}
}

// fakeClock is a settable time.Now, shared by the fake identity's token
// issuer and the verifier under test, so staleness and expiry are tested
// without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Now().Truncate(time.Second)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeIdentity speaks identity's protocol under the test's control: it
// issues real tokens with a real token.Manager, and lets the test script
// the revocation stream (events, heartbeats, resets, dropped streams) and
// break GetPublicKeys. The scenarios a real identityd can play are tested
// against one in integration_test.go; this is for what it cannot be made
// to do on cue.
type fakeIdentity struct {
	identityv1.UnimplementedIdentityServiceServer
	clock  *fakeClock
	keys   *token.Manager
	issuer *token.Issuer
	conn   *grpc.ClientConn

	keyFetches  atomic.Int32
	keysDown    atomic.Bool
	verifyCalls atomic.Int32

	mu      sync.Mutex
	cursors []string // the cursor of each WatchRevocations call, in order
	streams map[*fakeStream]struct{}
	verify  func(ctx context.Context, raw string) (*identityv1.VerifyResponse, error)
}

type fakeStream struct {
	out chan *identityv1.WatchRevocationsResponse
	end chan struct{}
}

func newFakeIdentity(t testing.TB, clock *fakeClock) *fakeIdentity {
	t.Helper()
	opts := []token.Option{token.WithClock(clock.Now), token.WithPublishAhead(0)}
	m, err := token.LoadOrCreate(t.Context(), tokenstore.NewMemory(), token.EdDSA, opts...)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := token.NewIssuer(m, opts...)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIdentity{clock: clock, keys: m, issuer: iss, streams: map[*fakeStream]struct{}{}}
	ver, err := token.NewVerifier(m, opts...)
	if err != nil {
		t.Fatal(err)
	}
	f.verify = func(_ context.Context, raw string) (*identityv1.VerifyResponse, error) {
		c, err := ver.Verify(raw)
		if err != nil {
			return nil, authn.Error(codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID, "access token invalid")
		}
		return &identityv1.VerifyResponse{Subject: c.Subject, Username: c.Username, Roles: c.Roles, SessionId: c.SessionID,
			IssuedAt: timestamppb.New(c.IssuedAt), ExpiresAt: timestamppb.New(c.ExpiresAt)}, nil
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	identityv1.RegisterIdentityServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	f.conn = testidentityd.Dial(t, lis.Addr().String())
	return f
}

// issue returns a token for session sid, issued now (by the fake clock).
func (f *fakeIdentity) issue(t testing.TB, sid string) string {
	t.Helper()
	tok, _, err := f.issuer.Issue(token.Claims{Subject: "u_" + sid, Username: "user-" + sid, SessionID: sid}, f.clock.Now(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *fakeIdentity) GetPublicKeys(context.Context, *identityv1.GetPublicKeysRequest) (*identityv1.GetPublicKeysResponse, error) {
	f.keyFetches.Add(1)
	if f.keysDown.Load() {
		return nil, status.Error(codes.Unavailable, "keys down")
	}
	out := &identityv1.GetPublicKeysResponse{}
	for _, k := range f.keys.PublicJWKs() {
		out.Keys = append(out.Keys, &identityv1.PublicKey{Kid: k.Kid, Kty: k.Kty, Alg: k.Alg, Use: k.Use, Crv: k.Crv, X: k.X})
	}
	return out, nil
}

func (f *fakeIdentity) Verify(ctx context.Context, req *identityv1.VerifyRequest) (*identityv1.VerifyResponse, error) {
	f.verifyCalls.Add(1)
	f.mu.Lock()
	verify := f.verify
	f.mu.Unlock()
	return verify(ctx, req.GetToken())
}

func (f *fakeIdentity) WatchRevocations(req *identityv1.WatchRevocationsRequest, stream identityv1.IdentityService_WatchRevocationsServer) error {
	s := &fakeStream{out: make(chan *identityv1.WatchRevocationsResponse, 1000), end: make(chan struct{})}
	f.mu.Lock()
	f.cursors = append(f.cursors, req.GetCursor())
	f.streams[s] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.streams, s)
		f.mu.Unlock()
	}()
	for {
		select {
		case m := <-s.out:
			if err := stream.Send(m); err != nil {
				return err
			}
		case <-s.end:
			return status.Error(codes.Unavailable, "stream dropped by the test")
		case <-stream.Context().Done():
			return nil
		}
	}
}

// send queues m on every open stream.
func (f *fakeIdentity) send(m *identityv1.WatchRevocationsResponse) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.streams {
		s.out <- m
	}
}

func (f *fakeIdentity) heartbeat(cursor string) {
	f.send(&identityv1.WatchRevocationsResponse{Cursor: cursor})
}

func (f *fakeIdentity) revoke(cursor, sid string, forgetAfter time.Time) {
	f.send(&identityv1.WatchRevocationsResponse{Cursor: cursor, SessionId: sid,
		RevokedAt: timestamppb.New(f.clock.Now()), ForgetAfter: timestamppb.New(forgetAfter)})
}

// dropStreams ends every open stream with UNAVAILABLE.
func (f *fakeIdentity) dropStreams() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.streams {
		close(s.end)
		delete(f.streams, s)
	}
}

// waitStreams waits until n WatchRevocations calls have been made in all
// and one is open.
func (f *fakeIdentity) waitStreams(t testing.TB, n int) {
	t.Helper()
	testidentityd.Eventually(t, 5*time.Second, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if len(f.cursors) < n || len(f.streams) == 0 {
			return fmt.Errorf("%d watch calls, %d open; want %d calls and one open", len(f.cursors), len(f.streams), n)
		}
		return nil
	})
}

func (f *fakeIdentity) watchCursors() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cursors...)
}

// serveGreeter serves the example service protected by v and returns a
// client connection to it.
func serveGreeter(t testing.TB, v authn.Verifier) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := greeter.NewServer(v)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return testidentityd.Dial(t, lis.Addr().String())
}

// hello calls Greeter.Hello with tok.
func hello(t testing.TB, conn *grpc.ClientConn, tok string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	return greeter.Hello(greeter.WithToken(ctx, tok), conn)
}

// authnGoroutines lists the goroutines running authn's code (not its
// tests'): after Close there must be none of a verifier's.
func authnGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var found []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "identity/authn.(*") {
			found = append(found, g)
		}
	}
	return found
}

// kidOf returns the kid of a JWT's header.
func kidOf(t testing.TB, tok string) string {
	t.Helper()
	head, _, _ := strings.Cut(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		t.Fatal(err)
	}
	var h struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}
