package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testproxy"
	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/server"
)

// The store-fault tests run a real identityd against a private
// redis-server that stops, pauses, goes silent, gets slow or cuts its
// connections, and check what the contract promises while it does:
//
//   - every call that needs the store answers within the client's deadline
//     with UNAVAILABLE / STORE_UNAVAILABLE (HTTP 503), over gRPC and REST;
//     Refresh never answers OK, and Verify never answers OK once the
//     revocation feed is stale (RevocationStaleAfter after the fault began:
//     the last read that vouched for the set began before it);
//   - /readyz answers 503 and the gRPC health service NOT_SERVING, while
//     /healthz stays 200;
//   - once Redis answers again, the same process serves by itself: the
//     session refreshes (no false reuse alarm), logins, Verify and the
//     caller's session list work again.
//
// How long each step took is logged for RELIABILITY.md, never asserted.

const (
	faultCallDeadline = 5 * time.Second  // the client's deadline per call
	faultWait         = 20 * time.Second // for the outage to show
	faultRecoveryWait = 60 * time.Second // for the service to come back
	// selfEnding is how long CLIENT PAUSE and DEBUG SLEEP last: they cannot
	// be ended early (CLIENT UNPAUSE waits for the pause like any command),
	// so long enough for the checks on a loaded machine.
	selfEnding = 30 * time.Second
	// faultLatency is the slow proxy's delay per direction: a round trip
	// of 3 s, six times the store timeout (--redis-timeout 500ms), and
	// longer than RevocationStaleAfter, so the feed cannot stay fresh.
	faultLatency = 1500 * time.Millisecond
)

type storeFault struct {
	name  string
	args  []string // redis-server arguments
	proxy bool     // identityd reaches Redis through a testproxy
	// begin puts the fault in force; it returns when the fault may end by
	// itself (zero: only end ends it).
	begin func(t *testing.T, e *faultEnv) (endsBy time.Time)
	end   func(t *testing.T, e *faultEnv) // nil: the fault ends by itself
}

type faultEnv struct {
	r     *testredis.Server
	p     *testproxy.Proxy // nil without a proxy
	admin *redis.Client    // straight to r, never through the proxy
}

var storeFaults = []storeFault{
	{
		name:  "Stopped",
		begin: func(t *testing.T, e *faultEnv) time.Time { e.r.Stop(); return time.Time{} },
		end:   func(t *testing.T, e *faultEnv) { e.r.Restart() },
	},
	{
		name: "ClientPause",
		begin: func(t *testing.T, e *faultEnv) time.Time {
			ends := time.Now().Add(selfEnding)
			if err := e.admin.Do(t.Context(), "CLIENT", "PAUSE", selfEnding.Milliseconds(), "ALL").Err(); err != nil {
				t.Fatalf("CLIENT PAUSE: %v", err)
			}
			return ends
		},
	},
	{
		name: "DebugSleep",
		args: []string{"--enable-debug-command", "local"},
		begin: func(t *testing.T, e *faultEnv) time.Time {
			ends := time.Now().Add(selfEnding)
			// DEBUG SLEEP blocks the whole server; its own reply comes at
			// the end, so it is sent on a client of its own and not waited
			// for.
			c := e.r.Client(t)
			go c.Do(context.Background(), "DEBUG", "SLEEP", strconv.Itoa(int(selfEnding.Seconds())))
			testidentityd.Eventually(t, 10*time.Second, func() error {
				probe := redis.NewClient(&redis.Options{Addr: e.r.Addr(), ReadTimeout: 200 * time.Millisecond, MaxRetries: -1, Protocol: 2})
				defer probe.Close()
				if probe.Ping(context.Background()).Err() == nil {
					return fmt.Errorf("redis-server still answers PING")
				}
				return nil
			})
			return ends
		},
	},
	{
		name:  "Silent",
		proxy: true,
		begin: func(t *testing.T, e *faultEnv) time.Time { e.p.Pause(); return time.Time{} },
		end:   func(t *testing.T, e *faultEnv) { e.p.Resume() },
	},
	{
		name:  "Slow",
		proxy: true,
		begin: func(t *testing.T, e *faultEnv) time.Time {
			e.p.SetLatency(faultLatency, faultLatency)
			return time.Time{}
		},
		end: func(t *testing.T, e *faultEnv) { e.p.SetLatency(0, 0) },
	},
	{
		name:  "ConnectionsCut",
		proxy: true,
		begin: func(t *testing.T, e *faultEnv) time.Time { e.p.Drop(); return time.Time{} },
		end:   func(t *testing.T, e *faultEnv) { e.p.Resume() },
	},
}

