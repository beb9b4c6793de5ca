package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/identityd/identity/admin"
	"github.com/identityd/identity/internal/testredis"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// tinyParams keep argon2id cheap: these tests are about the CLI.
var tinyParams = password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// harness runs identityctl in-process against its own corner of a real
// Redis: a key prefix of its own, so tests share one redis-server and never
// flush it.
type harness struct {
	t      *testing.T
	env    map[string]string
	prefix string
	store  *tokenstore.Redis
	// secrets must never appear in any output.
	secrets []string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	url := testredis.URL(t)
	client := testredis.Start(t)
	prefix := testredis.KeyPrefix(t, client)
	return &harness{
		t:      t,
		env:    map[string]string{"IDENTITY_REDIS_URL": url},
		prefix: prefix,
		store:  tokenstore.NewRedis(client, tokenstore.WithPrefix(prefix)),
	}
}

type result struct {
	code           int
	stdout, stderr string
}

func (h *harness) run(stdin string, args ...string) result {
	h.t.Helper()
	var stdout, stderr bytes.Buffer
	c := &cli{
		getenv:        func(k string) string { return h.env[k] },
		stdin:         strings.NewReader(stdin),
		stdout:        &stdout,
		stderr:        &stderr,
		storeOptions:  []tokenstore.Option{tokenstore.WithPrefix(h.prefix)},
		hasherOptions: []password.Option{password.WithParams(tinyParams)},
	}
	ctx, cancel := context.WithTimeout(h.t.Context(), 30*time.Second)
	defer cancel()
	r := result{code: c.run(ctx, args), stdout: stdout.String(), stderr: stderr.String()}
	for _, s := range h.secrets {
		if strings.Contains(r.stdout, s) || strings.Contains(r.stderr, s) {
			h.t.Errorf("identityctl %q printed a secret %q:\n%s%s", args, s, r.stdout, r.stderr)
		}
	}
	if strings.Contains(r.stdout+r.stderr, "$argon2id$") {
		h.t.Errorf("identityctl %q printed a password hash", args)
	}
	return r
}

