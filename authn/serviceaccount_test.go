package authn_test

import (
	"testing"
	"time"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/server"
)

// A service account logs in once, keeps its token while it is far from
// expiry, refreshes it (same session) when it nears expiry, and logs in
// again when its session has ended.
func TestServiceAccount(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	session := func(p *testidentityd.InProcess, tok string) string {
		t.Helper()
		v, err := p.API.Verify(ctx, &identityv1.VerifyRequest{Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		return v.GetSessionId()
	}

	long := testidentityd.StartInProcess(t)
	pw := testidentityd.AddUser(t, long.Store, "svc", "", authn.ServiceRole)
	sa := authn.NewServiceAccount(long.Conn, "svc", pw)
	a, err := sa.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := sa.Token(ctx); err != nil || b != a {
		t.Fatalf("second Token: %v; want the same token while it is far from expiry", err)
	}
	md, err := sa.GetRequestMetadata(ctx)
	if err != nil || md["authorization"] != "Bearer "+a {
		t.Fatalf("GetRequestMetadata: %v, %v", md, err)
	}
	if err := long.Store.RevokeSession(ctx, session(long, a), time.Now()); err != nil {
		t.Fatal(err)
	}

	// Tokens that live less than the refresh margin are replaced on every
	// call: by a refresh of the same session.
	short := testidentityd.StartInProcess(t, testidentityd.InProcessConfig(func(c *server.Config) { c.AccessTTL = 10 * time.Second }))
	pw = testidentityd.AddUser(t, short.Store, "svc", "", authn.ServiceRole)
	sa = authn.NewServiceAccount(short.Conn, "svc", pw)
	first, err := sa.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	second, err := sa.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sid := session(short, second)
	if second == first || sid != session(short, first) {
		t.Fatal("a token near expiry was not replaced by a refresh of the same session")
	}
	// The session ends: the account logs in again.
	if err := short.Store.RevokeSession(ctx, sid, time.Now()); err != nil {
		t.Fatal(err)
	}
	third, err := sa.Token(ctx)
	if err != nil {
		t.Fatalf("Token after the session ended: %v", err)
	}
	if session(short, third) == sid {
		t.Fatal("no new session after the old one was revoked")
	}

	wrong := authn.NewServiceAccount(short.Conn, "svc", "not-the-password")
	if _, err := wrong.Token(ctx); err == nil {
		t.Fatal("a wrong password gave a token")
	}
}
