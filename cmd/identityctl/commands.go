package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/identityd/identity/admin"
	"github.com/identityd/identity/masterkey"
	"github.com/identityd/identity/token"
	"github.com/identityd/identity/tokenstore"
	"github.com/identityd/identity/users"
)

// command is one "<group> <name>" of identityctl.
type command struct {
	group, name string
	// args names the positional arguments, in order.
	args []string
	// synopsis is the command's usage line after "identityctl ".
	synopsis string
	// password: the command needs --password-stdin.
	password bool
	// roles: the command takes --role.
	roles bool
	// newMasterKey: the command needs --new-master-key-file.
	newMasterKey bool
	run          func(ctx context.Context, c *cli, a admin.Admin, inv *invocation) error
	// onStore, instead of run, is a command that works on the Redis store
	// itself, with no counterpart in identityd's admin API.
	onStore func(ctx context.Context, c *cli, store *tokenstore.Redis, inv *invocation) error
}

// invocation is one parsed command line.
type invocation struct {
	args     []string
	password string
	roles    []string
}

var commands = []*command{
	{group: "user", name: "add", args: []string{"NAME"}, password: true, roles: true,
		synopsis: "user add NAME --password-stdin [--role R ...]", run: userAdd},
	{group: "user", name: "list",
		synopsis: "user list", run: userList},
	{group: "user", name: "disable", args: []string{"NAME"},
		synopsis: "user disable NAME", run: userSetDisabled(true)},
	{group: "user", name: "enable", args: []string{"NAME"},
		synopsis: "user enable NAME", run: userSetDisabled(false)},
	{group: "user", name: "passwd", args: []string{"NAME"}, password: true,
		synopsis: "user passwd NAME --password-stdin", run: userPasswd},
	{group: "user", name: "roles", args: []string{"NAME"}, roles: true,
		synopsis: "user roles NAME [--role R ...]", run: userRoles},
	{group: "session", name: "list", args: []string{"NAME"},
		synopsis: "session list NAME", run: sessionList},
	{group: "session", name: "revoke", args: []string{"SESSION_ID"},
		synopsis: "session revoke SESSION_ID", run: sessionRevoke},
	{group: "session", name: "revoke-all", args: []string{"NAME"},
		synopsis: "session revoke-all NAME", run: sessionRevokeAll},
	{group: "key", name: "list",
		synopsis: "key list", run: keyList},
	{group: "key", name: "rotate",
		synopsis: "key rotate", run: keyRotate},
	{group: "key", name: "rewrap", newMasterKey: true,
		synopsis: "key rewrap --new-master-key-file FILE", onStore: keyRewrap},
}

// lookup finds the command named by the first two words of args.
func lookup(args []string) (*command, error) {
	group := args[0]
	var names []string
	for _, cmd := range commands {
		if cmd.group == group {
			names = append(names, cmd.name)
		}
	}
	if names == nil {
		return nil, &usageError{msg: fmt.Sprintf("unknown command %q", group)}
	}
	if len(args) < 2 {
		return nil, &usageError{msg: fmt.Sprintf("%s: missing subcommand (%s)", group, strings.Join(names, ", "))}
	}
	for _, cmd := range commands {
		if cmd.group == group && cmd.name == args[1] {
			return cmd, nil
		}
	}
	return nil, &usageError{msg: fmt.Sprintf("%s: unknown subcommand %q (want %s)", group, args[1], strings.Join(names, ", "))}
}

// roleList is a repeatable --role.
type roleList []string

func (r *roleList) String() string     { return strings.Join(*r, ",") }
func (r *roleList) Set(v string) error { *r = append(*r, v); return nil }

// parseCommand parses a command's flags and arguments, in any order.
func (c *cli) parseCommand(cmd *command, args []string) (*invocation, error) {
	fs := c.newFlagSet(cmd.group + " " + cmd.name)
	var passwordStdin bool
	var roles roleList
	if cmd.password {
		fs.BoolVar(&passwordStdin, "password-stdin", false, "")
	}
	if cmd.roles {
		fs.Var(&roles, "role", "")
	}
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, err
	}
	if err != nil {
		return nil, usagef(cmd.synopsis, "%s %s: %v", cmd.group, cmd.name, err)
	}
	if len(pos) != len(cmd.args) {
		switch {
		case len(pos) < len(cmd.args):
			return nil, usagef(cmd.synopsis, "%s %s: missing %s", cmd.group, cmd.name, strings.Join(cmd.args[len(pos):], " "))
		default:
			return nil, usagef(cmd.synopsis, "%s %s: unexpected argument %q", cmd.group, cmd.name, pos[len(cmd.args)])
		}
	}
	if cmd.password && !passwordStdin {
		return nil, usagef(cmd.synopsis, "%s %s: --password-stdin is required (a password is never taken from a flag)", cmd.group, cmd.name)
	}
	if cmd.onStore != nil && !c.cfg.direct() {
		return nil, usagef(cmd.synopsis, "%s %s works on the store: give --redis-url or --redis-addrs (IDENTITY_REDIS_URL, IDENTITY_REDIS_ADDRS)", cmd.group, cmd.name)
	}
	if cmd.newMasterKey && c.cfg.newMasterKeyFile == "" {
		return nil, usagef(cmd.synopsis, "%s %s: --new-master-key-file is required (IDENTITY_NEW_MASTER_KEY_FILE)", cmd.group, cmd.name)
	}
	if err := c.cfg.check(); err != nil {
		return nil, usagef(cmd.synopsis, "%v", err)
	}
	inv := &invocation{args: pos, roles: []string(roles)}
	if cmd.roles && inv.roles == nil {
		inv.roles = []string{}
	}
	return inv, nil
}

