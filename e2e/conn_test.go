package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
)

// This file holds the connection-level faults (RELIABILITY.md, "Connection
// faults"): its helpers make calls that report every outcome instead of
// failing the test, so that a test can classify them.

// restCall is one REST answer, or the transport error instead of one.
type restCall struct {
	status int
	close  bool // the answer said Connection: close
	reason string
	body   []byte
	err    error
	reused bool // the request went on a connection used before
}

// restClient has its own keep-alive pool, so a test sees what one client
// of the server sees.
func restClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
}

func postREST(ctx context.Context, c *http.Client, baseURL, path string, v any, bearer string) restCall {
	b, _ := json.Marshal(v)
	var rc restCall
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { rc.reused = i.Reused }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, baseURL+path, bytes.NewReader(b))
	if err != nil {
		rc.err = err
		return rc
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		rc.err = err
		return rc
	}
	defer resp.Body.Close()
	rc.status, rc.close = resp.StatusCode, resp.Close
	rc.body, rc.err = io.ReadAll(resp.Body)
	if rc.status != http.StatusOK {
		var e struct {
			Details []struct {
				Reason string `json:"reason"`
			} `json:"details"`
		}
		if json.Unmarshal(rc.body, &e) == nil && len(e.Details) > 0 {
			rc.reason = e.Details[0].Reason
		}
	}
	return rc
}

func (r restCall) String() string {
	if r.err != nil {
		return fmt.Sprintf("transport error (reused connection %v): %v", r.reused, r.err)
	}
	return fmt.Sprintf("%d %s (Connection: close %v)", r.status, r.reason, r.close)
}

// grpcReason is the ErrorInfo reason of a gRPC error ("" for none).
func grpcReason(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// grpcOutcome names a gRPC call's outcome for the tallies in the log.
func grpcOutcome(err error) string {
	if err == nil {
		return "OK"
	}
	st, _ := status.FromError(err)
	return strings.TrimSpace(st.Code().String() + " " + grpcReason(err))
}

// tally counts outcomes by name, for the log (RELIABILITY.md's figures).
type tally struct {
	mu sync.Mutex
	n  map[string]int
}

func (t *tally) add(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[string]int{}
	}
	t.n[name]++
}

func (t *tally) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(t.n)) {
		fmt.Fprintf(&b, "\n  %6d  %s", t.n[k], k)
	}
	return b.String()
}

var metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? ([0-9.e+-]+|NaN|\+Inf)$`)

// metricSum is the sum of the samples of metric whose labels contain
// every one of labels (`name="value"`), from the server's /metrics.
func metricSum(t testing.TB, baseURL, metric string, labels ...string) float64 {
	t.Helper()
	resp, err := httpClient.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := metricLine.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != metric {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(m[2], l)
		}
		if v, err := strconv.ParseFloat(m[3], 64); ok && err == nil {
			sum += v
		}
	}
	return sum
}

// inFlight is how many calls of an IdentityService method the server has
// started and not yet answered (go-grpc-middleware's counters, which count
// REST calls too: they run through the same interceptors).
func inFlight(t testing.TB, baseURL, method string) float64 {
	m := `grpc_method="` + method + `"`
	return metricSum(t, baseURL, "grpc_server_started_total", m) - metricSum(t, baseURL, "grpc_server_handled_total", m)
}

// serviceWatch opens WatchRevocations as a fresh account with the service
// role and waits for its first heartbeat.
func serviceWatch(t *testing.T, d *identityd, conn grpc.ClientConnInterface) identityv1.IdentityService_WatchRevocationsClient {
	t.Helper()
	name, pw := "svc-"+randomHex(4), testidentityd.RandomPassword()
	addUser(t, d, name, pw, authn.ServiceRole)
	sa := authn.NewServiceAccount(conn, name, pw)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	t.Cleanup(cancel)
	stream, err := identityv1.NewIdentityServiceClient(conn).WatchRevocations(ctx, &identityv1.WatchRevocationsRequest{}, grpc.PerRPCCredentials(sa))
	if err != nil {
		t.Fatalf("WatchRevocations: %v", err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			t.Fatalf("WatchRevocations: %v", err)
		}
		if m.GetSessionId() == "" && !m.GetReset_() {
			return stream
		}
	}
}

// TestShutdownUnderLoad: SIGTERM while clients call Login, Verify and
// Refresh over gRPC and REST in a loop, and a WatchRevocations stream is
// open. Every call answered before the signal succeeded; the logins in
// flight at the signal finish; every later call either succeeds or is
// refused cleanly (gRPC UNAVAILABLE; REST 503 IDENTITY_UNAVAILABLE with
// Connection: close, or the connection refused once the listener closed);
// the stream ends UNAVAILABLE; identityd exits 0.
func TestShutdownUnderLoad(t *testing.T) {
	t.Parallel()
	d := startIdentityd(t, opts{flags: map[string]string{
		"shutdown-timeout": "20s",
		// One hash worker and a long queue: logins wait in line, so some
		// are in flight when the signal comes.
		"hash-workers":             "1",
		"login-wait-budget":        "60s",
		"refresh-rate-per-session": "0",
		"refresh-rate-per-ip":      "0",
	}})
	watchConn := testidentityd.Dial(t, d.GRPCAddr)
	watch := serviceWatch(t, d, watchConn)

	var (
		sigMu    sync.Mutex
		signaled time.Time // zero until SIGTERM is sent
		exited   = make(chan struct{})
		outcomes tally
		problems = make(chan string, 1000)
	)
	sentAt := func() time.Time { sigMu.Lock(); defer sigMu.Unlock(); return signaled }
	problem := func(format string, args ...any) {
		select {
		case problems <- fmt.Sprintf(format, args...):
		default:
		}
	}
	// check classifies one call that began at began. ok: it succeeded.
	// refused: a clean refusal. Anything else is a problem, and so is any
	// failure of a call answered before the signal.
	check := func(name string, began time.Time, ok, refused bool, desc string) {
		sig := sentAt()
		switch {
		case ok:
			outcomes.add(name + ": OK")
		case sig.IsZero():
			problem("%s answered before SIGTERM: %s", name, desc)
		case refused:
			outcomes.add(name + ": refused: " + desc)
		default:
			problem("%s (began %v after SIGTERM): not a clean refusal: %s", name, began.Sub(sig).Round(time.Millisecond), desc)
		}
	}
	grpcRefused := func(err error) bool { return status.Code(err) == codes.Unavailable }
	restRefused := func(r restCall) bool {
		if r.err != nil {
			// Refused at connect, once the listener is closed.
			return errors.Is(r.err, syscall.ECONNREFUSED)
		}
		return r.status == http.StatusServiceUnavailable && r.reason == "IDENTITY_UNAVAILABLE" && r.close
	}
	stopped := func() bool {
		select {
		case <-exited:
			return true
		default:
			return false
		}
	}

	// The loops: each logs in, then alternates Verify and Refresh, with
	// a Login every tenth call, until identityd has exited.
	var wg sync.WaitGroup
	loops := 0
	for _, p := range protocols {
		for i := range 2 {
			loops++
			pair := d.loginVia(t, p, d.Username, d.Password)
			wg.Go(func() {
				client := restClient()
				defer client.CloseIdleConnections()
				access, refresh := pair.AccessToken, pair.RefreshToken
				for n := 0; !stopped(); n++ {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					began := time.Now()
					switch {
					case n%10 == 9 && i == 0:
						if p == viaGRPC {
							_, err := d.API.Login(ctx, &identityv1.LoginRequest{Username: d.Username, Password: d.Password})
							check("gRPC Login", began, err == nil, grpcRefused(err), grpcOutcome(err))
						} else {
							r := postREST(ctx, client, d.BaseURL, "/v1/login", map[string]string{"username": d.Username, "password": d.Password}, "")
							check("REST Login", began, r.err == nil && r.status == http.StatusOK, restRefused(r), r.String())
						}
					case n%2 == 0:
						if p == viaGRPC {
							_, err := d.API.Verify(ctx, &identityv1.VerifyRequest{Token: access})
							check("gRPC Verify", began, err == nil, grpcRefused(err), grpcOutcome(err))
						} else {
							r := postREST(ctx, client, d.BaseURL, "/v1/verify", map[string]string{"token": access}, "")
							check("REST Verify", began, r.err == nil && r.status == http.StatusOK, restRefused(r), r.String())
						}
					default:
						if p == viaGRPC {
							resp, err := d.API.Refresh(ctx, &identityv1.RefreshRequest{RefreshToken: refresh})
							check("gRPC Refresh", began, err == nil, grpcRefused(err), grpcOutcome(err))
							if err == nil {
								access, refresh = resp.GetAccessToken(), resp.GetRefreshToken()
								d.Remember(access, refresh)
							}
						} else {
							r := postREST(ctx, client, d.BaseURL, "/v1/refresh", map[string]string{"refresh_token": refresh}, "")
							ok := r.err == nil && r.status == http.StatusOK
							check("REST Refresh", began, ok, restRefused(r), r.String())
							if ok {
								var tp tokenPair
								if err := json.Unmarshal(r.body, &tp); err != nil {
									problem("REST Refresh: %v", err)
								}
								access, refresh = tp.AccessToken, tp.RefreshToken
								d.Remember(access, refresh)
							}
						}
					}
					cancel()
					if !sentAt().IsZero() {
						time.Sleep(time.Millisecond) // refused calls come back fast
					}
				}
			})
		}
	}

	// Logins queued behind the one hash worker, in flight at the signal.
	const queued = 6
	var queuedOK, queuedFailed tally
	var qwg sync.WaitGroup
	for i := range queued {
		qwg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if i%2 == 0 {
				_, err := d.API.Login(ctx, &identityv1.LoginRequest{Username: d.Username, Password: d.Password})
				if err != nil {
					queuedFailed.add("gRPC Login: " + grpcOutcome(err))
					return
				}
				queuedOK.add("gRPC Login")
				return
			}
			r := postREST(ctx, restClient(), d.BaseURL, "/v1/login", map[string]string{"username": d.Username, "password": d.Password}, "")
			if r.err != nil || r.status != http.StatusOK {
				queuedFailed.add("REST Login: " + r.String())
				return
			}
			queuedOK.add("REST Login")
		})
	}
	testidentityd.Eventually(t, 30*time.Second, func() error {
		if n := inFlight(t, d.BaseURL, "Login"); n < queued {
			return fmt.Errorf("%v logins in flight, want at least %d", n, queued)
		}
		return nil
	})

	sigMu.Lock()
	signaled = time.Now()
	sigMu.Unlock()
	state := d.Terminate(40 * time.Second)
	exitedAfter := time.Since(signaled)
	close(exited)
	wg.Wait()
	qwg.Wait()

	if state == nil || state.ExitCode() != 0 {
		t.Errorf("identityd exited %v after SIGTERM, want status 0", state)
	}
	t.Logf("identityd exited %v after SIGTERM (--shutdown-timeout 20s)", exitedAfter.Round(time.Millisecond))
	if queuedFailed.String() != "" {
		t.Errorf("logins in flight at SIGTERM that did not succeed:%s", queuedFailed.String())
	}
	t.Logf("logins in flight at SIGTERM, answered OK:%s", queuedOK.String())
	t.Logf("%d loops; calls by outcome:%s", loops, outcomes.String())
	close(problems)
	for p := range problems {
		t.Error(p)
	}

	// The stream ended with UNAVAILABLE: authn's verifiers reconnect.
	for {
		_, err := watch.Recv()
		if err == nil {
			continue
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("WatchRevocations ended with %v, want UNAVAILABLE", err)
		}
		break
	}
}

// dialRaw opens n TCP connections to addr that send nothing.
func dialRaw(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	d := net.Dialer{Timeout: 10 * time.Second}
	for range n {
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d of %d to %s: %v", len(conns)+1, n, addr, err)
		}
		conns = append(conns, c)
	}
	return conns
}
