package tokenstore_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/tokenstore"
)

var scaleMax = flag.Int("redis-scale-max", 100_000,
	"BenchmarkRedisScale grows the store to this many sessions (10^3, 10^4, ... up to it)")

// BenchmarkRedisScale measures what sessions cost in Redis as their number
// grows (the targets in BENCHMARKS.md: at most 300 bytes of Redis memory per
// session, cost per operation flat from 10^3 to 10^6 sessions). On a private redis-server it
// grows the store to 10^3, 10^4, 10^5 sessions (and 10^6 with
// -args -redis-scale-max=1000000), one session per user, the common case and
// the most expensive per session (the user's session index is all its
// own), and at each size times Session (the session check: one HGETALL) and
// Rotate (one EVALSHA of rotate.lua) on random sessions, one call at a time.
//
// Every session's user record (with a 97-byte argon2id PHC string, as
// identityd stores) is created before the session, and memory is read
// between the two, so the figures are what the sessions add. Rotate runs on
// 1,000 sessions picked at random among all of them at each size, so it
// touches keys spread over the whole keyspace, not a few hot ones.
//
// Reported per sub-benchmark besides ns/op (the client's round trip, which
// loopback dominates): used-B/session, the growth of INFO used_memory per
// session created (keyspace and expiry dicts included); usage-B/session,
// MEMORY USAGE of what a session adds (sampled): its hash, the growth of
// its user's hash (the session index field) and the user's session zset
// {uid}:ss where the layout has one; and redis-us/op, Redis's own time per
// call (INFO commandstats).
//
//	go test -run '^$' -bench RedisScale -benchtime 20000x ./tokenstore/ -args -redis-scale-max=1000000
func BenchmarkRedisScale(b *testing.B) {
	srv := testredis.NewServer(b)
	client := srv.Client(b)
	store := tokenstore.NewRedis(client)
	ctx := context.Background()

	// A first batch opens the client's connections, so their buffers are
	// not counted as session memory; it is not counted either.
	all := createSessions(b, store, client, 100, nil)
	var sessionBytes, sessions int64 // memory growth while sessions were created
	var samples []int64              // MEMORY USAGE of what sampled sessions added
	gen := map[string]uint64{}       // the current generation of rotated sessions

	for size := 1_000; size <= *scaleMax; size *= 10 {
		var grown int64
		added := createSessions(b, store, client, size-len(all), &grown)
		sessionBytes += grown
		sessions += int64(len(added))
		all = append(all, added...)
		used := float64(sessionBytes) / float64(sessions)
		samples = append(samples, sampleUsage(b, client, added, 200)...)
		usage := mean(samples)

		var rot []tokenstore.Session
		for range 1000 {
			rot = append(rot, all[rand.IntN(len(all))].Session)
		}

		b.Run(fmt.Sprintf("sessions=%d/Session", size), func(b *testing.B) {
			resetStats(b, client)
			for b.Loop() {
				if _, err := store.Session(ctx, all[rand.IntN(len(all))].ID); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(used, "used-B/session")
			b.ReportMetric(usage, "usage-B/session")
			b.ReportMetric(commandUS(b, client, "hgetall"), "redis-us/op")
		})
		b.Run(fmt.Sprintf("sessions=%d/Rotate", size), func(b *testing.B) {
			resetStats(b, client)
			now := time.Now()
			for b.Loop() {
				r := rot[rand.IntN(len(rot))]
				s, _, err := store.Rotate(ctx, tokenstore.RotateRequest{
					SessionID: r.ID, Generation: gen[r.ID], Nonce: r.Nonce,
					Now: now, Grace: 10 * time.Second, IdleTTL: 720 * time.Hour,
				})
				if err != nil {
					b.Fatal(err)
				}
				gen[r.ID] = s.Generation
			}
			b.ReportMetric(commandUS(b, client, "evalsha"), "redis-us/op")
		})
	}
}

// benchPHC is an argon2id PHC string of the length identityd stores
// (97 bytes: 16-byte salt, 32-byte hash).
const benchPHC = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$" +
	"aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"

// benchUser is a user record as identityd makes one: a PHC string, a
// role, epoch 0.
func benchUser(uid string) tokenstore.User {
	return tokenstore.User{ID: uid, Username: "u-" + uid, PasswordHash: benchPHC, Roles: []string{"user"}, CreatedAt: time.Now()}
}

// benchSession is what a session adds, sampled: the user's id and hash
// key's MEMORY USAGE before the session was made.
type benchSession struct {
	tokenstore.Session
	userBefore int64
}

// createSessions stores n users and then one session for each, 32 at a
// time; grown, when not nil, receives the growth of used_memory while the
// sessions (not the users) were created. Sessions carry a gRPC client's
// user agent and address.
func createSessions(b *testing.B, store tokenstore.Store, c *redis.Client, n int, grown *int64) []benchSession {
	b.Helper()
	out := make([]benchSession, max(n, 0))
	ctx := context.Background()
	parallel(b, len(out), func(i int) error {
		out[i].UserID = newUID(b)
		return store.CreateUser(ctx, benchUser(out[i].UserID))
	})
	for i := range out {
		out[i].userBefore = memoryUsage(b, c, "identity:{"+out[i].UserID+"}:u")
	}
	before := usedMemory(b, c)
	parallel(b, len(out), func(i int) error {
		s := newTestSession(b, out[i].UserID, time.Now(), 90*24*time.Hour)
		s.UserAgent, s.ClientAddr = "grpc-go/1.77.0", "203.0.113.77"
		if err := store.CreateSession(ctx, s); err != nil {
			return err
		}
		out[i].Session = s
		return nil
	})
	if grown != nil {
		*grown = usedMemory(b, c) - before
	}
	return out
}

// sampleUsage is MEMORY USAGE of what a session added, for k sessions
// picked at random (one session per user: the user's index is all its
// own): its hash, the growth of its user's hash since before it, and the
// user's session zset where the layout has one.
func sampleUsage(b *testing.B, c *redis.Client, sessions []benchSession, k int) []int64 {
	b.Helper()
	out := make([]int64, k)
	for i := range out {
		s := sessions[rand.IntN(len(sessions))]
		out[i] = sessionAdds(b, c, "identity:", s.Session, s.userBefore)
	}
	return out
}

func mean(xs []int64) float64 {
	var sum int64
	for _, x := range xs {
		sum += x
	}
	return float64(sum) / float64(len(xs))
}

func resetStats(b *testing.B, c *redis.Client) {
	b.Helper()
	if err := c.ConfigResetStat(context.Background()).Err(); err != nil {
		b.Fatal(err)
	}
}

// commandUS is Redis's mean time per call of cmd since the last reset, in
// microseconds (INFO commandstats usec_per_call).
func commandUS(b *testing.B, c *redis.Client, cmd string) float64 {
	b.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.SplitSeq(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":")
		if !ok {
			continue
		}
		for f := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(f, "usec_per_call="); ok {
				x, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatal(err)
				}
				return x
			}
		}
	}
	return 0
}

