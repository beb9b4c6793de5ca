package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/tokenstore"
)

// The failover tests run a steady, bounded load of logins and refreshes
// through a real identityd on a real topology (a 3+3 Redis Cluster, a
// Sentinel-watched primary), kill -9 the master holding a set of users'
// keys, and check what a client must be able to rely on:
//
//   - no refresh token is ever answered with two different new tokens;
//   - no session is flagged as reused (REFRESH_TOKEN_REUSED): the clients
//     here only ever present their newest token, or again the one whose
//     answer they did not get;
//   - every session acknowledged before the kill still refreshes after the
//     failover, unless its last acknowledged write existed only on the
//     dead master (asynchronous replication): such sessions are counted as
//     lost, and checked to be exactly that by reading the new master.
//
// How long the service took to come back after the promotion is measured
// and logged, never asserted (timing depends on the machine); the
// reliability report records the figures and the command.

const (
	failoverWorkers     = 6
	failoverUsersPer    = 5                       // users per worker
	failoverPause       = 5 * time.Millisecond    // between one worker's requests
	failoverCallTimeout = 2 * time.Second         // a client's deadline per call
	failoverWarmup      = 1 * time.Second         // load before the kill
	failoverMaxWait     = 20 * time.Second        // after the promotion, at most
	failoverSettle      = 1500 * time.Millisecond // load after the victims' recovery
)

// TestClusterFailover kills the master holding some users' keys in a 3+3
// cluster under load.
func TestClusterFailover(t *testing.T) {
	t.Parallel()
	c := testredis.NewCluster(t)
	d := startIdentityd(t, opts{cluster: c, flags: failoverFlags()})
	run := newFailoverRun(t, d)
	// The victim: the master of the first user's slot. Users whose keys
	// live there are the victims; the others are the control group.
	victimMaster := c.MasterOf(t, "{"+run.users[0].id+"}")
	for _, u := range run.users {
		u.victim = c.MasterOf(t, "{"+u.id+"}") == victimMaster
	}
	replica := c.ReplicaOf(t, victimMaster)
	run.note("limiter key on the victim: %t; revocation stream on the victim: %t; keyring on the victim: %t",
		c.MasterOf(t, "rate:login:ip:127.0.0.1") == victimMaster,
		c.MasterOf(t, "identity:{revocations}") == victimMaster,
		c.MasterOf(t, "identity:keyring") == victimMaster)
	run.execute(func() { c.Kill(t, victimMaster) }, func() time.Time { return c.WaitPromotion(t, replica, 60*time.Second) })
}

// TestSentinelFailover kills the primary of a Sentinel setup under load:
// every user is a victim.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	s := testredis.NewSentinel(t)
	d := startIdentityd(t, opts{sentinel: s, flags: failoverFlags()})
	run := newFailoverRun(t, d)
	for _, u := range run.users {
		u.victim = true
	}
	primary, replica := s.Master(t), s.Replica(t)
	run.execute(func() { s.Kill(t, primary) }, func() time.Time { return s.WaitPromotion(t, replica, 60*time.Second) })
}

// failoverFlags: the production grace window (10 s), not e2e's short one,
// and the login and refresh limits out of the way of a load that comes
// from one address and refreshes each session many times a second.
func failoverFlags() map[string]string {
	return map[string]string{
		"refresh-grace":            "10s",
		"login-rate-per-ip":        "1000000",
		"login-failures-per-user":  "1000000",
		"refresh-rate-per-session": "0",
		"refresh-rate-per-ip":      "0",
	}
}

type failoverUser struct {
	id, name, password string
	victim             bool
}

// failoverSession is one login, owned by one worker (so never refreshed
// concurrently with itself).
type failoverSession struct {
	id      string
	user    *failoverUser
	token   string // the newest refresh token this client was given
	gen     int    // refreshes acknowledged (the generation the client holds)
	pending string // a token whose refresh got no answer, presented again until it does
	reused  bool   // answered REFRESH_TOKEN_REUSED (falsely: see above), so revoked
}

type failoverRun struct {
	t     *testing.T
	d     *identityd
	users []*failoverUser
	notes []string

	mu       sync.Mutex
	answers  map[string]string // presented refresh token → the new token answered
	twice    []string          // presented tokens answered with two different tokens
	outcomes map[string]int    // "phase victim|control op outcome" → count
	sent     atomic.Int64

	killed, promoted time.Time
	// firstVictimOK is the first successful refresh of a victim session
	// sent after the promotion; firstVictimAny the first success of any
	// victim request (login or refresh) after it.
	firstVictimOK, firstVictimAny time.Time
	lastVictimError               time.Time
}

