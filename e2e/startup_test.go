package e2e

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testredis"
)

// TestStartWithRedisDown: identityd started against a port where no Redis
// listens binds its ports and stays up, answering as a service whose store
// is unreachable, says once what it waits for, and serves as soon as a
// redis-server starts on that port.
func TestStartWithRedisDown(t *testing.T) {
	t.Parallel()
	r := testredis.NewServer(t)
	r.Stop() // nothing listens on its port now
	d := startIdentityd(t, opts{redis: r, notReady: true})
	started := time.Now() // identityd holds its ports
	waitLog(t, d, "waiting for the store to answer")
	requireWaiting(t, d)

	r.Restart() // a redis-server on the same port
	up := time.Now()
	d.WaitReady(t, 30*time.Second)
	t.Logf("identityd up and waiting for %v (Redis down); ready %v after redis-server answered (its backoff is at most 3s)",
		up.Sub(started).Round(time.Millisecond), time.Since(up).Round(time.Millisecond))
	tp := d.login(t, d.Username, d.Password) // the bootstrap user was made once the store answered
	d.refresh(t, tp.RefreshToken)
	log := d.Log.String()
	if n := strings.Count(log, "waiting for the store to answer"); n != 1 {
		t.Errorf("the log says %d times that identityd waits for the store, want once", n)
	}
	if !strings.Contains(log, "the store answers: starting to serve") {
		t.Error("the log does not say that the wait ended")
	}
}

// TestStartWithKeyringUnreadable: Redis answers but the keyring cannot be
// read (here an ACL refuses GET to identityd's user); identityd waits for
// it the same way and serves once it can read it.
func TestStartWithKeyringUnreadable(t *testing.T) {
	t.Parallel()
	r := testredis.NewServer(t)
	admin := r.Client(t)
	pw := rand.Text()
	if err := admin.Do(t.Context(), "ACL", "SETUSER", "identityd", "on", ">"+pw, "~*", "&*", "+@all", "-get").Err(); err != nil {
		t.Fatal(err)
	}
	d := startIdentityd(t, opts{redisURL: fmt.Sprintf("redis://identityd:%s@%s/0", pw, r.Addr()), notReady: true})
	d.Remember(pw)
	waitLog(t, d, "waiting for the signing keys")
	requireWaiting(t, d)

	if err := admin.Do(t.Context(), "ACL", "SETUSER", "identityd", "+get").Err(); err != nil {
		t.Fatal(err)
	}
	d.WaitReady(t, 30*time.Second)
	d.login(t, d.Username, d.Password)
	log := d.Log.String()
	if n := strings.Count(log, "waiting for the signing keys"); n != 1 {
		t.Errorf("the log says %d times that identityd waits for the keyring, want once", n)
	}
	if strings.Contains(log, "waiting for the store to answer") {
		t.Error("identityd said it waited for the store, which answered all along")
	}
}

func waitLog(t *testing.T, d *identityd, line string) {
	t.Helper()
	testidentityd.Eventually(t, 20*time.Second, func() error {
		if !strings.Contains(d.Log.String(), line) {
			return fmt.Errorf("no %q in identityd's log", line)
		}
		return nil
	})
}

// requireWaiting checks what a waiting identityd answers: alive, not
// ready, not serving, every call UNAVAILABLE / STORE_UNAVAILABLE.
func requireWaiting(t *testing.T, d *identityd) {
	t.Helper()
	if r := d.do(t, http.MethodGet, "/healthz", nil, nil); r.status != http.StatusOK {
		t.Errorf("/healthz while waiting: %v, want 200", r)
	}
	if r := d.do(t, http.MethodGet, "/readyz", nil, nil); r.status != http.StatusServiceUnavailable {
		t.Errorf("/readyz while waiting: %v, want 503", r)
	}
	for _, svc := range []string{"", "identity.v1.IdentityService"} {
		h, err := healthpb.NewHealthClient(d.Conn).Check(rpcContext(t), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("gRPC health %q while waiting: %v, %v; want NOT_SERVING", svc, h.GetStatus(), err)
		}
	}
	requireError(t, d.loginREST(t, d.Username, d.Password), http.StatusServiceUnavailable, "STORE_UNAVAILABLE")
	_, err := d.API.Login(rpcContext(t), &identityv1.LoginRequest{Username: d.Username, Password: d.Password})
	requireStatusError(t, err, codes.Unavailable, "STORE_UNAVAILABLE")
}
