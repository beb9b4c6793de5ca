package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/sync/errgroup"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/password"
)

type loader struct {
	cfg      config
	out      io.Writer
	password string
	conns    []*grpc.ClientConn
	apis     []identityv1.IdentityServiceClient
	rest     *restClient // nil unless -proto has rest

	results map[string]result
	tokens  []string // the verify pool, shared by verify and the flood scenario
	// sessions are the refresh clients' logins; restSessions the REST
	// refresh clients' (a session is rotated by one client only).
	sessions     []*identityv1.TokenPair
	restSessions []*identityv1.TokenPair
	miss         []string // the cache-miss tokens, each verified once
	missCheck    string   // what identityd's cache counters said of the cache-miss run
	rssRun       *rssRun
	cpu          *cpuMeter
}

// op is one request of one client. Each client gets its own op, so an op
// may keep state (a refresh client's current token) without locking.
type op func(ctx context.Context) error

// errSkip: the op did untimed set-up work (a refresh client logging in
// again after an error) and made no measured request.
var errSkip = errors.New("no request")

// pauseAfter is an op's error with a pause the client makes before its
// next request (a polite login client honouring RetryInfo): the pause is
// not part of the request's latency.
type pauseAfter struct {
	error
	d time.Duration
}

func (p *pauseAfter) Unwrap() error { return p.error }

// pause sleeps as err asks, if it does.
func pause(ctx context.Context, err error) {
	var p *pauseAfter
	if errors.As(err, &p) {
		sleep(ctx, p.d)
	}
}

// phases of a run: warming up (not recorded), measuring, stopped.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// measure runs clients closed-loop ops: a warm-up of cfg.warmup, then a
// measured run that ends after cfg.duration or cfg.requests measured
// requests, whichever comes first.
func (l *loader) measure(ctx context.Context, name string, ops []op) result {
	return l.measureHook(ctx, name, ops, nil)
}

