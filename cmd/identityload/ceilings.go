package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// The in-run ceilings and the scenarios that need more than one server
// call per figure: raw Ed25519 and a raw EVALSHA (what Verify and Refresh
// cannot beat), Verify of tokens never seen before (each verified once, so
// every call pays the signature), and identityd's RSS over a long run.

// rawEd25519 signs and verifies the signing input of a real access token
// in this process, on GOMAXPROCS goroutines, for d each: the signature the
// server makes on every Refresh and checks on every Verify the cache has
// not seen. The key is this process's own (the server's private key is not
// reachable and need not be: an Ed25519 signature costs the same whatever
// the key); the message is the token's header.claims, byte for byte.
func rawEd25519(ctx context.Context, tok string, d time.Duration) (sign, verify result, err error) {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 || strings.Count(tok, ".") != 2 {
		return sign, verify, errors.New("raw ed25519: the access token is not a JWS")
	}
	msg := []byte(tok[:i])
	if _, err := base64.RawURLEncoding.DecodeString(tok[i+1:]); err != nil {
		return sign, verify, fmt.Errorf("raw ed25519: token signature: %w", err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return sign, verify, err
	}
	sig := ed25519.Sign(priv, msg)
	workers := runtime.GOMAXPROCS(0)
	sign = parallelRaw(ctx, "raw ed25519 sign", workers, d, func() error {
		ed25519.Sign(priv, msg)
		return nil
	})
	verify = parallelRaw(ctx, "raw ed25519 verify", workers, d, func() error {
		if !ed25519.Verify(pub, msg, sig) {
			return errors.New("signature refused")
		}
		return nil
	})
	return sign, verify, nil
}

// parallelRaw runs f on workers goroutines for d and records each call.
func parallelRaw(ctx context.Context, name string, workers int, d time.Duration, f func() error) result {
	var stop atomic.Bool
	recs := make([]*recorder, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range workers {
		rec := newRecorder()
		recs[i] = rec
		wg.Go(func() {
			for !stop.Load() {
				t0 := time.Now()
				err := f()
				rec.record(time.Since(t0), err)
			}
		})
	}
	sleep(ctx, d)
	stop.Store(true)
	wg.Wait()
	return merge(name, time.Since(start), recs)
}

// evalshaOps are clients each sending EVALSHA of a script that does
// nothing (return 1) to the store's Redis: one round trip through the same
// client library, loopback and Redis's scripting engine as a Refresh's
// rotate.lua, without its work.
func (l *loader) evalshaOps(ctx context.Context) ([]op, func(), error) {
	if l.cfg.redisAddr == "" {
		return nil, nil, errors.New("evalsha: -redis is required")
	}
	c := redis.NewClient(&redis.Options{
		Addr: l.cfg.redisAddr, PoolSize: l.cfg.clients, MinIdleConns: l.cfg.clients,
		Dialer: func(ctx context.Context, _, addr string) (net.Conn, error) { return loopbackDialer(ctx, addr) },
	})
	script := redis.NewScript("return 1")
	if err := script.Load(ctx, c).Err(); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("evalsha: script load: %w", err)
	}
	ops := make([]op, l.cfg.clients)
	for i := range ops {
		ops[i] = func(ctx context.Context) error {
			return script.EvalSha(ctx, c, nil).Err()
		}
	}
	return ops, func() { c.Close() }, nil
}

// missTokens are n distinct access tokens for the cache-miss scenario,
// made by refresh chains: each client logs in once and then rotates its
// session, keeping every access token a rotation returns. Tokens of one
// session differ by jti and iat; earlier generations' access tokens stay
// valid until they expire (a rotation revokes no access token). A login
// per token would cost argon2id each (~25 ms); a rotation costs ~0.1 ms, is
// the server's real issuing path, and needs no access to its keys.
func (l *loader) missTokens(ctx context.Context, n int) ([]string, error) {
	if len(l.miss) >= n {
		return l.miss, nil
	}
	pairs, err := l.loginMany(ctx, l.cfg.clients)
	if err != nil {
		return nil, err
	}
	var next atomic.Int64
	out := make([]string, n)
	g, gctx := errgroup.WithContext(ctx)
	for i := range pairs {
		rt := pairs[i].GetRefreshToken()
		api := l.api(i)
		g.Go(func() error {
			for {
				j := next.Add(1) - 1
				if j >= int64(n) {
					return nil
				}
				tp, err := l.seedRefresh(gctx, api, rt)
				if err != nil {
					return fmt.Errorf("seeding the cache-miss tokens: refresh: %w", err)
				}
				rt, out[j] = tp.GetRefreshToken(), tp.GetAccessToken()
			}
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	l.miss = out
	return out, nil
}

// seedRefresh rotates rt, sending it again after an UNAVAILABLE answer (a
// store timeout on a busy machine): a resend within the grace window gets
// the same answer as the rotation it repeats, so the chain is not broken.
func (l *loader) seedRefresh(ctx context.Context, api identityv1.IdentityServiceClient, rt string) (*identityv1.TokenPair, error) {
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, l.cfg.timeout)
		tp, err := api.Refresh(cctx, &identityv1.RefreshRequest{RefreshToken: rt})
		cancel()
		if err == nil || status.Code(err) != codes.Unavailable || attempt == 5 || ctx.Err() != nil {
			return tp, err
		}
		sleep(ctx, 200*time.Millisecond)
	}
}

// errStop: the op has nothing left to do (its tokens are used up); its
// client stops.
var errStop = errors.New("no more work")

// verifyMissOps verify each token once, the clients sharing one cursor.
// The warm-up uses tokens too (each is still verified only once); the run
// ends when they are used up, or after -d.
func (l *loader) verifyMissOps(tokens []string) []op {
	var next atomic.Int64
	ops := make([]op, l.cfg.clients)
	for i := range ops {
		api := l.api(i)
		ops[i] = func(ctx context.Context) error {
			j := next.Add(1) - 1
			if j >= int64(len(tokens)) {
				return errStop
			}
			_, err := api.Verify(ctx, &identityv1.VerifyRequest{Token: tokens[j]})
			return err
		}
	}
	return ops
}

// cacheStats reads identityd's identity_verify_cache_{hits,misses}_total
// from its /metrics: the proof that a cache-miss run missed.
func (l *loader) cacheStats(ctx context.Context) (hits, misses float64, err error) {
	if l.rest == nil {
		return 0, 0, errors.New("no HTTP address")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+l.rest.addr+"/metrics", nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("/metrics: HTTP %d", resp.StatusCode)
	}
	found := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "identity_verify_cache_hits_total":
			hits, err = strconv.ParseFloat(v, 64)
			found++
		case "identity_verify_cache_misses_total":
			misses, err = strconv.ParseFloat(v, 64)
			found++
		}
		if err != nil {
			return 0, 0, err
		}
	}
	if found != 2 {
		return 0, 0, errors.New("/metrics: no verify cache counters")
	}
	return hits, misses, sc.Err()
}

