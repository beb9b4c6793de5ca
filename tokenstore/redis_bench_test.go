package tokenstore_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
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
