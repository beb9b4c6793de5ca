package main

import (
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

// The flags reach greeter.Run; the service itself is tested against a real
// identityd in package authn (TestGreeterProtectedByIdentityd).
func TestRunRefusesBadFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen", "127.0.0.1:0", "--mode", "trust-everyone"}, `mode "trust-everyone"`},
		{[]string{"--no-such-flag"}, "not defined"},
		{[]string{"--listen", "not an address"}, "listen"},
		{[]string{"--identity-cert-file", "client.pem"}, "both its certificate and its key"},
		{[]string{"--identity-ca-file", "/nonexistent/ca.pem"}, "ca.pem"},
	} {
		err := run(context.Background(), tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run(%q) = %v; want an error mentioning %q", tc.args, err, tc.want)
		}
	}
	if err := run(context.Background(), []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}
