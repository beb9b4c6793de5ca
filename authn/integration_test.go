package authn_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/identityd/identity/authn"
	"github.com/identityd/identity/examples/greeter"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
)

// The scenarios of issue 4 against a real identityd process and Redis.

// runGreeter runs the example service exactly as its command does
// (greeter.Run) and returns a client connection to it.
func runGreeter(t *testing.T, cfg greeter.Config) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = quietLogger(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- greeter.Run(ctx, cfg, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("greeter.Run: %v", err)
		}
	})
	return testidentityd.Dial(t, lis.Addr().String())
}

func TestGreeterProtectedByIdentityd(t *testing.T) {
	t.Parallel()
	d := startIdentityd(t, nil)
	bobPW := testidentityd.AddUser(t, d.Store(t), "bob", "")
	svcPW := testidentityd.AddUser(t, d.Store(t), "greeter", "", authn.ServiceRole)
	alice := d.Login(t, "alice", d.Password) // bootstrap user: role admin
	bob := d.Login(t, "bob", bobPW)

	modes := map[string]greeter.Config{
		"remote":     {IdentityAddr: d.GRPCAddr, Mode: "remote", ServiceUser: "greeter", ServicePassword: svcPW},
		"local-grpc": {IdentityAddr: d.GRPCAddr, Mode: "local", ServiceUser: "greeter", ServicePassword: svcPW},
		"local-jwks": {IdentityAddr: d.GRPCAddr, Mode: "local", JWKSURL: d.JWKSURL(), ServiceUser: "greeter", ServicePassword: svcPW},
	}
	conns := map[string]*grpc.ClientConn{}
	for name, cfg := range modes {
		conns[name] = runGreeter(t, cfg)
	}
	for name, conn := range conns {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			if got, err := greeter.Hello(greeter.WithToken(ctx, bob.GetAccessToken()), conn); err != nil || got != "hello, bob" {
				t.Fatalf("Hello as bob = %q, %v", got, err)
			}
			if got, err := greeter.HelloStream(greeter.WithToken(ctx, bob.GetAccessToken()), conn); err != nil || len(got) != 3 {
				t.Fatalf("HelloStream as bob = %q, %v", got, err)
			}
			_, err := greeter.AdminHello(greeter.WithToken(ctx, bob.GetAccessToken()), conn)
			wantStatus(t, err, codes.PermissionDenied, identityv1.ErrorReason_PERMISSION_DENIED)
			if got, err := greeter.AdminHello(greeter.WithToken(ctx, alice.GetAccessToken()), conn); err != nil || got != "hello, admin alice" {
				t.Fatalf("AdminHello as alice = %q, %v", got, err)
			}
			_, err = greeter.Hello(ctx, conn)
			wantStatus(t, err, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID)
			for _, bad := range []string{"garbage", bob.GetRefreshToken(), bob.GetAccessToken() + "x"} {
				_, err = greeter.Hello(greeter.WithToken(ctx, bad), conn)
				wantStatus(t, err, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_INVALID)
			}
			if h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health without a token: %v, %v", h, err)
			}
		})
	}

	// Logout: every mode refuses bob's access token with TOKEN_REVOKED,
	// the local ones as soon as the revocation event arrives.
	d.Logout(t, bob)
	for name, conn := range conns {
		testidentityd.Eventually(t, 5*time.Second, func() error {
			_, err := hello(t, conn, bob.GetAccessToken())
			if authn.Reason(err) != identityv1.ErrorReason_TOKEN_REVOKED {
				return fmt.Errorf("%s: after logout: %v", name, err)
			}
			return nil
		})
		if _, err := hello(t, conn, alice.GetAccessToken()); err != nil {
			t.Fatalf("%s: alice after bob's logout: %v", name, err)
		}
	}
}

