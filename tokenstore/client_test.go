package tokenstore_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/tokenstore"
)

// TestClusterClientNoResendAfterLostReply loses the reply to a rotation
// after Redis ran it (the connection closes once the reply has arrived),
// on a real cluster. Through tokenstore.NewClient the rotation reaches
// Redis once and the caller gets ErrUnavailable; through a plain go-redis
// cluster client its redirect loop sends it again: that resend is what
// NewClient's hook exists to stop (if go-redis stops resending, the
// second case fails and the hook may go).
func TestClusterClientNoResendAfterLostReply(t *testing.T) {
	t.Parallel()
	cluster := testredis.SharedCluster(t)
	for _, tc := range []struct {
		name      string
		newClient func(*redis.UniversalOptions) redis.UniversalClient
		wantSends int32
	}{
		{"tokenstore.NewClient", tokenstore.NewClient, 1},
		{"plain go-redis", redis.NewUniversalClient, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			opts, err := tokenstore.ClientOptions("", cluster.Addrs())
			if err != nil {
				t.Fatal(err)
			}
			var faults lostReplies
			opts.Dialer = faults.dial
			client := tc.newClient(opts)
			t.Cleanup(func() { client.Close() })
			var sends atomic.Int32
			client.(*redis.ClusterClient).OnNewNode(func(node *redis.Client) { node.AddHook(countHook{"evalsha", &sends}) })
			store := newRedisStore(t, client)
			ctx := t.Context()

			s := newTestSession(t, storedUID(t, store), time.Now(), time.Hour)
			if err := store.CreateSession(ctx, s); err != nil {
				t.Fatal(err)
			}
			req := tokenstore.RotateRequest{SessionID: s.ID, Nonce: s.Nonce, Now: time.Now(), Grace: 10 * time.Second, IdleTTL: time.Hour}
			if _, _, err := store.Rotate(ctx, req); err != nil { // loads the script on its node
				t.Fatal(err)
			}
			req.Generation = 1
			sends.Store(0)
			faults.armed.Store(true)
			_, _, err = store.Rotate(ctx, req)
			if faults.lost.Load() != 1 {
				t.Fatalf("%d replies lost, want 1: the test did not exercise a lost reply", faults.lost.Load())
			}
			if got := sends.Load(); got != tc.wantSends {
				t.Errorf("the rotation reached a node %d times, want %d", got, tc.wantSends)
			}
			if tc.wantSends == 1 && !errors.Is(err, tokenstore.ErrUnavailable) {
				t.Errorf("Rotate with its reply lost: %v, want ErrUnavailable", err)
			}
			stored, err := store.Session(ctx, s.ID)
			if err != nil || stored.Generation != 2 {
				t.Fatalf("stored session %+v, %v: want generation 2 (the rotation ran once)", stored, err)
			}
		})
	}
}

// TestClusterClientFollowsFailover: a store on tokenstore.NewClient follows
// an orderly failover by MOVED without an error, and after a master is
// killed it finds the promoted replica by itself, well before go-redis's
// periodic slot-map reload (60 s) would have.
func TestClusterClientFollowsFailover(t *testing.T) {
	t.Parallel()
	cluster := testredis.NewCluster(t)
	opts, err := tokenstore.ClientOptions("", cluster.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	client := tokenstore.NewClient(opts)
	t.Cleanup(func() { client.Close() })
	store := tokenstore.NewRedis(client)
	ctx := t.Context()
	uid := storedUID(t, store)
	s := newTestSession(t, uid, time.Now(), time.Hour)
	if err := store.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	first := cluster.MasterOf(t, "{"+uid+"}")
	second := cluster.ReplicaOf(t, first)

	// Orderly: the client's slot map still names the old master, which
	// now answers MOVED; the client follows it within the same call.
	cluster.Failover(t, second)
	if _, err := store.Session(ctx, s.ID); err != nil {
		t.Fatalf("Session after a manual failover: %v (MOVED not followed?)", err)
	}

	// A crash: no MOVED comes from a dead node.
	cluster.Kill(t, second)
	promoted := cluster.WaitPromotion(t, first, 30*time.Second)
	req := tokenstore.RotateRequest{SessionID: s.ID, Nonce: s.Nonce, Now: time.Now(), Grace: 10 * time.Second, IdleTTL: time.Hour}
	failed := 0
	var got tokenstore.Session
	for start := time.Now(); ; {
		c, cancel := context.WithTimeout(ctx, time.Second)
		got, _, err = store.Rotate(c, req)
		cancel()
		if err == nil {
			break
		}
		if !errors.Is(err, tokenstore.ErrUnavailable) {
			t.Fatalf("Rotate after the failover: %v", err)
		}
		failed++
		// Generous: it waits for something that takes milliseconds, but
		// without the reload on error it took up to a minute.
		if time.Since(start) > 20*time.Second {
			t.Fatalf("Rotate still failing 20s after the promotion: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("first rotation after the promotion succeeded %v after it, after %d failed calls", time.Since(promoted).Round(time.Millisecond), failed)
	if got.Generation != 1 {
		t.Fatalf("rotated to generation %d, want 1", got.Generation)
	}
}

// lostReplies is a dialer whose connections, when armed, lose the reply to
// the next EVALSHA: the command reaches Redis and runs, the reply arrives,
// and the connection closes before the client reads it.
type lostReplies struct {
	armed atomic.Bool
	lost  atomic.Int32
}

func (l *lostReplies) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &lossyConn{Conn: c, l: l}, nil
}

type lossyConn struct {
	net.Conn
	l    *lostReplies
	drop atomic.Bool
}

func (c *lossyConn) Write(b []byte) (int, error) {
	if bytes.Contains(bytes.ToLower(b), []byte("evalsha")) && c.l.armed.CompareAndSwap(true, false) {
		c.drop.Store(true)
	}
	return c.Conn.Write(b)
}

func (c *lossyConn) Read(b []byte) (int, error) {
	if !c.drop.CompareAndSwap(true, false) {
		return c.Conn.Read(b)
	}
	c.Conn.Read(make([]byte, 64<<10)) // the reply: Redis ran the script
	c.l.lost.Add(1)
	c.Conn.Close()
	return 0, io.EOF
}

// countHook counts the commands named name that a client sends.
type countHook struct {
	name string
	n    *atomic.Int32
}

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == h.name {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestClientDialsOncePerCommand: a command for a single Redis that refuses
// connections fails after one dial (go-redis's default is five, 100 ms
// apart), as a cluster's node clients do (ClientOptions sets both).
func TestClientDialsOncePerCommand(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	o, err := tokenstore.ClientOptions("redis://"+addr+"/0", nil)
	if err != nil {
		t.Fatal(err)
	}
	var dials atomic.Int32
	o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	c := tokenstore.NewClient(o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.Set(ctx, "k", "v", 0).Err(); err == nil {
		t.Fatal("SET to a closed port succeeded")
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("one command dialed %d times, want once", n)
	}
}
