package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// configurationDoc is the user documentation of identityd's flags.
const configurationDoc = "../../docs/configuration.md"

// docFlag is one flag as identityd -h describes it.
type docFlag struct {
	name, typ, env, def string
}

// helpFlags returns every flag identityd registers, from the flag set
// parseConfig builds, with the environment cleared so the defaults are the
// built-in ones (as the help shows them).
func helpFlags(t *testing.T) []docFlag {
	t.Helper()
	clearEnv(t)
	c, err := parseConfig(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var flags []docFlag
	c.flags.fs.VisitAll(func(fl *flag.Flag) {
		if fl.Name == "version" {
			return // no variable, no configuration
		}
		e, ok := c.flags.entries[fl.Name]
		if !ok || e.env == "" {
			t.Errorf("identityd: flag --%s names no environment variable", fl.Name)
		}
		f := docFlag{name: fl.Name, env: e.env, def: e.def}
		switch fl.Value.(type) {
		case interface{ IsBoolFlag() bool }:
			f.typ = "bool"
		default:
			if _, err := time.ParseDuration(e.def); err == nil && e.def != "0" {
				f.typ = "duration"
			}
		}
		flags = append(flags, f)
	})
	if len(flags) < 20 {
		t.Fatalf("read %d flags from identityd's flag set, want them all", len(flags))
	}
	return flags
}

// flagRows returns the rows of configuration.md's flag tables, by flag name:
// | `--name` | `IDENTITY_X` | default | what it does |
func flagRows(t *testing.T, doc string) map[string][]string {
	t.Helper()
	rows := map[string][]string{}
	for _, line := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(line, "| `--") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != 4 {
			t.Errorf("configuration.md: flag row with %d cells, want 4 (flag, env, default, what it does): %s", len(cells), line)
			continue
		}
		name := strings.TrimPrefix(strings.Trim(cells[0], "`"), "--")
		if _, dup := rows[name]; dup {
			t.Errorf("configuration.md: two rows for --%s", name)
		}
		rows[name] = cells
	}
	return rows
}

var firstCode = regexp.MustCompile("`([^`]*)`")

// documentedDefault reports whether a default cell says def: its first code
// span is def (compared as durations for duration flags), or it begins with
// "unset" for an empty string.
func documentedDefault(cell string, f docFlag) bool {
	if f.def == "" {
		return strings.HasPrefix(cell, "unset") || strings.HasPrefix(cell, "`\"\"`")
	}
	m := firstCode.FindStringSubmatch(cell)
	if m == nil {
		return false
	}
	if m[1] == f.def {
		return true
	}
	if f.typ == "duration" {
		want, err1 := time.ParseDuration(f.def)
		got, err2 := time.ParseDuration(m[1])
		return err1 == nil && err2 == nil && got == want
	}
	return false
}

// Every flag identityd registers has a row in docs/configuration.md with
// its environment variable and its default, and every row is a real flag:
// the document cannot fall behind the code, nor describe flags that do
// not exist.
func TestConfigurationDocumentsEveryFlag(t *testing.T) {
	b, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows := flagRows(t, string(b))
	flags := helpFlags(t)
	for _, f := range flags {
		row, ok := rows[f.name]
		if !ok {
			t.Errorf("configuration.md: no row for --%s; add | `--%s` | `%s` | `%s` | what it does |", f.name, f.name, f.env, f.def)
			continue
		}
		if row[1] != "`"+f.env+"`" {
			t.Errorf("configuration.md: --%s's env is %s, want `%s`", f.name, row[1], f.env)
		}
		if !documentedDefault(row[2], f) {
			t.Errorf("configuration.md: --%s's default is %q, want `%s` (or \"unset\" for an empty one) first", f.name, row[2], f.def)
		}
	}
	for name := range rows {
		if !slices.ContainsFunc(flags, func(f docFlag) bool { return f.name == name }) {
			t.Errorf("configuration.md documents --%s, which identityd does not have", name)
		}
	}
}

var envName = regexp.MustCompile(`IDENTITY_[A-Z0-9_]+`)

// Every IDENTITY_* variable identityd reads (flags' and the secrets read
// from the environment alone) is in docs/configuration.md, and the document
// names no variable that identityd does not read.
func TestConfigurationDocumentsEveryEnvVar(t *testing.T) {
	doc, err := os.ReadFile(configurationDoc)
	if err != nil {
		t.Fatal(err)
	}
	sources, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	code := map[string]bool{}
	for _, f := range sources {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range regexp.MustCompile(`"(IDENTITY_[A-Z0-9_]+)"`).FindAllSubmatch(b, -1) {
			code[string(v[1])] = true
		}
	}
	if !code["IDENTITY_BOOTSTRAP_USER"] || !code["IDENTITY_GRPC_ADDR"] {
		t.Fatalf("found only %v in identityd's sources", code)
	}
	for v := range code {
		if !bytes.Contains(doc, []byte("`"+v+"`")) {
			t.Errorf("configuration.md does not document %s", v)
		}
	}
	for _, v := range envName.FindAll(doc, -1) {
		if !code[string(v)] {
			t.Errorf("configuration.md names %s, which identityd does not read", v)
		}
	}
}