// parseInterspersed parses flags wherever they sit among the positional
// arguments (the flag package stops at the first non-flag); everything after
// "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := args[:len(args)-len(rest)]; len(consumed) > 0 && consumed[len(consumed)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// exec reads what the command needs from stdin, reaches the store or the
// server, and runs the command.
func (c *cli) exec(ctx context.Context, cmd *command, inv *invocation) error {
	if cmd.password {
		pw, err := readPassword(c.stdin, c.stderr, "stdin")
		if err != nil {
			return err
		}
		inv.password = pw
	}
	if cmd.onStore != nil {
		store, closeFn, err := c.openStore()
		if err != nil {
			return err
		}
		defer closeFn()
		return c.explain(cmd.onStore(ctx, c, store, inv))
	}
	a, closeFn, err := c.connect(ctx, cmd.group == "key")
	if err != nil {
		return err
	}
	defer closeFn()
	return c.explain(cmd.run(ctx, c, a, inv))
}

func userAdd(ctx context.Context, c *cli, a admin.Admin, inv *invocation) error {
	u, err := a.CreateUser(ctx, inv.args[0], inv.password, inv.roles)
	if err != nil {
		return userError(inv.args[0], err)
	}
	if c.cfg.json {
		return c.printJSON(u)
	}
	return c.printf("created user %q (id %s, roles %s)\n", u.Username, u.ID, rolesText(u.Roles))
}

func userList(ctx context.Context, c *cli, a admin.Admin, _ *invocation) error {
	us, err := a.ListUsers(ctx)
	if err != nil {
		return err
	}
	if c.cfg.json {
		return c.printJSON(nonNil(us))
	}
	t := c.table("USERNAME", "ID", "ROLES", "STATUS", "CREATED")
	for _, u := range us {
		t.row(u.Username, u.ID, rolesText(u.Roles), statusText(u.Disabled), timeText(u.CreatedAt))
	}
	return t.flush()
}

func userSetDisabled(disabled bool) func(context.Context, *cli, admin.Admin, *invocation) error {
	return func(ctx context.Context, c *cli, a admin.Admin, inv *invocation) error {
		u, err := a.UpdateUser(ctx, inv.args[0], users.Change{Disabled: &disabled})
		if err != nil {
			return userError(inv.args[0], err)
		}
		if c.cfg.json {
			return c.printJSON(u)
		}
		if disabled {
			return c.printf("disabled user %q; their sessions are revoked\n", u.Username)
		}
		return c.printf("enabled user %q\n", u.Username)
	}
}

func userPasswd(ctx context.Context, c *cli, a admin.Admin, inv *invocation) error {
	u, err := a.UpdateUser(ctx, inv.args[0], users.Change{Password: &inv.password})
	if err != nil {
		return userError(inv.args[0], err)
	}
	if c.cfg.json {
		return c.printJSON(u)
	}
	return c.printf("set the password of %q; their sessions are revoked\n", u.Username)
}

func userRoles(ctx context.Context, c *cli, a admin.Admin, inv *invocation) error {
	u, err := a.UpdateUser(ctx, inv.args[0], users.Change{Roles: &inv.roles})
	if err != nil {
		return userError(inv.args[0], err)
	}
	if c.cfg.json {
		return c.printJSON(u)
	}
	return c.printf("roles of %q: %s\n", u.Username, rolesText(u.Roles))
}

