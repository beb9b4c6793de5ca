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
//     lost, and checked to be exactly that by reading the new master;
//   - no logout acknowledged OK is undone by the failover: a set of
//     sessions is logged out one by one around the kill (half before it,
//     the rest during the outage, retried until answered OK), and none of
//     them may refresh after the promotion (identityd waits for a replica
//     to confirm each revocation, --redis-wait-replicas auto).
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
	run.execute(func() { c.Kill(t, victimMaster) }, func() time.Time {
		promoted := c.WaitPromotion(t, replica, 60*time.Second)
		// Back as the new master's replica, which revocations wait for.
		c.Restart(t, victimMaster)
		return promoted
	})
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
	run.execute(func() { s.Kill(t, primary) }, func() time.Time {
		promoted := s.WaitPromotion(t, replica, 60*time.Second)
		// Back as the new primary's replica (the sentinels make it one),
		// which revocations wait for.
		s.Restart(t, primary)
		return promoted
	})
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
	// loggedOut: a Logout of the session was answered OK (logout
	// sessions); endedOnRetry: a retried Logout found it ended already
	// (REFRESH_TOKEN_INVALID: the unanswered attempt had ended it).
	loggedOut, endedOnRetry bool
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
	logoutRetries    int // logouts answered UNAVAILABLE or timed out, sent again
	endedOnRetry     int // retried logouts answered REFRESH_TOKEN_INVALID
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

// count2 sums the outcomes of one phase and "op outcome", over both
// groups; the caller holds r.mu.
func (r *failoverRun) count2(phase, opOutcome string) int {
	return r.outcomes[phase+" victim "+opOutcome] + r.outcomes[phase+" control "+opOutcome]
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
	if u.victim && unavailable && op != "logout" {
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

// loginBeforeKill logs u in before the fault, trying again after a
// timeout: an argon2id hash can outlast the call's deadline on a loaded
// machine.
func (r *failoverRun) loginBeforeKill(u *failoverUser) *failoverSession {
	var err error
	for range 5 {
		var s *failoverSession
		if s, err = r.login(u); err == nil {
			return s
		}
		if !retryable(err) {
			break
		}
	}
	r.t.Fatalf("login before the kill: %v", err)
	return nil
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

// logoutAround logs the sessions out one by one on another goroutine and
// calls kill once half of them have been answered OK, so the others go out
// during the outage; each is retried, as a client would, until answered OK
// or failoverMaxWait after the kill. The channel is closed when all are
// done; kill has returned by the time logoutAround does.
func (r *failoverRun) logoutAround(ss []*failoverSession, kill func()) <-chan struct{} {
	half := make(chan struct{})
	closeHalf := sync.OnceFunc(func() { close(half) })
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer closeHalf()
		var giveUp time.Time
		for i, s := range ss {
			if i == len(ss)/2 {
				closeHalf()
				giveUp = time.Now().Add(failoverMaxWait + 60*time.Second)
			}
			for retried := false; ; retried = true {
				ctx, cancel := context.WithTimeout(context.Background(), failoverCallTimeout)
				sent := time.Now()
				_, err := r.d.API.Logout(ctx, &identityv1.LogoutRequest{RefreshToken: s.token})
				cancel()
				r.count(sent, s.user, "logout", outcome(err))
				if err == nil {
					s.loggedOut = true
					break
				}
				if retried && strings.Contains(outcome(err), "REFRESH_TOKEN_INVALID") {
					s.endedOnRetry = true
					r.mu.Lock()
					r.endedOnRetry++
					r.mu.Unlock()
					break
				}
				if !retryable(err) || (!giveUp.IsZero() && time.Now().After(giveUp)) {
					break
				}
				r.mu.Lock()
				r.logoutRetries++
				r.mu.Unlock()
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	<-half
	r.mu.Lock()
	r.killed = time.Now()
	r.mu.Unlock()
	kill()
	return done
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
				sessions[w] = append(sessions[w], r.loginBeforeKill(u))
			}
		}
	}
	before := len(slices.Concat(sessions...))
	// Sessions to log out around the kill, one per other user, outside
	// the load.
	var logouts []*failoverSession
	for i := 0; i < len(r.users); i += 2 {
		logouts = append(logouts, r.loginBeforeKill(r.users[i]))
	}

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
	loggedOut := r.logoutAround(logouts, kill)
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
	<-loggedOut

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
	// An acknowledged logout undone by the failover: its session refreshes.
	var undone []string
	for _, s := range logouts {
		if !s.loggedOut {
			continue
		}
		var err error
		for range 3 {
			if err = r.refresh(s); err == nil || !retryable(err) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err == nil || !strings.Contains(outcome(err), "REFRESH_TOKEN_INVALID") {
			undone = append(undone, fmt.Sprintf("%s (%s, refresh after the failover: %s)", s.id, group(s.user), outcome(err)))
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

	r.mu.Lock()
	killed := r.killed
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
	var unanswered []string
	for _, s := range logouts {
		if !s.loggedOut && !s.endedOnRetry {
			unanswered = append(unanswered, s.id)
		}
	}
	r.mu.Lock()
	t.Logf("logouts around the kill: %d sessions; answered OK before the kill %d, during the outage or after %d (%d answers UNAVAILABLE or timed out, retried; %d retries found the session already ended); acknowledged logouts whose session refreshes after the promotion: %d",
		len(logouts), r.count2("1-before", "logout OK"), r.count2("2-outage", "logout OK")+r.count2("3-after", "logout OK"),
		r.logoutRetries, r.endedOnRetry, len(undone))
	r.mu.Unlock()
	if len(undone) > 0 {
		t.Errorf("logouts answered OK and undone by the failover: %v", undone)
	}
	if len(unanswered) > 0 {
		t.Errorf("logouts never answered OK, nor found ended on a retry: %v", unanswered)
	}

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
