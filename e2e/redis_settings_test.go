package e2e

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testredis"
)

// TestLogoutWaitsForReplica: with --redis-wait-replicas 1 a Logout answers
// OK only once the replica has the revocation. With the replica frozen
// (SIGSTOP) it answers UNAVAILABLE / STORE_UNAVAILABLE after the wait
// timeout, so the client retries; once the replica runs again the retry
// answers OK and the session's tokens are refused.
func TestLogoutWaitsForReplica(t *testing.T) {
	t.Parallel()
	rep := testredis.NewReplicated(t)
	d := startIdentityd(t, opts{redisURL: rep.URL(), flags: map[string]string{
		"redis-wait-replicas": "1",
		"redis-wait-timeout":  "1s",
	}})
	for _, p := range protocols {
		tp := d.loginVia(t, p, d.Username, d.Password)
		requireSuccess(t, d.logoutVia(t, p, tp.RefreshToken, false))
		d.requireTokenRejected(t, tp.AccessToken, "TOKEN_REVOKED")
	}

	tp := d.login(t, d.Username, d.Password)
	other := d.login(t, d.Username, d.Password)
	rep.Freeze(t)
	for _, p := range protocols {
		start := time.Now()
		requireFailure(t, d.logoutVia(t, p, tp.RefreshToken, false), codes.Unavailable, "STORE_UNAVAILABLE")
		t.Logf("%s Logout with the replica frozen: STORE_UNAVAILABLE after %v (wait timeout 1s)", p, time.Since(start).Round(time.Millisecond))
		start = time.Now()
		requireFailure(t, d.logoutVia(t, p, other.RefreshToken, true), codes.Unavailable, "STORE_UNAVAILABLE")
		t.Logf("%s Logout all_sessions with the replica frozen: STORE_UNAVAILABLE after %v", p, time.Since(start).Round(time.Millisecond))
	}
	rep.Thaw()
	rep.WaitReplicaSynced(t, 20*time.Second)

	// The client's retry: the session is still there (the event was
	// appended, the deletion waited for its confirmation), so it succeeds.
	requireSuccess(t, d.logoutVia(t, viaGRPC, tp.RefreshToken, false))
	_, f := d.refreshVia(t, viaREST, tp.RefreshToken)
	requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
	d.requireTokenRejected(t, tp.AccessToken, "TOKEN_REVOKED")
	requireSuccess(t, d.logoutVia(t, viaREST, other.RefreshToken, true))
	_, f = d.refreshVia(t, viaGRPC, other.RefreshToken)
	requireFailure(t, f, codes.Unauthenticated, "REFRESH_TOKEN_INVALID")
}

// TestEvictingRedisRefused: identityd refuses a Redis whose
// maxmemory-policy evicts keys, naming the setting; with
// --redis-allow-eviction it starts and warns.
func TestEvictingRedisRefused(t *testing.T) {
	t.Parallel()
	r := testredis.NewServer(t, testredis.WithArgs("--maxmemory-policy", "allkeys-lru"))
	log := testidentityd.StartRefused(t, testidentityd.WithFlags(defaultFlags()), testidentityd.WithRedis(r))
	for _, want := range []string{"identityd: refusing to start", "maxmemory-policy allkeys-lru", "noeviction", "--redis-allow-eviction"} {
		if !strings.Contains(log, want) {
			t.Errorf("identityd's refusal does not say %q; log:\n%s", want, log)
		}
	}

	d := startIdentityd(t, opts{redis: r, flags: map[string]string{"redis-allow-eviction": "true"}})
	d.login(t, d.Username, d.Password)
	if log := d.Log.String(); !strings.Contains(log, "maxmemory_policy=allkeys-lru") || !strings.Contains(log, "level=WARN") {
		t.Errorf("identityd started on an evicting Redis without a warning naming the policy; log:\n%s", log)
	}
}

