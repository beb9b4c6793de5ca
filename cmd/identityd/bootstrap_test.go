package main

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/identityd/identity/password"
	"github.com/identityd/identity/server"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

func cheapHasher(t *testing.T) *password.Hasher {
	t.Helper()
	h, err := password.New(password.WithParams(password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// The bootstrap user goes through the policy every account does, and an
// existing one is left alone whatever its password.
func TestBootstrapPasswordPolicy(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c := config{Server: server.DefaultConfig(), BootstrapUser: "alice", BootstrapPassword: "wonderland", BootstrapRoles: []string{"admin"}}
	store := tokenstore.NewMemory()
	t.Cleanup(func() { store.Close() })
	h := cheapHasher(t)

	err := bootstrap(t.Context(), c, store, h, log)
	if !errors.Is(err, users.ErrPasswordTooWeak) || !strings.Contains(err.Error(), "IDENTITY_BOOTSTRAP_PASSWORD_FILE") {
		t.Fatalf("bootstrap with a dictionary word: %v, want ErrPasswordTooWeak naming IDENTITY_BOOTSTRAP_PASSWORD_FILE", err)
	}
	if strings.Contains(err.Error(), c.BootstrapPassword) {
		t.Fatalf("the error %q repeats the password", err)
	}
	c.Server.PasswordMinLength = 25
	c.BootstrapPassword = "down-the-rabbit-hole" // 20 characters
	if err := bootstrap(t.Context(), c, store, h, log); !errors.Is(err, users.ErrPasswordTooWeak) {
		t.Fatalf("bootstrap under --password-min-length 25 with 20 characters: %v, want ErrPasswordTooWeak", err)
	}
	c.Server.PasswordMinLength = 8
	if err := bootstrap(t.Context(), c, store, h, log); err != nil {
		t.Fatalf("bootstrap with a passphrase: %v", err)
	}
	// A restart under a stricter policy (or with another password in the
	// environment) finds the user and starts.
	c.Server.PasswordMinLength = 30
	if err := bootstrap(t.Context(), c, store, h, log); err != nil {
		t.Fatalf("bootstrap of an existing user under a stricter policy: %v", err)
	}
}
