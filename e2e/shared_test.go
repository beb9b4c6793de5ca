package e2e

import "testing"

// TestSharedServer runs, in parallel, the tests that can share one
// Redis-backed identityd because each works on its own sessions (or its own
// users). Tests that change user-wide or server-wide state (login rate
// limits, a Redis outage, other flags) start their own identityd.
//
// The shared server runs with --access-ttl 1m, --refresh-grace 1s,
// --leeway 0s and --login-failures-per-user-address 10; the bootstrap user
// sees at most a handful of wrong passwords in all these tests together.
func TestSharedServer(t *testing.T) {
	t.Parallel()
	d := startIdentityd(t, opts{})
	tests := []struct {
		name string
		run  func(*testing.T, *identityd)
	}{
		{"LoginVerifyWhoAmI", testLoginVerifyWhoAmI},
		{"InvalidCredentials", testInvalidCredentials},
		{"UsernameNFC", testUsernameNFC},
		{"OperationalEndpoints", testOperationalEndpoints},
		{"RefreshRotation", testRefreshRotation},
		{"ConcurrentRefreshAndReuse", testConcurrentRefreshAndReuse},
		{"Logout", testLogout},
		{"LogoutAllSessions", testLogoutAllSessions},
		{"JWKS", testJWKS},
		{"ForgedAccessTokens", testForgedAccessTokens},
		{"MalformedRequests", testMalformedRequests},
		{"AdminRevocation", testAdminRevocation},
		{"PythonClient", testPythonClient},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, d)
		})
	}
}