func newFailoverRun(t *testing.T, d *identityd) *failoverRun {
	t.Helper()
	r := &failoverRun{t: t, d: d, answers: map[string]string{}, outcomes: map[string]int{}}
	store := d.Store(t)
	for i := range failoverWorkers * failoverUsersPer {
		name := fmt.Sprintf("load-%d-%s", i, randomHex(4))
		pw := testidentityd.AddUser(t, store, name, "", "reader")
		u, err := store.UserByName(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		r.users = append(r.users, &failoverUser{id: u.ID, name: name, password: pw})
	}
	return r
}

func (r *failoverRun) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// phase names the moment of a request: before the kill, between the kill
// and the promotion, after the promotion.
func (r *failoverRun) phase(at time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.killed.IsZero() || at.Before(r.killed):
		return "1-before"
	case r.promoted.IsZero() || at.Before(r.promoted):
		return "2-outage"
	}
	return "3-after"
}

func group(u *failoverUser) string {
	if u.victim {
		return "victim"
	}
	return "control"
}

// outcome is "OK" or the gRPC code and ErrorInfo reason of err.
func outcome(err error) string {
	if err == nil {
		return "OK"
	}
	st, _ := status.FromError(err)
	reason := ""
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			reason = " " + info.GetReason()
		}
	}
	return st.Code().String() + reason
}

func retryable(err error) bool {
	c := status.Code(err)
	return c == codes.Unavailable || c == codes.DeadlineExceeded
}

func (r *failoverRun) count(sent time.Time, u *failoverUser, op, out string) {
	ph := r.phase(sent)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.outcomes[ph+" "+group(u)+" "+op+" "+out]++
	// Recovery is about the store being reachable again: an answer that
	// is a rule's (invalid, reused) is no outage.
	unavailable := strings.HasPrefix(out, codes.Unavailable.String()) || strings.HasPrefix(out, codes.DeadlineExceeded.String())
	if u.victim && unavailable {
		r.lastVictimError = time.Now()
	}
	if u.victim && ph == "3-after" && out == "OK" {
		if r.firstVictimAny.IsZero() {
			r.firstVictimAny = time.Now()
		}
		if op == "refresh" && r.firstVictimOK.IsZero() {
			r.firstVictimOK = time.Now()
		}
	}
}

func (r *failoverRun) login(u *failoverUser) (*failoverSession, error) {
	ctx, cancel := context.WithTimeout(context.Background(), failoverCallTimeout)
	defer cancel()
	sent := time.Now()
	r.sent.Add(1)
	pair, err := r.d.API.Login(ctx, &identityv1.LoginRequest{Username: u.name, Password: u.password})
	r.count(sent, u, "login", outcome(err))
	if err != nil {
		return nil, err
	}
	return &failoverSession{id: pair.GetSessionId(), user: u, token: pair.GetRefreshToken()}, nil
}

// refresh presents the session's pending token if a refresh got no answer,
// its newest token otherwise, and records what came back.
func (r *failoverRun) refresh(s *failoverSession) error {
	presented := s.token
	if s.pending != "" {
		presented = s.pending
	}
	ctx, cancel := context.WithTimeout(context.Background(), failoverCallTimeout)
	defer cancel()
	sent := time.Now()
	r.sent.Add(1)
	pair, err := r.d.API.Refresh(ctx, &identityv1.RefreshRequest{RefreshToken: presented})
	out := outcome(err)
	r.count(sent, s.user, "refresh", out)
	if strings.HasSuffix(out, " REFRESH_TOKEN_REUSED") {
		s.reused = true
	}
	if err != nil {
		// Without an answer the rotation may or may not have happened:
		// the client keeps the token and presents it again (as a browser
		// whose request timed out does). An answer that is an error leaves
		// the token as it was too.
		if retryable(err) {
			s.pending = presented
		}
		return err
	}
	next := pair.GetRefreshToken()
	r.mu.Lock()
	if prev, ok := r.answers[presented]; ok && prev != next {
		r.twice = append(r.twice, s.id)
	}
	r.answers[presented] = next
	r.mu.Unlock()
	if next != s.token {
		s.token = next
		s.gen++
	}
	s.pending = ""
	return nil
}