// rssKB is VmRSS of process pid in KiB (Linux /proc).
func rssKB(pid int) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, false
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(v)
			if len(f) >= 1 {
				n, err := strconv.ParseInt(string(f[0]), 10, 64)
				return n, err == nil
			}
		}
	}
	return 0, false
}

// rssRun is the RSS scenario's outcome: identityd's VmRSS sampled every
// second of a long run of Verify and Refresh clients side by side.
type rssRun struct {
	res     result
	samples []int64 // KiB, from the end of the warm-up
}

func (r rssRun) first() int64 { return r.samples[0] }
func (r rssRun) last() int64  { return r.samples[len(r.samples)-1] }
func (r rssRun) peak() int64  { return slices.Max(r.samples) }

// early and late are the medians of the first and the last tenth of the
// samples (at least one each): the figures the flatness verdict compares,
// so one sample taken just before or after a GC returned memory to the OS
// does not decide it.
func (r rssRun) early() int64 { return median(r.samples[:max(1, len(r.samples)/10)]) }
func (r rssRun) late() int64  { return median(r.samples[len(r.samples)-max(1, len(r.samples)/10):]) }

func median(xs []int64) int64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func (r rssRun) String() string {
	if len(r.samples) == 0 {
		return "rss: no samples"
	}
	return fmt.Sprintf("identityd VmRSS over %d requests, %d samples: first %d KiB (after warm-up), last %d KiB, peak %d KiB; median of the first tenth %d KiB, of the last tenth %d KiB (late/early %.3f)",
		r.res.ok+r.res.errs, len(r.samples), r.first(), r.last(), r.peak(), r.early(), r.late(), float64(r.late())/float64(r.early()))
}

// rss runs half the clients verifying the pool and half rotating sessions
// of their own for n measured requests (after the warm-up), sampling
// identityd's RSS every second from the moment measuring starts.
func (l *loader) rss(ctx context.Context, n int64) (rssRun, error) {
	if l.cfg.serverPID <= 0 {
		return rssRun{}, errors.New("rss: -server-pid is required")
	}
	if _, ok := rssKB(l.cfg.serverPID); !ok {
		return rssRun{}, fmt.Errorf("rss: no /proc/%d/status", l.cfg.serverPID)
	}
	tokens, err := l.verifyPool(ctx)
	if err != nil {
		return rssRun{}, err
	}
	half := max(1, l.cfg.clients/2)
	pairs, err := l.loginMany(ctx, half)
	if err != nil {
		return rssRun{}, err
	}
	ops := append(l.verifyOps(tokens)[:l.cfg.clients-half], l.refreshOpsFor(pairs)...)

	var run rssRun
	var mu sync.Mutex
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var started atomic.Bool
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
			if !started.Load() {
				continue
			}
			if kb, ok := rssKB(l.cfg.serverPID); ok {
				mu.Lock()
				run.samples = append(run.samples, kb)
				mu.Unlock()
			}
		}
	})
	cfg := l.cfg
	// A longer warm-up than the other scenarios': the server's heap first
	// settles after the logins of the scenarios before (argon2id's 19 MiB
	// each) and the sessions made here.
	l.cfg.duration, l.cfg.requests, l.cfg.warmup = 0, n, max(l.cfg.warmup, 5*time.Second)
	run.res = l.measureHook(ctx, "rss verify+refresh", ops, func() {
		if kb, ok := rssKB(l.cfg.serverPID); ok {
			mu.Lock()
			run.samples = append(run.samples, kb)
			mu.Unlock()
		}
		started.Store(true)
	})
	l.cfg = cfg
	stop()
	wg.Wait()
	if kb, ok := rssKB(l.cfg.serverPID); ok {
		run.samples = append(run.samples, kb)
	}
	return run, nil
}
