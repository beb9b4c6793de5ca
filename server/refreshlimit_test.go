package server_test

import (
	"testing"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/server"
)

// A refresh token's use is rate limited, per session and per client
// address: past the limit the answer is RATE_LIMITED with a retry delay,
// and the session is left as it was.
func TestRefreshIsRateLimited(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  func(*server.Config)
	}{
		{"per session", func(c *server.Config) { c.RefreshRatePerSession, c.RefreshRatePerIP = 4, 0 }}, // burst 2
		{"per address", func(c *server.Config) { c.RefreshRatePerSession, c.RefreshRatePerIP = 0, 8 }}, // burst 2
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := testidentityd.StartInProcess(t, testidentityd.InProcessConfig(tc.cfg))
			pw := testidentityd.AddUser(t, p.Store, "hal", "")
			pair := p.Login(t, "hal", pw)
			rt := pair.GetRefreshToken()
			for i := range 2 {
				next, err := p.API.Refresh(t.Context(), &identityv1.RefreshRequest{RefreshToken: rt})
				if err != nil {
					t.Fatalf("refresh %d within the burst: %v", i+1, err)
				}
				rt = next.GetRefreshToken()
			}
			_, err := p.API.Refresh(t.Context(), &identityv1.RefreshRequest{RefreshToken: rt})
			info := authn.ErrorInfo(err)
			if authn.Reason(err) != identityv1.ErrorReason_RATE_LIMITED || info.GetMetadata()[authn.MetadataRetryAfter] == "" {
				t.Fatalf("refresh past the burst: %v, want RATE_LIMITED with a retry delay", err)
			}
		})
	}
}