// execute logs every user in, runs the load, kills the victim and waits
// for its replica's promotion, keeps the load on until the victims refresh
// again (or failoverMaxWait), then checks every session and reports.
func (r *failoverRun) execute(kill func(), waitPromotion func() time.Time) {
	t := r.t
	sessions := make([][]*failoverSession, failoverWorkers)
	for w := range failoverWorkers {
		for _, u := range r.users[w*failoverUsersPer : (w+1)*failoverUsersPer] {
			for range 2 {
				s, err := r.login(u)
				if err != nil {
					t.Fatalf("login before the kill: %v", err)
				}
				sessions[w] = append(sessions[w], s)
			}
		}
	}
	before := len(slices.Concat(sessions...))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range failoverWorkers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			mine := r.users[w*failoverUsersPer : (w+1)*failoverUsersPer]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(failoverPause):
				}
				if i%8 == 7 { // a login now and then: new sessions join the load
					if s, err := r.login(mine[rng.IntN(len(mine))]); err == nil {
						sessions[w] = append(sessions[w], s)
					}
					continue
				}
				r.refresh(sessions[w][i%len(sessions[w])])
			}
		})
	}

	time.Sleep(failoverWarmup)
	killed := time.Now()
	r.mu.Lock()
	r.killed = killed
	r.mu.Unlock()
	kill()
	promoted := waitPromotion()
	r.mu.Lock()
	r.promoted = promoted
	r.mu.Unlock()
	// Keep the load on until the victims have been served for a while
	// after the promotion (or give up after failoverMaxWait).
	deadline := promoted.Add(failoverMaxWait)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		ok := !r.firstVictimOK.IsZero() && time.Since(r.lastVictimError) > failoverSettle
		r.mu.Unlock()
		if ok {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	// Every session, once more, with the token it holds; a failure of a
	// victim is classified against the new master's copy.
	store := r.d.Store(t)
	var lostLogin, lostRotation, falseReuse, broken []string
	all := slices.Concat(sessions...)
	for _, s := range all {
		var err error
		for range 3 { // the service has recovered; a stray timeout gets another go
			if err = r.refresh(s); err == nil || !retryable(err) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		switch out := outcome(err); {
		case err == nil:
		case s.reused:
			// Revoked by a false reuse alarm, counted below.
		case strings.Contains(out, "REFRESH_TOKEN_INVALID") && s.user.victim:
			stored, serr := store.Session(t.Context(), s.id)
			switch {
			case errors.Is(serr, tokenstore.ErrNotFound):
				lostLogin = append(lostLogin, s.id) // its login was acknowledged by the dead master only
			case serr == nil && int(stored.Generation) < s.gen:
				lostRotation = append(lostRotation, s.id) // its last rotation: same
			default:
				broken = append(broken, fmt.Sprintf("%s (%s; stored generation %d, client holds %d, %v)", s.id, out, stored.Generation, s.gen, serr))
			}
		default:
			broken = append(broken, fmt.Sprintf("%s (%s, %s)", s.id, group(s.user), out))
		}
	}
	// A REUSED answer during the load is a false alarm too.
	r.mu.Lock()
	for k, n := range r.outcomes {
		if strings.Contains(k, "REFRESH_TOKEN_REUSED") {
			falseReuse = append(falseReuse, fmt.Sprintf("%d during the load (%s)", n, k))
		}
	}
	outcomes := maps.Clone(r.outcomes)
	r.mu.Unlock()

	t.Logf("kill -9 at +0; promotion observed %.3fs after the kill", promoted.Sub(killed).Seconds())
	if !r.firstVictimOK.IsZero() {
		t.Logf("first successful refresh of a victim session: %.3fs after the promotion (first victim success of any call: %.3fs)",
			r.firstVictimOK.Sub(promoted).Seconds(), r.firstVictimAny.Sub(promoted).Seconds())
	} else {
		t.Logf("no victim session refreshed within %v of the promotion", failoverMaxWait)
	}
	if !r.lastVictimError.IsZero() {
		t.Logf("last victim call answered UNAVAILABLE (or timed out): %.3fs after the promotion", r.lastVictimError.Sub(promoted).Seconds())
	}
	t.Logf("requests sent: %d; sessions: %d logged in before the kill, %d in all", r.sent.Load(), before, len(all))
	for _, k := range slices.Sorted(maps.Keys(outcomes)) {
		t.Logf("  %-58s %6d", k, outcomes[k])
	}
	for _, n := range r.notes {
		t.Logf("note: %s", n)
	}
	t.Logf("sessions lost with a write acknowledged only by the dead master: %d logins, %d rotations; false reuse: %d; refresh answered twice differently: %d",
		len(lostLogin), len(lostRotation), len(falseReuse), len(r.twice))

	if len(r.twice) > 0 {
		t.Errorf("refresh tokens answered with two different new tokens: sessions %v", r.twice)
	}
	if len(falseReuse) > 0 {
		t.Errorf("sessions falsely flagged as reused: %v", falseReuse)
	}
	if len(broken) > 0 {
		t.Errorf("sessions that do not refresh after the failover, for no reason the failover explains: %v", broken)
	}
	if r.firstVictimOK.IsZero() {
		t.Errorf("the victims' sessions did not refresh within %v of the promotion", failoverMaxWait)
	}
}