func TestKeyRotationWithoutRestart(t *testing.T) {
	t.Parallel()
	d := startIdentityd(t, map[string]string{"key-publish-ahead": "1s"})
	admin := d.Login(t, "alice", d.Password)
	// Key refresh far off: only the refetch an unknown kid triggers can
	// teach these verifiers the new key.
	jwks, err := authn.NewLocal(authn.WithJWKSURL(d.JWKSURL()), authn.WithRevocationsFromConn(d.Conn), asService(t, d),
		authn.WithKeyRefresh(time.Hour), quiet(t))
	if err != nil {
		t.Fatal(err)
	}
	defer jwks.Close()
	grpcKeys, err := authn.NewLocal(authn.WithKeysFromConn(d.Conn), authn.WithKeyRefresh(time.Hour), asService(t, d), quiet(t))
	if err != nil {
		t.Fatal(err)
	}
	defer grpcKeys.Close()
	verifiers := map[string]*authn.Local{"jwks": jwks, "grpc": grpcKeys}
	conns := map[string]*grpc.ClientConn{}
	for name, l := range verifiers {
		waitReady(t, l)
		conns[name] = serveGreeter(t, l)
		if _, err := hello(t, conns[name], admin.GetAccessToken()); err != nil {
			t.Fatalf("%s before rotation: %v", name, err)
		}
	}

	// What `identityctl --server ... key rotate` does: AdminService.RotateKeys
	// on identityd, so identityd's own key manager (its publish-ahead,
	// and no reload delay) makes the new key.
	ctx := greeter.WithToken(t.Context(), admin.GetAccessToken())
	keys, err := identityv1.NewAdminServiceClient(d.Conn).RotateKeys(ctx, &identityv1.RotateKeysRequest{})
	if err != nil {
		t.Fatalf("RotateKeys: %v", err)
	}
	oldKid := kidOf(t, admin.GetAccessToken())
	var rotated *identityv1.TokenPair
	testidentityd.Eventually(t, 10*time.Second, func() error {
		rotated = d.Login(t, "alice", d.Password)
		if kidOf(t, rotated.GetAccessToken()) == oldKid {
			return fmt.Errorf("still signed by %s (keys: %v)", oldKid, keys.GetKeys())
		}
		return nil
	})
	for name, conn := range conns {
		if _, err := hello(t, conn, rotated.GetAccessToken()); err != nil {
			t.Fatalf("%s: token of the rotated-in key: %v", name, err)
		}
		if _, err := hello(t, conn, admin.GetAccessToken()); err != nil {
			t.Fatalf("%s: token of the old key after rotation: %v", name, err)
		}
	}
}

func TestIdentitydDown(t *testing.T) {
	t.Parallel()
	d := startIdentityd(t, nil)
	alice := d.Login(t, "alice", d.Password)
	fresh := d.Login(t, "alice", d.Password)

	// The verifiers' own connection retries fast, so the test does not
	// wait out gRPC's default reconnect backoff after the restart.
	conn, err := grpc.NewClient(d.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, MaxDelay: 200 * time.Millisecond,
		}, MinConnectTimeout: time.Second}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const staleness = 2 * time.Second
	svc := asServiceOn(t, d, conn)
	local, err := authn.NewLocal(authn.WithKeysFromConn(conn), authn.WithStaleness(staleness),
		authn.WithReconnectBackoff(20*time.Millisecond, 200*time.Millisecond), svc, quiet(t))
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	withFallback, err := authn.NewLocal(authn.WithKeysFromConn(conn), authn.WithStaleness(staleness),
		authn.WithRemoteFallback(conn), svc, quiet(t))
	if err != nil {
		t.Fatal(err)
	}
	defer withFallback.Close()
	remote := mustRemote(t, conn)
	waitReady(t, local)
	waitReady(t, withFallback)
	localConn, fallbackConn, remoteConn := serveGreeter(t, local), serveGreeter(t, withFallback), serveGreeter(t, remote)
	for _, c := range []*grpc.ClientConn{localConn, fallbackConn, remoteConn} {
		if _, err := hello(t, c, alice.GetAccessToken()); err != nil {
			t.Fatalf("before identityd stops: %v", err)
		}
	}

	d.Stop()
	stopped := time.Now()
	_, err = hello(t, remoteConn, fresh.GetAccessToken())
	wantStatus(t, err, codes.Unavailable, identityv1.ErrorReason_IDENTITY_UNAVAILABLE)
	// Local keeps verifying (the keys and the revocation set are here)...
	if _, err := hello(t, localConn, alice.GetAccessToken()); err != nil {
		t.Fatalf("local, just after identityd stopped: %v", err)
	}
	if _, err := hello(t, localConn, fresh.GetAccessToken()); err != nil {
		t.Fatalf("local, a token it never saw, just after identityd stopped: %v", err)
	}
	// ...until the staleness bound, then fails closed.
	var failedAfter time.Duration
	testidentityd.Eventually(t, staleness+3*time.Second, func() error {
		_, err := hello(t, localConn, alice.GetAccessToken())
		if err == nil {
			return errors.New("local has not failed closed")
		}
		failedAfter = time.Since(stopped)
		wantStatus(t, err, codes.Unavailable, identityv1.ErrorReason_VERIFIER_STALE)
		return nil
	})
	// The last heartbeat came up to a second before the stop.
	if failedAfter < staleness-1200*time.Millisecond {
		t.Fatalf("local failed closed %v after identityd stopped, before the %v staleness bound", failedAfter, staleness)
	}
	t.Logf("local verifier failed closed %v after identityd stopped (staleness %v)", failedAfter.Round(time.Millisecond), staleness)
	// With a fallback, identity is asked, and it is down: UNAVAILABLE.
	testidentityd.Eventually(t, 3*time.Second, func() error {
		_, err := hello(t, fallbackConn, alice.GetAccessToken())
		if err == nil {
			return errors.New("the verifier with a fallback still accepts the token")
		}
		wantStatus(t, err, codes.Unavailable, identityv1.ErrorReason_IDENTITY_UNAVAILABLE)
		return nil
	})

	// While identityd is down, alice's session is revoked in the store
	// (as `identityctl --redis-url ... session revoke` does). Back up,
	// identityd replays it to the verifier, which resumes from its
	// cursor: the token is refused, and a new one accepted.
	if err := d.Store(t).RevokeSession(t.Context(), alice.GetSessionId(), time.Now()); err != nil {
		t.Fatal(err)
	}
	d.Restart()
	testidentityd.Eventually(t, 10*time.Second, func() error {
		_, err := hello(t, localConn, alice.GetAccessToken())
		if authn.Reason(err) != identityv1.ErrorReason_TOKEN_REVOKED {
			return fmt.Errorf("revoked while identityd was down: %v", err)
		}
		return nil
	})
	if _, err := hello(t, localConn, fresh.GetAccessToken()); err != nil {
		t.Fatalf("local after identityd came back: %v", err)
	}
	if _, err := hello(t, remoteConn, fresh.GetAccessToken()); err != nil {
		t.Fatalf("remote after identityd came back: %v", err)
	}
}

