// Command identityctl administers identity: users, sessions and signing
// keys. With --redis-url or --redis-addrs (and --redis-sentinel-master for
// Redis Sentinel) it works on the store directly, through the same account
// rules as identityd; otherwise it calls a running identityd's AdminService
// (the only way to reach the embedded store).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/identityd/identity/internal/buildinfo"
	"github.com/identityd/identity/password"
	"github.com/identityd/identity/tokenstore"
)

const usage = `Usage: identityctl [global flags] <command> [flags] [args]

Administers identity: users, sessions and signing keys, on the store itself
(--redis-url, --redis-addrs) or through a running identityd's admin API.

Common invocations:
  identityctl --redis-url redis://127.0.0.1:6379 user add bob --password-stdin --role reader
  identityctl --redis-url redis://127.0.0.1:6379 session revoke-all bob
  identityctl --server 127.0.0.1:9090 --user alice --password-file /tmp/alice.pw user list

Commands:
  user add NAME --password-stdin [--role R ...]   create a user; password: one line on stdin
  user list                                       list users
  user disable NAME                               disable a user, revoking their sessions
  user enable NAME                                enable a user
  user passwd NAME --password-stdin               set a password, revoking the user's sessions
  user roles NAME [--role R ...]                  replace a user's roles (none without --role)
  session list NAME                               list a user's live sessions
  session revoke SESSION_ID                       revoke one session
  session revoke-all NAME                         revoke every session of a user
  key list                                        list the signing keys
  key rotate                                      add a signing key; the current one retires
  key rewrap --new-master-key-file FILE           seal the keyring under a new master key
                                                  (opened with the old or the new keys)

Direct store access, with the settings identityd has:
  --redis-url URL        redis:// or rediss:// URL          IDENTITY_REDIS_URL
  --redis-addrs A,B,...  Redis Cluster seeds (or sentinels) IDENTITY_REDIS_ADDRS
  --redis-sentinel-master NAME
                         primary the sentinels watch        IDENTITY_REDIS_SENTINEL_MASTER
  --redis-ca-file FILE   CA of Redis's TLS certificate      IDENTITY_REDIS_CA_FILE
  --signing-alg ALG      EdDSA, ES256, RS256, HS256 [EdDSA] IDENTITY_SIGNING_ALG
  --access-ttl D         access-token lifetime [15m]        IDENTITY_ACCESS_TTL
  --leeway D             verification leeway [30s]          IDENTITY_LEEWAY
  --keys-dir DIR         identityd's keys directory, if any IDENTITY_KEYS_DIR
  --refresh-idle-ttl D   session idle lifetime [720h]       IDENTITY_REFRESH_IDLE_TTL
  --master-key-file FILE identityd's master keys            IDENTITY_MASTER_KEY_FILE
  --new-master-key-file FILE
                         key rewrap's new master keys       IDENTITY_NEW_MASTER_KEY_FILE
  --password-min-length N  shortest new password [8]       IDENTITY_PASSWORD_MIN_LENGTH
Otherwise, a running identityd (plaintext unless a TLS flag is given):
  --server ADDR          gRPC address [127.0.0.1:9090]      IDENTITY_SERVER
  --tls                  TLS, trusting the system's roots   IDENTITY_SERVER_TLS
  --tls-ca-file FILE     TLS, trusting the CA in FILE       IDENTITY_SERVER_CA_FILE
  --tls-cert-file FILE   client certificate (mTLS) ...      IDENTITY_CLIENT_CERT_FILE
  --tls-key-file FILE    ... and its key                    IDENTITY_CLIENT_KEY_FILE
  --token TOKEN          an admin's access token            IDENTITY_TOKEN
  --user NAME            or log in as this admin ...        IDENTITY_USER
  --password-file FILE   ... with the password in FILE      IDENTITY_PASSWORD_FILE
Output and limits:
  --json                 JSON instead of tables
  --timeout D            give up after D [30s]              IDENTITY_TIMEOUT
  --version              print the build (version, VCS revision, Go) and exit

Flags may come before or after a command's arguments (use -- before a NAME
that starts with "-"). Exit status: 0 done, 1 failed, 2 usage error.
`

func main() {
	// go-redis logs dial failures on its own; identityctl reports the
	// error that results, in one line.
	redis.SetLogger(quietLogger{})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// run is identityctl without the process: tests call it in-process.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	c := &cli{getenv: os.Getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	return c.run(ctx, args)
}

// cli holds one invocation's environment and configuration.
type cli struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	cfg config
	// storeOptions are added to the Redis store's options (tests: a key
	// prefix of their own).
	storeOptions []tokenstore.Option
	// hasherOptions are added to the password hasher's (tests: tiny
	// argon2id parameters).
	hasherOptions []password.Option
}

// usageError is a mistake in the command line: exit 2 with usage text.
type usageError struct {
	msg   string
	usage string // the command's synopsis; "" for the global usage
}

func (e *usageError) Error() string { return e.msg }

func usagef(synopsis, format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...), usage: synopsis}
}

func (c *cli) run(ctx context.Context, args []string) int {
	if err := c.cfg.fromEnv(c.getenv); err != nil {
		return c.fail(&usageError{msg: err.Error()})
	}
	fs := c.newFlagSet("identityctl")
	version := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			err = &usageError{msg: err.Error()}
		}
		return c.fail(err)
	}
	if *version {
		fmt.Fprint(c.stdout, buildinfo.Read().String("identityctl"))
		return 0
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return c.fail(&usageError{msg: "no command"})
	}
	cmd, err := lookup(rest)
	if err != nil {
		return c.fail(err)
	}
	inv, err := c.parseCommand(cmd, rest[2:])
	if err != nil {
		return c.fail(err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	if err := c.exec(ctx, cmd, inv); err != nil {
		return c.fail(err)
	}
	return 0
}

// fail reports err on stderr and returns the exit status.
func (c *cli) fail(err error) int {
	var ue *usageError
	switch {
	case errors.Is(err, flag.ErrHelp): // -h, --help
		fmt.Fprint(c.stdout, usage)
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "identityctl: %s\n", oneLine(ue.msg))
		if ue.usage != "" {
			fmt.Fprintf(c.stderr, "usage: identityctl %s\nRun 'identityctl --help' for the global flags.\n", ue.usage)
		} else {
			fmt.Fprint(c.stderr, usage)
		}
		return 2
	}
	fmt.Fprintf(c.stderr, "identityctl: %s\n", oneLine(err.Error()))
	return 1
}

// oneLine keeps an error to the one line the contract promises, whatever a
// dependency (or errors.Join) put in its message.
func oneLine(s string) string {
	return strings.NewReplacer("\r\n", "; ", "\n", "; ", "\r", " ").Replace(s)
}

func (c *cli) newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // fail prints our own usage, never a default
	c.cfg.register(fs)
	return fs
}
