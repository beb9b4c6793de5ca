package e2e

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testproxy"
	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/internal/tokencheck"
	"github.com/identityd/identity/sessions"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
)

// TestRedisKill9 kills redis-server with SIGKILL while 1,000 sessions are
// refreshed at once, each in a loop by its own client, then starts it
// again on the same port and data directory (the AOF is replayed), and
// checks every session:
//
//   - no refresh token was answered with two different new tokens, and
//     each session ends at one generation, the one of the token its
//     client holds;
//   - the token a client last received works, or the store lost the
//     rotation that issued it (counted, and checked against the store);
//   - no session is taken for stolen: no REFRESH_TOKEN_REUSED answer, and
//     identityd counted no reuse and revoked no session for it.
//
// Three ways to lose Redis:
//
//   - everysec: appendfsync everysec (Redis's default), kill -9 of the
//     process. Redis writes the AOF before it answers, so what the kill
//     loses is only what the kernel had not been given: nothing it had
//     acknowledged, unless a slow disk made Redis postpone the write
//     (counted and logged, not failed: it depends on the disk).
//   - everysec-power-loss: the same, with the AOF then cut back to its
//     length one second before the kill, as a machine crash may leave it
//     (everysec fsyncs once a second): rotations acknowledged in that
//     second are lost, and their clients hold tokens a generation or more
//     ahead of the store.
//   - always: appendfsync always, kill -9: Redis answers a write only once
//     it is on disk; no acknowledged rotation may be lost.
//
// identityd reaches Redis through a testproxy, cut while Redis is down, so
// the test can read what the restarted store holds before any refresh
// reaches it: that is how it knows which sessions the store lost
// rotations of, and then what became of them.
func TestRedisKill9(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"everysec", "everysec-power-loss", "always"} {
		t.Run(mode, func(t *testing.T) {
			// One at a time: 1,000 clients each is load enough for two cores.
			runKill9(t, mode)
		})
	}
}

const (
	killSessions     = 1000
	killUsers        = 50
	killCallDeadline = 3 * time.Second // a client's deadline per refresh
	killWarmup       = 2 * time.Second // load before the kill (sessions made before it are on disk)
	killDown         = 500 * time.Millisecond
	killMaxWait      = 30 * time.Second // for every client to have an answer after the restart
	killSettle       = 1 * time.Second  // load after that
)

// killSession is one session and its client. Only its own goroutine
// touches it while the load runs.
type killSession struct {
	id      string
	token   string // the newest refresh token this client was given
	gen     uint64 // its generation
	pending string // a token whose refresh got no answer, presented again until it does
	dead    string // why the client gave up on the session ("" while it refreshes)
	okAfter bool   // refreshed at least once after the restart
}

type killRun struct {
	t     *testing.T
	d     *identityd
	codec *token.Refresh

	mu       sync.Mutex
	answers  map[string]string // presented refresh token → the new token answered
	twice    []string          // sessions whose token was answered with two different tokens
	outcomes map[string]int    // "phase outcome" → count
	sent     int
	killed   time.Time
	back     time.Time // redis-server answers again
	firstOK  time.Time // first successful refresh sent after back
}

func (r *killRun) phase(at time.Time) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.killed.IsZero() || at.Before(r.killed):
		return "1-before the kill"
	case r.back.IsZero() || at.Before(r.back):
		return "2-outage"
	}
	return "3-after reconnect"
}