var memoryUsers = flag.Int("redis-memory-users", 100_000,
	"BenchmarkRedisMemoryPerUser creates this many one-session users")

// BenchmarkRedisMemoryPerUser is the Redis memory of a one-session user's
// session at 10^5 users (the target in BENCHMARKS.md: at most 300 bytes),
// with every field a real session carries: credential epoch, client
// address, a user agent, and after one rotation with the refresh limiter
// on (field q). Two user agents: a gRPC client's (14 bytes) and a
// browser's (101 bytes, over Redis's default hash-max-listpack-value of 64).
// Each case runs on a fresh private redis-server with default settings.
// Sessions are made through tokenstore.Redis (CreateSession, then Rotate,
// 32 at a time) for users whose record (a 97-byte argon2id PHC string,
// epoch 1) is created first, and memory is read between the two, so the
// figures are what the session adds: its hash, the growth of its user's
// hash (the session index field) and the user's session zset where the
// layout has one.
//
//	go test -run '^$' -bench RedisMemoryPerUser -benchtime 1x ./tokenstore/
func BenchmarkRedisMemoryPerUser(b *testing.B) {
	for _, c := range []struct{ name, ua string }{
		{"ua=grpc", grpcUA},
		{"ua=browser", browserUA},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				srv := testredis.NewServer(b)
				used, usage, enc := memoryPerUser(b, srv.Client(b), *memoryUsers, c.ua)
				b.ReportMetric(used, "used-B/user")
				b.ReportMetric(usage, "usage-B/user")
				b.Logf("%d users, %s: used_memory %.0f B/user, MEMORY USAGE %.0f B/user, session hash %s, user hash %s",
					*memoryUsers, c.name, used, usage, enc[0], enc[1])
			}
		})
	}
}

