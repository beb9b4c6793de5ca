package e2e

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/internal/testredis"
)

// Secrets at rest: a reader of Redis gets nothing usable. The keyring is
// sealed under a master key that never enters Redis; identityd refuses to
// run on Redis without one, or with a wrong one.

// TestRedisHoldsNoUsableSecret reads everything a Redis-backed identityd
// stored after logins, refreshes and a logout, and checks that no private
// key nor the refresh-token secret is in it, in any encoding, and that
// nothing in it mints the current refresh token. The same check run on an
// identityd started with --insecure-plaintext-keys finds both: it is not
// blind.
func TestRedisHoldsNoUsableSecret(t *testing.T) {
	t.Parallel()
	t.Run("sealed", func(t *testing.T) {
		t.Parallel()
		d := startIdentityd(t, opts{})
		cur, issued := exerciseSessions(t, d)
		ring := d.StoredKeyring(t)
		secrets := liveSecrets(t, d, ring.RefreshSecret, ring.Keys[0].ID, ring.Keys[0].Private)
		// The master key itself never enters Redis either.
		mk, err := base64.StdEncoding.DecodeString(testidentityd.DefaultMasterKey())
		if err != nil {
			t.Fatal(err)
		}
		secrets["the master key"] = mk

		dump := readRedis(t, d.RedisURL)
		if blob := dump.strings["identity:keyring"]; !bytes.Contains(blob, []byte(`"kid":"`+d.MasterKeys.ID()+`"`)) {
			t.Fatalf("identity:keyring is not sealed under the master key: %d bytes", len(blob))
		}
		for _, leak := range dump.leaks(secrets) {
			t.Error(leak)
		}
		for _, tok := range issued {
			if dump.holds([]byte(tok)) {
				t.Error("Redis holds a token identityd issued")
			}
		}
		g, nonce := dump.session(t, cur.SessionID)
		// The token is HMAC(secret, session fields): with the secret, what
		// Redis holds is enough, which is why the secret must not be there.
		if mintRefresh(ring.RefreshSecret, cur.SessionID, g, nonce) != cur.RefreshToken {
			t.Fatal("the refresh token is not the HMAC of its session's fields under the keyring's secret: this test's model is wrong")
		}
		if n, ok := dump.mints(cur.SessionID, g, nonce, cur.RefreshToken); ok {
			t.Errorf("a value read from Redis mints the current refresh token (after %d candidates)", n)
		} else {
			t.Logf("%d keys read; %d candidate secrets from their names, fields and values, none mints the refresh token", len(dump.types), n)
		}
	})
	t.Run("in the clear (control)", func(t *testing.T) {
		t.Parallel()
		d := startIdentityd(t, opts{
			flags: map[string]string{"insecure-plaintext-keys": "true"},
			extra: []testidentityd.Option{testidentityd.WithoutMasterKey()},
		})
		cur, _ := exerciseSessions(t, d)
		ring := d.StoredKeyring(t)
		secrets := liveSecrets(t, d, ring.RefreshSecret, ring.Keys[0].ID, ring.Keys[0].Private)
		dump := readRedis(t, d.RedisURL)
		leaks := dump.leaks(secrets)
		t.Logf("in the clear the check finds %d leaks, e.g. %q", len(leaks), leaks[:min(1, len(leaks))])
		if len(leaks) == 0 {
			t.Error("the check finds no secret in a keyring stored in the clear")
		}
		g, nonce := dump.session(t, cur.SessionID)
		if _, ok := dump.mints(cur.SessionID, g, nonce, cur.RefreshToken); !ok {
			t.Error("the check mints no refresh token from a keyring stored in the clear")
		}
		if !strings.Contains(d.Log.String(), "--insecure-plaintext-keys: the signing keys and the refresh-token secret are stored in Redis in the clear") {
			t.Error("--insecure-plaintext-keys is not logged as a warning")
		}
	})
}

// exerciseSessions logs in two users (REST and gRPC), refreshes, logs one
// session out, and returns the last pair of a live session and every token
// (and refresh-token MAC) it was given.
func exerciseSessions(t *testing.T, d *identityd) (cur tokenPair, issued []string) {
	t.Helper()
	bob, bobPW := "bob-"+randomHex(4), "pw-"+randomHex(12)
	addUser(t, d, bob, bobPW, "reader")
	keep := func(tp tokenPair) tokenPair {
		mac := tp.RefreshToken[strings.LastIndexByte(tp.RefreshToken, '.')+1:]
		issued = append(issued, tp.AccessToken, tp.RefreshToken, mac)
		return tp
	}
	a1 := keep(d.loginVia(t, viaREST, d.Username, d.Password))
	a2 := keep(d.loginVia(t, viaGRPC, d.Username, d.Password))
	b1 := keep(d.loginVia(t, viaGRPC, bob, bobPW))
	for range 3 {
		a1 = keep(d.refresh(t, a1.RefreshToken))
		next, f := d.refreshVia(t, viaGRPC, b1.RefreshToken)
		requireSuccess(t, f)
		b1 = keep(next)
	}
	requireSuccess(t, d.logoutVia(t, viaREST, a2.RefreshToken, false))
	return b1, issued
}