func sessionList(ctx context.Context, c *cli, a admin.Admin, inv *invocation) error {
	ss, err := a.ListSessions(ctx, inv.args[0])
	if err != nil {
		return userError(inv.args[0], err)
	}
	if c.cfg.json {
		return c.printJSON(nonNil(ss))
	}
	t := c.table("SESSION_ID", "GENERATION", "CREATED", "LAST_USED", "EXPIRES")
	for _, s := range ss {
		t.row(s.ID, fmt.Sprint(s.Generation), timeText(s.CreatedAt), timeText(s.LastUsedAt), timeText(s.ExpiresAt))
	}
	return t.flush()
}

func sessionRevoke(ctx context.Context, c *cli, a admin.Admin, inv *invocation) error {
	id := inv.args[0]
	if err := a.RevokeSession(ctx, id); err != nil {
		return sessionError(id, err)
	}
	if c.cfg.json {
		return c.printJSON(revoked{Revoked: 1})
	}
	return c.printf("revoked session %s\n", id)
}

func sessionRevokeAll(ctx context.Context, c *cli, a admin.Admin, inv *invocation) error {
	n, err := a.RevokeUserSessions(ctx, inv.args[0])
	if err != nil {
		return userError(inv.args[0], err)
	}
	if c.cfg.json {
		return c.printJSON(revoked{Revoked: n})
	}
	return c.printf("revoked %d %s of %q\n", n, plural(n, "session", "sessions"), inv.args[0])
}

func keyList(ctx context.Context, c *cli, a admin.Admin, _ *invocation) error {
	ks, err := a.ListKeys(ctx)
	if err != nil {
		return err
	}
	return c.printKeys(ks)
}

func keyRotate(ctx context.Context, c *cli, a admin.Admin, _ *invocation) error {
	ks, err := a.RotateKeys(ctx)
	if err != nil {
		return err
	}
	return c.printKeys(ks)
}

// keyRewrap seals the keyring under the first key of --new-master-key-file,
// opening it with any key of either file: the middle step of a master-key
// rotation (README). Run again, it seals once more under the new key what a
// rotation during the overlap sealed under the old one.
func keyRewrap(ctx context.Context, c *cli, store *tokenstore.Redis, _ *invocation) error {
	newKeys, err := masterkey.LoadFile(c.cfg.newMasterKeyFile)
	if err != nil {
		return fmt.Errorf("--new-master-key-file: %w", err)
	}
	sealer := newKeys
	if c.cfg.masterKeyFile != "" {
		old, err := masterkey.LoadFile(c.cfg.masterKeyFile)
		if err != nil {
			return fmt.Errorf("--master-key-file: %w", err)
		}
		sealer = newKeys.Accepting(old)
	}
	// Read for the report only: the rewrap itself compares and swaps.
	before, err := store.Keyring(ctx)
	if err != nil {
		return err
	}
	if err := token.RewrapKeyring(ctx, store, token.Sealing{Sealer: sealer, Name: store.KeyringKey()}); err != nil {
		return err
	}
	was, _ := masterkey.SealedBy(before)
	if c.cfg.json {
		return c.printJSON(rewrapped{MasterKey: newKeys.ID(), Previous: was})
	}
	if was == "" {
		return c.printf("sealed the keyring (it was in the clear) under master key %s\n", newKeys.ID())
	}
	return c.printf("sealed the keyring under master key %s (it was under %s)\n", newKeys.ID(), was)
}

type rewrapped struct {
	MasterKey string `json:"master_key"`
	// Previous is the key that sealed it before; empty: it was in the clear.
	Previous string `json:"previous_master_key"`
}

func (c *cli) printKeys(ks []admin.Key) error {
	if c.cfg.json {
		return c.printJSON(nonNil(ks))
	}
	// Newest first: the key that signs, or will, is what one looks for.
	ks = slices.Clone(ks)
	slices.SortStableFunc(ks, func(a, b admin.Key) int { return b.ActiveAt.Compare(a.ActiveAt) })
	t := c.table("KID", "ALG", "SIGNING", "CREATED", "ACTIVE_AT", "RETIRE_AT")
	for _, k := range ks {
		t.row(k.ID, k.Alg, yesNo(k.Signing), timeText(k.CreatedAt), timeText(k.ActiveAt), timeText(k.RetireAt))
	}
	return t.flush()
}

type revoked struct {
	Revoked int `json:"revoked"`
}

// userError and sessionError say what was not found or already exists in
// the same words whether the answer came from the store or from identityd.
func userError(name string, err error) error {
	switch {
	case errors.Is(err, tokenstore.ErrNotFound):
		return fmt.Errorf("user %q not found", name)
	case errors.Is(err, tokenstore.ErrAlreadyExists):
		return fmt.Errorf("user %q already exists", name)
	}
	return err
}

func sessionError(id string, err error) error {
	if errors.Is(err, tokenstore.ErrNotFound) {
		return fmt.Errorf("session %q not found (expired or already revoked)", id)
	}
	return err
}