// TestStoreFaults runs each fault against its own Redis and identityd.
func TestStoreFaults(t *testing.T) {
	t.Parallel()
	for _, f := range storeFaults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			runStoreFault(t, f)
		})
	}
}

// faultCall is one call of the outage round: its name and what it does,
// returning the answer as "OK" or "<code> <reason>".
type faultCall struct {
	name string
	call func(ctx context.Context) string
}

// faultAnswer is what a call got and how long it took.
type faultAnswer struct {
	out        string
	sent, done time.Time
}

func runStoreFault(t *testing.T, f storeFault) {
	r := testredis.NewServer(t, testredis.WithArgs(f.args...))
	e := &faultEnv{r: r, admin: r.Client(t)}
	o := opts{redis: r, flags: map[string]string{
		// The production grace window: a refresh that timed out while its
		// rotation was applied may be presented again after the fault.
		"refresh-grace": "10s",
		"redis-timeout": "500ms", // the default, named: the slow fault exceeds it
	}}
	if f.proxy {
		e.p = testproxy.New(t, r.Addr())
		o = opts{redisURL: "redis://" + e.p.Addr() + "/0", flags: o.flags}
	}
	d := startIdentityd(t, o)
	staleAfter := server.DefaultConfig().RevocationStaleAfter

	// Before the fault: a session refreshed a few times, one of its access
	// tokens verified (so cached) and two never verified; another session
	// to log out.
	tp := d.refresh(t, d.login(t, d.Username, d.Password).RefreshToken)
	cached := tp.AccessToken
	requireSuccess(t, second(d.verifyVia(t, viaGRPC, cached)))
	requireSuccess(t, second(d.verifyVia(t, viaREST, cached)))
	tp = d.refresh(t, tp.RefreshToken)
	uncachedGRPC := tp.AccessToken
	tp = d.refresh(t, tp.RefreshToken)
	uncachedREST := tp.AccessToken
	logout := d.login(t, d.Username, d.Password)

	began := time.Now()
	endsBy := f.begin(t, e)
	t.Logf("fault %s in force", f.name)

	// The outage shows: the feed goes stale (Verify of the cached token
	// fails closed), /readyz and the health service say so.
	var staleSeen, readySeen, healthSeen time.Time
	verifyCached := map[via]bool{}
	testidentityd.Eventually(t, faultWait, func() error {
		if r := d.do(t, http.MethodGet, "/healthz", nil, nil); r.status != http.StatusOK {
			t.Errorf("/healthz during the fault: %v, want 200", r)
		}
		for _, p := range protocols {
			if verifyCached[p] {
				continue
			}
			a := faultDo(func(ctx context.Context) string { return verifyOutcome(ctx, d, p, cached) })
			switch {
			case a.out == outUnavailable:
				verifyCached[p] = true
			case a.out == "OK" && a.sent.Sub(began) > staleAfter:
				t.Errorf("%s Verify of a cached token answered OK %v after the fault began: the revocation feed is stale after %v",
					p, a.sent.Sub(began).Round(time.Millisecond), staleAfter)
				verifyCached[p] = true
			case a.out != "OK":
				t.Errorf("%s Verify of a cached token during the fault: %s, want OK while the feed is fresh, then %s", p, a.out, outUnavailable)
				verifyCached[p] = true
			}
		}
		if len(verifyCached) == len(protocols) && staleSeen.IsZero() {
			staleSeen = time.Now()
		}
		if readySeen.IsZero() && d.do(t, http.MethodGet, "/readyz", nil, nil).status == http.StatusServiceUnavailable {
			readySeen = time.Now()
		}
		if healthSeen.IsZero() && healthIs(d, healthpb.HealthCheckResponse_NOT_SERVING) {
			healthSeen = time.Now()
		}
		if staleSeen.IsZero() || readySeen.IsZero() || healthSeen.IsZero() {
			return fmt.Errorf("outage not shown yet: Verify of a cached token failing closed %v, /readyz 503 %t, health NOT_SERVING %t",
				verifyCached, !readySeen.IsZero(), !healthSeen.IsZero())
		}
		return nil
	})
	t.Logf("after the fault began: cached Verify failing closed at %v, /readyz 503 at %v, health NOT_SERVING at %v",
		staleSeen.Sub(began).Round(time.Millisecond), readySeen.Sub(began).Round(time.Millisecond), healthSeen.Sub(began).Round(time.Millisecond))

	// Every call, over both protocols, at once: each must answer within
	// its deadline with UNAVAILABLE / STORE_UNAVAILABLE.
	calls := outageCalls(d, tp.RefreshToken, logout.RefreshToken, cached, uncachedGRPC, uncachedREST)
	answers := make([]faultAnswer, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Go(func() { answers[i] = faultDo(c.call) })
	}
	wg.Wait()
	var slowest time.Duration
	for i, c := range calls {
		a := answers[i]
		took := a.done.Sub(a.sent)
		slowest = max(slowest, took)
		if !endsBy.IsZero() && a.done.After(endsBy) {
			t.Errorf("%s answered after the fault may have ended by itself (%v after it began): the machine is too slow to judge it", c.name, a.done.Sub(began))
			continue
		}
		if a.out != outUnavailable {
			t.Errorf("%s during the fault: %s after %v, want %s within %v", c.name, a.out, took.Round(time.Millisecond), outUnavailable, faultCallDeadline)
		}
	}
	t.Logf("outage round: %d calls, every one %s; slowest answer %v (client deadline %v)",
		len(calls), outUnavailable, slowest.Round(time.Millisecond), faultCallDeadline)

	// Redis back: the same process serves by itself.
	if f.end != nil {
		f.end(t, e)
	}
	testidentityd.Eventually(t, faultRecoveryWait, func() error { return e.admin.Ping(context.Background()).Err() })
	back := time.Now()
	t.Logf("Redis answers again %v after the fault began", back.Sub(began).Round(time.Millisecond))
	recovered := faultRecovery(t, d, tp.RefreshToken, logout.RefreshToken, uncachedGRPC)
	for _, name := range slices.Sorted(maps.Keys(recovered)) {
		t.Logf("recovered: %-28s %v after Redis answered", name, recovered[name].Sub(back).Round(time.Millisecond))
	}
	requireNoReuse(t, d)
}

