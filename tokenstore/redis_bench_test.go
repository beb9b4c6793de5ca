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
// grows (DESIGN.md: at most 300 bytes of Redis memory per session, cost per
// operation flat from 10^3 to 10^6 sessions). On a private redis-server it
// grows the store to 10^3, 10^4, 10^5 sessions (and 10^6 with
// -args -redis-scale-max=1000000), one session per user, the common case and
// the most expensive per session (each user also has its session zset), and
// at each size times Session (the session check: one HGETALL) and Rotate
// (one EVALSHA of rotate.lua) on random sessions, one call at a time.
//
// Reported per sub-benchmark besides ns/op: used-B/session, the growth of
// INFO used_memory per session created (keyspace and expiry dicts
// included), usage-B/session, MEMORY USAGE of a session's hash plus its
// user's zset (sampled), and redis-us/op, Redis's own time per call
// (INFO commandstats), which the client's round trip does not blur.
//
//	go test -run '^$' -bench RedisScale -benchtime 20000x ./tokenstore/
func BenchmarkRedisScale(b *testing.B) {
	srv := testredis.NewServer(b)
	client := srv.Client(b)
	store := tokenstore.NewRedis(client)
	ctx := context.Background()

	// Rotate reads the session's user: these users exist; every other
	// session's user is only an id, so the memory measured after them is
	// what sessions cost, not accounts.
	const rotators = 100
	type live struct {
		id, nonce string
		gen       uint64
	}
	var rot []live
	var ids []string // every session id, for random Session calls
	for i := range rotators {
		uid := newUID(b)
		if err := store.CreateUser(ctx, tokenstore.User{ID: uid, Username: "scale-" + strconv.Itoa(i), CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
		s := newTestSession(b, uid, time.Now(), 90*24*time.Hour)
		if err := store.CreateSession(ctx, s); err != nil {
			b.Fatal(err)
		}
		rot = append(rot, live{id: s.ID, nonce: s.Nonce})
		ids = append(ids, s.ID)
	}
	// createSessions opens its connections now, so their buffers are not
	// counted as session memory either.
	ids = append(ids, createSessions(b, store, 100)...)
	counted := len(ids)
	baseline := usedMemory(b, client)

	for size := 1_000; size <= *scaleMax; size *= 10 {
		if add := size - len(ids); add > 0 {
			ids = append(ids, createSessions(b, store, add)...)
		}
		used := float64(usedMemory(b, client)-baseline) / float64(len(ids)-counted)
		usage := sampleUsage(b, client, ids[counted:], 200)

		b.Run(fmt.Sprintf("sessions=%d/Session", size), func(b *testing.B) {
			resetStats(b, client)
			for b.Loop() {
				if _, err := store.Session(ctx, ids[rand.IntN(len(ids))]); err != nil {
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
				r := &rot[rand.IntN(len(rot))]
				s, _, err := store.Rotate(ctx, tokenstore.RotateRequest{
					SessionID: r.id, Generation: r.gen, Nonce: r.nonce,
					Now: now, Grace: 10 * time.Second, IdleTTL: 720 * time.Hour,
				})
				if err != nil {
					b.Fatal(err)
				}
				r.gen = s.Generation
			}
			b.ReportMetric(commandUS(b, client, "evalsha"), "redis-us/op")
		})
	}
}

// createSessions stores n sessions of n fresh users, 32 at a time.
func createSessions(b *testing.B, store tokenstore.Store, n int) []string {
	b.Helper()
	ids := make([]string, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				s := newTestSession(b, newUID(b), time.Now(), 90*24*time.Hour)
				if err := store.CreateSession(context.Background(), s); err != nil {
					b.Error(err)
				}
				ids[i] = s.ID
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return ids
}

// sampleUsage is MEMORY USAGE of a session's hash plus its user's zset,
// averaged over k sessions (one session per user: the zset is all theirs).
func sampleUsage(b *testing.B, c *redis.Client, ids []string, k int) float64 {
	b.Helper()
	var total int64
	for range k {
		id := ids[rand.IntN(len(ids))]
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
