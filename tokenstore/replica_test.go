package tokenstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/tokenstore"
)

// replicaWait is how long the tests let a replica confirm a write: long
// on a loaded machine for a replica that runs, and what a frozen one
// costs a test.
const replicaWait = 2 * time.Second

// replicatedStore is a store on the primary of a primary+replica pair
// that waits for the replica, and a plain client of the replica.
func replicatedStore(t *testing.T) (*testredis.Replicated, *tokenstore.Redis, *redis.Client) {
	t.Helper()
	rep := testredis.NewReplicated(t)
	opts, err := tokenstore.ClientOptions(rep.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	client := tokenstore.NewClient(opts)
	t.Cleanup(func() { client.Close() })
	replica := redis.NewClient(&redis.Options{Addr: rep.ReplicaAddr(), MaxRetries: -1})
	t.Cleanup(func() { replica.Close() })
	return rep, tokenstore.NewRedis(client, tokenstore.WithReplicaWait(1, replicaWait)), replica
}

// TestRedisRevocationConfirmedByReplica: a revocation that answers OK is
// on the replica at that moment (event and deletion), and one the frozen
// replica cannot confirm fails with ErrNotReplicated and ErrUnavailable,
// leaving the session in place for the retry, which succeeds once the
// replica runs again.
func TestRedisRevocationConfirmedByReplica(t *testing.T) {
	t.Parallel()
	rep, store, replica := replicatedStore(t)
	ctx := t.Context()
	uid := newUID(t)
	if err := store.CreateUser(ctx, tokenstore.User{ID: uid, Username: "rw-" + uid, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	first := newTestSession(t, uid, time.Now(), time.Hour)
	second := newTestSession(t, uid, time.Now(), time.Hour)
	for _, s := range []tokenstore.Session{first, second} {
		if err := store.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}

	// Replica up: OK means the replica has it now, not eventually.
	if err := store.RevokeSession(ctx, first.ID, time.Now()); err != nil {
		t.Fatalf("RevokeSession with the replica up: %v", err)
	}
	if n := countKeys(t, replica, "identity:{"+uid+"}:s:*"); n != 1 {
		t.Errorf("replica holds %d session keys right after the OK, want 1 (the other session)", n)
	}
	if n, err := replica.XLen(ctx, "identity:{revocations}").Result(); err != nil || n != 1 {
		t.Errorf("replica's revocation stream right after the OK: %d events, %v; want 1", n, err)
	}

	rep.Freeze(t)
	calls := map[string]func(context.Context) error{
		"RevokeSession": func(c context.Context) error { return store.RevokeSession(c, second.ID, time.Now()) },
		"RevokeUserSessions": func(c context.Context) error {
			_, err := store.RevokeUserSessions(c, uid, time.Now())
			return err
		},
		"UpdateUser": func(c context.Context) error {
			_, err := store.UpdateUser(c, uid, func(u tokenstore.User) (tokenstore.User, error) { u.Disabled = true; return u, nil })
			return err
		},
	}
	for name, call := range calls {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := call(c)
		cancel()
		if !errors.Is(err, tokenstore.ErrNotReplicated) || !errors.Is(err, tokenstore.ErrUnavailable) {
			t.Errorf("%s with the replica frozen: %v, want ErrNotReplicated and ErrUnavailable", name, err)
		}
		t.Logf("%s with the replica frozen: %v", name, err)
	}
	// The events were not confirmed, so nothing was deleted after them:
	// the session is there for the retry.
	if _, err := store.Session(ctx, second.ID); err != nil {
		t.Fatalf("session after the unconfirmed revocations: %v, want it still live", err)
	}

	rep.Thaw()
	rep.WaitReplicaSynced(t, 20*time.Second)
	if err := store.RevokeSession(ctx, second.ID, time.Now()); err != nil {
		t.Fatalf("retried RevokeSession after the thaw: %v", err)
	}
	if _, err := store.Session(ctx, second.ID); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("session after the retried revocation: %v, want ErrNotFound", err)
	}
	if n := countKeys(t, replica, "identity:{"+uid+"}:s:*"); n != 0 {
		t.Errorf("replica holds %d session keys after the retried OK, want 0", n)
	}
}

// TestRedisReplicaWaitWithoutReplica: asked to wait for a replica that
// does not exist, a revocation fails closed rather than answering OK.
func TestRedisReplicaWaitWithoutReplica(t *testing.T) {
	t.Parallel()
	srv := testredis.NewServer(t)
	store := tokenstore.NewRedis(srv.Client(t), tokenstore.WithReplicaWait(1, 100*time.Millisecond))
	ctx := t.Context()
	uid := newUID(t)
	if err := store.CreateUser(ctx, tokenstore.User{ID: uid, Username: "nr-" + uid, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	s := newTestSession(t, uid, time.Now(), time.Hour)
	if err := store.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	err := store.RevokeSession(ctx, s.ID, time.Now())
	if !errors.Is(err, tokenstore.ErrNotReplicated) || !errors.Is(err, tokenstore.ErrUnavailable) {
		t.Fatalf("RevokeSession waiting for a replica that does not exist: %v, want ErrNotReplicated", err)
	}
}

func countKeys(t *testing.T, c *redis.Client, pattern string) int {
	t.Helper()
	keys, err := c.Keys(t.Context(), pattern).Result()
	if err != nil {
		t.Fatal(err)
	}
	return len(keys)
}

// TestClusterRevocationAfterFailover: a revocation waited for on Cluster
// goes to the node that owned the key when the client last looked; after
// an orderly failover that node (now a replica) answers MOVED, which the store reports as
// ErrUnavailable (after asking for a new slot map) rather than resending
// the write elsewhere itself, and the caller's retry reaches the new
// master and its replica.
func TestClusterRevocationAfterFailover(t *testing.T) {
	t.Parallel()
	cluster := testredis.NewCluster(t)
	opts, err := tokenstore.ClientOptions("", cluster.Addrs())
	if err != nil {
		t.Fatal(err)
	}
	client := tokenstore.NewClient(opts)
	t.Cleanup(func() { client.Close() })
	store := tokenstore.NewRedis(client, tokenstore.WithReplicaWait(1, 5*time.Second))
	ctx := t.Context()
	// The revocation stream's master fails over; the session lives on
	// another master, so nothing the revocation does before its first
	// waited write (the session's EXISTS) shows the client the new map.
	streamMaster := cluster.MasterOf(t, "identity:{revocations}")
	uid := storedUID(t, store)
	for cluster.MasterOf(t, "{"+uid+"}") == streamMaster {
		uid = storedUID(t, store)
	}
	s := newTestSession(t, uid, time.Now(), time.Hour)
	if err := store.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := store.Revocations(ctx, "", 0); err != nil { // the client knows the stream's master
		t.Fatal(err)
	}
	cluster.Failover(t, cluster.ReplicaOf(t, streamMaster))

	failed := 0
	for start := time.Now(); ; failed++ {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := store.RevokeSession(c, s.ID, time.Now())
		cancel()
		if err == nil {
			break
		}
		if !errors.Is(err, tokenstore.ErrUnavailable) {
			t.Fatalf("RevokeSession after a failover: %v, want success or ErrUnavailable", err)
		}
		t.Logf("RevokeSession after the failover: %v", err)
		if time.Since(start) > 30*time.Second {
			t.Fatalf("RevokeSession still failing 30s after the failover: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("RevokeSession confirmed after %d failed attempts", failed)
	if failed == 0 {
		t.Error("the first RevokeSession after the failover succeeded: the test did not reach the old master (MOVED)")
	}
	if _, err := store.Session(ctx, s.ID); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Fatalf("session after the confirmed revocation: %v, want ErrNotFound", err)
	}
	events, _, ok, err := store.Revocations(ctx, tokenstore.CursorOrigin, 100)
	if err != nil || !ok {
		t.Fatalf("revocations: %v, ok %v", err, ok)
	}
	n := 0
	for _, e := range events {
		if e.SessionID == s.ID {
			n++
		}
	}
	if n == 0 || n > failed+1 {
		t.Errorf("%d revocation events for the session after %d attempts, want 1 to %d", n, failed+1, failed+1)
	}
}