const outUnavailable = "Unavailable STORE_UNAVAILABLE"

// outageCalls are the calls of the outage round. The session's refresh
// token is presented once per protocol (both must fail: the grace window
// would make a second OK possible if the first had rotated).
func outageCalls(d *identityd, refresh, logout, cached, uncachedGRPC, uncachedREST string) []faultCall {
	bearer := func(ctx context.Context, tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	return []faultCall{
		{"gRPC Login", func(ctx context.Context) string {
			_, err := d.API.Login(ctx, &identityv1.LoginRequest{Username: d.Username, Password: d.Password})
			return outcome(err)
		}},
		{"gRPC Refresh", func(ctx context.Context) string {
			_, err := d.API.Refresh(ctx, &identityv1.RefreshRequest{RefreshToken: refresh})
			return outcome(err)
		}},
		{"gRPC Logout", func(ctx context.Context) string {
			_, err := d.API.Logout(ctx, &identityv1.LogoutRequest{RefreshToken: logout})
			return outcome(err)
		}},
		{"gRPC Verify (not cached)", func(ctx context.Context) string { return verifyOutcome(ctx, d, viaGRPC, uncachedGRPC) }},
		{"gRPC Verify (cached)", func(ctx context.Context) string { return verifyOutcome(ctx, d, viaGRPC, cached) }},
		{"gRPC WhoAmI", func(ctx context.Context) string {
			_, err := d.API.WhoAmI(bearer(ctx, cached), &identityv1.WhoAmIRequest{})
			return outcome(err)
		}},
		{"gRPC ListMySessions", func(ctx context.Context) string {
			_, err := d.API.ListMySessions(bearer(ctx, cached), &identityv1.ListMySessionsRequest{})
			return outcome(err)
		}},
		{"REST Login", func(ctx context.Context) string {
			return restOutcome(ctx, d, http.MethodPost, "/v1/login", map[string]string{"username": d.Username, "password": d.Password}, "")
		}},
		{"REST Refresh", func(ctx context.Context) string {
			return restOutcome(ctx, d, http.MethodPost, "/v1/refresh", map[string]string{"refresh_token": refresh}, "")
		}},
		{"REST Logout", func(ctx context.Context) string {
			return restOutcome(ctx, d, http.MethodPost, "/v1/logout", map[string]any{"refresh_token": logout}, "")
		}},
		{"REST Verify (not cached)", func(ctx context.Context) string { return verifyOutcome(ctx, d, viaREST, uncachedREST) }},
		{"REST Verify (cached)", func(ctx context.Context) string { return verifyOutcome(ctx, d, viaREST, cached) }},
		{"REST WhoAmI", func(ctx context.Context) string { return restOutcome(ctx, d, http.MethodGet, "/v1/me", nil, cached) }},
		{"REST ListMySessions", func(ctx context.Context) string {
			return restOutcome(ctx, d, http.MethodGet, "/v1/me/sessions", nil, cached)
		}},
	}
}

// faultRecovery polls until every part of the service works again and
// returns when each first did. An answer that is neither OK nor
// UNAVAILABLE (a refresh answered REUSED, say) fails the test.
func faultRecovery(t *testing.T, d *identityd, refresh, logout, uncached string) map[string]time.Time {
	t.Helper()
	done := map[string]time.Time{}
	var next tokenPair
	checks := map[string]func(ctx context.Context) string{
		"/readyz 200": func(ctx context.Context) string {
			if d.do(t, http.MethodGet, "/readyz", nil, nil).status == http.StatusOK {
				return "OK"
			}
			return outUnavailable
		},
		"health SERVING": func(ctx context.Context) string {
			if healthIs(d, healthpb.HealthCheckResponse_SERVING) {
				return "OK"
			}
			return outUnavailable
		},
		"gRPC Refresh (same token)": func(ctx context.Context) string {
			pair, err := d.API.Refresh(ctx, &identityv1.RefreshRequest{RefreshToken: refresh})
			if err == nil {
				next = pairFromProto(pair)
				d.Remember(next.AccessToken, next.RefreshToken)
			}
			return outcome(err)
		},
		"REST Login": func(ctx context.Context) string {
			return restOutcome(ctx, d, http.MethodPost, "/v1/login", map[string]string{"username": d.Username, "password": d.Password}, "")
		},
		"gRPC Verify (not cached)": func(ctx context.Context) string { return verifyOutcome(ctx, d, viaGRPC, uncached) },
		"REST Logout": func(ctx context.Context) string {
			return restOutcome(ctx, d, http.MethodPost, "/v1/logout", map[string]any{"refresh_token": logout}, "")
		},
		"REST ListMySessions": func(ctx context.Context) string {
			return restOutcome(ctx, d, http.MethodGet, "/v1/me/sessions", nil, uncached)
		},
	}
	testidentityd.Eventually(t, faultRecoveryWait, func() error {
		var pending []string
		for name, check := range checks {
			if _, ok := done[name]; ok {
				continue
			}
			a := faultDo(check)
			switch {
			case a.out == "OK":
				done[name] = a.done
			case a.out == outUnavailable || strings.HasPrefix(a.out, "no answer"):
				pending = append(pending, name+": "+a.out)
			default:
				t.Errorf("%s after the fault: %s, want OK once Redis is back", name, a.out)
				done[name] = a.done
			}
		}
		if len(pending) > 0 {
			slices.Sort(pending)
			return fmt.Errorf("not recovered: %s", strings.Join(pending, "; "))
		}
		return nil
	})
	// The new pair works: the session was not lost.
	requireSuccess(t, second(d.verifyVia(t, viaGRPC, next.AccessToken)))
	d.refresh(t, next.RefreshToken)
	return done
}

// faultDo runs call with the client's deadline.
func faultDo(call func(ctx context.Context) string) faultAnswer {
	ctx, cancel := context.WithTimeout(context.Background(), faultCallDeadline)
	defer cancel()
	a := faultAnswer{sent: time.Now()}
	a.out = call(ctx)
	a.done = time.Now()
	if ctx.Err() != nil && a.out != "OK" {
		a.out = fmt.Sprintf("no answer within %v (%s)", faultCallDeadline, a.out)
	}
	return a
}

func verifyOutcome(ctx context.Context, d *identityd, p via, tok string) string {
	if p == viaREST {
		return restOutcome(ctx, d, http.MethodPost, "/v1/verify", map[string]string{"token": tok}, "")
	}
	_, err := d.API.Verify(ctx, &identityv1.VerifyRequest{Token: tok})
	return outcome(err)
}

// restOutcome sends one REST call and returns "OK" or the gRPC code of its
// HTTP status and its ErrorInfo reason, as outcome does for gRPC.
func restOutcome(ctx context.Context, d *identityd, method, path string, body any, bearer string) string {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return "marshal: " + err.Error()
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, d.BaseURL+path, rd)
	if err != nil {
		return "request: " + err.Error()
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "transport: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return "OK"
	}
	var e struct {
		Details []struct {
			Type   string `json:"@type"`
			Reason string `json:"reason"`
		} `json:"details"`
	}
	json.Unmarshal(b, &e)
	reason := ""
	for _, det := range e.Details {
		if det.Type == "type.googleapis.com/google.rpc.ErrorInfo" {
			reason = det.Reason
		}
	}
	code, ok := httpCodes[resp.StatusCode]
	if !ok {
		return fmt.Sprintf("HTTP %d %s", resp.StatusCode, reason)
	}
	return code.String() + " " + reason
}

