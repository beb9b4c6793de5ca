package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
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
	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/tokenstore"
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

// refusal groups refusals for the tally: the transport errors by kind,
// without the addresses and ports that make each one unique.
func refusal(desc string) string {
	switch {
	case strings.Contains(desc, "connection refused"):
		return "connection refused"
	case strings.Contains(desc, "connection reset"), strings.HasSuffix(desc, ": EOF"):
		return "reset on a fresh connection"
	}
	return desc
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
	name := "svc-" + randomHex(4)
	pw := testidentityd.AddUser(t, d.Store(t), name, "", authn.ServiceRole)
	d.Remember(pw)
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
			outcomes.add(name + ": refused: " + refusal(desc))
		default:
			problem("%s (began %v after SIGTERM): not a clean refusal: %s", name, began.Sub(sig).Round(time.Millisecond), desc)
		}
	}
	grpcRefused := func(err error) bool { return status.Code(err) == codes.Unavailable }
	restRefused := func(r restCall) bool {
		if r.err != nil {
			// Refused at connect, once the listener is closed. Or a
			// fresh connection that reached the kernel in the instant the
			// listener closed: it is reset without a byte read, as on
			// any server that closes a listener (counted apart in the
			// tally: "reset on a fresh connection").
			return errors.Is(r.err, syscall.ECONNREFUSED) || (!r.reused && (errors.Is(r.err, syscall.ECONNRESET) || errors.Is(r.err, io.EOF)))
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
				// A reset at the listener's close happens once: the
				// loop's next connect is refused. More than one is a
				// port that takes connections it will not serve.
				resets := 0
				restRefused := func(r restCall) bool {
					if !restRefused(r) {
						return false
					}
					if r.err != nil && !errors.Is(r.err, syscall.ECONNREFUSED) {
						if resets++; resets > 1 {
							problem("%s loop: a second reset on a fresh connection: %v", p, r)
						}
					}
					return true
				}
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

// dialRaw opens n TCP connections to addr that send nothing, 16 dials at
// a time.
func dialRaw(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	d := net.Dialer{Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < n; i += 16 {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					errs <- fmt.Errorf("connection %d of %d to %s: %w", i+1, n, addr, err)
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return conns
}

// openFDs is how many file descriptors process pid holds (Linux).
func openFDs(t testing.TB, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skipf("cannot count identityd's file descriptors: %v", err)
	}
	return len(entries)
}

// rssKiB is process pid's resident memory (Linux), for the log.
func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	return -1
}

// raiseFileLimit lifts the test process's open-file limit to need, or
// skips the test if the hard limit does not allow it.
func raiseFileLimit(t *testing.T, need uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("getrlimit: %v", err)
	}
	if lim.Cur >= need {
		return
	}
	if lim.Max < need {
		t.Skipf("needs %d open files, the hard limit (ulimit -Hn) is %d", need, lim.Max)
	}
	lim.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("setrlimit to %d open files: %v", need, err)
	}
}

