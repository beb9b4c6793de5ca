package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

const helpIntro = `identityd is the identity service: users log in with a username and password
and get a short-lived JWT access token and a rotating refresh token; other
services verify the tokens with Verify or locally with the published keys.
It serves gRPC on --grpc-addr, and REST, the JWKS, OIDC discovery, the
OpenAPI document, health and metrics on --http-addr.

Usage: identityd [flags]

Common invocations:
  # try it: embedded in-memory store (one instance, not durable), a first admin
  printf down-the-rabbit-hole > /tmp/alice.pw
  IDENTITY_BOOTSTRAP_USER=alice IDENTITY_BOOTSTRAP_PASSWORD_FILE=/tmp/alice.pw identityd
  # production: Redis (rediss:// for TLS) and an https issuer
  identityd --redis-url redis://10.0.0.5:6379/0 --issuer https://id.example.com
  # Redis Cluster
  identityd --redis-addrs 10.0.0.1:7000,10.0.0.2:7000 --issuer https://id.example.com

Every flag has an environment variable; the flag wins when both are set.
Durations use Go's syntax (6s, 15m). Secrets never come from flags: the
bootstrap user is IDENTITY_BOOTSTRAP_USER with IDENTITY_BOOTSTRAP_PASSWORD_FILE
(or IDENTITY_BOOTSTRAP_PASSWORD).
`

// helpGroups orders the flags in the help. A flag in no group is listed
// under "Other" (so one added later is never missing from the help).
var helpGroups = []struct {
	title string
	flags []string
}{
	{"Listening", []string{"grpc-addr", "http-addr", "public-url"}},
	{"Store", []string{"redis-url", "redis-addrs", "redis-timeout"}},
	{"Tokens and keys", []string{"issuer", "audience", "access-ttl", "leeway", "signing-alg", "keys-dir", "key-rotation", "key-publish-ahead"}},
	{"Sessions", []string{"refresh-idle-ttl", "refresh-absolute-ttl", "refresh-grace"}},
	{"Logins", []string{"login-rate-per-ip", "login-failures-per-user", "trusted-proxies", "hash-workers", "bootstrap-roles"}},
	{"Browsers", []string{"allowed-origins", "web-demo", "api-docs"}},
	{"Operation", []string{"log-format", "log-level", "shutdown-timeout", "version"}},
}

// writeHelp writes the --help text: the intro, then every flag by group,
// each with its built-in default and its environment variable.
func writeHelp(w io.Writer, fs *flag.FlagSet, entries map[string]flagEntry) {
	var b strings.Builder
	b.WriteString(helpIntro)
	listed := map[string]bool{}
	section := func(title string, names []string) {
		var flags []*flag.Flag
		for _, n := range names {
			if f := fs.Lookup(n); f != nil && !listed[n] {
				flags = append(flags, f)
				listed[n] = true
			}
		}
		if len(flags) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n%s:\n", title)
		for _, f := range flags {
			writeFlag(&b, f, entries[f.Name])
		}
	}
	for _, g := range helpGroups {
		section(g.title, g.flags)
	}
	var rest []string
	fs.VisitAll(func(f *flag.Flag) {
		if !listed[f.Name] {
			rest = append(rest, f.Name)
		}
	})
	slices.Sort(rest)
	section("Other", rest)
	_, _ = io.WriteString(w, b.String())
}

// writeFlag writes one flag as two lines:
//
//	--access-ttl duration   [15m]   IDENTITY_ACCESS_TTL
//	    access token lifetime
func writeFlag(b *strings.Builder, f *flag.Flag, e flagEntry) {
	kind, usage := flag.UnquoteUsage(f)
	head := "--" + f.Name
	if kind != "" {
		head += " " + kind
	}
	var tail []string
	if e.def != "" {
		tail = append(tail, "["+e.def+"]")
	}
	if e.env != "" {
		tail = append(tail, e.env)
	}
	fmt.Fprintf(b, "  %-32s %s\n", head, strings.Join(tail, "  "))
	for _, line := range wrap(usage, 72) {
		fmt.Fprintf(b, "      %s\n", line)
	}
}

// wrap breaks s into lines of at most width bytes, at spaces.
func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}