// measureHook is measure calling onStart (if not nil) as measuring starts.
// A client whose op returns errStop stops; the run ends when all have.
func (l *loader) measureHook(ctx context.Context, name string, ops []op, onStart func()) result {
	var phase atomic.Int32
	var remaining atomic.Int64
	remaining.Store(l.cfg.requests)
	recs := make([]*recorder, len(ops))
	var wg sync.WaitGroup
	for i, o := range ops {
		rec := newRecorder()
		recs[i] = rec
		wg.Go(func() {
			for {
				p := phase.Load()
				if p == phaseStop {
					return
				}
				if p == phaseMeasure && l.cfg.requests > 0 && remaining.Add(-1) < 0 {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, l.cfg.timeout)
				t0 := time.Now()
				err := o(cctx)
				d := time.Since(t0)
				cancel()
				if errors.Is(err, errStop) {
					return
				}
				if errors.Is(err, errSkip) {
					continue
				}
				// Only requests both started and finished while measuring
				// count: the run's rate is then exact.
				if p == phaseMeasure && phase.Load() == phaseMeasure {
					rec.record(d, err)
				}
				pause(ctx, err)
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	select {
	case <-time.After(l.cfg.warmup):
	case <-done: // every client stopped during the warm-up
	case <-ctx.Done():
	}
	if onStart != nil {
		onStart()
	}
	start := time.Now()
	cpu0 := l.cpu.now()
	phase.Store(phaseMeasure)
	var deadline <-chan time.Time
	if l.cfg.duration > 0 {
		t := time.NewTimer(l.cfg.duration)
		defer t.Stop()
		deadline = t.C
	}
	select {
	case <-deadline:
	case <-done: // -n reached, or every client stopped
	case <-ctx.Done():
	}
	elapsed := time.Since(start)
	phase.Store(phaseStop)
	cpu := l.cpu.since(cpu0)
	<-done
	res := merge(name, elapsed, recs)
	res.cpu = cpu
	return res
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (l *loader) api(i int) identityv1.IdentityServiceClient { return l.apis[i%len(l.apis)] }

// login logs in for a scenario's set-up, waiting as asked (RetryInfo) when
// the server's hashers are busy, a few times at most.
func (l *loader) login(ctx context.Context, i int) (*identityv1.TokenPair, error) {
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, l.cfg.timeout)
		tp, err := l.api(i).Login(cctx, &identityv1.LoginRequest{Username: l.cfg.user, Password: l.password})
		cancel()
		if status.Code(err) != codes.ResourceExhausted || attempt == 5 || ctx.Err() != nil {
			return tp, err
		}
		sleep(ctx, retryDelay(err, l.cfg.busyBackoff))
	}
}

// loginMany logs in n times, a few at a time (the server hashes on a few
// workers anyway).
func (l *loader) loginMany(ctx context.Context, n int) ([]*identityv1.TokenPair, error) {
	out := make([]*identityv1.TokenPair, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range n {
		g.Go(func() error {
			tp, err := l.login(gctx, i)
			if err != nil {
				return fmt.Errorf("login as %q: %w", l.cfg.user, err)
			}
			out[i] = tp
			return nil
		})
	}
	return out, g.Wait()
}

func (l *loader) noopOps() []op {
	ops := make([]op, l.cfg.clients)
	req := &healthpb.HealthCheckRequest{}
	for i := range ops {
		h := healthpb.NewHealthClient(l.conns[i%len(l.conns)])
		ops[i] = func(ctx context.Context) error {
			_, err := h.Check(ctx, req)
			return err
		}
	}
	return ops
}

func (l *loader) verifyPool(ctx context.Context) ([]string, error) {
	if l.tokens != nil {
		return l.tokens, nil
	}
	pairs, err := l.loginMany(ctx, l.cfg.tokens)
	if err != nil {
		return nil, err
	}
	for _, p := range pairs {
		l.tokens = append(l.tokens, p.GetAccessToken())
	}
	return l.tokens, nil
}

func (l *loader) verifyOps(tokens []string) []op {
	reqs := make([]*identityv1.VerifyRequest, len(tokens))
	for i, t := range tokens {
		reqs[i] = &identityv1.VerifyRequest{Token: t}
	}
	ops := make([]op, l.cfg.clients)
	for i := range ops {
		api := l.api(i)
		next := i
		ops[i] = func(ctx context.Context) error {
			next = (next + 1) % len(reqs)
			_, err := api.Verify(ctx, reqs[next])
			return err
		}
	}
	return ops
}

// refreshSessions logs each refresh client in once, for a session of its own.
func (l *loader) refreshSessions(ctx context.Context) ([]*identityv1.TokenPair, error) {
	if l.sessions != nil {
		return l.sessions, nil
	}
	var err error
	l.sessions, err = l.loginMany(ctx, l.cfg.clients)
	return l.sessions, err
}

func (l *loader) restRefreshSessions(ctx context.Context) ([]*identityv1.TokenPair, error) {
	if l.restSessions != nil {
		return l.restSessions, nil
	}
	var err error
	l.restSessions, err = l.loginMany(ctx, l.cfg.clients)
	return l.restSessions, err
}

func (l *loader) refreshOps(ctx context.Context) ([]op, error) {
	pairs, err := l.refreshSessions(ctx)
	if err != nil {
		return nil, err
	}
	return l.refreshOpsFor(pairs), nil
}

// refreshOpsFor are one client per session of pairs, each rotating its own.
func (l *loader) refreshOpsFor(pairs []*identityv1.TokenPair) []op {
	ops := make([]op, len(pairs))
	for i := range ops {
		api := l.api(i)
		rt := pairs[i].GetRefreshToken()
		ops[i] = func(ctx context.Context) error {
			if rt == "" { // the session died on an error: start another
				tp, err := l.login(ctx, i)
				if err == nil {
					rt = tp.GetRefreshToken()
				}
				return errSkip
			}
			tp, err := api.Refresh(ctx, &identityv1.RefreshRequest{RefreshToken: rt})
			if err != nil {
				rt = ""
				return err
			}
			rt = tp.GetRefreshToken()
			return nil
		}
	}
	return ops
}

// loginOps are clients logging in. A polite client told that the hasher is
// busy (RESOURCE_EXHAUSTED) waits as the answer's RetryInfo asks (or
// backoff without one) before it tries again, as a browser honouring
// Retry-After would: the login scenario then measures the server's hashing
// rate, not how fast it turns callers away. The flood's clients are not
// polite: they try again at once.
func (l *loader) loginOps(clients int, polite bool) []op {
	ops := make([]op, clients)
	for i := range ops {
		api := l.api(i)
		req := &identityv1.LoginRequest{Username: l.cfg.user, Password: l.password}
		ops[i] = func(ctx context.Context) error {
			_, err := api.Login(ctx, req)
			if polite && status.Code(err) == codes.ResourceExhausted {
				return &pauseAfter{err, retryDelay(err, l.cfg.busyBackoff)}
			}
			return err
		}
	}
	return ops
}

// retryDelay is the RetryInfo delay of err's status, or def.
func retryDelay(err error, def time.Duration) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return def
}

// flood runs logins in the background until stop is called, and returns
// what they achieved over that time.
func (l *loader) flood(ctx context.Context) (stop func() result) {
	ops := l.loginOps(l.cfg.floodClients, false)
	var stopped atomic.Bool
	recs := make([]*recorder, len(ops))
	var wg sync.WaitGroup
	start := time.Now()
	for i, o := range ops {
		rec := newRecorder()
		recs[i] = rec
		wg.Go(func() {
			for !stopped.Load() && ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(ctx, l.cfg.timeout)
				t0 := time.Now()
				err := o(cctx)
				cancel()
				rec.record(time.Since(t0), err)
				pause(ctx, err)
			}
		})
	}
	return func() result {
		elapsed := time.Since(start)
		stopped.Store(true)
		wg.Wait()
		return merge("  login during flood", elapsed, recs)
	}
}

func (l *loader) rawDuration() time.Duration {
	if l.cfg.duration > 0 {
		return l.cfg.duration
	}
	return 4 * time.Second
}

// rawArgon2 is argon2id's rate in this process with the default
// parameters on workers goroutines: what Login is compared against.
func rawArgon2(ctx context.Context, workers int, d time.Duration) result {
	p := password.DefaultParams
	salt := make([]byte, p.SaltLen)
	argon2.IDKey([]byte("warm"), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return parallelRaw(ctx, fmt.Sprintf("raw argon2id x%d", workers), workers, d, func() error {
		argon2.IDKey([]byte("correct horse battery staple"), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
		return nil
	})
}

func (l *loader) runAll(ctx context.Context, names []string) error {
	if len(l.conns) > 0 {
		// Fail at once, not with a run of errors, when nothing answers.
		hctx, cancel := context.WithTimeout(ctx, l.cfg.timeout)
		_, err := healthpb.NewHealthClient(l.conns[0]).Check(hctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err != nil {
			return fmt.Errorf("%s: health check: %w", l.cfg.addr, err)
		}
	}
	// Every login the scenarios need is made first: a login allocates
	// argon2id's memory (19 MiB), and the server process spends CPU for a
	// few seconds after a batch of them (the Go heap grows, then is
	// returned to the OS). Scenarios measured side by side must all find
	// the server in that same state, not noop before and verify after.
	if slices.ContainsFunc(names, func(n string) bool { return n == "verify" || n == "login-flood+verify" }) {
		if _, err := l.verifyPool(ctx); err != nil {
			return err
		}
	}
	if slices.Contains(names, "refresh") {
		if l.on("grpc") {
			if _, err := l.refreshSessions(ctx); err != nil {
				return err
			}
		}
		if l.on("rest") {
			if _, err := l.restRefreshSessions(ctx); err != nil {
				return err
			}
		}
	}
	if slices.Contains(names, "verify-miss") {
		if _, err := l.missTokens(ctx, l.cfg.missTokens); err != nil {
			return err
		}
	}
	if slices.Contains(names, "ed25519") {
		if _, err := l.verifyPool(ctx); err != nil {
			return err
		}
	}
	if l.cfg.watchers > 0 {
		stop, err := l.openWatchers(ctx, l.cfg.watchers)
		if err != nil {
			return err
		}
		defer stop()
	}
	l.results = map[string]result{}
	l.cpu = newCPUMeter(l.cfg.serverPID, l.cfg.redisPID)
	show := func(r result) {
		l.results[r.name] = r
		fmt.Fprintln(l.out, r)
	}
	for _, name := range names {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		switch name {
		case "noop":
			if l.on("grpc") {
				show(l.measure(ctx, name, l.noopOps()))
			}
			if l.on("rest") {
				show(l.measure(ctx, "rest "+name, l.restNoopOps()))
			}
		case "verify":
			tokens, err := l.verifyPool(ctx)
			if err != nil {
				return err
			}
			if l.on("grpc") {
				show(l.measure(ctx, name, l.verifyOps(tokens)))
			}
			if l.on("rest") {
				show(l.measure(ctx, "rest "+name, l.restVerifyOps(tokens)))
			}
		case "refresh":
			if l.on("grpc") {
				l.noopBeside(ctx, names, name, show)
				ops, err := l.refreshOps(ctx)
				if err != nil {
					return err
				}
				show(l.measure(ctx, name, ops))
			}
			if l.on("rest") {
				ops, err := l.restRefreshOps(ctx)
				if err != nil {
					return err
				}
				show(l.measure(ctx, "rest "+name, ops))
			}
		case "login":
			// The raw rate is measured half just before and half just after
			// the logins, so a machine whose speed drifts (shared CPUs)
			// moves both sides of the ratio alike.
			before := rawArgon2(ctx, l.cfg.hashWorkers, l.rawDuration()/2)
			var logins []result
			if l.on("grpc") {
				logins = append(logins, l.measure(ctx, name, l.loginOps(l.cfg.clients, true)))
			}
			if l.on("rest") {
				logins = append(logins, l.measure(ctx, "rest "+name, l.restLoginOps(l.cfg.clients, true)))
			}
			after := rawArgon2(ctx, l.cfg.hashWorkers, l.rawDuration()/2)
			for _, r := range logins {
				show(r)
			}
			show(combine(before, after))
		case "argon2":
			show(rawArgon2(ctx, l.cfg.hashWorkers, l.rawDuration()))
		case "idle":
			if err := l.idle(ctx); err != nil {
				return err
			}
		case "revocation":
			if err := l.revocation(ctx); err != nil {
				return err
			}
		case "verify-miss":
			tokens, err := l.missTokens(ctx, l.cfg.missTokens)
			if err != nil {
				return err
			}
			l.noopBeside(ctx, names, name, show)
			h0, m0, statsErr := l.cacheStats(ctx)
			// Every token is verified once: the run lasts until they are
			// used up, whatever -d and -n say, within a bound.
			cfg := l.cfg
			l.cfg.duration, l.cfg.requests = max(l.cfg.duration, 10*time.Minute), 0
			r := l.measure(ctx, name, l.verifyMissOps(tokens))
			l.cfg = cfg
			show(r)
			if statsErr == nil {
				if h1, m1, err := l.cacheStats(ctx); err == nil {
					l.missCheck = fmt.Sprintf("cache misses %.0f, hits %.0f over %d distinct tokens (warm-up included)", m1-m0, h1-h0, len(tokens))
					fmt.Fprintf(l.out, "# verify-miss: identityd counted %s\n", l.missCheck)
				}
			}
		case "ed25519":
			sign, verify, err := rawEd25519(ctx, l.tokens[0], l.rawDuration()/2)
			if err != nil {
				return err
			}
			show(sign)
			show(verify)
		case "evalsha":
			ops, closeRedis, err := l.evalshaOps(ctx)
			if err != nil {
				return err
			}
			show(l.measure(ctx, name, ops))
			closeRedis()
		case "rss":
			run, err := l.rss(ctx, l.cfg.rssRequests)
			if err != nil {
				return err
			}
			l.rssRun = &run
			show(run.res)
			fmt.Fprintln(l.out, "#", run)
		case "login-flood+verify":
			tokens, err := l.verifyPool(ctx)
			if err != nil {
				return err
			}
			if _, ok := l.results["verify"]; !ok {
				show(l.measure(ctx, "verify", l.verifyOps(tokens)))
			}
			stop := l.flood(ctx)
			r := l.measure(ctx, "verify under flood", l.verifyOps(tokens))
			f := stop()
			show(r)
			show(f)
		}
	}
	l.ratios()
	if cpu, ok := cpuUsed(); ok {
		// The tool shares the machine's CPUs with the server: say how much
		// it took, so a reader can tell client cost from server cost.
		fmt.Fprintf(l.out, "# identityload used %.1f s of CPU (user+sys)\n", cpu.Seconds())
	}
	return nil
}

// on reports whether -proto includes p.
func (l *loader) on(p string) bool { return slices.Contains(l.cfg.protos, p) }

// noopBeside measures the gRPC no-op again just before scenario name, when
// the run measures the no-op at all: a ratio is then taken between two
// adjacent windows (besideNoop), not between the first scenario of a run
// and one minutes later, on a machine whose speed drifts (shared CPUs).
func (l *loader) noopBeside(ctx context.Context, names []string, name string, show func(result)) {
	if slices.Contains(names, "noop") && l.on("grpc") {
		show(l.measure(ctx, "noop beside "+name, l.noopOps()))
	}
}

// besideNoop is the no-op measured just before scenario name, or the run's
// first one.
func besideNoop(r map[string]result, name string) (result, bool) {
	if n, ok := r["noop beside "+name]; ok {
		return n, true
	}
	n, ok := r["noop"]
	return n, ok
}

func (l *loader) ratios() {
	r := l.results
	line := func(name string, v float64, ok bool, target string) {
		verdict := "met"
		if !ok {
			verdict = "MISSED"
		}
		fmt.Fprintf(l.out, "%-38s %6.2f   target %s: %s\n", name, v, target, verdict)
	}
	noop, hasNoop := r["noop"]
	if v, ok := r["verify"]; ok && hasNoop && noop.rate() > 0 {
		x := v.rate() / noop.rate()
		line("verify/noop req/s", x, x >= 0.8, ">= 0.80")
	}
	if v, ok := r["refresh"]; ok {
		if noop, ok := besideNoop(r, "refresh"); ok && noop.rate() > 0 {
			x := v.rate() / noop.rate()
			line("refresh/noop req/s", x, x >= 0.5, ">= 0.50")
		}
		p99 := float64(v.quantile(.99)) / float64(time.Millisecond)
		line("refresh p99 (ms)", p99, p99 <= 5, "<= 5")
	}
	if v, ok := r["login"]; ok {
		if a, ok := r[fmt.Sprintf("raw argon2id x%d", l.cfg.hashWorkers)]; ok && a.rate() > 0 {
			x := v.rate() / a.rate()
			line("login/raw argon2id", x, x >= 0.9, ">= 0.90")
		}
	}
	// REST beside gRPC, same clients, same run.
	for _, name := range []string{"noop", "verify", "refresh", "login"} {
		g, okG := r[name]
		rr, okR := r["rest "+name]
		if !okG || !okR || g.rate() <= 0 {
			continue
		}
		x := rr.rate() / g.rate()
		if name == "verify" {
			line("rest verify/grpc verify req/s", x, x >= 0.8, ">= 0.80")
		} else {
			fmt.Fprintf(l.out, "%-38s %6.2f\n", "rest "+name+"/grpc "+name+" req/s", x)
		}
	}
	if rn, ok := r["rest noop"]; ok && rn.rate() > 0 {
		for _, name := range []string{"verify", "refresh"} {
			if v, ok := r["rest "+name]; ok {
				fmt.Fprintf(l.out, "%-38s %6.2f\n", "rest "+name+"/rest noop req/s", v.rate()/rn.rate())
			}
		}
	}
	if f, ok := r["verify under flood"]; ok {
		if v, ok := r["verify"]; ok && v.quantile(.99) > 0 {
			x := float64(f.quantile(.99)) / float64(v.quantile(.99))
			line("verify p99 under flood / alone", x, x <= 3, "<= 3.00")
		}
	}
}
