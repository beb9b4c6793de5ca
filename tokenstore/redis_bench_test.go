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
// the most expensive per session (each user also has its session zset), and
// at each size times Session (the session check: one HGETALL) and Rotate
// (one EVALSHA of rotate.lua) on random sessions, one call at a time.
//
// Sessions are created for user ids with no user record, so the memory
// measured is the sessions' alone. Rotate reads the session's user: at each
// size, 1,000 sessions picked at random among all of them get their user
// record (after the memory is read), and Rotate runs on those, so it too
// touches keys spread over the whole keyspace, not a few hot ones.
//
// Reported per sub-benchmark besides ns/op (the client's round trip, which
// loopback dominates): used-B/session, the growth of INFO used_memory per
// session created (keyspace and expiry dicts included); usage-B/session,
// MEMORY USAGE of a session's hash plus its user's zset (sampled); and
// redis-us/op, Redis's own time per call (INFO commandstats).
//
//	go test -run '^$' -bench RedisScale -benchtime 20000x ./tokenstore/ -args -redis-scale-max=1000000
func BenchmarkRedisScale(b *testing.B) {
	srv := testredis.NewServer(b)
	client := srv.Client(b)
	store := tokenstore.NewRedis(client)
	ctx := context.Background()

	// A first batch opens the client's connections, so their buffers are
	// not counted as session memory; it is not counted either.
	all := createSessions(b, store, 100)
	var sessionBytes, sessions int64 // memory growth while sessions were created
	withUser := map[string]bool{}
	gen := map[string]uint64{} // the current generation of rotated sessions

	for size := 1_000; size <= *scaleMax; size *= 10 {
		before := usedMemory(b, client)
		added := createSessions(b, store, size-len(all))
		sessionBytes += usedMemory(b, client) - before
		sessions += int64(len(added))
		all = append(all, added...)
		used := float64(sessionBytes) / float64(sessions)
		usage := sampleUsage(b, client, all[100:], 200)

		var rot []tokenstore.Session
		for range 1000 {
			s := all[rand.IntN(len(all))]
			if !withUser[s.UserID] {
				withUser[s.UserID] = true
				if err := store.CreateUser(ctx, tokenstore.User{ID: s.UserID, Username: "scale-" + s.UserID, CreatedAt: time.Now()}); err != nil {
					b.Fatal(err)
				}
			}
			rot = append(rot, s)
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

// createSessions stores n sessions of n fresh users, 32 at a time.
func createSessions(b *testing.B, store tokenstore.Store, n int) []tokenstore.Session {
	b.Helper()
	out := make([]tokenstore.Session, max(n, 0))
	var wg sync.WaitGroup
	next := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				s := newTestSession(b, newUID(b), time.Now(), 90*24*time.Hour)
				if err := store.CreateSession(context.Background(), s); err != nil {
					b.Error(err)
				}
				out[i] = s
			}
		})
	}
	for i := range out {
		next <- i
	}
	close(next)
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return out
}

// sampleUsage is MEMORY USAGE of a session's hash plus its user's zset,
// averaged over k sessions (one session per user: the zset is all theirs).
func sampleUsage(b *testing.B, c *redis.Client, sessions []tokenstore.Session, k int) float64 {
	b.Helper()
	var total int64
	for range k {
		id := sessions[rand.IntN(len(sessions))].ID
		uid, rnd, _ := strings.Cut(id, ".")
		total += memoryUsage(b, c, "identity:{"+uid+"}:s:"+rnd) + memoryUsage(b, c, "identity:{"+uid+"}:ss")
	}
	return float64(total) / float64(k)
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
// 32 at a time) for users whose record is created first, so the user
// record's memory is excluded by measuring from after it.
//
//	go test -run '^$' -bench RedisMemoryPerUser -benchtime 1x ./tokenstore/
func BenchmarkRedisMemoryPerUser(b *testing.B) {
	for _, c := range []struct{ name, ua string }{
		{"ua=grpc", "grpc-go/1.77.0"},
		{"ua=browser", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				used, usage, enc := memoryPerUser(b, *memoryUsers, c.ua)
				b.ReportMetric(used, "used-B/user")
				b.ReportMetric(usage, "usage-B/user")
				b.Logf("%d users, %s: used_memory %.0f B/user, MEMORY USAGE %.0f B/user, session hash %s",
					*memoryUsers, c.name, used, usage, enc)
			}
		})
	}
}

func memoryPerUser(b *testing.B, n int, ua string) (used, usage float64, encoding string) {
	srv := testredis.NewServer(b)
	client := srv.Client(b)
	store := tokenstore.NewRedis(client)
	ctx := context.Background()
	uids := make([]string, n)
	for i := range uids {
		uids[i] = newUID(b)
	}
	parallel(b, n, func(i int) error {
		if err := store.CreateUser(ctx, tokenstore.User{ID: uids[i], Username: "m-" + uids[i], CreatedAt: time.Now()}); err != nil {
			return err
		}
		// Epoch 1, as after one password change: the sessions carry k.
		_, err := store.UpdateUser(ctx, uids[i], func(u tokenstore.User) (tokenstore.User, error) { u.Epoch = 1; return u, nil })
		return err
	})
	sessions := make([]tokenstore.Session, n)
	before := usedMemory(b, client)
	parallel(b, n, func(i int) error {
		s := newTestSession(b, uids[i], time.Now(), 90*24*time.Hour)
		s.Epoch, s.UserAgent, s.ClientAddr = 1, ua, "203.0.113.77"
		if err := store.CreateSession(ctx, s); err != nil {
			return err
		}
		_, _, err := store.Rotate(ctx, tokenstore.RotateRequest{
			SessionID: s.ID, Nonce: s.Nonce, Now: time.Now(), Grace: 10 * time.Second, IdleTTL: 720 * time.Hour,
			Limit: tokenstore.UseLimit{Every: time.Second, Burst: 5}, UserAgent: ua, ClientAddr: s.ClientAddr,
		})
		sessions[i] = s
		return err
	})
	used = float64(usedMemory(b, client)-before) / float64(n)
	usage = sampleUsage(b, client, sessions, 200)
	s := sessions[0]
	uid, rnd, _ := strings.Cut(s.ID, ".")
	encoding = client.ObjectEncoding(ctx, "identity:{"+uid+"}:s:"+rnd).Val()
	return used, usage, encoding
}

// parallel runs f(0..n-1), 32 at a time.
func parallel(b *testing.B, n int, f func(i int) error) {
	b.Helper()
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
		b.Fatalf("%d calls failed, the first with %v", n, first.Load())
	}
}
