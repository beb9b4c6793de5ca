package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/identityd/identity/admin"
	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/tlsfiles"
	"github.com/identityd/identity/masterkey"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// connect returns the Admin the configuration names and a function that
// releases it.
// withKeys: the command works on signing keys (only then is a keys
// directory read).
func (c *cli) connect(ctx context.Context, withKeys bool) (admin.Admin, func(), error) {
	if c.cfg.direct() {
		return c.connectStore(withKeys)
	}
	return c.connectServer(ctx)
}

// redisOptions builds the go-redis options exactly as identityd does
// (tokenstore.ClientOptions).
func (c *config) redisOptions() (*redis.UniversalOptions, error) {
	var opts *redis.UniversalOptions
	var err error
	if c.redisAddrs != "" {
		addrs := c.addrs()
		if len(addrs) == 0 {
			return nil, errors.New("--redis-addrs: no address")
		}
		if c.sentinelMaster != "" {
			opts, err = tokenstore.SentinelClientOptions(c.sentinelMaster, addrs)
		} else {
			opts, err = tokenstore.ClientOptions("", addrs)
		}
	} else {
		opts, err = tokenstore.ClientOptions(c.redisURL, nil)
	}
	if err != nil || c.redisCAFile == "" {
		return opts, err
	}
	pool, err := tlsfiles.CertPool(c.redisCAFile)
	if err != nil {
		return nil, fmt.Errorf("--redis-ca-file: %w", err)
	}
	return opts, tokenstore.SetRootCAs(opts, pool)
}

// openStore opens the Redis store of --redis-url or --redis-addrs.
func (c *cli) openStore() (*tokenstore.Redis, func(), error) {
	opts, err := c.cfg.redisOptions()
	if err != nil {
		return nil, nil, &usageError{msg: err.Error()}
	}
	rdb := tokenstore.NewClient(opts)
	// Revocations wait for a replica as identityd's do by default.
	wait := tokenstore.WithReplicaWait(tokenstore.DefaultReplicaWait(opts), tokenstore.DefaultReplicaWaitTimeout)
	store := tokenstore.NewRedis(rdb, append([]tokenstore.Option{wait}, c.storeOptions...)...)
	return store, func() { store.Close(); rdb.Close() }, nil
}

// connectStore works on Redis directly, through the same account rules
// identityd applies.
func (c *cli) connectStore(withKeys bool) (admin.Admin, func(), error) {
	store, closeFn, err := c.openStore()
	if err != nil {
		return nil, nil, err
	}
	var keys admin.Keys
	if withKeys {
		if keys, err = c.keys(store); err != nil {
			closeFn()
			return nil, nil, err
		}
	}
	hasher, err := password.New(c.hasherOptions...)
	if err != nil {
		closeFn()
		return nil, nil, err
	}
	accounts := users.New(store, hasher, time.Now, rand.Reader, users.WithPasswordPolicy(c.cfg.passwordPolicy()))
	return admin.NewLocal(store, accounts, keys, admin.WithIdleTTL(c.cfg.refreshIdleTTL)), closeFn, nil
}

// keys reaches the signing keys the way identityd is configured to: a keys
// directory, or the keyring in the store, opened with --master-key-file. A
// Manager (which may add a key of --signing-alg, and seals a keyring it
// finds in the clear, as identityd does) is built only to rotate.
func (c *cli) keys(store *tokenstore.Redis) (admin.Keys, error) {
	opts := []token.Option{token.WithAccessTTL(c.cfg.accessTTL), token.WithLeeway(c.cfg.leeway)}
	if c.cfg.keysDir != "" {
		m, err := token.LoadDir(c.cfg.keysDir, opts...)
		if err != nil {
			return nil, err
		}
		return admin.NewDirKeys(m), nil
	}
	sealing, err := c.sealing(store)
	if err != nil {
		return nil, err
	}
	opts = append(opts, token.WithSealing(sealing))
	manager := func(ctx context.Context) (*token.Manager, error) {
		return token.LoadOrCreate(ctx, store, c.cfg.signingAlg, opts...)
	}
	return admin.NewStoreKeys(store, sealing, manager, time.Now), nil
}

// sealing is how identityd keeps the keyring in store: sealed under the
// keys of --master-key-file, or in the clear without one (an insecure
// setup; a sealed keyring then does not open, and the error says what to
// give).
func (c *cli) sealing(store *tokenstore.Redis) (token.Sealing, error) {
	s := token.Sealing{Name: store.KeyringKey()}
	if c.cfg.masterKeyFile == "" {
		return s, nil
	}
	k, err := masterkey.LoadFile(c.cfg.masterKeyFile)
	if err != nil {
		return s, fmt.Errorf("--master-key-file: %w", err)
	}
	s.Sealer = k
	return s, nil
}

