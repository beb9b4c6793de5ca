package token

import (
	"errors"
	"testing"
	"time"
)

func TestIssueClaimsAndHeader(t *testing.T) {
	t.Parallel()
	s := newSetup(t, EdDSA)
	tok, _, err := s.iss.Issue(alice, t0.Add(1500*time.Millisecond), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	h, p := segments(t, tok)
	signing, err := s.m.SigningKey()
	if err != nil {
		t.Fatal(err)
	}
	wantHeader := map[string]any{"alg": "EdDSA", "typ": "at+jwt", "kid": signing.ID}
	for k, v := range wantHeader {
		if h[k] != v {
			t.Errorf("header %s = %v, want %v", k, h[k], v)
		}
	}
	iat := float64(t0.Unix() + 1) // truncated to the second
	wantClaims := map[string]any{
		"iss": "identity", "sub": alice.Subject, "aud": []any{"identity"},
		"iat": iat, "nbf": iat, "exp": iat + 900,
		"sid": alice.SessionID, "roles": []any{"admin", "dev"}, "preferred_username": "alice",
	}
	for k, v := range wantClaims {
		if got, ok := p[k]; !ok || !jsonEqual(got, v) {
			t.Errorf("claim %s = %v, want %v", k, got, v)
		}
	}
	if jti, _ := p["jti"].(string); len(jti) != 22 {
		t.Errorf("jti = %q, want 22 base64url characters (128 bits)", jti)
	}
	if len(p) != len(wantClaims)+1 {
		t.Errorf("claims %v: want exactly %d", p, len(wantClaims)+1)
	}
}

func jsonEqual(a, b any) bool {
	as, aok := a.([]any)
	bs, bok := b.([]any)
	if aok && bok {
		if len(as) != len(bs) {
			return false
		}
		for i := range as {
			if as[i] != bs[i] {
				return false
			}
		}
		return true
	}
	return a == b
}

func TestIssueFreshJTIEachTime(t *testing.T) {
	t.Parallel()
	s := newSetup(t, EdDSA)
	seen := map[string]bool{}
	for range 100 {
		c, err := s.ver.Verify(s.issue(t, alice))
		if err != nil {
			t.Fatal(err)
		}
		if seen[c.ID] {
			t.Fatalf("jti %q issued twice", c.ID)
		}
		seen[c.ID] = true
	}
}

func TestIssueCapsExpiryAtSessionEnd(t *testing.T) {
	t.Parallel()
	s := newSetup(t, EdDSA, WithAccessTTL(10*time.Minute))
	tests := []struct {
		name       string
		sessionEnd time.Time
		want       time.Time
		wantErr    bool
	}{
		{"no session end", time.Time{}, t0.Add(10 * time.Minute), false},
		{"session ends later", t0.Add(time.Hour), t0.Add(10 * time.Minute), false},
		{"session ends sooner", t0.Add(3*time.Minute + 500*time.Millisecond), t0.Add(3 * time.Minute), false},
		{"session ended", t0, time.Time{}, true},
		{"session ends within the second", t0.Add(500 * time.Millisecond), time.Time{}, true},
	}
	for _, tt := range tests {
		tok, exp, err := s.iss.Issue(alice, t0, tt.sessionEnd)
		if tt.wantErr {
			if err == nil {
				t.Errorf("%s: Issue succeeded, want an error", tt.name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !exp.Equal(tt.want) {
			t.Errorf("%s: expiry = %v, want %v", tt.name, exp, tt.want)
		}
		got, err := s.ver.Verify(tok)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !got.ExpiresAt.Equal(exp) {
			t.Errorf("%s: token exp = %v, Issue said %v", tt.name, got.ExpiresAt, exp)
		}
	}
}

func TestIssueIgnoresClaimTimesAndID(t *testing.T) {
	t.Parallel()
	s := newSetup(t, EdDSA)
	c := alice
	c.ID, c.IssuedAt, c.ExpiresAt = "chosen-jti", t0.Add(-time.Hour), t0.Add(time.Minute)
	tok, exp, err := s.iss.Issue(c, t0, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ver.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID == "chosen-jti" || !got.IssuedAt.Equal(t0) || !exp.Equal(t0.Add(DefaultAccessTTL)) {
		t.Errorf("caller-chosen jti/iat/exp leaked into the token: %+v", got)
	}
}

func TestIssueRequiresSubjectAndSession(t *testing.T) {
	t.Parallel()
	s := newSetup(t, EdDSA)
	for _, c := range []Claims{{SessionID: "s.s"}, {Subject: "u"}} {
		if _, _, err := s.iss.Issue(c, t0, time.Time{}); err == nil {
			t.Errorf("Issue(%+v) succeeded", c)
		}
	}
}

type noKeys struct{}

func (noKeys) SigningKey() (SigningKey, error) { return SigningKey{}, errors.New("no key") }

func TestIssueReportsKeyErrors(t *testing.T) {
	t.Parallel()
	iss, err := NewIssuer(noKeys{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := iss.Issue(alice, t0, time.Time{}); err == nil {
		t.Error("Issue without a signing key succeeded")
	}
	if _, err := NewIssuer(noKeys{}, WithAccessTTL(0)); err == nil {
		t.Error("NewIssuer accepted a zero access TTL")
	}
}
