package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
)

// TestLoginLimitsThrottleWithoutLockout: wrong passwords from one address
// refuse that address only (RATE_LIMITED even for the right password, or
// the limit would tell the guesser when they are right), while the user at
// another address still gets in; guesses spread over many addresses stop at
// the per-username ceiling, for every address. Clients bind distinct
// loopback addresses (127.0.0.2, 127.0.0.3, ...), over REST and gRPC.
func TestLoginLimitsThrottleWithoutLockout(t *testing.T) {
	if runtime.GOOS != "linux" {
		testidentityd.SkipOrFail(t, "binding 127.0.0.x source addresses needs Linux's loopback /8")
	}
	t.Parallel()
	const perAddress, perUser = 5, 12
	d := startIdentityd(t, opts{flags: map[string]string{
		"login-failures-per-user-address": fmt.Sprint(perAddress),
		"login-failures-per-user":         fmt.Sprint(perUser),
	}})
	wrong := "wrong-" + d.Password
	d.Remember(wrong)

	guesser := d.from(t, "127.0.0.2")
	for range perAddress {
		requireError(t, guesser.loginREST(t, d.Username, wrong), http.StatusUnauthorized, "INVALID_CREDENTIALS")
	}
	for range 25 { // someone else's 30 failures in all
		requireError(t, guesser.loginREST(t, d.Username, wrong), http.StatusTooManyRequests, "RATE_LIMITED")
	}
	requireError(t, guesser.loginREST(t, d.Username, d.Password), http.StatusTooManyRequests, "RATE_LIMITED")
	_, err := guesser.api.Login(rpcContext(t), &identityv1.LoginRequest{Username: d.Username, Password: d.Password})
	requireStatusError(t, err, codes.ResourceExhausted, "RATE_LIMITED")

	// The user, elsewhere, is not locked out: over gRPC and over REST.
	user := d.from(t, "127.0.0.3")
	if _, err := user.api.Login(rpcContext(t), &identityv1.LoginRequest{Username: d.Username, Password: d.Password}); err != nil {
		t.Fatalf("the right password from another address after 30 failures elsewhere: %v", err)
	}
	d.requireTokenPair(t, user.loginREST(t, d.Username, d.Password))

	// A guesser with many addresses, two guesses each: the per-username
	// ceiling holds them all, whatever the address.
	failures := perAddress
	for host := 4; failures < perUser; host++ {
		g := d.from(t, fmt.Sprintf("127.0.0.%d", host))
		for range 2 {
			if failures < perUser {
				requireError(t, g.loginREST(t, d.Username, wrong), http.StatusUnauthorized, "INVALID_CREDENTIALS")
				failures++
			}
		}
	}
	fresh := d.from(t, "127.0.0.200")
	requireError(t, fresh.loginREST(t, d.Username, wrong), http.StatusTooManyRequests, "RATE_LIMITED")
	_, err = fresh.api.Login(rpcContext(t), &identityv1.LoginRequest{Username: d.Username, Password: d.Password})
	requireStatusError(t, err, codes.ResourceExhausted, "RATE_LIMITED")

	// Other usernames have budgets of their own.
	requireError(t, fresh.loginREST(t, "someone-"+randomHex(4), wrong), http.StatusUnauthorized, "INVALID_CREDENTIALS")
}

// TestBurstOfRightPasswords: 32 REST logins of one user with the right
// password, at once from one address, against identityd's default failure
// limit of 10 per username and address, all succeed: each attempt is
// charged before its password is checked and given its charge back when
// the password proves right, and those that find the limit used up by
// attempts in flight wait for them to settle. The wait budget is a minute,
// so a slow or loaded machine hashes the burst in time.
func TestBurstOfRightPasswords(t *testing.T) {
	t.Parallel()
	d := startIdentityd(t, opts{flags: map[string]string{"login-wait-budget": "1m"}})
	const logins = 32
	results := make([]response, logins)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() { results[i] = d.loginREST(t, d.Username, d.Password) })
	}
	wg.Wait()
	refused := 0
	for _, r := range results {
		if r.status != http.StatusOK {
			refused++
			t.Logf("refused: %v", r)
		}
	}
	if refused > 0 {
		t.Fatalf("%d of %d logins with the right password refused", refused, logins)
	}
	for _, r := range results {
		d.requireTokenPair(t, r)
	}
}

// client is a REST and gRPC client of d whose connections come from one
// loopback address.
type client struct {
	d    *identityd
	http *http.Client
	api  identityv1.IdentityServiceClient
}

func (d *identityd) from(t *testing.T, ip string) client {
	t.Helper()
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	transport := &http.Transport{DialContext: dialer.DialContext}
	t.Cleanup(transport.CloseIdleConnections)
	conn := testidentityd.Dial(t, d.GRPCAddr, grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		return dialer.DialContext(ctx, "tcp", addr)
	}))
	return client{d: d, http: &http.Client{Transport: transport, Timeout: 15 * time.Second}, api: identityv1.NewIdentityServiceClient(conn)}
}

func (c client) loginREST(t *testing.T, username, password string) response {
	t.Helper()
	b, err := json.Marshal(map[string]string{"username": username, "password": password})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, c.d.BaseURL+"/v1/login", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatalf("POST /v1/login: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{method: http.MethodPost, path: "/v1/login", status: resp.StatusCode, header: resp.Header, body: body}
}