// requireClosedByPeer waits (up to within) until the server closes every
// one of conns: a read that ends in EOF or a reset, not in its deadline.
func requireClosedByPeer(t *testing.T, conns []net.Conn, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := 0
	var firstErr error
	for _, c := range conns {
		wg.Go(func() {
			c.SetReadDeadline(deadline)
			_, err := io.Copy(io.Discard, c)
			var ne net.Error
			if err != nil && errors.As(err, &ne) && ne.Timeout() {
				mu.Lock()
				open++
				firstErr = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if open > 0 {
		t.Errorf("%d of %d connections still open after %v (%v)", open, len(conns), within, firstErr)
	}
}

// requireServed checks that a new client is served: Verify over gRPC on a
// connection of its own and over REST, and a Login.
func requireServed(t *testing.T, d *identityd, access string) {
	t.Helper()
	conn := testidentityd.Dial(t, d.GRPCAddr)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := identityv1.NewIdentityServiceClient(conn).Verify(ctx, &identityv1.VerifyRequest{Token: access}); err != nil {
		t.Errorf("gRPC Verify on a new connection: %v", err)
	}
	conn.Close()
	c := restClient()
	defer c.CloseIdleConnections()
	if r := postREST(ctx, c, d.BaseURL, "/v1/verify", map[string]string{"token": access}, ""); r.err != nil || r.status != http.StatusOK {
		t.Errorf("REST Verify on a new connection: %v", r)
	}
	if r := postREST(ctx, c, d.BaseURL, "/v1/login", map[string]string{"username": d.Username, "password": d.Password}, ""); r.err != nil || r.status != http.StatusOK {
		t.Errorf("REST Login on a new connection: %v", r)
	} else {
		var tp tokenPair
		json.Unmarshal(r.body, &tp)
		d.Remember(tp.AccessToken, tp.RefreshToken)
	}
}

// TestIdleConnections: 10,000 TCP connections that send nothing, half to
// each port, cost identityd a file descriptor each and stop no one: a new
// client is served while they are open. identityd closes each of them
// once its handshake timeout (10s) has passed, and closes a connection
// that did make a call once it has been idle for --idle-timeout.
func TestIdleConnections(t *testing.T) {
	t.Parallel()
	const perPort = 5000
	raiseFileLimit(t, 2*perPort+1000)
	d := startIdentityd(t, opts{flags: map[string]string{"idle-timeout": "3s"}})
	pair := d.login(t, d.Username, d.Password)
	pid := d.PID()
	baseFDs, baseRSS := openFDs(t, pid), rssKiB(pid)

	grpcIdle := dialRaw(t, d.GRPCAddr, perPort)
	httpIdle := dialRaw(t, d.HTTPAddr, perPort)
	// How many identityd holds at once is logged, not asserted: on a
	// loaded machine dialing 10,000 can take longer than the 10 s after
	// which identityd closes the first ones.
	heldFDs, heldRSS := openFDs(t, pid), rssKiB(pid)
	requireServed(t, d, pair.AccessToken)

	// A gRPC client whose connection made a call and then idles: the
	// server's GOAWAY (MaxConnectionIdle) sends it back to IDLE.
	conn := testidentityd.Dial(t, d.GRPCAddr)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if _, err := identityv1.NewIdentityServiceClient(conn).Verify(ctx, &identityv1.VerifyRequest{Token: pair.AccessToken}); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	// An HTTP/1.1 keep-alive connection that made a request and idles.
	keepAlive, err := net.DialTimeout("tcp", d.HTTPAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer keepAlive.Close()
	fmt.Fprintf(keepAlive, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", d.HTTPAddr)
	resp, err := http.ReadResponse(bufio.NewReader(keepAlive), nil)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("GET /healthz on a keep-alive connection: %v %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)

	requireClosedByPeer(t, append(grpcIdle, httpIdle...), time.Minute)
	requireClosedByPeer(t, []net.Conn{keepAlive}, time.Minute)
	for st := conn.GetState(); st.String() == "READY"; st = conn.GetState() {
		if !conn.WaitForStateChange(ctx, st) {
			t.Fatalf("the idle gRPC connection is still %v after a minute (--idle-timeout 3s)", conn.GetState())
		}
	}
	testidentityd.Eventually(t, 30*time.Second, func() error {
		if n := openFDs(t, pid); n > baseFDs+50 {
			return fmt.Errorf("identityd still holds %d file descriptors (%d before the connections)", n, baseFDs)
		}
		return nil
	})
	t.Logf("identityd: %d file descriptors and %d KiB resident before, %d and %d KiB once the %d idle connections were dialed, %d after they were closed",
		baseFDs, baseRSS, heldFDs, heldRSS, 2*perPort, openFDs(t, pid))
	requireServed(t, d, pair.AccessToken)
}

// TestSlowloris: 200 connections send the headers of a REST request a
// byte every half second. A well-behaved client is served meanwhile, and
// identityd closes each slow connection once its header timeout (10s,
// counted from the request's first byte) has passed; a request whose
// headers pass 64 KiB is answered 431.
func TestSlowloris(t *testing.T) {
	t.Parallel()
	const slow = 200
	d := startIdentityd(t, opts{})
	pair := d.login(t, d.Username, d.Password)
	conns := dialRaw(t, d.HTTPAddr, slow)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			req := fmt.Sprintf("POST /v1/verify HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nX-Slow: %s", d.HTTPAddr, strings.Repeat("a", 10_000))
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			for n := 0; n < len(req); n++ {
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write([]byte{req[n]}); err != nil {
					return // closed by identityd
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		})
	}
	// Served meanwhile, several times over the slow connections' life.
	for range 5 {
		requireServed(t, d, pair.AccessToken)
		time.Sleep(time.Second)
	}
	requireClosedByPeer(t, conns, time.Minute)
	close(stop)
	wg.Wait()
	requireServed(t, d, pair.AccessToken)

	big := postHeaders(t, d, strings.Repeat("b", 70<<10))
	if big != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a request with 70 KiB of headers: %d, want 431", big)
	}
}

// postHeaders sends a REST request with header X-Big: value and returns
// the answer's status.
func postHeaders(t *testing.T, d *identityd, value string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, d.BaseURL+"/v1/verify", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Big", value)
	resp, err := restClient().Do(req)
	if err != nil {
		t.Fatalf("POST with big headers: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestWatcherNeverReads: a WatchRevocations client that reads its first
// heartbeat and then nothing, with a 64 KiB HTTP/2 window, while 1,600
// sessions are revoked. identityd cuts it from its revocation feed once
// it is 64 feed reads behind (its memory does not grow with the backlog),
// the stream ends UNAVAILABLE as soon as the client reads again, and a
// watcher that reads gets every event.
func TestWatcherNeverReads(t *testing.T) {
	t.Parallel()
	const bulk, oneByOne = 1500, 100
	d := startIdentityd(t, opts{})
	store := d.Store(t)
	ctx := rpcContext(t)

	// Tiny windows: grpc-go's floor is 64 KiB; setting them also turns off
	// its window growth (BDP estimation).
	slowConn := testidentityd.Dial(t, d.GRPCAddr, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	slow := serviceWatch(t, d, slowConn)
	good := serviceWatch(t, d, testidentityd.Dial(t, d.GRPCAddr))
	var mu sync.Mutex
	seen := map[string]bool{}
	goodErr := make(chan error, 1)
	go func() {
		for {
			m, err := good.Recv()
			if err != nil {
				goodErr <- err
				return
			}
			if id := m.GetSessionId(); id != "" {
				mu.Lock()
				seen[id] = true
				mu.Unlock()
			}
		}
	}()
	testidentityd.Eventually(t, 10*time.Second, func() error {
		if n := metricSum(t, d.BaseURL, "identity_revocation_watchers"); n != 2 {
			return fmt.Errorf("%v watchers, want 2", n)
		}
		return nil
	})
	heapBefore := metricSum(t, d.BaseURL, "go_memstats_heap_inuse_bytes")
	rssBefore := metricSum(t, d.BaseURL, "process_resident_memory_bytes")

	// One user's sessions, made in the store and revoked together: 1,500
	// events, more than the slow client's window holds.
	userID, err := tokenstore.NewUserID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateUser(ctx, tokenstore.User{ID: userID, Username: "bulk-" + randomHex(4), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	session := func() string {
		id, err := tokenstore.NewSessionID(userID, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.CreateSession(ctx, tokenstore.Session{ID: id, UserID: userID, Nonce: randomHex(8),
			CreatedAt: now, RotatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	for range bulk {
		session()
	}
	revoked, err := store.RevokeUserSessions(ctx, userID, time.Now())
	if err != nil || len(revoked) != bulk {
		t.Fatalf("RevokeUserSessions: %d sessions, %v", len(revoked), err)
	}
	waitSeen := func(ids ...string) {
		t.Helper()
		testidentityd.Eventually(t, 30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			for _, id := range ids {
				if !seen[id] {
					return fmt.Errorf("the reading watcher has %d events, not yet %s", len(seen), id)
				}
			}
			return nil
		})
	}
	waitSeen(revoked...)
	// Then one at a time, each its own feed read: the slow client's feed
	// buffer (64 reads) overflows.
	for range oneByOne {
		id := session()
		if err := store.RevokeSession(ctx, id, time.Now()); err != nil {
			t.Fatal(err)
		}
		revoked = append(revoked, id)
		waitSeen(id)
	}
	testidentityd.Eventually(t, 60*time.Second, func() error {
		if n := metricSum(t, d.BaseURL, "identity_revocation_watchers"); n != 1 {
			return fmt.Errorf("%v watchers, want 1: the one that does not read is still fed", n)
		}
		return nil
	})
	heapAfter := metricSum(t, d.BaseURL, "go_memstats_heap_inuse_bytes")
	rssAfter := metricSum(t, d.BaseURL, "process_resident_memory_bytes")
	t.Logf("identityd heap in use %.1f MiB → %.1f MiB, resident %.1f MiB → %.1f MiB over %d revocations with a watcher that does not read",
		heapBefore/(1<<20), heapAfter/(1<<20), rssBefore/(1<<20), rssAfter/(1<<20), len(revoked))
	if grown := heapAfter - heapBefore; grown > 64<<20 {
		t.Errorf("identityd's heap grew %.1f MiB", grown/(1<<20))
	}

	// The slow client reads at last: what was in its window, then the end.
	got := 0
	for {
		m, err := slow.Recv()
		if err == nil {
			if m.GetSessionId() != "" {
				got++
			}
			continue
		}
		if status.Code(err) != codes.Unavailable || grpcReason(err) != "IDENTITY_UNAVAILABLE" {
			t.Errorf("the slow stream ended with %v, want UNAVAILABLE IDENTITY_UNAVAILABLE", err)
		}
		break
	}
	t.Logf("the slow client read %d of %d events before its stream ended", got, len(revoked))
	if got >= len(revoked) {
		t.Errorf("the slow client got every event (%d): it was never behind", got)
	}
	select {
	case err := <-goodErr:
		t.Errorf("the reading watcher's stream ended: %v", err)
	default:
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != len(revoked) {
		t.Errorf("the reading watcher got %d events, want %d", len(seen), len(revoked))
	}
}

// TestRedisPoolExhausted: identityd with a pool of 2 Redis connections
// that a call waits at most 1 ms for (pool_size=2&pool_timeout=1ms in
// --redis-url), and 24 clients refreshing in a loop for 5 s: more calls
// than connections. A call that finds no free connection in time is
// answered UNAVAILABLE STORE_UNAVAILABLE at once; none waits for its own
// 10 s deadline. Verify of a token already verified needs no Redis call
// and keeps succeeding throughout, because the revocation feed reads on a
// pool of its own (tokenstore.WithFeedClient): on the shared pool it lost
// its reads too, Verify's revocation set went stale, and Verify fell back
// to the store and failed like the refreshes. Every session refreshes
// again afterwards.
func TestRedisPoolExhausted(t *testing.T) {
	t.Parallel()
	const clients = 24
	r := testredis.NewServer(t)
	d := startIdentityd(t, opts{redisURL: r.URL() + "?pool_size=2&pool_timeout=1ms", flags: map[string]string{
		"refresh-rate-per-session": "0",
		"refresh-rate-per-ip":      "0",
		// A refresh whose answer was lost to the read timeout may have
		// rotated: its client presents the same token again, within
		// the grace window.
		"refresh-grace": "1m",
	}})
	pairs := make([]tokenPair, clients)
	for i := range pairs {
		testidentityd.Eventually(t, 30*time.Second, func() error {
			// Even a login may find the pool busy (the health check).
			r := d.loginREST(t, d.Username, d.Password)
			if r.status != http.StatusOK {
				return fmt.Errorf("login: %v", r)
			}
			pairs[i] = d.requireTokenPair(t, r)
			return nil
		})
	}
	watched := pairs[0].AccessToken
	requireSuccess(t, second(d.verifyVia(t, viaGRPC, watched)))

	stop := make(chan struct{})
	var refreshes, verifies tally
	var problems []string
	var mu sync.Mutex
	problem := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	running := func() bool {
		select {
		case <-stop:
			return false
		default:
			return true
		}
	}
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			refresh := pairs[i].RefreshToken
			for running() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := d.API.Refresh(ctx, &identityv1.RefreshRequest{RefreshToken: refresh})
				cancel()
				refreshes.add(grpcOutcome(err))
				switch {
				case err == nil:
					refresh = resp.GetRefreshToken()
					d.Remember(resp.GetAccessToken(), refresh)
				case status.Code(err) == codes.Unavailable && grpcReason(err) == "STORE_UNAVAILABLE":
				default:
					problem("Refresh: %v", err)
				}
				pairs[i].RefreshToken = refresh
			}
		})
	}
	wg.Go(func() {
		for running() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := d.API.Verify(ctx, &identityv1.VerifyRequest{Token: watched})
			cancel()
			verifies.add(grpcOutcome(err))
			if err != nil {
				problem("Verify of a verified token: %v", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	time.Sleep(5 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("Refresh by outcome:%s", refreshes.String())
	t.Logf("Verify by outcome:%s", verifies.String())
	for _, p := range problems {
		t.Error(p)
	}
	refused := refreshes.n["Unavailable STORE_UNAVAILABLE"]
	if refused == 0 {
		t.Errorf("no refresh was refused: the pool was never exhausted")
	}
	// Thousands of calls failed alike: the log holds a sample of them, and
	// says how many it left out.
	lines := strings.Count(d.Log.String(), "request failed")
	if lines > refused/10 || !strings.Contains(d.Log.String(), "suppressed=") {
		t.Errorf("%d refused refreshes wrote %d \"request failed\" lines; want a sample, and a count of those left out", refused, lines)
	}
	t.Logf("%d \"request failed\" lines for %d refused refreshes", lines, refused)
	for i, p := range pairs {
		testidentityd.Eventually(t, 30*time.Second, func() error {
			if _, f := d.refreshVia(t, viaGRPC, p.RefreshToken); f != nil {
				return fmt.Errorf("session %d after the pause: %v", i, f)
			}
			return nil
		})
	}
}
