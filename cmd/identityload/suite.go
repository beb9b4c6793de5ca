package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// -suite: the whole benchmark in one command. It starts its own identityd
// on the embedded store, runs every scenario against it, stops it, then
// does the same on a private redis-server with AOF (appendfsync everysec),
// and prints one table in which each figure stands beside its in-run
// ceiling and the target's verdict. Nothing outside its temporary
// directory and the loopback ports it picked is touched; every process it
// started is stopped before it returns.

// suiteStore is one half of the suite: which store, which scenarios.
type suiteStore struct {
	name  string // "embedded", "redis"
	redis bool
	names []string
}

// suiteRun is what one half measured.
type suiteRun struct {
	store   suiteStore
	results map[string]result
	miss    string
	rss     *rssRun
}

func runSuite(ctx context.Context, c config, stdout, stderr io.Writer) error {
	if !c.set["d"] {
		c.duration = 4 * time.Second
	}
	if !c.set["proto"] {
		c.protos = []string{"grpc", "rest"}
	}
	dir, err := os.MkdirTemp("", "identityload-suite-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pw := make([]byte, 18)
	rand.Read(pw)
	c.user, c.passwordFile = "bench", filepath.Join(dir, "pw")
	if err := os.WriteFile(c.passwordFile, []byte(base64.RawURLEncoding.EncodeToString(pw)), 0o600); err != nil {
		return err
	}
	common := []string{"noop", "verify", "verify-miss", "ed25519", "refresh", "login", "login-flood+verify"}
	stores := []suiteStore{{name: "embedded", names: append(slices.Clone(common), "rss")}}
	if c.redisServer != "" {
		stores = append(stores, suiteStore{name: "redis", redis: true,
			names: append([]string{"noop", "evalsha"}, common[1:]...)})
	}
	var runs []suiteRun
	for _, st := range stores {
		fmt.Fprintf(stdout, "\n# --- suite: identityd on the %s store ---\n", st.name)
		r, err := suiteHalf(ctx, c, st, filepath.Join(dir, st.name), stdout, stderr)
		if err != nil {
			// What was measured is still worth its table; the error says
			// which half is missing.
			printSuiteTable(stdout, c, runs)
			return fmt.Errorf("%s store: %w", st.name, err)
		}
		runs = append(runs, r)
	}
	printSuiteTable(stdout, c, runs)
	return nil
}

func suiteHalf(ctx context.Context, c config, st suiteStore, dir string, stdout, stderr io.Writer) (suiteRun, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return suiteRun{}, err
	}
	env := []string{"IDENTITY_BOOTSTRAP_USER=" + c.user, "IDENTITY_BOOTSTRAP_PASSWORD_FILE=" + c.passwordFile}
	grpcAddr, httpAddr := freeAddr(), freeAddr()
	args := []string{"--grpc-addr", grpcAddr, "--http-addr", httpAddr, "--log-level", "warn",
		"--login-rate-per-ip", "0", "--refresh-rate-per-session", "0", "--refresh-rate-per-ip", "0"}
	c.redisAddr, c.redisPID = "", 0
	if st.redis {
		addr := freeAddr()
		_, port, _ := net.SplitHostPort(addr)
		rdir := filepath.Join(dir, "redis")
		if err := os.MkdirAll(rdir, 0o700); err != nil {
			return suiteRun{}, err
		}
		rs, err := startProcess(c.redisServer, []string{"--port", port, "--bind", "127.0.0.1", "--dir", rdir,
			"--save", "", "--appendonly", "yes", "--appendfsync", "everysec"}, nil, filepath.Join(dir, "redis.log"))
		if err != nil {
			return suiteRun{}, err
		}
		defer rs.stop()
		if err := waitRedis(ctx, addr, rs); err != nil {
			return suiteRun{}, err
		}
		key := make([]byte, 32)
		rand.Read(key)
		keyFile := filepath.Join(dir, "master.key")
		if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)), 0o600); err != nil {
			return suiteRun{}, err
		}
		env = append(env, "IDENTITY_MASTER_KEY_FILE="+keyFile)
		args = append(args, "--redis-url", "redis://"+addr+"/0")
		c.redisAddr, c.redisPID = addr, rs.cmd.Process.Pid
		fmt.Fprintf(stdout, "# redis-server pid %d on %s (appendonly yes, appendfsync everysec)\n", c.redisPID, addr)
	}
	id, err := startProcess(c.identityd, args, env, filepath.Join(dir, "identityd.log"))
	if err != nil {
		return suiteRun{}, err
	}
	defer id.stop()
	if err := waitHealthy(ctx, grpcAddr, id); err != nil {
		return suiteRun{}, err
	}
	fmt.Fprintf(stdout, "# identityd pid %d: %s %s\n", id.cmd.Process.Pid, c.identityd, strings.Join(args, " "))
	c.addr, c.httpAddr, c.serverPID = grpcAddr, httpAddr, id.cmd.Process.Pid
	l, err := runScenarios(ctx, c, st.names, stdout)
	if err != nil {
		return suiteRun{}, fmt.Errorf("%w\n%s", err, id.tail())
	}
	if err := id.stop(); err != nil {
		fmt.Fprintf(stderr, "identityload: identityd (%s store) stopped with %v\n%s", st.name, err, id.tail())
	}
	return suiteRun{store: st, results: l.results, miss: l.missCheck, rss: l.rssRun}, nil
}

