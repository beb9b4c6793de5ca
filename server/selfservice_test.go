package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
)

// A user lists their own sessions (with the device and address of each),
// signs one device out, and changes their password: the other sessions
// end, this one goes on. On both stores.
func TestSelfService(t *testing.T) {
	t.Parallel()
	onBothStores(t, func(t *testing.T, store string, p *testidentityd.InProcess) {
		name := "ivy-" + store
		pw := testidentityd.AddUser(t, p.Store, name, "")
		other := testidentityd.AddUser(t, p.Store, "jim-"+store, "")
		phone := p.Login(t, name, pw)
		// The laptop logs in over REST: its User-Agent is the browser's.
		req, _ := http.NewRequest(http.MethodPost, p.BaseURL+"/v1/login", strings.NewReader(`{"username":"`+name+`","password":"`+pw+`"}`))
		req.Header.Set("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("REST login: %v %v", resp, err)
		}
		resp.Body.Close()
		laptop := p.Login(t, name, pw)
		jim := p.Login(t, "jim-"+store, other)
		as := func(pair *identityv1.TokenPair) context.Context {
			return metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+pair.GetAccessToken())
		}

		list, err := p.API.ListMySessions(as(phone), &identityv1.ListMySessionsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.GetSessions()) != 3 {
			t.Fatalf("ListMySessions: %d sessions, want 3 (the other user's are not listed)", len(list.GetSessions()))
		}
		current, firefox := 0, 0
		for _, s := range list.GetSessions() {
			if s.GetCurrent() {
				current++
				if s.GetSessionId() != phone.GetSessionId() {
					t.Errorf("current session %s, want the phone's %s", s.GetSessionId(), phone.GetSessionId())
				}
			}
			if strings.Contains(s.GetUserAgent(), "Firefox/140.0") {
				firefox++
			}
			if s.GetClientAddress() == "" || s.GetCreatedAt() == nil || s.GetLastUsedAt() == nil {
				t.Errorf("session %v lacks address or times", s)
			}
		}
		if current != 1 || firefox != 1 {
			t.Errorf("%d current sessions and %d Firefox ones, want 1 and 1: %v", current, firefox, list)
		}

		// Another user's session is not one's to revoke: NOT_FOUND.
		_, err = p.API.RevokeMySession(as(phone), &identityv1.RevokeMySessionRequest{SessionId: jim.GetSessionId()})
		if authn.Reason(err) != identityv1.ErrorReason_NOT_FOUND {
			t.Fatalf("revoking another user's session: %v, want NOT_FOUND", err)
		}
		if _, err := p.API.Verify(t.Context(), &identityv1.VerifyRequest{Token: jim.GetAccessToken()}); err != nil {
			t.Fatalf("the other user's session after the attempt: %v", err)
		}
		if _, err := p.API.RevokeMySession(as(phone), &identityv1.RevokeMySessionRequest{SessionId: laptop.GetSessionId()}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.API.Verify(t.Context(), &identityv1.VerifyRequest{Token: laptop.GetAccessToken()}); authn.Reason(err) != identityv1.ErrorReason_TOKEN_REVOKED {
			t.Fatalf("the signed-out device's token: %v, want TOKEN_REVOKED", err)
		}

		// Change the password: wrong current one refused; right one ends
		// the other sessions, keeps this one.
		newPW := testidentityd.RandomPassword()
		_, err = p.API.ChangePassword(as(phone), &identityv1.ChangePasswordRequest{CurrentPassword: "wrong-" + pw, NewPassword: newPW})
		if authn.Reason(err) != identityv1.ErrorReason_INVALID_CREDENTIALS {
			t.Fatalf("ChangePassword with a wrong current password: %v, want INVALID_CREDENTIALS", err)
		}
		if _, err := p.API.ChangePassword(as(phone), &identityv1.ChangePasswordRequest{CurrentPassword: pw, NewPassword: newPW}); err != nil {
			t.Fatal(err)
		}
		list, err = p.API.ListMySessions(as(phone), &identityv1.ListMySessionsRequest{})
		if err != nil {
			t.Fatalf("ListMySessions after the change, from the session it was made in: %v", err)
		}
		if len(list.GetSessions()) != 1 || !list.GetSessions()[0].GetCurrent() {
			t.Fatalf("after ChangePassword: %v, want only this session", list)
		}
		next, err := p.API.Refresh(t.Context(), &identityv1.RefreshRequest{RefreshToken: phone.GetRefreshToken()})
		if err != nil {
			t.Fatalf("the session the password was changed from no longer refreshes: %v", err)
		}
		if _, err := p.API.Verify(t.Context(), &identityv1.VerifyRequest{Token: next.GetAccessToken()}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.API.Login(t.Context(), &identityv1.LoginRequest{Username: name, Password: pw}); authn.Reason(err) != identityv1.ErrorReason_INVALID_CREDENTIALS {
			t.Fatalf("login with the old password: %v", err)
		}
		p.Login(t, name, newPW)

		// Without a token: UNAUTHENTICATED.
		if _, err := p.API.ListMySessions(t.Context(), &identityv1.ListMySessionsRequest{}); authn.Reason(err) != identityv1.ErrorReason_TOKEN_INVALID {
			t.Fatalf("ListMySessions without a token: %v", err)
		}
	})
}
