package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/tokenstore"
)

// TestCheckEviction: an evicting maxmemory-policy stops identityd, naming
// the setting and the flag; --redis-allow-eviction makes it a warning; a
// Redis that tells the policy to neither INFO nor CONFIG is let through
// with a warning; noeviction passes in silence.
func TestCheckEviction(t *testing.T) {
	t.Parallel()
	evicting := testredis.NewServer(t, testredis.WithArgs("--maxmemory-policy", "volatile-lru"))
	plain := testredis.NewServer(t)
	pw := rand.Text()
	if err := plain.Client(t).Do(t.Context(), "ACL", "SETUSER", "blind", "on", ">"+pw, "~*", "-@all", "+ping", "+hello", "+auth").Err(); err != nil {
		t.Fatal(err)
	}
	store := func(t *testing.T, url string) *tokenstore.Redis {
		opts, err := tokenstore.ClientOptions(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		c := tokenstore.NewClient(opts)
		t.Cleanup(func() { c.Close() })
		return tokenstore.NewRedis(c)
	}
	cases := []struct {
		name     string
		url      string
		allow    bool
		refused  bool
		warnings []string // in the log
	}{
		{"evicting", evicting.URL(), false, true, nil},
		{"evicting, allowed", evicting.URL(), true, false, []string{"level=WARN", "maxmemory_policy=volatile-lru", "--redis-allow-eviction"}},
		{"policy unreadable", fmt.Sprintf("redis://blind:%s@%s/0", pw, plain.Addr()), false, false, []string{"level=WARN", "cannot read Redis's maxmemory-policy"}},
		{"noeviction", plain.URL(), false, false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, nil))
			err := checkEviction(t.Context(), config{RedisAllowEviction: tc.allow}, store(t, tc.url), log)
			if tc.refused {
				if err == nil || !strings.Contains(err.Error(), "maxmemory-policy volatile-lru") || !strings.Contains(err.Error(), "--redis-allow-eviction") {
					t.Fatalf("checkEviction: %v, want a refusal naming the policy and --redis-allow-eviction", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("checkEviction: %v, want nil", err)
			}
			for _, w := range tc.warnings {
				if !strings.Contains(buf.String(), w) {
					t.Errorf("log lacks %q:\n%s", w, buf.String())
				}
			}
			if tc.warnings == nil && buf.Len() > 0 {
				t.Errorf("log on a noeviction Redis: %s", buf.String())
			}
			if strings.Contains(buf.String(), pw) {
				t.Error("the log holds the Redis password")
			}
		})
	}
}