// freeAddr is a loopback address with a port nothing listened on a moment
// ago (the process started on it may still lose a race for it: it then
// fails to start, and the suite says so).
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer ln.Close()
	return ln.Addr().String()
}

// process is a server the suite started, with its output in a log file.
type process struct {
	cmd    *exec.Cmd
	log    string
	done   chan struct{}
	err    error
	closed bool
}

func startProcess(bin string, args, env []string, logPath string) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	// The servers get this process's environment without any IDENTITY_*
	// setting (a developer's shell must not change what is measured), plus
	// the suite's own.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IDENTITY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop ends the process with SIGTERM, then SIGKILL after 15 s; it returns
// the process's exit error (nil for a clean exit on SIGTERM).
func (p *process) stop() error {
	if p.closed {
		return nil
	}
	p.closed = true
	if !p.exited() {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return errors.New("did not stop within 15 s of SIGTERM: killed")
	}
	return p.err
}

// tail is the end of the process's log, for an error message.
func (p *process) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return fmt.Sprintf("--- %s (%s) log tail ---\n%s", filepath.Base(p.cmd.Path), p.log, b)
}

func waitHealthy(ctx context.Context, addr string, p *process) error {
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(loopbackDialer))
	if err != nil {
		return err
	}
	defer conn.Close()
	h := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(60 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := h.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if p.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("identityd on %s did not become healthy (last: %v)\n%s", addr, err, p.tail())
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

func waitRedis(ctx context.Context, addr string, p *process) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.Ping(cctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if p.exited() || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("redis-server on %s did not answer (last: %v)\n%s", addr, err, p.tail())
		}
		sleep(ctx, 50*time.Millisecond)
	}
}

// suiteRow is one line of the table: a figure, its ceiling, their ratio
// and the target's verdict.
type suiteRow struct {
	target, store, figure, ceiling, ratio, verdict string
}