// refresh presents the session's pending token, or its newest, once.
func (r *killRun) refresh(s *killSession) error {
	presented := s.token
	if s.pending != "" {
		presented = s.pending
	}
	ctx, cancel := context.WithTimeout(context.Background(), killCallDeadline)
	defer cancel()
	sent := time.Now()
	pair, err := r.d.API.Refresh(ctx, &identityv1.RefreshRequest{RefreshToken: presented})
	out := outcome(err)
	ph := r.phase(sent)
	r.mu.Lock()
	r.sent++
	r.outcomes[ph+" "+out]++
	if err == nil && ph == "3-after reconnect" && r.firstOK.IsZero() {
		r.firstOK = time.Now()
	}
	r.mu.Unlock()
	if err != nil {
		if retryable(err) {
			// No answer, or the store failed: the rotation may have been
			// applied. The client presents the same token again, as a
			// browser whose request failed does.
			s.pending = presented
		} else {
			r.mu.Lock()
			s.dead = out
			r.mu.Unlock()
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
	_, gen, _, derr := r.codec.Decode(next)
	if derr != nil {
		r.t.Errorf("session %s: the refresh answered a token that does not decode: %v", s.id, derr)
	}
	r.mu.Lock()
	s.token, s.gen, s.pending = next, gen, ""
	r.mu.Unlock()
	if ph == "3-after reconnect" {
		r.mu.Lock()
		s.okAfter = true
		r.mu.Unlock()
	}
	return nil
}

func runKill9(t *testing.T, mode string) {
	fsync, _, powerLoss := strings.Cut(mode, "-")
	r := testredis.NewServer(t, testredis.WithArgs("--appendfsync", fsync))
	p := testproxy.New(t, r.Addr())
	d := startIdentityd(t, opts{redisURL: "redis://" + p.Addr() + "/0", flags: map[string]string{
		"refresh-grace":            "10s", // the production default
		"refresh-rate-per-session": "0",   // each session refreshes many times a second
		"refresh-rate-per-ip":      "0",   // and all come from one address
	}})
	run := &killRun{t: t, d: d, answers: map[string]string{}, outcomes: map[string]int{}}
	all := makeKillSessions(t, d, run)
	aof := newAOFWatch(t, r.Dir())

	// The load: every client refreshes its session in a loop, presenting
	// its newest token (or again the one whose answer it did not get).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range all {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := run.refresh(s); err != nil {
					if !retryable(err) {
						return // the client gave up on the session (s.dead)
					}
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond): // a client's pause before it tries again
					}
				}
			}
		})
	}

	time.Sleep(killWarmup)
	run.mu.Lock()
	run.killed = time.Now()
	run.mu.Unlock()
	r.Kill()
	p.Drop() // identityd reaches nothing until the store has been read below
	if powerLoss {
		aof.cutTo(t, run.killed.Add(-time.Second))
	}
	time.Sleep(killDown)
	r.Restart() // same port, same directory: the AOF is replayed

	// What the restarted store holds, before any refresh reaches it.
	direct := directStore(t, r)
	behind := map[string]uint64{} // session → acknowledged generations the store lost
	for _, s := range all {
		stored, err := direct.Session(t.Context(), s.id)
		gen := s.genSafe(run)
		switch {
		case err != nil:
			t.Errorf("session %s after the restart: %v", s.id, err)
		case stored.Generation < gen:
			behind[s.id] = gen - stored.Generation
		}
	}
	p.Resume()
	run.mu.Lock()
	run.back = time.Now()
	run.mu.Unlock()

	// Keep the load on until every client has had an answer after the
	// restart (a success, or an error that ends its session for it).
	deadline := time.Now().Add(killMaxWait)
	var waiting int
	for time.Now().Before(deadline) {
		waiting = 0
		for _, s := range all {
			if !s.okAfterSafe(run) {
				waiting++
			}
		}
		if waiting == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(killSettle)
	close(stop)
	wg.Wait()

	// Every session once more, with the token its client holds; a failure
	// is classified against the store's copy.
	lostBy := map[uint64]int{}   // generations the store lost → sessions whose client was then refused
	rolledBy := map[uint64]int{} // generations the store lost → sessions that refresh all the same
	var falseReuse, broken []string
	var loggedOut []string // lost sessions whose Logout with the client's token failed
	for _, s := range all {
		if s.dead == "" {
			for range 3 { // the service has recovered; a stray timeout gets another go
				if err := run.refresh(s); err == nil || !retryable(err) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		stored, serr := direct.Session(t.Context(), s.id)
		k, wasBehind := behind[s.id]
		switch {
		case strings.HasSuffix(s.dead, "REFRESH_TOKEN_REUSED"):
			falseReuse = append(falseReuse, s.id)
		case s.dead == "" && s.pending == "":
			// The client's newest token works: the store is at its generation.
			if serr != nil || stored.Generation != s.gen {
				broken = append(broken, fmt.Sprintf("%s: refreshes, but the store says generation %d (%v), the client holds %d", s.id, stored.Generation, serr, s.gen))
			}
			if wasBehind {
				rolledBy[k]++
			}
		case strings.HasSuffix(s.dead, "REFRESH_TOKEN_INVALID") && wasBehind && serr == nil && stored.Generation < s.gen:
			lostBy[k]++ // refused: the store lost the rotations that issued the client's token
			// The client can still end the session with the token it holds
			// (and so close it to the older tokens the store still takes).
			ctx, cancel := context.WithTimeout(context.Background(), killCallDeadline)
			_, err := d.API.Logout(ctx, &identityv1.LogoutRequest{RefreshToken: s.token})
			cancel()
			if _, gone := direct.Session(t.Context(), s.id); err != nil || !errors.Is(gone, tokenstore.ErrNotFound) {
				loggedOut = append(loggedOut, fmt.Sprintf("%s: %s, then %v", s.id, outcome(err), gone))
			}
		default:
			broken = append(broken, fmt.Sprintf("%s: %q, pending %t; store generation %d (%v), client %d, store behind after the restart by %d",
				s.id, s.dead, s.pending != "", stored.Generation, serr, s.gen, k))
		}
	}
	reuse, revokedForReuse := reuseMetrics(t, d)

	lost, rolled := 0, 0
	for _, n := range lostBy {
		lost += n
	}
	for _, n := range rolledBy {
		rolled += n
	}
	t.Logf("%s: %d sessions, %d refreshes sent; kill -9 after %v of load, identityd cut off from Redis for %v",
		mode, len(all), run.sent, killWarmup, run.back.Sub(run.killed).Round(time.Millisecond))
	if powerLoss {
		t.Logf("AOF cut back from %d to %d bytes (its length 1s before the kill)", aof.cutFrom, aof.cutAt)
	}
	if !run.firstOK.IsZero() {
		t.Logf("first successful refresh %v after identityd could reach Redis again", run.firstOK.Sub(run.back).Round(time.Millisecond))
	}
	if waiting > 0 {
		t.Logf("%d clients had no answer within %v of the restart", waiting, killMaxWait)
	}
	for _, k := range slices.Sorted(maps.Keys(run.outcomes)) {
		t.Logf("  %-60s %7d", k, run.outcomes[k])
	}
	t.Logf("after the restart the store was behind the client's token in %d sessions (by generations: %v)", len(behind), histogram(behind))
	t.Logf("sessions: %d refresh with their client's newest token (%d of them after the store had lost rotations: %v); %d refused because the store lost the rotations that issued the client's token (%v); false reuse: %d answers, identityd counted %v and revoked %v sessions for it; answered twice differently: %d; unexplained: %d",
		len(all)-lost-len(falseReuse)-len(broken), rolled, rolledBy, lost, lostBy, len(falseReuse), reuse, revokedForReuse, len(run.twice), len(broken))

	if len(run.twice) > 0 {
		t.Errorf("refresh tokens answered with two different new tokens: sessions %v", run.twice)
	}
	if len(falseReuse) > 0 || reuse != 0 || revokedForReuse != 0 {
		t.Errorf("sessions falsely taken for stolen: %v (identityd counted %v reuses, revoked %v sessions for reuse)", falseReuse, reuse, revokedForReuse)
	}
	if len(loggedOut) > 0 {
		t.Errorf("%d sessions whose store lost rotations could not be logged out with their client's token: %v", len(loggedOut), loggedOut[:min(len(loggedOut), 10)])
	}
	if len(broken) > 0 {
		t.Errorf("%d sessions in a state the kill does not explain: %v", len(broken), broken[:min(len(broken), 10)])
	}
	switch {
	case fsync == "always" && len(behind) > 0:
		t.Errorf("appendfsync always, kill -9: the store lost acknowledged rotations of %d sessions", len(behind))
	case !powerLoss && len(behind) > 0:
		// Redis writes the AOF before it answers, but with everysec it may
		// postpone that write for up to 2 s (still answering) while a
		// background fsync is slow: a busy disk can lose acknowledged
		// writes to a kill -9. Counted above, not a failure.
		t.Logf("appendfsync everysec, kill -9: %d sessions lost acknowledged rotations (a postponed AOF write: the disk was busy)", len(behind))
	}
	if powerLoss && len(behind) == 0 {
		t.Errorf("the AOF was cut back by %d bytes and no session lost a rotation: the cut did not take", aof.cutFrom-aof.cutAt)
	}
	if waiting > 0 {
		t.Errorf("%d clients had no answer within %v of the restart", waiting, killMaxWait)
	}
}

func histogram(m map[string]uint64) map[uint64]int {
	h := map[uint64]int{}
	for _, k := range m {
		h[k]++
	}
	return h
}

// genSafe is the generation the client holds, read while its goroutine may
// be refreshing (refresh sets it under the run's lock).
func (s *killSession) genSafe(r *killRun) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return s.gen
}

// directStore reads r straight, not through identityd's proxy.
func directStore(t *testing.T, r *testredis.Server) tokenstore.Store {
	t.Helper()
	o, err := tokenstore.ClientOptions(r.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := tokenstore.NewClient(o)
	s := tokenstore.NewRedis(c)
	t.Cleanup(func() { s.Close(); c.Close() })
	return s
}

// aofWatch samples the length of the AOF redis-server appends to, so a
// test can cut it back to what it was at an earlier moment: what an fsync
// once a second may leave on disk after a machine crash.
type aofWatch struct {
	path string

	mu      sync.Mutex
	samples []aofSample
	stop    chan struct{}
	done    chan struct{}

	cutFrom, cutAt int64
}

type aofSample struct {
	at   time.Time
	size int64
}

func newAOFWatch(t *testing.T, dir string) *aofWatch {
	t.Helper()
	// Redis 7 keeps a base file and the increments it appends to under
	// appendonlydir; there is one increment file until a rewrite (none
	// happens in a test this size).
	files, err := filepath.Glob(filepath.Join(dir, "appendonlydir", "*.incr.aof"))
	if err != nil || len(files) != 1 {
		t.Fatalf("the AOF increment file under %s: %v, %v", dir, files, err)
	}
	w := &aofWatch{path: files[0], stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if fi, err := os.Stat(w.path); err == nil {
				w.mu.Lock()
				w.samples = append(w.samples, aofSample{time.Now(), fi.Size()})
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(w.halt)
	return w
}

func (w *aofWatch) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// cutTo truncates the AOF to its last length sampled at or before at.
// redis-server must not be running.
func (w *aofWatch) cutTo(t *testing.T, at time.Time) {
	t.Helper()
	w.halt()
	w.mu.Lock()
	defer w.mu.Unlock()
	size := int64(-1)
	for _, s := range w.samples {
		if !s.at.After(at) {
			size = s.size
		}
	}
	if size < 0 {
		t.Fatalf("no AOF length sampled before %v", at)
	}
	fi, err := os.Stat(w.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(w.path, size); err != nil {
		t.Fatal(err)
	}
	w.cutFrom, w.cutAt = fi.Size(), size
}

// okAfterSafe: the client has had its answer after the restart (a success,
// or an error that ended the session for it).
func (s *killSession) okAfterSafe(r *killRun) bool {
	r.mu.Lock() // refresh sets both under it
	defer r.mu.Unlock()
	return s.okAfter || s.dead != ""
}

// makeKillSessions creates the sessions with the code identityd's Login
// uses after the password check (sessions.Service.Create), straight in the
// store and with the refresh secret from identityd's keyring: a thousand
// logins through identityd would cost a thousand argon2id hashes, minutes
// on a shared two-core machine. Every refresh then goes through identityd.
func makeKillSessions(t *testing.T, d *identityd, run *killRun) []*killSession {
	t.Helper()
	store := d.Store(t)
	ring := d.StoredKeyring(t)
	codec, err := token.NewRefresh(ring.RefreshSecret)
	if err != nil {
		t.Fatal(err)
	}
	run.codec = codec
	svc := sessions.New(store, codec, tokencheck.NewRevoked(time.Second, 0, 1), sessions.Config{
		AbsoluteTTL: 2 * time.Hour, IdleTTL: time.Hour, Grace: 10 * time.Second, AccessTTL: time.Minute,
	}, time.Now, rand.Reader)
	var users []tokenstore.User
	for i := range killUsers {
		name := fmt.Sprintf("kill-%d-%s", i, randomHex(4))
		testidentityd.AddUser(t, store, name, "", "reader")
		u, err := store.UserByName(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	all := make([]*killSession, killSessions)
	var wg sync.WaitGroup
	errs := make(chan error, killSessions)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < killSessions; i += 8 {
				sess, err := svc.Create(t.Context(), users[i%len(users)], sessions.Client{UserAgent: "kill9-test"})
				if err != nil {
					errs <- err
					return
				}
				tok := svc.RefreshToken(sess)
				d.Remember(tok)
				all[i] = &killSession{id: sess.ID, token: tok, gen: sess.Generation}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("create the sessions: %v", err)
	}
	// One through identityd's own Login, to be sure the sessions made here
	// refresh like one it made.
	tp := d.login(t, d.Username, d.Password)
	_, gen, _, err := codec.Decode(tp.RefreshToken)
	if err != nil {
		t.Fatalf("a refresh token from Login does not decode with the keyring's secret: %v", err)
	}
	return append(all, &killSession{id: tp.SessionID, token: tp.RefreshToken, gen: gen})
}