// ok runs a command that must succeed and returns its stdout.
func (h *harness) ok(stdin string, args ...string) string {
	h.t.Helper()
	r := h.run(stdin, args...)
	if r.code != 0 || r.stderr != "" {
		h.t.Fatalf("identityctl %q: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

func (h *harness) addUser(name, pw string, roles ...string) {
	h.t.Helper()
	h.secrets = append(h.secrets, pw)
	args := []string{"user", "add", name, "--password-stdin"}
	for _, r := range roles {
		args = append(args, "--role", r)
	}
	h.ok(pw+"\n", args...)
}

func (h *harness) accounts() *users.Service {
	hasher, err := password.New(password.WithParams(tinyParams))
	if err != nil {
		h.t.Fatal(err)
	}
	return users.New(h.store, hasher, time.Now, rand.Reader)
}

// login makes a session of username, as identityd's Login would at.
func (h *harness) loginAt(username string, at time.Time) string {
	h.t.Helper()
	ctx := h.t.Context()
	u, err := h.store.UserByName(ctx, username)
	if err != nil {
		h.t.Fatal(err)
	}
	id, err := tokenstore.NewSessionID(u.ID, rand.Reader)
	if err != nil {
		h.t.Fatal(err)
	}
	now := at.Truncate(time.Millisecond)
	err = h.store.CreateSession(ctx, tokenstore.Session{
		ID: id, UserID: u.ID, Nonce: "nonce", CreatedAt: now, RotatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(24 * time.Hour),
		Epoch: u.Epoch, // a login authenticates under the user's current credential epoch
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return id
}

func (h *harness) login(username string) string {
	h.t.Helper()
	return h.loginAt(username, time.Now())
}

func decode[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("output is not the expected JSON: %v\n%s", err, s)
	}
	return v
}

// rows splits a table into its lines' fields, header first.
func rows(s string) [][]string {
	var out [][]string
	for line := range strings.Lines(s) {
		out = append(out, strings.Fields(line))
	}
	return out
}

func TestUserCommands(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	out := h.ok("s3cret alice\n", "user", "add", "alice", "--password-stdin", "--role", "admin")
	if !regexp.MustCompile(`^created user "alice" \(id [a-z2-7]{20}, roles admin\)\n$`).MatchString(out) {
		t.Errorf("user add printed %q", out)
	}
	h.secrets = append(h.secrets, "s3cret alice")
	// Flags before the name, repeated --role, --json after the command.
	out = h.ok("violet harbour bob\r\n", "user", "add", "--role", "ops", "--password-stdin", "--role", "dev", "bob", "--json")
	h.secrets = append(h.secrets, "violet harbour bob")
	bob := decode[admin.User](t, out)
	if bob.Username != "bob" || !slices.Equal(bob.Roles, []string{"dev", "ops"}) || bob.Disabled || bob.CreatedAt.IsZero() {
		t.Errorf("user add --json = %+v", bob)
	}
	accounts := h.accounts()
	if _, err := accounts.Authenticate(t.Context(), "bob", "violet harbour bob"); err != nil {
		t.Errorf("bob cannot log in with the password given on stdin (CRLF stripped): %v", err)
	}

	table := rows(h.ok("", "user", "list"))
	want := [][]string{
		{"USERNAME", "ID", "ROLES", "STATUS", "CREATED"},
		{"alice", "*", "admin", "active", "*"},
		{"bob", bob.ID, "dev,ops", "active", bob.CreatedAt.UTC().Format(time.RFC3339)},
	}
	checkTable(t, table, want)

	out = h.ok("", "user", "disable", "alice")
	if out != "disabled user \"alice\"; their sessions are revoked\n" {
		t.Errorf("user disable printed %q", out)
	}
	list := decode[[]admin.User](t, h.ok("", "--json", "user", "list"))
	if len(list) != 2 || !list[0].Disabled || list[1].Disabled {
		t.Errorf("after disable: %+v", list)
	}
	if _, err := accounts.Authenticate(t.Context(), "alice", "s3cret alice"); !errors.Is(err, users.ErrBadCredentials) {
		t.Errorf("a disabled user logs in: %v", err)
	}
	if out := h.ok("", "user", "enable", "alice"); out != "enabled user \"alice\"\n" {
		t.Errorf("user enable printed %q", out)
	}
	if _, err := accounts.Authenticate(t.Context(), "alice", "s3cret alice"); err != nil {
		t.Errorf("an enabled user cannot log in: %v", err)
	}

	sid := h.login("alice")
	h.secrets = append(h.secrets, "new alice pw")
	if out := h.ok("new alice pw\n", "user", "passwd", "alice", "--password-stdin"); out != "set the password of \"alice\"; their sessions are revoked\n" {
		t.Errorf("user passwd printed %q", out)
	}
	if _, err := accounts.Authenticate(t.Context(), "alice", "new alice pw"); err != nil {
		t.Errorf("the new password does not work: %v", err)
	}
	if _, err := accounts.Authenticate(t.Context(), "alice", "s3cret alice"); !errors.Is(err, users.ErrBadCredentials) {
		t.Errorf("the old password still works: %v", err)
	}
	if _, err := h.store.Session(t.Context(), sid); !errors.Is(err, tokenstore.ErrNotFound) {
		t.Errorf("passwd kept a session: %v", err)
	}

	if out := h.ok("", "user", "roles", "alice", "--role", "b", "--role", "a"); out != "roles of \"alice\": a,b\n" {
		t.Errorf("user roles printed %q", out)
	}
	if out := h.ok("", "user", "roles", "alice"); out != "roles of \"alice\": -\n" {
		t.Errorf("user roles (none) printed %q", out)
	}
	u := decode[admin.User](t, h.ok("", "user", "roles", "--json", "alice", "--role", "admin"))
	if !slices.Equal(u.Roles, []string{"admin"}) {
		t.Errorf("roles = %q, want admin", u.Roles)
	}
}

// checkTable compares a table cell by cell; "*" matches anything.
func checkTable(t *testing.T, got, want [][]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("table has %d rows, want %d:\n%q", len(got), len(want), got)
	}
	for i := range want {
		if len(got[i]) != len(want[i]) {
			t.Errorf("row %d = %q, want %q", i, got[i], want[i])
			continue
		}
		for j := range want[i] {
			if want[i][j] != "*" && got[i][j] != want[i][j] {
				t.Errorf("row %d = %q, want %q", i, got[i], want[i])
				break
			}
		}
	}
}

func TestUserListEmpty(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	checkTable(t, rows(h.ok("", "user", "list")), [][]string{{"USERNAME", "ID", "ROLES", "STATUS", "CREATED"}})
	if out := h.ok("", "user", "list", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("user list --json on no users = %q, want []", out)
	}
}

func TestSessionCommands(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.addUser("alice", "crimson otter wagon")
	h.addUser("bob", "curtain falcon pebble")
	s1 := h.loginAt("alice", time.Now().Add(-time.Minute))
	s2 := h.login("alice")
	bobs := h.login("bob")

	table := rows(h.ok("", "session", "list", "alice"))
	checkTable(t, table, [][]string{
		{"SESSION_ID", "GENERATION", "CREATED", "LAST_USED", "EXPIRES"},
		{s1, "0", "*", "*", "*"},
		{s2, "0", "*", "*", "*"},
	})
	ss := decode[[]admin.Session](t, h.ok("", "session", "list", "alice", "--json"))
	if len(ss) != 2 || ss[0].ID != s1 || ss[0].UserID == "" || ss[0].ExpiresAt.Before(ss[0].LastUsedAt) {
		t.Errorf("session list --json = %+v", ss)
	}
	// The idle lifetime (default 720h) is longer than these sessions'
	// absolute one: the listing shows the absolute end.
	if got, want := ss[0].ExpiresAt.Sub(ss[0].CreatedAt), 24*time.Hour; got != want {
		t.Errorf("expires %v after creation, want %v", got, want)
	}
	h.env["IDENTITY_REFRESH_IDLE_TTL"] = "1h"
	ss = decode[[]admin.Session](t, h.ok("", "session", "list", "alice", "--json"))
	if got := ss[0].ExpiresAt.Sub(ss[0].LastUsedAt); got != time.Hour {
		t.Errorf("with a 1h idle lifetime, expires %v after last use", got)
	}

	if out := h.ok("", "session", "revoke", s1); out != "revoked session "+s1+"\n" {
		t.Errorf("session revoke printed %q", out)
	}
	r := h.run("", "session", "revoke", s1)
	if r.code != 1 || r.stderr != "identityctl: session \""+s1+"\" not found (expired or already revoked)\n" {
		t.Errorf("revoking twice: %+v", r)
	}
	r = h.run("", "session", "revoke", "not-a-session")
	if r.code != 1 || !strings.Contains(r.stderr, `invalid session id "not-a-session"`) {
		t.Errorf("malformed session id: %+v", r)
	}

	h.login("alice")
	if out := h.ok("", "session", "revoke-all", "alice"); out != "revoked 2 sessions of \"alice\"\n" {
		t.Errorf("session revoke-all printed %q", out)
	}
	if out := h.ok("", "session", "revoke-all", "alice", "--json"); strings.TrimSpace(out) != `{
  "revoked": 0
}` {
		t.Errorf("session revoke-all --json printed %q", out)
	}
	if out := h.ok("", "session", "list", "alice", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("alice still has sessions: %s", out)
	}
	if _, err := h.store.Session(t.Context(), bobs); err != nil {
		t.Errorf("revoking alice's sessions touched bob's: %v", err)
	}
	for _, args := range [][]string{{"session", "list", "carol"}, {"session", "revoke-all", "carol"}} {
		r := h.run("", args...)
		if r.code != 1 || r.stderr != "identityctl: user \"carol\" not found\n" || r.stdout != "" {
			t.Errorf("%q: %+v", args, r)
		}
	}
}

func TestKeyCommands(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := t.Context()

	r := h.run("", "key", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "no signing keys in the store yet") {
		t.Errorf("key list before identityd made keys: %+v", r)
	}
	r = h.run("", "key", "rotate")
	if r.code != 1 || !strings.Contains(r.stderr, "no signing keys in the store yet") {
		t.Errorf("key rotate before identityd made keys: %+v", r)
	}

	// identityd's first start.
	m, err := token.LoadOrCreate(ctx, h.store, token.ES256)
	if err != nil {
		t.Fatal(err)
	}
	first, err := m.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	before, _ := h.store.Keyring(ctx)

	// Listing with another --signing-alg (EdDSA by default) changes nothing.
	checkTable(t, rows(h.ok("", "key", "list")), [][]string{
		{"KID", "ALG", "SIGNING", "CREATED", "ACTIVE_AT", "RETIRE_AT"},
		{first.ID, "ES256", "yes", "*", "*", "-"},
	})
	if after, _ := h.store.Keyring(ctx); !bytes.Equal(before, after) {
		t.Error("key list changed the keyring")
	}

	h.env["IDENTITY_ACCESS_TTL"] = "5m"
	ks := decode[[]admin.Key](t, h.ok("", "key", "rotate", "--json", "--signing-alg", "ES256", "--leeway", "10s"))
	if len(ks) != 2 {
		t.Fatalf("after rotation: %+v, want two keys", ks)
	}
	old, cur := ks[0], ks[1]
	if old.ID != first.ID || !old.Signing || old.RetireAt.IsZero() {
		t.Errorf("old key = %+v: it signs until the new one is active, then retires", old)
	}
	if cur.Alg != "ES256" || cur.Signing || !cur.ActiveAt.After(cur.CreatedAt) || !cur.RetireAt.IsZero() {
		t.Errorf("new key = %+v: published ahead of signing", cur)
	}
	// The old key outlives the last token it signed: access TTL + leeway
	// after the new key takes over.
	if got := old.RetireAt.Sub(cur.ActiveAt); got != 5*time.Minute+10*time.Second {
		t.Errorf("old key retires %v after the new one activates, want 5m10s", got)
	}
	// identityd sees the new key on its next Reload.
	if err := m.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if _, alg, ok := m.Key(cur.ID); !ok || alg != "ES256" {
		t.Errorf("identityd does not know the rotated key %s", cur.ID)
	}

	table := rows(h.ok("", "key", "list"))
	checkTable(t, table, [][]string{
		{"KID", "ALG", "SIGNING", "CREATED", "ACTIVE_AT", "RETIRE_AT"},
		{cur.ID, "ES256", "no", "*", "*", "-"},
		{first.ID, "ES256", "yes", "*", "*", old.RetireAt.UTC().Format(time.RFC3339)},
	})

	h.env["IDENTITY_KEYS_DIR"] = t.TempDir()
	r = h.run("", "key", "list")
	if r.code != 1 || !strings.Contains(r.stderr, "keys dir") {
		t.Errorf("key list with an empty keys dir: %+v", r)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.addUser("alice", "amber gravel piano")
	tests := []struct {
		name   string
		env    map[string]string
		stdin  string
		args   []string
		code   int
		stderr string // a line stderr must hold
	}{
		{"duplicate user", nil, "quiet maple engine\n", []string{"user", "add", "alice", "--password-stdin"}, 1,
			"identityctl: user \"alice\" already exists\n"},
		{"decomposed name", nil, "purple shovel orbit\n", []string{"user", "add", "a\u0301", "--password-stdin"}, 0, ""},
		{"duplicate after NFC", nil, "purple shovel orbit\n", []string{"user", "add", "\u00e1", "--password-stdin"}, 1,
			"identityctl: user \"\u00e1\" already exists\n"},
		{"name after --", nil, "purple shovel orbit\n", []string{"user", "add", "--password-stdin", "--", "-dash"}, 0, ""},
		{"flag after --", nil, "pw\n", []string{"user", "add", "--", "-x", "--password-stdin"}, 2, "unexpected argument \"--password-stdin\""},
		{"unknown user", nil, "", []string{"user", "disable", "nobody"}, 1, "identityctl: user \"nobody\" not found\n"},
		{"unknown user passwd", nil, "purple shovel orbit\n", []string{"user", "passwd", "nobody", "--password-stdin"}, 1,
			"identityctl: user \"nobody\" not found\n"},
		{"nothing on stdin", nil, "", []string{"user", "add", "bob", "--password-stdin"}, 1,
			"identityctl: no password on stdin: expected one line\n"},
		{"empty line on stdin", nil, "\nmore\n", []string{"user", "passwd", "alice", "--password-stdin"}, 1,
			"identityctl: no password on stdin: expected one line\n"},
		{"password too long", nil, strings.Repeat("p", 1025) + "\n", []string{"user", "add", "bob", "--password-stdin"}, 1,
			"identityctl: password on stdin is longer than 1024 bytes\n"},
		{"password too long, no newline", nil, strings.Repeat("p", 5000), []string{"user", "add", "bob", "--password-stdin"}, 1,
			"identityctl: password on stdin is longer than 1024 bytes\n"},
		{"invalid username", nil, "purple shovel orbit\n", []string{"user", "add", " bob", "--password-stdin"}, 1, "invalid username"},
		{"weak password", nil, "password1\n", []string{"user", "add", "bob", "--password-stdin"}, 1,
			"identityctl: password too weak: it is too common or too easy to guess"},
		{"password built on the username", nil, "alice2024\n", []string{"user", "passwd", "alice", "--password-stdin"}, 1,
			"identityctl: password too weak: it is too common or too easy to guess"},
		{"password too short", nil, "h4Tz!pQ\n", []string{"user", "add", "bob", "--password-stdin"}, 1,
			"identityctl: password too weak: it must have at least 8 characters\n"},
		{"password under IDENTITY_PASSWORD_MIN_LENGTH", map[string]string{"IDENTITY_PASSWORD_MIN_LENGTH": "25"}, "purple shovel orbit\n",
			[]string{"user", "add", "bob", "--password-stdin"}, 1, "identityctl: password too weak: it must have at least 25 characters\n"},
		{"password under --password-min-length", nil, "purple shovel orbit\n",
			[]string{"--password-min-length", "20", "user", "add", "bob", "--password-stdin"}, 1, "at least 20 characters"},
		{"bad password min length", map[string]string{"IDENTITY_PASSWORD_MIN_LENGTH": "0"}, "", []string{"user", "list"}, 2,
			"--password-min-length"},
		{"invalid role", nil, "purple shovel orbit\n", []string{"user", "add", "bob", "--password-stdin", "--role", "a b"}, 1, "invalid role"},
		{"missing --password-stdin", nil, "pw\n", []string{"user", "add", "bob"}, 2,
			"usage: identityctl user add NAME --password-stdin [--role R ...]\n"},
		{"unknown flag", nil, "", []string{"user", "list", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{"--role on a command without it", nil, "", []string{"user", "disable", "alice", "--role", "x"}, 2,
			"usage: identityctl user disable NAME\n"},
		{"bad global flag value", nil, "", []string{"--timeout", "soon", "user", "list"}, 2, "invalid value \"soon\""},
		{"missing name", nil, "", []string{"session", "list"}, 2, "identityctl: session list: missing NAME\n"},
		{"extra argument", nil, "", []string{"user", "enable", "alice", "bob"}, 2, "unexpected argument \"bob\""},
		{"no command", nil, "", nil, 2, "identityctl: no command\n"},
		{"unknown command", nil, "", []string{"group", "add"}, 2, "identityctl: unknown command \"group\"\n"},
		{"missing subcommand", nil, "", []string{"key"}, 2, "identityctl: key: missing subcommand (list, rotate, rewrap)\n"},
		{"unknown subcommand", nil, "", []string{"user", "delete", "alice"}, 2, "unknown subcommand \"delete\""},
		{"both stores", map[string]string{"IDENTITY_REDIS_ADDRS": "127.0.0.1:1"}, "", []string{"user", "list"}, 2,
			"--redis-url and --redis-addrs are exclusive"},
		{"bad env duration", map[string]string{"IDENTITY_ACCESS_TTL": "forever"}, "", []string{"user", "list"}, 2,
			"IDENTITY_ACCESS_TTL"},
		{"not a redis URL", map[string]string{"IDENTITY_REDIS_URL": "http://u:hunter2@example.com"}, "", []string{"user", "list"}, 2,
			"want a redis:// or rediss:// URL"},
		{"no store and no credentials", map[string]string{"IDENTITY_REDIS_URL": ""}, "", []string{"user", "list"}, 2,
			"give --token (IDENTITY_TOKEN) or --user with --password-file"},
		{"redis unreachable", map[string]string{"IDENTITY_REDIS_URL": "redis://127.0.0.1:1/0"}, "", []string{"user", "list"}, 1,
			"store unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := *h
			sub.t = t
			sub.env = maps(h.env, tt.env)
			r := sub.run(tt.stdin, tt.args...)
			if r.code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, tt.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("stderr %q does not hold %q", r.stderr, tt.stderr)
			}
			if tt.code != 0 && r.stdout != "" {
				t.Errorf("a failure printed on stdout: %q", r.stdout)
			}
			if tt.code == 1 && strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("a failure is one line on stderr, got %q", r.stderr)
			}
			if tt.code == 2 && !strings.Contains(r.stderr, "usage: identityctl") && !strings.Contains(r.stderr, "Usage: identityctl") {
				t.Errorf("a usage error without usage text: %q", r.stderr)
			}
			if strings.Contains(r.stderr, "hunter2") {
				t.Errorf("the Redis password reached stderr: %q", r.stderr)
			}
		})
	}
	// The failed commands changed nothing.
	names := decode[[]admin.User](t, h.ok("", "user", "list", "--json"))
	if len(names) != 3 || names[0].Username != "-dash" || names[1].Username != "alice" || names[2].Username != "\u00e1" {
		t.Errorf("users after the failures: %+v", names)
	}
	if _, err := h.accounts().Authenticate(t.Context(), "alice", "amber gravel piano"); err != nil {
		t.Errorf("alice's password changed: %v", err)
	}
}

func maps(base, over map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"-h"}, {"user", "add", "-h"}} {
		var stdout, stderr bytes.Buffer
		c := &cli{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
		if code := c.run(t.Context(), args); code != 0 || stdout.String() != usage || stderr.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %d bytes, stderr %q", args, code, stdout.Len(), stderr.String())
		}
	}
	// Every command is in the usage text, with its synopsis.
	for _, cmd := range commands {
		if !strings.Contains(usage, "  "+cmd.synopsis+" ") {
			t.Errorf("usage does not show %q", cmd.synopsis)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	c := &cli{getenv: func(string) string { return "" }, stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr}
	if code := c.run(t.Context(), []string{"--version"}); code != 0 || stderr.Len() != 0 {
		t.Fatalf("--version: exit %d, stderr %q", code, stderr.String())
	}
	out := stdout.String()
	if !regexp.MustCompile(`^identityctl \S+\n`).MatchString(out) || !strings.Contains(out, "\ngo: go1.") {
		t.Errorf("--version printed %q; want \"identityctl <version>\" then the Go version", out)
	}
	if !strings.Contains(usage, "--version") {
		t.Error("usage does not mention --version")
	}
}

func TestReadPassword(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		err      bool
	}{
		{"pw\n", "pw", false},
		{"pw", "pw", false},
		{"pw\r\n", "pw", false},
		{" spaced pw \n", " spaced pw ", false},
		{"pw\t\n", "pw\t", false},
		{"first\nsecond\n", "first", false},
		{strings.Repeat("x", 1024) + "\n", strings.Repeat("x", 1024), false},
		{strings.Repeat("x", 1024) + "\r\n", strings.Repeat("x", 1024), false},
		{strings.Repeat("x", 1025), "", true},
		{"", "", true},
		{"\n", "", true},
		{"\r\n", "", true},
	}
	for _, tt := range tests {
		got, err := readPassword(strings.NewReader(tt.in), nil, "stdin")
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("readPassword(%.20q) = %.20q, %v; want %.20q, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// TestRedisOptions checks that the URL's settings reach the client and
// that the store's safety settings cannot be turned off by it.
func TestRedisOptions(t *testing.T) {
	t.Parallel()
	c := &config{redisURL: "rediss://user:secret@redis.example:6380/3?max_retries=5&dial_timeout=2s&client_name=ctl"}
	o, err := c.redisOptions()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Addrs, []string{"redis.example:6380"}) || o.Username != "user" || o.Password != "secret" || o.DB != 3 ||
		o.TLSConfig == nil || o.DialTimeout != 2*time.Second || o.ClientName != "ctl" {
		t.Errorf("options = %+v", o)
	}
	if o.MaxRetries != -1 || !o.ContextTimeoutEnabled || o.IsClusterMode {
		t.Errorf("MaxRetries %d, ContextTimeoutEnabled %v, cluster %v; want -1, true, false", o.MaxRetries, o.ContextTimeoutEnabled, o.IsClusterMode)
	}
	if _, ok := redis.NewUniversalClient(o).(*redis.Client); !ok {
		t.Error("--redis-url did not give a single-node client")
	}

	c = &config{redisAddrs: " 10.0.0.1:7000, ,10.0.0.2:7000 "}
	o, err = c.redisOptions()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Addrs, []string{"10.0.0.1:7000", "10.0.0.2:7000"}) || o.MaxRetries != -1 || !o.ContextTimeoutEnabled {
		t.Errorf("options = %+v", o)
	}
	one := &config{redisAddrs: "10.0.0.1:7000"}
	o, _ = one.redisOptions()
	if _, ok := redis.NewUniversalClient(o).(*redis.ClusterClient); !ok {
		t.Error("--redis-addrs with one seed did not give a cluster client")
	}
	sentinel := &config{redisAddrs: "10.0.0.1:26379,10.0.0.2:26379", sentinelMaster: "identity"}
	o, err = sentinel.redisOptions()
	if err != nil {
		t.Fatal(err)
	}
	if o.MasterName != "identity" || !slices.Equal(o.Addrs, []string{"10.0.0.1:26379", "10.0.0.2:26379"}) || o.MaxRetries != -1 || !o.ContextTimeoutEnabled {
		t.Errorf("sentinel options = %+v", o)
	}
	if err := (&config{sentinelMaster: "identity", timeout: time.Second}).check(); err == nil || !strings.Contains(err.Error(), "--redis-addrs") {
		t.Errorf("--redis-sentinel-master without addresses: %v", err)
	}
	if _, err := (&config{redisURL: "redis://h:1/notadb"}).redisOptions(); err == nil {
		t.Error("a bad database number was accepted")
	}
}