// TestRecommendedACL runs identityd on the Redis user the README
// recommends, with exactly the commands it lists, through a session's
// whole life and the admin tool, on a primary with a replica that it
// waits for (so WAIT is used too); Redis's ACL LOG must then hold no
// refusal, so the list in the README is complete.
func TestRecommendedACL(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var rule []any
	for line := range strings.Lines(string(readme)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "ACL SETUSER identity "); ok {
			rule = []any{"ACL", "SETUSER", "identity"}
			for _, f := range strings.Fields(rest) {
				rule = append(rule, f)
			}
			break
		}
	}
	if rule == nil {
		t.Fatal("README.md has no line starting with \"ACL SETUSER identity \"")
	}
	for _, a := range rule[3:] {
		if a := a.(string); strings.HasPrefix(a, "+@") || a == "allcommands" || a == "~*" || a == "allkeys" || a == "&*" {
			t.Errorf("the README's ACL grants %s: list the commands, keys and channels one by one", a)
		}
	}
	pw := rand.Text()
	for i, a := range rule {
		if a == ">CHANGE-ME" {
			rule[i] = ">" + pw
		}
	}
	r := testredis.NewReplicated(t)
	admin := r.Client(t)
	if err := admin.Do(t.Context(), rule...).Err(); err != nil {
		t.Fatalf("the README's ACL SETUSER: %v", err)
	}
	admin.Do(t.Context(), "ACL", "LOG", "RESET")
	d := startIdentityd(t, opts{
		redisURL: fmt.Sprintf("redis://identity:%s@%s/0", pw, r.PrimaryAddr()),
		flags:    map[string]string{"redis-wait-replicas": "1"},
	})
	d.Remember(pw)

	addUser(t, d, "acl-bob", "correct horse battery", "reader")
	for _, p := range protocols {
		tp := d.loginVia(t, p, "acl-bob", "correct horse battery")
		next, f := d.refreshVia(t, p, tp.RefreshToken)
		requireSuccess(t, f)
		if _, f := d.verifyVia(t, p, next.AccessToken); f != nil {
			t.Fatalf("%s Verify: %v", p, f)
		}
		requireSuccess(t, d.logoutVia(t, p, next.RefreshToken, false))
		d.requireTokenRejected(t, next.AccessToken, "TOKEN_REVOKED")
		all := d.loginVia(t, p, "acl-bob", "correct horse battery")
		requireSuccess(t, d.logoutVia(t, p, all.RefreshToken, true))
	}
	d.Identityctl(t, "", "user", "list")
	d.Identityctl(t, "", "session", "list", "acl-bob")
	d.Identityctl(t, "", "user", "disable", "acl-bob")

	denied, err := admin.Do(t.Context(), "ACL", "LOG").Slice()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range denied {
		t.Errorf("Redis refused the README's identity user: %v", e)
	}
	if log := d.Log.String(); strings.Contains(log, "maxmemory-policy") {
		t.Errorf("identityd could not read the eviction policy with the README's user; log:\n%s", log)
	}
}

// TestGoRedisLogIsJSON: go-redis's own log lines (here its failed dials
// while Redis is down) come out of identityd as slog records, JSON with
// --log-format json, like every other line, marked source=go-redis.
func TestGoRedisLogIsJSON(t *testing.T) {
	t.Parallel()
	r := testredis.NewServer(t)
	d := startIdentityd(t, opts{redis: r, flags: map[string]string{"log-format": "json", "log-level": "debug"}})
	r.Stop()
	testidentityd.Eventually(t, 30*time.Second, func() error {
		d.loginREST(t, d.Username, d.Password) // STORE_UNAVAILABLE; makes go-redis dial
		for line := range strings.Lines(d.Log.String()) {
			var rec map[string]any
			if json.Unmarshal([]byte(line), &rec) == nil && rec["source"] == "go-redis" {
				if rec["level"] != "DEBUG" || rec["msg"] == "" || rec["time"] == nil {
					return fmt.Errorf("go-redis's record lacks level DEBUG, msg or time: %s", line)
				}
				return nil
			}
		}
		return errors.New("no go-redis record in identityd's log yet")
	})
	for line := range strings.Lines(d.Log.String()) {
		if !json.Valid([]byte(line)) {
			t.Errorf("a log line that is not JSON with --log-format json: %q", line)
		}
	}
}