// connectServer reaches identityd's AdminService with an admin's access
// token: the one given, or one from logging in as --user.
func (c *cli) connectServer(ctx context.Context) (admin.Admin, func(), error) {
	creds := &bearer{token: c.cfg.token}
	transport := insecure.NewCredentials()
	if c.cfg.serverTLS() {
		var err error
		if transport, err = authn.TLSCredentials(c.cfg.tlsCAFile, c.cfg.tlsCertFile, c.cfg.tlsKeyFile); err != nil {
			return nil, nil, &usageError{msg: fmt.Sprintf("--tls-ca-file/--tls-cert-file/--tls-key-file: %v", err)}
		}
	}
	conn, err := grpc.NewClient(c.cfg.server,
		grpc.WithTransportCredentials(transport),
		grpc.WithPerRPCCredentials(creds))
	if err != nil {
		return nil, nil, &usageError{msg: fmt.Sprintf("--server %q: %v", c.cfg.server, err)}
	}
	closeFn := func() { conn.Close() }
	if c.cfg.user != "" {
		pw, err := readPasswordFile(c.cfg.passwordFile)
		if err != nil {
			conn.Close()
			return nil, nil, err
		}
		ids := identityv1.NewIdentityServiceClient(conn)
		pair, err := ids.Login(ctx, &identityv1.LoginRequest{Username: c.cfg.user, Password: pw})
		if err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("log in as %q: %w", c.cfg.user, c.explain(admin.FromStatus(err)))
		}
		creds.token = pair.GetAccessToken()
		// End the session this login made, best effort: the command may
		// have revoked it already (user passwd of oneself).
		closeFn = func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_, _ = ids.Logout(ctx, &identityv1.LogoutRequest{RefreshToken: pair.GetRefreshToken()})
			conn.Close()
		}
	}
	return admin.NewRemote(identityv1.NewAdminServiceClient(conn)), closeFn, nil
}

// bearer sends the access token with each call, once it is known (Login
// goes without).
type bearer struct{ token string }

func (b *bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if b.token == "" {
		return nil, nil
	}
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is false: without TLS flags identityctl speaks
// plaintext to an identityd on loopback; with them the token travels
// encrypted.
func (b *bearer) RequireTransportSecurity() bool { return false }

// explain rewords failures whose raw form does not say what to do.
func (c *cli) explain(err error) error {
	var re *admin.RemoteError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("timed out after %s (--timeout)", c.cfg.timeout)
	case errors.Is(err, admin.ErrNoKeyring) || errors.Is(err, token.ErrNoKeyring):
		return errors.New("no signing keys in the store yet: identityd makes them at its first start")
	case errors.Is(err, token.ErrKeyringSealed):
		return errors.New("the keyring in the store is sealed under a master key: give identityd's key file with --master-key-file (IDENTITY_MASTER_KEY_FILE)")
	case errors.Is(err, masterkey.ErrUnknownKey) || errors.Is(err, masterkey.ErrOpen):
		return fmt.Errorf("%w; nothing was changed (check --master-key-file)", err)
	case errors.Is(err, tokenstore.ErrUnavailable) && c.cfg.direct():
		return fmt.Errorf("cannot reach Redis: %w", err)
	case !errors.As(err, &re):
		return err
	case re.Code == codes.Unavailable && re.Reason == identityv1.ErrorReason_ERROR_REASON_UNSPECIFIED && !c.cfg.serverTLS():
		return fmt.Errorf("cannot reach identityd at %s (is it running? does it serve TLS: --tls, --tls-ca-file? or give --redis-url): %s", c.cfg.server, re.Message)
	case re.Code == codes.Unavailable && re.Reason == identityv1.ErrorReason_ERROR_REASON_UNSPECIFIED:
		return fmt.Errorf("cannot reach identityd at %s (is it running? or give --redis-url): %s", c.cfg.server, re.Message)
	case re.Code == codes.Unauthenticated || re.Code == codes.PermissionDenied:
		return fmt.Errorf("identityd refused the credentials: %w", err)
	case re.Code == codes.DeadlineExceeded && re.Reason == identityv1.ErrorReason_ERROR_REASON_UNSPECIFIED:
		return fmt.Errorf("timed out after %s (--timeout)", c.cfg.timeout)
	}
	return err
}

// readPassword reads one line: the password, without its line ending.
// From a terminal it prompts and does not echo.
func readPassword(r io.Reader, prompt io.Writer, what string) (string, error) {
	if f, ok := r.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, "Password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return checkPassword(string(b), what)
	}
	// One byte more than a line can hold tells a too-long line from a
	// full one; nothing past the first line is read.
	br := bufio.NewReaderSize(io.LimitReader(r, password.MaxLength+3), password.MaxLength+3)
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from %s: %w", what, err)
	}
	if !strings.HasSuffix(line, "\n") && len(line) > password.MaxLength {
		return "", fmt.Errorf("password on %s is longer than %d bytes", what, password.MaxLength)
	}
	line = strings.TrimSuffix(line, "\n")
	line = strings.TrimSuffix(line, "\r")
	return checkPassword(line, what)
}

func checkPassword(pw, what string) (string, error) {
	switch {
	case pw == "":
		return "", fmt.Errorf("no password on %s: expected one line", what)
	case len(pw) > password.MaxLength:
		return "", fmt.Errorf("password on %s is longer than %d bytes", what, password.MaxLength)
	}
	return pw, nil
}

func readPasswordFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--password-file: %w", err)
	}
	defer f.Close()
	return readPassword(f, io.Discard, path)
}
