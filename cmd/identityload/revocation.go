package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// openWatchers opens n WatchRevocations streams on their own connections
// (a few streams per connection, as many verifiers would) and drains them
// until ctx ends. It returns once every stream has had its first heartbeat
// (caught up), so the scenarios after it run with all of them open.
func (l *loader) openWatchers(ctx context.Context, n int) (stop func(), err error) {
	const perConn = 100
	creds, err := l.serviceCreds()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var conns []*grpc.ClientConn
	stop = func() {
		cancel()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	}
	var ready, failed atomic.Int64
	var msgs atomic.Int64
	for i := range n {
		if i%perConn == 0 {
			conn, err := grpc.NewClient("passthrough:///"+l.cfg.addr,
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithContextDialer(loopbackDialer))
			if err != nil {
				stop()
				return nil, err
			}
			conns = append(conns, conn)
		}
		api := identityv1.NewIdentityServiceClient(conns[len(conns)-1])
		wg.Go(func() {
			stream, err := api.WatchRevocations(ctx, &identityv1.WatchRevocationsRequest{}, grpc.PerRPCCredentials(creds))
			if err != nil {
				failed.Add(1)
				return
			}
			first := true
			for {
				m, err := stream.Recv()
				if err != nil {
					if first {
						failed.Add(1)
					}
					return
				}
				msgs.Add(1)
				if first && m.GetSessionId() == "" && !m.GetReset_() {
					first = false
					ready.Add(1)
				}
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for ready.Load()+failed.Load() < int64(n) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Fprintf(l.out, "# %d WatchRevocations streams open and caught up (%d failed)\n", ready.Load(), failed.Load())
	if failed.Load() > 0 || ready.Load() < int64(n) {
		stop()
		return nil, fmt.Errorf("opened %d of %d WatchRevocations streams", ready.Load(), n)
	}
	return stop, nil
}

// serviceAccount is the -service-user account, as per-RPC credentials.
type serviceAccount struct {
	*authn.ServiceAccount
	password string
}

func (l *loader) serviceCreds() (serviceAccount, error) {
	if l.cfg.serviceUser == "" || l.cfg.servicePWF == "" {
		return serviceAccount{}, errors.New("WatchRevocations is for services: give -service-user and -service-password-file (an account with the service role)")
	}
	b, err := os.ReadFile(l.cfg.servicePWF)
	if err != nil {
		return serviceAccount{}, err
	}
	pw := strings.TrimRight(string(b), "\r\n")
	return serviceAccount{authn.NewServiceAccount(l.conns[0], l.cfg.serviceUser, pw), pw}, nil
}

// redisCommands reads total_commands_processed from a loopback Redis with
// INFO stats, over a raw RESP connection (the tool needs nothing else of
// Redis).
func redisCommands(ctx context.Context, addr string) (int64, error) {
	var d net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte("*2\r\n$4\r\nINFO\r\n$5\r\nstats\r\n")); err != nil {
		return 0, err
	}
	r := bufio.NewReader(conn)
	head, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		return 0, fmt.Errorf("INFO stats: unexpected reply %q", head)
	}
	size, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil {
		return 0, err
	}
	body := make([]byte, size)
	if _, err := ioReadFull(r, body); err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(body), "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_commands_processed:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO stats: no total_commands_processed")
}

func ioReadFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// idle measures the store's idle load: Redis commands per second while the
// tool sends nothing (the open watchers included).
func (l *loader) idle(ctx context.Context) error {
	if l.cfg.redisAddr == "" {
		return errors.New("the idle scenario needs -redis (the store's loopback address)")
	}
	d := l.cfg.duration
	if d <= 0 {
		d = 5 * time.Second
	}
	sleep(ctx, l.cfg.warmup)
	before, err := redisCommands(ctx, l.cfg.redisAddr)
	if err != nil {
		return err
	}
	start := time.Now()
	sleep(ctx, d)
	after, err := redisCommands(ctx, l.cfg.redisAddr)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	// Each INFO read is a command too: the second read counts the first.
	perSec := float64(after-before-1) / elapsed.Seconds()
	fmt.Fprintf(l.out, "%-22s %9.1f redis commands/s with %d WatchRevocations streams open, nothing sent (%s)\n",
		"idle", perSec, l.cfg.watchers, elapsed.Round(time.Millisecond))
	return nil
}

// revocation measures how long a logout takes to reach a local verifier
// fed by another identityd instance on the same store: for each session,
// Logout on -grpc returns, then the clock runs until an authn.NewLocal
// verifier following -peer refuses the session's access token. It also
// checks that -grpc's own Verify refuses the token on the first call after
// Logout returns (the session service updated its set).
func (l *loader) revocation(ctx context.Context) error {
	if l.cfg.peer == "" {
		return errors.New("the revocation scenario needs -peer (a second identityd on the same store)")
	}
	peer, err := grpc.NewClient("passthrough:///"+l.cfg.peer,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(loopbackDialer))
	if err != nil {
		return err
	}
	defer peer.Close()
	creds, err := l.serviceCreds()
	if err != nil {
		return err
	}
	local, err := authn.NewLocal(authn.WithKeysFromConn(peer), authn.WithCallTimeout(l.cfg.timeout),
		authn.WithWatchCredentials(authn.NewServiceAccount(peer, l.cfg.serviceUser, creds.password)))
	if err != nil {
		return err
	}
	defer local.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = local.WaitReady(rctx)
	cancel()
	if err != nil {
		return fmt.Errorf("local verifier on %s: %w", l.cfg.peer, err)
	}
	n := l.cfg.sessions
	pairs, err := l.loginMany(ctx, n)
	if err != nil {
		return err
	}
	api := l.api(0)
	lat := make([]time.Duration, 0, n)
	sameInstance := 0
	for i, p := range pairs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if _, err := local.Verify(ctx, p.GetAccessToken()); err != nil {
			return fmt.Errorf("session %d: the peer's local verifier refused a live token: %w", i, err)
		}
		cctx, cancel := context.WithTimeout(ctx, l.cfg.timeout)
		_, err := api.Logout(cctx, &identityv1.LogoutRequest{RefreshToken: p.GetRefreshToken()})
		cancel()
		if err != nil {
			return fmt.Errorf("session %d: logout: %w", i, err)
		}
		done := time.Now()
		vctx, cancel := context.WithTimeout(ctx, l.cfg.timeout)
		_, verr := api.Verify(vctx, &identityv1.VerifyRequest{Token: p.GetAccessToken()})
		cancel()
		if authn.Reason(verr) == identityv1.ErrorReason_TOKEN_REVOKED {
			sameInstance++
		}
		deadline := done.Add(10 * time.Second)
		for {
			_, err := local.Verify(ctx, p.GetAccessToken())
			if authn.Reason(err) == identityv1.ErrorReason_TOKEN_REVOKED {
				lat = append(lat, time.Since(done))
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("session %d: the peer's local verifier still accepts the token 10 s after logout (%v)", i, err)
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	slices.Sort(lat)
	q := func(f float64) time.Duration { return lat[min(len(lat)-1, int(f*float64(len(lat))))] }
	fmt.Fprintf(l.out, "%-22s %d sessions: logout on %s -> local verifier fed by %s refuses: min %s p50 %s p99 %s max %s\n",
		"revocation", len(lat), l.cfg.addr, l.cfg.peer, ms(lat[0]), ms(q(.5)), ms(q(.99)), ms(lat[len(lat)-1]))
	fmt.Fprintf(l.out, "%-22s %d/%d refused by %s's own Verify on the first call after Logout returned\n",
		"revocation same-inst", sameInstance, len(pairs), l.cfg.addr)
	p99 := float64(q(.99)) / float64(time.Millisecond)
	verdict := "met"
	if p99 > 5 {
		verdict = "MISSED"
	}
	fmt.Fprintf(l.out, "%-38s %6.2f   target <= 5: %s\n", "revocation p99 across instances (ms)", p99, verdict)
	return nil
}