// healthIs reports whether the gRPC health service answers st, overall
// and for the identity service.
func healthIs(d *identityd, st healthpb.HealthCheckResponse_ServingStatus) bool {
	for _, svc := range []string{"", identityv1.IdentityService_ServiceDesc.ServiceName} {
		ctx, cancel := context.WithTimeout(context.Background(), faultCallDeadline)
		h, err := healthpb.NewHealthClient(d.Conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		cancel()
		if err != nil || h.GetStatus() != st {
			return false
		}
	}
	return true
}

// requireNoReuse checks identityd's own count of refresh tokens taken for
// stolen ones, and of sessions revoked for it: none.
func requireNoReuse(t *testing.T, d *identityd) {
	t.Helper()
	reuse, revoked := reuseMetrics(t, d)
	if reuse != 0 || revoked != 0 {
		t.Errorf("identityd counted %v reused refresh tokens and revoked %v sessions for reuse: false theft alarms", reuse, revoked)
	}
}

// reuseMetrics reads identity_refresh_reuse_detected_total and
// identity_sessions_revoked_total{cause="reuse"} from /metrics.
func reuseMetrics(t *testing.T, d *identityd) (reuse, revoked float64) {
	t.Helper()
	r := d.do(t, http.MethodGet, "/metrics", nil, nil)
	var sawReuse, sawRevoked bool
	for line := range strings.SplitSeq(string(r.body), "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		switch name {
		case "identity_refresh_reuse_detected_total":
			reuse, sawReuse = v, true
		case `identity_sessions_revoked_total{cause="reuse"}`:
			revoked, sawRevoked = v, true
		}
	}
	if !sawReuse || !sawRevoked {
		t.Fatalf("/metrics has no reuse counters (reuse %t, revoked for reuse %t): %.400s", sawReuse, sawRevoked, r.body)
	}
	return reuse, revoked
}
