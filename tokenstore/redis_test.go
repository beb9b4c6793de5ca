package tokenstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/tokenstore/storetest"
)

// newRedisStore returns a Redis store with keys under a random prefix, so
// tests share one Redis without flushing it and each gets its own keyring
// and revocation stream.
func newRedisStore(t testing.TB, client redis.UniversalClient, opts ...tokenstore.Option) *tokenstore.Redis {
	t.Helper()
	opts = append([]tokenstore.Option{tokenstore.WithPrefix(testredis.KeyPrefix(t, client))}, opts...)
	return tokenstore.NewRedis(client, opts...)
}

func TestRedisConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) tokenstore.Store {
		return newRedisStore(t, testredis.Start(t))
	})
}

// TestRedisClusterConformance runs the suite on a real Redis Cluster (3
// masters, 3 replicas), through a client built as identityd builds its
// own for --redis-addrs, waiting for a replica as identityd does there.
func TestRedisClusterConformance(t *testing.T) {
	cluster := testredis.SharedCluster(t)
	opts, err := tokenstore.ClientOptions("", cluster.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	client := tokenstore.NewClient(opts)
	t.Cleanup(func() { client.Close() })
	storetest.Run(t, func(t *testing.T) tokenstore.Store {
		return newRedisStore(t, client, tokenstore.WithReplicaWait(1, 5*time.Second))
	})
}

// TestRedisSentinelConformance runs the suite on a primary and its replica
// monitored by three sentinels, through a go-redis failover client built
// as identityd's for --redis-sentinel-master, waiting for the replica as
// identityd does there.
func TestRedisSentinelConformance(t *testing.T) {
	sentinel := testredis.SharedSentinel(t)
	opts, err := tokenstore.SentinelClientOptions(sentinel.MasterName(), sentinel.SentinelAddrs())
	if err != nil {
		t.Fatal(err)
	}
	client := tokenstore.NewClient(opts)
	t.Cleanup(func() { client.Close() })
	storetest.Run(t, func(t *testing.T) tokenstore.Store {
		return newRedisStore(t, client, tokenstore.WithReplicaWait(1, 5*time.Second))
	})
}

func randomNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func newTestSession(t testing.TB, uid string, at time.Time, lifetime time.Duration) tokenstore.Session {
	t.Helper()
	sid, err := tokenstore.NewSessionID(uid, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	at = at.Truncate(time.Millisecond)
	return tokenstore.Session{
		ID: sid, UserID: uid, Nonce: randomNonce(),
		CreatedAt: at, RotatedAt: at, LastUsedAt: at, ExpiresAt: at.Add(lifetime),
	}
}

// storedUID creates a user in store and returns its id: Rotate needs the
// session's user.
func storedUID(t testing.TB, store tokenstore.Store) string {
	t.Helper()
	uid := newUID(t)
	if err := store.CreateUser(context.Background(), tokenstore.User{ID: uid, Username: "u-" + uid, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return uid
}

func newUID(t testing.TB) string {
	t.Helper()
	uid, err := tokenstore.NewUserID(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

// TestRedisKeyLayout pins the documented key names, hash tags, fields and
// expiry times. Every expiry the scripts set is absolute (PEXPIREAT), computed from
// the times the store is given: the test gives it a fixed clock and fixed
// request times, and compares PEXPIRETIME with the instant it computed
// itself, to the millisecond. Nothing depends on when the commands run.
func TestRedisKeyLayout(t *testing.T) {
	t.Parallel()
	client := testredis.Start(t)
	prefix := testredis.KeyPrefix(t, client)
	// t0 is the injected clock's time; the expiries below are hours after
	// it, so Redis (which expires by its own clock) keeps every key while
	// the test runs.
	t0 := time.Now().UTC().Truncate(time.Millisecond)
	store := tokenstore.NewRedis(client, tokenstore.WithPrefix(prefix), tokenstore.WithIdleTTL(time.Hour),
		tokenstore.WithClock(func() time.Time { return t0 }))
	ctx := t.Context()

	u := tokenstore.User{ID: newUID(t), Username: "layout-" + randomNonce(), CreatedAt: t0}
	if err := store.CreateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	s := newTestSession(t, u.ID, t0, 24*time.Hour)
	if err := store.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	rnd := s.ID[len(u.ID)+1:]
	// expireAt is the key's PEXPIRETIME: unix ms, -1 without an expiry.
	expireAt := func(key string) int64 {
		t.Helper()
		v, err := client.Do(ctx, "PEXPIRETIME", key).Int64()
		if err != nil {
			t.Fatalf("PEXPIRETIME %s: %v", key, err)
		}
		if v == -2 {
			t.Fatalf("%s does not exist", key)
		}
		return v
	}
	checkExpiry := func(what, key string, want time.Time) {
		t.Helper()
		if got := expireAt(key); got != want.UnixMilli() {
			t.Errorf("%s expires at %d (%v), want %d (%v)", what, got, time.UnixMilli(got).UTC(), want.UnixMilli(), want)
		}
	}
	sessKey := prefix + "{" + u.ID + "}:s:" + rnd
	userKey := prefix + "{" + u.ID + "}:u"
	setKey := prefix + "{" + u.ID + "}:ss" // the layout before
	// checkIndex checks the session's index field in the user hash holds
	// the session's expire-at.
	checkIndex := func(what string, want time.Time) {
		t.Helper()
		got, err := client.HGet(ctx, userKey, "s:"+rnd).Result()
		if err != nil || got != strconv.FormatInt(want.UnixMilli(), 10) {
			t.Errorf("%s: index field s:%s = %q, %v; want %d (%v)", what, rnd, got, err, want.UnixMilli(), want)
		}
	}
	checkExpiry("session (the 1h idle lifetime)", sessKey, t0.Add(time.Hour))
	checkIndex("session", t0.Add(time.Hour))
	if n, _ := client.Exists(ctx, setKey).Result(); n != 0 {
		t.Errorf("a session zset %s exists", setKey)
	}
	for _, key := range []string{userKey, prefix + "n:{" + u.Username + "}", prefix + "users"} {
		if got := expireAt(key); got != -1 {
			t.Errorf("%s: expires at %d, want no expiry (-1)", key, got)
		}
	}
	fields, err := client.HKeys(ctx, sessKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(fields, ","); got != "g,n,c,R,e" {
		t.Errorf("session hash fields %s, want g,n,c,R,e", got)
	}
	fields, err = client.HKeys(ctx, userKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(fields)
	if got := strings.Join(fields, ","); got != "c,d,n,p,r,s:"+rnd+",v" {
		t.Errorf("user hash fields %s, want c,d,n,p,r,s:%s,v", got, rnd)
	}

	// A rotation moves the expiry to min(now+idle, absolute expiry).
	t1 := t0.Add(time.Second)
	req := tokenstore.RotateRequest{SessionID: s.ID, Nonce: s.Nonce, Now: t1, Grace: time.Second, IdleTTL: 2 * time.Hour}
	if _, _, err := store.Rotate(ctx, req); err != nil {
		t.Fatal(err)
	}
	checkExpiry("session after rotation (the 2h idle lifetime)", sessKey, t1.Add(2*time.Hour))
	checkIndex("session after rotation", t1.Add(2*time.Hour))
	req.Generation, req.Now, req.IdleTTL = 1, t0.Add(2*time.Second), 48*time.Hour
	if _, _, err := store.Rotate(ctx, req); err != nil {
		t.Fatal(err)
	}
	checkExpiry("session after rotation (capped by the absolute expiry)", sessKey, s.ExpiresAt)
	checkIndex("session after rotation", s.ExpiresAt)

	// Revocation stream and its metadata share one hash tag.
	if err := store.RevokeSession(ctx, s.ID, t0.Add(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := client.XLen(ctx, prefix+"{revocations}").Result(); err != nil || n != 1 {
		t.Errorf("revocation stream length %d, %v; want 1", n, err)
	}
	if n, _ := client.Exists(ctx, sessKey, setKey).Result(); n != 0 {
		t.Errorf("%d session keys left after revocation", n)
	}
	if n, _ := client.HExists(ctx, userKey, "s:"+rnd).Result(); n {
		t.Errorf("index field s:%s left after revocation", rnd)
	}
	if n, _ := client.HLen(ctx, userKey).Result(); n != 6 {
		t.Errorf("user hash has %d fields after revocation, want its own 6", n)
	}
}

// TestRedisFailsClosed stops the server under a live store: every call must
// fail with ErrUnavailable within its deadline, and the store must recover
// by itself once the server is back, with acknowledged writes intact.
func TestRedisFailsClosed(t *testing.T) {
	t.Parallel()
	srv := testredis.NewServer(t)
	store := tokenstore.NewRedis(srv.Client(t))
	ctx := t.Context()

	uid := newUID(t)
	if err := store.CreateUser(ctx, tokenstore.User{ID: uid, Username: "fc-" + uid, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	live := newTestSession(t, uid, time.Now(), time.Hour)
	loggedOut := newTestSession(t, uid, time.Now(), time.Hour)
	for _, s := range []tokenstore.Session{live, loggedOut} {
		if err := store.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.RevokeSession(ctx, loggedOut.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, cursor, _, err := store.Revocations(ctx, "0-0", 10)
	if err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	const deadline = 300 * time.Millisecond
	calls := map[string]func(context.Context) error{
		"Ping":    store.Ping,
		"Session": func(c context.Context) error { _, err := store.Session(c, live.ID); return err },
		"Rotate": func(c context.Context) error {
			_, _, err := store.Rotate(c, tokenstore.RotateRequest{SessionID: live.ID, Nonce: live.Nonce, Now: time.Now(), Grace: time.Second, IdleTTL: time.Hour})
			return err
		},
		"UserByName":    func(c context.Context) error { _, err := store.UserByName(c, "fc-"+uid); return err },
		"RevokeSession": func(c context.Context) error { return store.RevokeSession(c, live.ID, time.Now()) },
		"Revocations":   func(c context.Context) error { _, _, _, err := store.Revocations(c, cursor, 10); return err },
		"Keyring":       func(c context.Context) error { _, err := store.Keyring(c); return err },
	}
	for name, call := range calls {
		c, cancel := context.WithTimeout(ctx, deadline)
		start := time.Now()
		err := call(c)
		took := time.Since(start)
		cancel()
		if !errors.Is(err, tokenstore.ErrUnavailable) {
			t.Errorf("%s with Redis down: %v, want ErrUnavailable", name, err)
		}
		// Bounded by the deadline, with slack for a loaded test machine.
		if took > deadline+time.Second {
			t.Errorf("%s with Redis down took %v, deadline %v", name, took, deadline)
		}
		t.Logf("%s with Redis down: %v after %v", name, err, took.Round(time.Millisecond))
	}

	srv.Restart()
	var got tokenstore.Session
	waitFor(t, 5*time.Second, func() error {
		c, cancel := context.WithTimeout(ctx, deadline)
		defer cancel()
		got, err = store.Session(c, live.ID)
		return err
	})
	if got.Generation != 0 || got.Nonce != live.Nonce {
		t.Fatalf("session after restart: %+v", got)
	}
	if _, err := store.Session(ctx, loggedOut.ID); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("logged-out session after restart: %v, want ErrNotFound", err)
	}
	events, _, ok, err := store.Revocations(ctx, "0-0", 10)
	if err != nil || !ok || len(events) != 1 || events[0].SessionID != loggedOut.ID {
		t.Fatalf("revocations after restart: %v, ok %v, %v; want the logout", events, ok, err)
	}
}

func waitFor(t *testing.T, limit time.Duration, f func() error) {
	t.Helper()
	start := time.Now()
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Since(start) > limit {
			t.Fatalf("not working again %v after restart: %v", limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisRotateRetriedAfterLostReply uses a client that resends commands
// (go-redis's default MaxRetries) through a proxy that drops the reply to
// the first rotation after Redis has applied it. The resent rotation must
// land in the grace window: same session, one advance, no reuse alarm.
func TestRedisRotateRetriedAfterLostReply(t *testing.T) {
	t.Parallel()
	proxy := newDropProxy(t, testredis.Start(t).Options().Addr)
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr(), ContextTimeoutEnabled: true, MaxRetries: 3})
	t.Cleanup(func() { client.Close() })
	store := newRedisStore(t, client)
	ctx := t.Context()

	s := newTestSession(t, storedUID(t, store), time.Now(), time.Hour)
	if err := store.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	proxy.dropNextScriptReply()
	got, _, err := store.Rotate(ctx, tokenstore.RotateRequest{SessionID: s.ID, Nonce: s.Nonce, Now: time.Now(), Grace: 10 * time.Second, IdleTTL: time.Hour})
	if err != nil {
		t.Fatalf("Rotate retried after a lost reply: %v", err)
	}
	if proxy.dropped.Load() != 1 {
		t.Fatalf("proxy dropped %d replies, want 1 (test did not exercise a retry)", proxy.dropped.Load())
	}
	if got.Generation != 1 {
		t.Fatalf("Rotate: generation %d, want 1", got.Generation)
	}
	stored, err := store.Session(ctx, s.ID)
	if err != nil || stored.Generation != 1 || !stored.RotatedAt.Equal(got.RotatedAt) {
		t.Fatalf("stored session %+v, %v; want generation 1 as returned", stored, err)
	}
}

// dropProxy forwards TCP to Redis and, when armed, swallows the reply to
// the next EVALSHA and closes that connection, as a network failure after
// the server executed the command would.
type dropProxy struct {
	ln      net.Listener
	target  string
	armed   atomic.Bool
	dropped atomic.Int32
}

func newDropProxy(t *testing.T, target string) *dropProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{ln: ln, target: target}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.serve(c) })
		}
	})
	return p
}

func (p *dropProxy) Addr() string         { return p.ln.Addr().String() }
func (p *dropProxy) dropNextScriptReply() { p.armed.Store(true) }

func (p *dropProxy) serve(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	var drop atomic.Bool
	closeBoth := func() { client.Close(); server.Close() }
	go func() {
		defer closeBoth()
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			if err != nil {
				return
			}
			if bytes.Contains(bytes.ToUpper(buf[:n]), []byte("EVALSHA")) && p.armed.CompareAndSwap(true, false) {
				drop.Store(true)
			}
			if _, err := server.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	defer closeBoth()
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		if err != nil {
			return
		}
		if drop.Load() {
			p.dropped.Add(1)
			return
		}
		if _, err := client.Write(buf[:n]); err != nil {
			return
		}
	}
}

// TestRedisMemoryPerSession measures what a session costs in Redis, as
// MEMORY USAGE (what Redis attributes to the keys, deterministic for keys
// of one shape) of what it adds: its hash, the growth of its user's hash
// (the session index) and the user's session zset where the layout has
// one. Sessions are real ones (epoch, client address, a gRPC client's user
// agent, one rotation with the refresh limiter on) of users whose records
// hold a 97-byte argon2id PHC string. It asserts the target (BENCHMARKS.md,
// issue 11) on a one-session user, the common case and the dearest per
// session, and on each further session of a user, and logs the used_memory
// growth (which adds the keyspace and expiry dict entries and buckets)
// besides. It uses a private server so other tests do not disturb
// used_memory.
func TestRedisMemoryPerSession(t *testing.T) {
	if testing.Short() {
		t.Skip("memory measurement skipped in -short mode")
	}
	t.Parallel()
	srv := testredis.NewServer(t)
	client := srv.Client(t)
	store := tokenstore.NewRedis(client)
	ctx := t.Context()

	const users = 5000
	used, usage, enc := memoryPerUser(t, client, users, grpcUA)
	t.Logf("1 session per user (%d users): MEMORY USAGE %.0f B/session; used_memory growth %.0f B/session; session hash %s, user hash %s",
		users, usage, used, enc[0], enc[1])
	if usage > 300 {
		t.Errorf("a user's only session adds %.0f bytes (MEMORY USAGE), target 300", usage)
	}
	if enc[1] != "listpack" {
		t.Errorf("a user hash with a session is a %s, want a listpack", enc[1])
	}

	// footprint is what k sessions add to a new user.
	footprint := func(k int) int64 {
		uid := newUID(t)
		if err := store.CreateUser(ctx, benchUser(uid)); err != nil {
			t.Fatal(err)
		}
		if _, err := store.UpdateUser(ctx, uid, func(u tokenstore.User) (tokenstore.User, error) { u.Epoch = 1; return u, nil }); err != nil {
			t.Fatal(err)
		}
		tag := "identity:{" + uid + "}"
		before := memoryUsage(t, client, tag+":u")
		var total int64
		for range k {
			s, err := realSession(ctx, t, store, uid, grpcUA)
			if err != nil {
				t.Fatal(err)
			}
			total += memoryUsage(t, client, tag+":s:"+s.ID[len(uid)+1:])
		}
		return total + memoryUsage(t, client, tag+":u") - before + memoryUsageOr0(t, client, tag+":ss")
	}
	one, three, ten := footprint(1), footprint(3), footprint(10)
	t.Logf("what a user's sessions add (MEMORY USAGE): 1: %d B, 3: %d B (%d B/session), 10: %d B (%d B/session)",
		one, three, three/3, ten, ten/10)
	if one > 300 {
		t.Errorf("a user's only session adds %d bytes (MEMORY USAGE), target 300", one)
	}
	// Regression guards: 264 B when written, the session hash's listpack
	// in a 128-byte allocation (its times as small numbers: R, Q), which a
	// few more bytes would turn into 160; and 274 and 276 B per session of
	// users with 3 and 10 (each session hash is a key of its own, so the
	// hash dominates).
	if one > 264 {
		t.Errorf("a user's only session adds %d bytes (MEMORY USAGE), was 264", one)
	}
	if three/3 > 280 || ten/10 > 280 {
		t.Errorf("a user's sessions cost %d B each at 3, %d B at 10 (MEMORY USAGE), was 274 and 276", three/3, ten/10)
	}
}

func usedMemory(t testing.TB, c *redis.Client) int64 {
	t.Helper()
	info, err := c.Info(t.Context(), "memory").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no used_memory in INFO memory")
	return 0
}

// memoryUsageOr0 is MEMORY USAGE of key, 0 if there is no such key.
func memoryUsageOr0(t testing.TB, c *redis.Client, key string) int64 {
	t.Helper()
	n, err := c.MemoryUsage(t.Context(), key, 0).Result()
	if errors.Is(err, redis.Nil) {
		return 0
	}
	if err != nil {
		t.Fatalf("MEMORY USAGE %s: %v", key, err)
	}
	return n
}

func memoryUsage(t testing.TB, c *redis.Client, key string) int64 {
	t.Helper()
	n, err := c.MemoryUsage(t.Context(), key, 0).Result()
	if err != nil {
		t.Fatalf("MEMORY USAGE %s: %v", key, err)
	}
	return n
}

// Benchmarks of the two hot paths: one round trip each.

func BenchmarkRedisSession(b *testing.B) {
	store := newRedisStore(b, testredis.Start(b))
	s := newTestSession(b, storedUID(b, store), time.Now(), time.Hour)
	if err := store.CreateSession(b.Context(), s); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := store.Session(context.Background(), s.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkRedisRotate(b *testing.B) {
	store := newRedisStore(b, testredis.Start(b))
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		s := newTestSession(b, storedUID(b, store), time.Now(), time.Hour)
		if err := store.CreateSession(ctx, s); err != nil {
			b.Error(err)
			return
		}
		for gen := uint64(0); pb.Next(); gen++ {
			got, _, err := store.Rotate(ctx, tokenstore.RotateRequest{SessionID: s.ID, Generation: gen, Nonce: s.Nonce, Now: time.Now(), Grace: 10 * time.Second, IdleTTL: time.Hour})
			if err != nil || got.Generation != gen+1 {
				b.Error(fmt.Sprint("rotate: ", got.Generation, err))
				return
			}
		}
	})
}

// cmdLog records the commands a client sends.
type cmdLog struct {
	mu   sync.Mutex
	cmds []string
}

func (l *cmdLog) DialHook(next redis.DialHook) redis.DialHook { return next }
func (l *cmdLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.mu.Lock()
		l.cmds = append(l.cmds, cmd.Name())
		l.mu.Unlock()
		return next(ctx, cmd)
	}
}
func (l *cmdLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.mu.Lock()
		l.cmds = append(l.cmds, "pipeline")
		l.mu.Unlock()
		return next(ctx, cmds)
	}
}

func (l *cmdLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	cmds := l.cmds
	l.cmds = nil
	return cmds
}

// TestRedisHotPathsAreOneRoundTrip pins the cost of Verify's session check
// and of Refresh: one command each once the scripts are loaded.
func TestRedisHotPathsAreOneRoundTrip(t *testing.T) {
	t.Parallel()
	client := redis.NewClient(&redis.Options{Addr: testredis.Start(t).Options().Addr, ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { client.Close() })
	var log cmdLog
	client.AddHook(&log)
	store := newRedisStore(t, client)
	ctx := t.Context()

	s := newTestSession(t, storedUID(t, store), time.Now(), time.Hour)
	if err := store.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	req := tokenstore.RotateRequest{SessionID: s.ID, Nonce: s.Nonce, Now: time.Now(), Grace: 10 * time.Second, IdleTTL: time.Hour}
	if _, _, err := store.Rotate(ctx, req); err != nil { // loads rotate.lua
		t.Fatal(err)
	}
	log.take()

	if _, err := store.Session(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if got := log.take(); !slices.Equal(got, []string{"hgetall"}) {
		t.Errorf("Session sent %v, want one HGETALL", got)
	}
	req.Generation = 1
	if _, _, err := store.Rotate(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := log.take(); !slices.Equal(got, []string{"evalsha"}) {
		t.Errorf("Rotate sent %v, want one EVALSHA", got)
	}
	req.Generation = 1 // now the previous generation: the grace path
	if _, _, err := store.Rotate(ctx, req); err != nil {
		t.Fatal(err)
	}
	if got := log.take(); !slices.Equal(got, []string{"evalsha"}) {
		t.Errorf("Rotate in grace sent %v, want one EVALSHA", got)
	}
}

// TestRedisLongUserAgentKeepsListpack: a browser's user agent (~100 bytes)
// is stored in chunks of at most 64 bytes ('ua', 'ub'), so the session
// hash stays a listpack under Redis's default hash-max-listpack-value
// (one longer value would make it a hashtable, twice the memory). The
// user agent reads back whole after create and after rotations that
// lengthen, keep and shorten it, and a session written before the chunks
// (one 'ua' field over 64 bytes) still reads back whole.
func TestRedisLongUserAgentKeepsListpack(t *testing.T) {
	t.Parallel()
	client := testredis.Start(t)
	prefix := testredis.KeyPrefix(t, client)
	store := tokenstore.NewRedis(client, tokenstore.WithPrefix(prefix))
	ctx := t.Context()
	browser := "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
	other := strings.Repeat("é", 64) // 128 bytes, a chunk boundary inside a rune

	uid := storedUID(t, store)
	s := newTestSession(t, uid, time.Now(), time.Hour)
	s.UserAgent, s.ClientAddr = browser, "203.0.113.7"
	if err := store.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	key := prefix + "{" + uid + "}:s:" + s.ID[len(uid)+1:]
	check := func(step, want string) {
		t.Helper()
		if enc, err := client.ObjectEncoding(ctx, key).Result(); err != nil || enc != "listpack" {
			t.Errorf("%s: session hash encoding %q, %v; want listpack", step, enc, err)
		}
		got, err := store.Session(ctx, s.ID)
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		if got.UserAgent != want {
			t.Errorf("%s: Session user agent %q, want %q", step, got.UserAgent, want)
		}
		list, err := store.ListSessions(ctx, uid)
		if err != nil || len(list) != 1 || list[0].UserAgent != want {
			t.Errorf("%s: ListSessions %+v, %v; want one session with user agent %q", step, list, err, want)
		}
	}
	check("created", browser)

	gen := uint64(0)
	for _, step := range []struct{ name, sent, want string }{
		{"rotated, same agent", browser, browser},
		{"rotated, agent not sent", "", browser},
		{"rotated, longer agent", other, other},
		{"rotated, short agent", "grpc-go/1.77.0", "grpc-go/1.77.0"},
		{"rotated, long again", browser, browser},
	} {
		got, _, err := store.Rotate(ctx, tokenstore.RotateRequest{SessionID: s.ID, Generation: gen, Nonce: s.Nonce,
			Now: time.Now(), Grace: time.Second, IdleTTL: time.Hour, UserAgent: step.sent})
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		gen = got.Generation
		if got.UserAgent != step.want {
			t.Errorf("%s: Rotate answered user agent %q, want %q", step.name, got.UserAgent, step.want)
		}
		check(step.name, step.want)
		if step.want == "grpc-go/1.77.0" {
			if n, _ := client.HExists(ctx, key, "ub").Result(); n {
				t.Errorf("%s: a second chunk 'ub' is left", step.name)
			}
		}
	}

	// Written by the layout before chunks: one 'ua' field of 101 bytes.
	if err := client.HDel(ctx, key, "ub").Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.HSet(ctx, key, "ua", browser).Err(); err != nil {
		t.Fatal(err)
	}
	got, err := store.Session(ctx, s.ID)
	if err != nil || got.UserAgent != browser {
		t.Errorf("old-layout session: user agent %q, %v; want %q", got.UserAgent, err, browser)
	}
	rot, _, err := store.Rotate(ctx, tokenstore.RotateRequest{SessionID: s.ID, Generation: gen, Nonce: s.Nonce,
		Now: time.Now(), Grace: time.Second, IdleTTL: time.Hour, UserAgent: browser})
	if err != nil || rot.UserAgent != browser {
		t.Errorf("old-layout session rotated: user agent %q, %v; want %q", rot.UserAgent, err, browser)
	}
}

// TestRedisFeedClient: WaitRevocations reads with the WithFeedClient
// client, and only it: the feed keeps reading when the main client cannot
// get a connection (its pool exhausted, here a client of a port where
// nothing listens), and the other calls do not use the feed's pool.
func TestRedisFeedClient(t *testing.T) {
	t.Parallel()
	live := testredis.Start(t)
	dead := tokenstore.NewClient(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:1"}, MaxRetries: -1, DialTimeout: time.Second, ContextTimeoutEnabled: true})
	defer dead.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	withFeed := tokenstore.NewRedis(dead, tokenstore.WithPrefix(testredis.KeyPrefix(t, live)), tokenstore.WithFeedClient(live))
	if _, _, ok, err := withFeed.WaitRevocations(ctx, tokenstore.CursorOrigin, 10, 10*time.Millisecond); err != nil || !ok {
		t.Fatalf("WaitRevocations on the feed client: ok %v, %v", ok, err)
	}
	if _, _, _, err := withFeed.Revocations(ctx, tokenstore.CursorOrigin, 10); !errors.Is(err, tokenstore.ErrUnavailable) {
		t.Errorf("Revocations went to %v, want the main client's ErrUnavailable", err)
	}
	without := tokenstore.NewRedis(dead, tokenstore.WithPrefix(testredis.KeyPrefix(t, live)))
	if _, _, _, err := without.WaitRevocations(ctx, tokenstore.CursorOrigin, 10, 10*time.Millisecond); !errors.Is(err, tokenstore.ErrUnavailable) {
		t.Errorf("WaitRevocations without a feed client: %v, want the main client's ErrUnavailable", err)
	}
}