// liveSecrets names the secrets of a keyring, after checking it is the one
// identityd uses: its key is the published one.
func liveSecrets(t *testing.T, d *identityd, refreshSecret []byte, kid string, priv any) map[string][]byte {
	t.Helper()
	key, ok := priv.(ed25519.PrivateKey)
	if !ok {
		t.Fatalf("signing key is %T, want Ed25519", priv)
	}
	pub := ed25519Key(t, fetchJWKS(t, d), kid)
	if !bytes.Equal(pub, key.Public().(ed25519.PublicKey)) {
		t.Fatal("the stored keyring's key is not the published one")
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"the refresh-token secret":     refreshSecret,
		"the signing key's seed":       key.Seed(),
		"the signing key (64 bytes)":   key,
		"the signing key (PKCS#8 DER)": der,
	}
}

// mintRefresh builds a refresh token as the README documents it:
// rt1.<session>.<generation>.<nonce>.<base64url HMAC-SHA256(secret,
// "rt1|session|generation|nonce")>.
func mintRefresh(secret []byte, sessionID, generation, nonce string) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte("rt1|" + sessionID + "|" + generation + "|" + nonce))
	return "rt1." + sessionID + "." + generation + "." + nonce + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// redisDump is everything a reader of the test's Redis gets: every key's
// name, type and content.
type redisDump struct {
	types   map[string]string
	strings map[string][]byte
	hashes  map[string]map[string]string
	// pieces are every name, field, member, score, entry id and value.
	pieces []piece
}

type piece struct {
	where string // the key, and which part of it
	value []byte
}