func printSuiteTable(w io.Writer, c config, runs []suiteRun) {
	var rows []suiteRow
	add := func(r suiteRow) { rows = append(rows, r) }
	rate := func(r result) string { return fmt.Sprintf("%.0f/s", r.rate()) }
	verdict := func(ok bool) string {
		if ok {
			return "PASS"
		}
		return "MISS"
	}
	for _, run := range runs {
		res, st := run.results, run.store.name
		// A scenario that ran gets its row even with no success (a Login
		// run in which no login finished is a MISS, not a blank).
		get := func(name string) (result, bool) {
			r, ok := res[name]
			return r, ok
		}
		noop, okNoop := get("noop")
		if okNoop {
			add(suiteRow{"ceiling: gRPC no-op (Health/Check, same interceptors)", st, rate(noop), "", "", ""})
		}
		for _, name := range []string{"verify-miss", "refresh"} {
			if n, ok := get("noop beside " + name); ok {
				add(suiteRow{"ceiling: gRPC no-op again, just before " + name, st, rate(n), "", "", ""})
			}
		}
		if rn, ok := get("rest noop"); ok {
			add(suiteRow{"ceiling: REST no-op (POST /v1/verify {} -> 400, same gateway)", st, rate(rn), "", "", ""})
		}
		sign, okSign := get("raw ed25519 sign")
		rv, okRV := get("raw ed25519 verify")
		if okSign && okRV {
			add(suiteRow{"ceiling: raw Ed25519 sign / verify of the token, in-process", st,
				fmt.Sprintf("%.0f/s / %.0f/s", sign.rate(), rv.rate()),
				fmt.Sprintf("%.1f / %.1f µs each", float64(sign.quantile(.5))/1e3, float64(rv.quantile(.5))/1e3), "", ""})
		}
		if e, ok := get("evalsha"); ok {
			add(suiteRow{"ceiling: raw EVALSHA round trip (return 1), same Redis", st, rate(e),
				fmt.Sprintf("p99 %s", ms(e.quantile(.99))), "", ""})
		}
		if a, ok := get(fmt.Sprintf("raw argon2id x%d", c.hashWorkers)); ok {
			add(suiteRow{fmt.Sprintf("ceiling: raw argon2id, %d worker(s), in-process", c.hashWorkers), st, rate(a), "", "", ""})
		}
		g, okG := get("verify")
		if okG && okNoop && noop.rate() > 0 {
			x := g.rate() / noop.rate()
			add(suiteRow{"gRPC Verify / gRPC no-op >= 0.80", st, rate(g), rate(noop), fmt.Sprintf("%.2f", x), verdict(x >= 0.8)})
		}
		if rr, ok := get("rest verify"); ok && okG && g.rate() > 0 {
			x := rr.rate() / g.rate()
			add(suiteRow{"REST Verify / gRPC Verify >= 0.80", st, rate(rr), rate(g), fmt.Sprintf("%.2f", x), verdict(x >= 0.8)})
		}
		if m, ok := get("verify-miss"); ok && okRV && rv.rate() > 0 {
			noop, okNoop := besideNoop(res, "verify-miss")
			ceil := 0.0
			if okNoop && noop.rate() > 0 {
				ceil = 1 / (1/noop.rate() + 1/rv.rate())
			}
			x := 0.0
			if ceil > 0 {
				x = m.rate() / ceil
			}
			add(suiteRow{"cache-miss Verify / 1/(no-op cost + raw Ed25519 verify cost) >= 0.80", st, rate(m),
				fmt.Sprintf("%.0f/s", ceil), fmt.Sprintf("%.2f", x), verdict(ceil > 0 && x >= 0.8 && m.errs == 0)})
			if run.miss != "" {
				add(suiteRow{"  cache-miss check (identityd's own counters)", st, run.miss, "", "", ""})
			}
		}
		if rf, ok := get("refresh"); ok {
			want := 0.55
			if run.store.redis {
				want = 0.45
			}
			if noop, ok := besideNoop(res, "refresh"); ok && noop.rate() > 0 {
				x := rf.rate() / noop.rate()
				add(suiteRow{fmt.Sprintf("Refresh / gRPC no-op >= %.2f", want), st, rate(rf), rate(noop), fmt.Sprintf("%.2f", x), verdict(x >= want)})
			}
			p99 := rf.quantile(.99)
			add(suiteRow{fmt.Sprintf("Refresh p99 <= 5 ms at %d clients", c.clients), st, ms(p99), "5 ms", "", verdict(rf.ok > 0 && p99 <= 5*time.Millisecond)})
		}
		if rr, ok := get("rest refresh"); ok && okNoop && noop.rate() > 0 {
			add(suiteRow{"REST Refresh / gRPC no-op (no target)", st, rate(rr), rate(noop), fmt.Sprintf("%.2f", rr.rate()/noop.rate()), ""})
		}
		if lg, ok := get("login"); ok {
			if a, ok := get(fmt.Sprintf("raw argon2id x%d", c.hashWorkers)); ok && a.rate() > 0 {
				x := lg.rate() / a.rate()
				add(suiteRow{"Login / raw argon2id >= 0.90", st, rate(lg), rate(a), fmt.Sprintf("%.2f", x), verdict(x >= 0.9)})
			}
		}
		if f, ok := get("verify under flood"); ok && okG && g.quantile(.99) > 0 {
			x := float64(f.quantile(.99)) / float64(g.quantile(.99))
			add(suiteRow{"Verify p99 under a login flood / alone <= 3.00", st, ms(f.quantile(.99)), ms(g.quantile(.99)), fmt.Sprintf("%.2f", x), verdict(f.ok > 0 && x <= 3)})
		}
		if r := run.rss; r != nil && len(r.samples) > 1 {
			x := float64(r.late()) / float64(r.early())
			add(suiteRow{fmt.Sprintf("identityd VmRSS flat over %d Verify+Refresh: last tenth / first tenth after warm-up <= 1.10", r.res.ok+r.res.errs), st,
				fmt.Sprintf("%d KiB (last %d, peak %d)", r.late(), r.last(), r.peak()), fmt.Sprintf("%d KiB (first %d)", r.early(), r.first()),
				fmt.Sprintf("%.2f", x), verdict(x <= 1.10 && r.res.errs == 0)})
		}
	}
	fmt.Fprintf(w, "\n# identityload -suite: %s, GOMAXPROCS %d; -c %d -d %s -warmup %s; ratios within one run\n\n",
		time.Now().UTC().Format(time.RFC3339), runtime.GOMAXPROCS(0), c.clients, c.duration, c.warmup)
	fmt.Fprintln(w, "| target / ceiling | store | figure | beside (ceiling) | ratio | verdict |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | --- |")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.target, r.store, r.figure, r.ceiling, r.ratio, r.verdict)
	}
	pass, miss := 0, 0
	for _, r := range rows {
		switch r.verdict {
		case "PASS":
			pass++
		case "MISS":
			miss++
		}
	}
	fmt.Fprintf(w, "\n# %d PASS, %d MISS\n", pass, miss)
}