// TestRevocationPropagation measures how long a logout takes to reach a
// local verifier: 200 sessions logged out one by one, each timed from
// Logout returning to the verifier refusing that session's token. It
// prints revocation_p99_ms (run with -v). The target (p99 <= 100ms on
// loopback) is reported, not asserted: timings are for benchmarks; the
// test only insists that every logout arrives.
//
// Not parallel, so nothing else competes for the CPU while it measures.
func TestRevocationPropagation(t *testing.T) {
	const sessions = 200
	d := startIdentityd(t, nil)
	pw := testidentityd.AddUser(t, d.Store(t), "load", "")
	l, err := authn.NewLocal(authn.WithKeysFromConn(d.Conn), asService(t, d), quiet(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	waitReady(t, l)

	pairs := make([]*identityv1.TokenPair, sessions)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < sessions; i += 8 {
				pairs[i] = d.Login(t, "load", pw)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow() // a login failed in a worker (reported there)
	}
	for _, p := range pairs {
		if _, err := l.Verify(t.Context(), p.GetAccessToken()); err != nil {
			t.Fatalf("before logout: %v", err)
		}
	}

	lat := make([]time.Duration, 0, sessions)
	for _, p := range pairs {
		d.Logout(t, p)
		returned := time.Now()
		for {
			_, err := l.Verify(t.Context(), p.GetAccessToken())
			if err != nil {
				wantStatus(t, err, codes.Unauthenticated, identityv1.ErrorReason_TOKEN_REVOKED)
				lat = append(lat, time.Since(returned))
				break
			}
			if time.Since(returned) > 5*time.Second {
				t.Fatalf("session %s: still accepted 5s after its logout", p.GetSessionId())
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(math.Ceil(p*float64(len(lat))))-1] }
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
	t.Logf("revocation propagation over %d logouts: min %sms p50 %sms p99 %sms max %sms",
		len(lat), ms(lat[0]), ms(pct(0.5)), ms(pct(0.99)), ms(lat[len(lat)-1]))
	if testing.Verbose() {
		fmt.Fprintf(os.Stdout, "revocation_p50_ms=%s\nrevocation_p99_ms=%s\n", ms(pct(0.5)), ms(pct(0.99)))
	}
	if pct(0.99) > 100*time.Millisecond {
		t.Logf("note: p99 %v is above the 100ms target", pct(0.99))
	}
}