// readRedis reads every key of the Redis at url. The Redis is the test's
// own (a private redis-server), so its whole key space is the test's: the
// scan matches everything, identity's "identity:" keys and the login
// limiter's "rate:" keys alike.
func readRedis(t *testing.T, url string) redisDump {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx := rpcContext(t)
	d := redisDump{types: map[string]string{}, strings: map[string][]byte{}, hashes: map[string]map[string]string{}}
	add := func(where string, v string) { d.pieces = append(d.pieces, piece{where, []byte(v)}) }
	iter := c.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		if _, seen := d.types[key]; seen { // SCAN may return a key twice
			continue
		}
		typ, err := c.Type(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		d.types[key] = typ
		add(key+" (name)", key)
		switch typ {
		case "string":
			v, err := c.Get(ctx, key).Bytes()
			if err != nil && err != redis.Nil {
				t.Fatal(err)
			}
			d.strings[key] = v
			d.pieces = append(d.pieces, piece{key, v})
		case "hash":
			h, err := c.HGetAll(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			d.hashes[key] = h
			for f, v := range h {
				add(key+" field name", f)
				add(key+" field "+f, v)
			}
		case "zset":
			zs, err := c.ZRangeWithScores(ctx, key, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, z := range zs {
				add(key+" member", fmt.Sprint(z.Member))
				add(key+" score", strconv.FormatFloat(z.Score, 'f', -1, 64))
			}
		case "set":
			ms, err := c.SMembers(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				add(key+" member", m)
			}
		case "list":
			vs, err := c.LRange(ctx, key, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range vs {
				add(key+" element", v)
			}
		case "stream":
			entries, err := c.XRange(ctx, key, "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				add(key+" entry id", e.ID)
				for f, v := range e.Values {
					add(key+" entry "+e.ID+" field name", f)
					add(key+" entry "+e.ID+" field "+f, fmt.Sprint(v))
				}
			}
		case "none": // expired since the scan saw it
		default:
			t.Fatalf("key %s has type %s, which this test does not read: teach it", key, typ)
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	// Nothing hides in another database.
	info, err := c.Info(ctx, "keyspace").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if strings.HasPrefix(line, "db") && !strings.HasPrefix(line, fmt.Sprintf("db%d:", opt.DB)) {
			t.Fatalf("keys outside the database read: %s", line)
		}
	}
	if len(d.types) == 0 {
		t.Fatal("Redis is empty: nothing was read")
	}
	return d
}

// encodings are the forms a secret could be stored in.
func encodings(b []byte) map[string][]byte {
	return map[string][]byte{
		"raw":                b,
		"hex":                []byte(hex.EncodeToString(b)),
		"HEX":                []byte(strings.ToUpper(hex.EncodeToString(b))),
		"base64":             []byte(base64.StdEncoding.EncodeToString(b)),
		"base64 unpadded":    []byte(base64.RawStdEncoding.EncodeToString(b)),
		"base64url":          []byte(base64.URLEncoding.EncodeToString(b)),
		"base64url unpadded": []byte(base64.RawURLEncoding.EncodeToString(b)),
	}
}

// leaks says where a secret appears, naming the secret, never showing it:
// in any encoding, or in the decoding of an encoded run inside a value (a
// private key inside base64 DER inside JSON).
func (d redisDump) leaks(secrets map[string][]byte) []string {
	var out []string
	for what, secret := range secrets {
		for _, p := range d.pieces {
			for enc, form := range encodings(secret) {
				if bytes.Contains(p.value, form) {
					out = append(out, fmt.Sprintf("%s holds %s (%s)", p.where, what, enc))
				}
			}
			for _, b := range decodedRuns(p.value) {
				if bytes.Contains(b, secret) {
					out = append(out, fmt.Sprintf("%s holds %s inside an encoded value", p.where, what))
					break
				}
			}
		}
	}
	return out
}

func (d redisDump) holds(b []byte) bool {
	for _, p := range d.pieces {
		if bytes.Contains(p.value, b) {
			return true
		}
	}
	return false
}

// session returns the generation and nonce Redis holds for a session.
func (d redisDump) session(t *testing.T, sessionID string) (generation, nonce string) {
	t.Helper()
	uid, rnd, ok := strings.Cut(sessionID, ".")
	if !ok {
		t.Fatalf("session id %q has no user part", sessionID)
	}
	h, ok := d.hashes["identity:{"+uid+"}:s:"+rnd]
	if !ok || h["g"] == "" || h["n"] == "" {
		t.Fatalf("no session hash with g and n for %s in Redis", sessionID)
	}
	return h["g"], h["n"]
}

// encodedRun finds what may be an encoded secret inside a value (a JSON
// string, a field): a run of base64, base64url or hex characters long
// enough to hold 32 bytes.
var encodedRun = regexp.MustCompile(`[A-Za-z0-9+/_-]{43,}={0,2}`)

// decodedRuns are the decodings of every encoded run in v.
func decodedRuns(v []byte) [][]byte {
	decoders := []func(string) ([]byte, error){
		base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString, hex.DecodeString,
	}
	var out [][]byte
	for _, run := range encodedRun.FindAll(v, -1) {
		for _, dec := range decoders {
			if b, err := dec(string(run)); err == nil {
				out = append(out, b)
			}
		}
	}
	return out
}

// mints tries every piece of the dump, and every decoding of every encoded
// run inside one, as the HMAC secret, and reports whether one produces
// want, and how many it tried.
func (d redisDump) mints(sessionID, generation, nonce, want string) (tried int, ok bool) {
	seen := map[string]bool{}
	for _, p := range d.pieces {
		for _, c := range append([][]byte{p.value}, decodedRuns(p.value)...) {
			if len(c) < 32 || seen[string(c)] {
				continue
			}
			seen[string(c)] = true
			tried++
			if mintRefresh(c, sessionID, generation, nonce) == want {
				return tried, true
			}
		}
	}
	return tried, false
}

// TestMasterKeyRequiredOnRedis: without a master key identityd refuses
// Redis and writes nothing; --insecure-plaintext-keys lets it run, warning;
// a later start with a master key seals that keyring in place, keeping
// every session; a wrong key then refuses to start and changes nothing.
func TestMasterKeyRequiredOnRedis(t *testing.T) {
	t.Parallel()
	r := testredis.NewServer(t)
	flags := testidentityd.WithFlags(defaultFlags())
	log := testidentityd.StartRefused(t, flags, testidentityd.WithRedis(r), testidentityd.WithoutMasterKey())
	for _, want := range []string{"set IDENTITY_MASTER_KEY_FILE", "openssl rand -base64 32", "--insecure-plaintext-keys"} {
		if !strings.Contains(log, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, log)
		}
	}
	rc := r.Client(t)
	if n := rc.DBSize(rpcContext(t)).Val(); n != 0 {
		t.Fatalf("identityd refused to start, yet wrote %d keys", n)
	}

	// A trial in the clear.
	trial := startIdentityd(t, opts{redis: r,
		flags: map[string]string{"insecure-plaintext-keys": "true"},
		extra: []testidentityd.Option{testidentityd.WithoutMasterKey()}})
	tp := trial.login(t, trial.Username, trial.Password)
	clear := rc.Get(rpcContext(t), "identity:keyring").Val()
	if !strings.Contains(clear, `"keys"`) {
		t.Fatal("--insecure-plaintext-keys: the keyring is not in the clear")
	}
	trial.Stop()

	// The same Redis, now with a master key: the keyring is sealed where it
	// is, with the same keys, so the trial's session lives on.
	d := startIdentityd(t, opts{redis: r, password: trial.Password})
	if !strings.Contains(d.Log.String(), "it is now sealed under the master key") {
		t.Errorf("the migration is not logged:\n%s", d.Log.Tail(4<<10))
	}
	sealed := rc.Get(rpcContext(t), "identity:keyring").Val()
	if !strings.Contains(sealed, `"kid":"`+d.MasterKeys.ID()+`"`) || strings.Contains(sealed, `"keys"`) {
		t.Fatal("the keyring in the clear was not sealed")
	}
	requireSuccess(t, second(d.verifyVia(t, viaREST, tp.AccessToken)))
	tp = d.refresh(t, tp.RefreshToken)
	d.Stop()

	// A wrong master key, or none at all now that it is sealed: refused,
	// nothing changed.
	for name, o := range map[string]testidentityd.Option{
		"wrong master key": testidentityd.WithMasterKey(testidentityd.NewMasterKey()),
		"no master key":    testidentityd.WithoutMasterKey(),
	} {
		extra := []testidentityd.Option{flags, testidentityd.WithRedis(r), o}
		if name == "no master key" {
			extra = append(extra, testidentityd.WithFlag("insecure-plaintext-keys", "true"))
		}
		log := testidentityd.StartRefused(t, extra...)
		for _, want := range []string{"refusing to start", "nothing was changed", "IDENTITY_MASTER_KEY_FILE"} {
			if !strings.Contains(log, want) {
				t.Errorf("%s: the refusal does not say %q:\n%s", name, want, log)
			}
		}
		if got := rc.Get(rpcContext(t), "identity:keyring").Val(); got != sealed {
			t.Fatalf("%s: a refused start changed the keyring", name)
		}
	}
	again := startIdentityd(t, opts{redis: r, password: trial.Password})
	again.refresh(t, tp.RefreshToken)
}

// TestMasterKeyRotation follows the README's procedure on running
// instances: the new key is given to every instance as accepted, the
// keyring rewrapped, then the new key made current. An instance that was
// given both keys reads through it; one with only the old key can no
// longer start, and says why.
func TestMasterKeyRotation(t *testing.T) {
	t.Parallel()
	r := testredis.NewServer(t)
	oldKey, newKey := testidentityd.NewMasterKey(), testidentityd.NewMasterKey()
	withKey := func(lines ...string) []testidentityd.Option {
		return []testidentityd.Option{testidentityd.WithMasterKey(lines...)}
	}
	a := startIdentityd(t, opts{redis: r, extra: withKey(oldKey)})
	tp := a.login(t, a.Username, a.Password)
	// Step 1: b has the new key as accepted; the old one still seals.
	b := startIdentityd(t, opts{redis: r, password: a.Password, extra: withKey(oldKey, newKey)})
	tp = b.refresh(t, tp.RefreshToken)

	// Step 2: the rewrap (identityctl with a's key file and the new one).
	out := a.Identityctl(t, "", "key", "rewrap", "--new-master-key-file", testidentityd.WriteMasterKeyFile(t, newKey))
	if !strings.Contains(out, "sealed the keyring under master key") {
		t.Errorf("identityctl key rewrap: %q", out)
	}
	b.Restart() // b opens what the new key sealed
	tp = b.refresh(t, tp.RefreshToken)
	requireSuccess(t, second(a.verifyVia(t, viaREST, tp.AccessToken))) // a runs on with its keys in memory

	log := testidentityd.StartRefused(t, testidentityd.WithFlags(defaultFlags()), testidentityd.WithRedis(r), testidentityd.WithMasterKey(oldKey))
	if !strings.Contains(log, "sealed under a master key that is not configured") {
		t.Errorf("an instance with only the old key: %s", log)
	}

	// Step 3: the new key seals, the old one is gone.
	c := startIdentityd(t, opts{redis: r, password: a.Password, extra: withKey(newKey)})
	tp = c.refresh(t, tp.RefreshToken)
	requireSuccess(t, second(b.verifyVia(t, viaGRPC, tp.AccessToken)))
	out = c.Identityctl(t, "", "key", "list")
	if !strings.Contains(out, "EdDSA") {
		t.Errorf("identityctl key list with the new key: %q", out)
	}
}