const (
	grpcUA    = "grpc-go/1.77.0"
	browserUA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)

// memoryPerUser makes n users and one session each on client (a private
// server, default prefix) and returns the used_memory growth and the mean
// MEMORY USAGE (200 sampled) of what a session added, with the encodings
// of a session hash and of a user hash.
func memoryPerUser(t testing.TB, client *redis.Client, n int, ua string) (used, usage float64, encoding [2]string) {
	store := tokenstore.NewRedis(client)
	ctx := context.Background()
	uids := make([]string, n)
	for i := range uids {
		uids[i] = newUID(t)
	}
	parallel(t, n, func(i int) error {
		if err := store.CreateUser(ctx, benchUser(uids[i])); err != nil {
			return err
		}
		// Epoch 1, as after one password change: the sessions carry k.
		_, err := store.UpdateUser(ctx, uids[i], func(u tokenstore.User) (tokenstore.User, error) { u.Epoch = 1; return u, nil })
		return err
	})
	sampled := min(n, 200)
	userBefore := make([]int64, sampled)
	for i := range userBefore {
		userBefore[i] = memoryUsage(t, client, "identity:{"+uids[i]+"}:u")
	}
	sessions := make([]tokenstore.Session, n)
	before := usedMemory(t, client)
	parallel(t, n, func(i int) error {
		s, err := realSession(ctx, t, store, uids[i], ua)
		sessions[i] = s
		return err
	})
	used = float64(usedMemory(t, client)-before) / float64(n)
	var total int64
	for i := range sampled {
		total += sessionAdds(t, client, "identity:", sessions[i], userBefore[i])
	}
	usage = float64(total) / float64(sampled)
	s := sessions[0]
	uid, rnd, _ := strings.Cut(s.ID, ".")
	encoding[0] = client.ObjectEncoding(ctx, "identity:{"+uid+"}:s:"+rnd).Val()
	encoding[1] = client.ObjectEncoding(ctx, "identity:{"+uid+"}:u").Val()
	return used, usage, encoding
}

// realSession creates a session of uid (whose user is at epoch 1) with
// every field a real one has: epoch, client address, user agent ua, and
// after one rotation with the refresh limiter on.
func realSession(ctx context.Context, t testing.TB, store tokenstore.Store, uid, ua string) (tokenstore.Session, error) {
	s := newTestSession(t, uid, time.Now(), 90*24*time.Hour)
	s.Epoch, s.UserAgent, s.ClientAddr = 1, ua, "203.0.113.77"
	if err := store.CreateSession(ctx, s); err != nil {
		return s, err
	}
	_, _, err := store.Rotate(ctx, tokenstore.RotateRequest{
		SessionID: s.ID, Nonce: s.Nonce, Now: time.Now(), Grace: 10 * time.Second, IdleTTL: 720 * time.Hour,
		Limit: tokenstore.UseLimit{Every: time.Second, Burst: 5}, UserAgent: ua, ClientAddr: s.ClientAddr,
	})
	return s, err
}

// sessionAdds is MEMORY USAGE of what session s added under prefix: its
// hash, the growth of its user's hash since userBefore (the MEMORY USAGE
// of that hash before s was created), and its user's session zset
// "{uid}:ss" if there is one (the layout before the index moved into the
// user hash), for a user whose only session s is.
func sessionAdds(t testing.TB, c *redis.Client, prefix string, s tokenstore.Session, userBefore int64) int64 {
	t.Helper()
	uid, rnd, _ := strings.Cut(s.ID, ".")
	tag := prefix + "{" + uid + "}"
	return memoryUsage(t, c, tag+":s:"+rnd) + memoryUsage(t, c, tag+":u") - userBefore + memoryUsageOr0(t, c, tag+":ss")
}

// parallel runs f(0..n-1), 32 at a time.
func parallel(t testing.TB, n int, f func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	var failed atomic.Int64
	var first atomic.Value
	next := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil && failed.Add(1) == 1 {
					first.Store(err)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d calls failed, the first with %v", n, first.Load())
	}
}
