package audit_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/identityd/identity/audit"
	"github.com/identityd/identity/internal/testredis"
)

// The stream gets every event, in order, with the schema's fields, and
// stays bounded: MAXLEN ~ trims whole stream nodes (stream-node-max-entries,
// 100 by default), so it may hold up to a node more than asked.
func TestStreamBounded(t *testing.T) {
	t.Parallel()
	rdb := testredis.Start(t)
	key := testredis.KeyPrefix(t, rdb) + "audit"
	const maxLen, n = 200, 3000
	s := audit.NewStream(rdb, key, maxLen)
	for i := range n {
		s.Record(t.Context(), audit.Event{
			Name: audit.LoginFailed, Time: t0, Outcome: audit.Failure, Reason: "INVALID_CREDENTIALS",
			Username: fmt.Sprintf("user-%d", i), Roles: []string{"a", "b"},
		})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s.Close(ctx)
	if got := s.Written() + s.Dropped(); got != n {
		t.Fatalf("written %d + dropped %d = %d, want every one of %d accounted for", s.Written(), s.Dropped(), got, n)
	}
	if s.Dropped() != 0 {
		// The queue (10,000) holds every event of this test.
		t.Errorf("%d events dropped", s.Dropped())
	}
	l, err := rdb.XLen(t.Context(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if l < maxLen || l > maxLen+2*100 {
		t.Errorf("XLEN %d after %d events with MAXLEN ~ %d, want %d to %d", l, n, maxLen, maxLen, maxLen+200)
	}
	last, err := rdb.XRevRangeN(t.Context(), key, "+", "-", 1).Result()
	if err != nil || len(last) != 1 {
		t.Fatalf("XREVRANGE: %v %v", last, err)
	}
	want := map[string]any{
		"event": "login.failed", "time": "2026-12-03T14:04:05.000006Z", "outcome": "failure",
		"reason": "INVALID_CREDENTIALS", "username": fmt.Sprintf("user-%d", n-1), "roles": "a,b",
	}
	if fmt.Sprint(last[0].Values) != fmt.Sprint(want) {
		t.Errorf("last entry %v, want %v", last[0].Values, want)
	}
}

// A Redis that does not answer slows no Record: the queue fills, the
// rest are dropped and counted, and Close gives up at its deadline.
func TestStreamDropsWhenRedisHangs(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() { // accepts, reads, never answers
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	rdb := redis.NewClient(&redis.Options{Addr: lis.Addr().String(), MaxRetries: -1, DialTimeout: time.Minute, ReadTimeout: -1, WriteTimeout: -1})
	defer rdb.Close()
	const queue, n = 4, 1000
	s := audit.NewStream(rdb, "audit", 10, audit.WithQueueSize(queue), audit.WithWriteTimeout(time.Minute))
	for range n {
		s.Record(t.Context(), audit.Event{Name: audit.LoginSucceeded, Time: t0, Outcome: audit.Success})
	}
	// The writer holds at most one batch (128) in its stuck write, the
	// queue 4 more: everything else was dropped at Record.
	if got, least := s.Dropped(), uint64(n-queue-128); got < least {
		t.Errorf("%d dropped, want at least %d", got, least)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // Close must not wait for a Redis that never answers
	s.Close(ctx)
	if s.Written() != 0 {
		t.Errorf("%d written to a Redis that never answers", s.Written())
	}
}
