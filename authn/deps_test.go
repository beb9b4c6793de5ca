package authn_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// Other services import authn: it must not pull identity's server side
// (the store, its Redis client, the server's metrics, the REST gateway),
// only what checking a token needs. A shared constant or error belongs in
// a leaf package both sides import, or in the proto.
var forbiddenDeps = []string{
	"github.com/identityd/identity/tokenstore",
	"github.com/identityd/identity/server",
	"github.com/identityd/identity/admin",
	"github.com/identityd/identity/users",
	"github.com/identityd/identity/password",
	"github.com/identityd/identity/ratelimit",
	"github.com/redis/go-redis",
	"github.com/prometheus",
	"github.com/grpc-ecosystem/grpc-gateway",
}

func TestAuthnImportsNothingOfTheServer(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool on PATH to list authn's dependencies: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goTool, "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`, ".")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, stderr.Bytes())
	}

	importers := map[string][]string{} // package -> the dependencies importing it
	var bad []string
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkg := fields[0]
		if forbidden(pkg) {
			bad = append(bad, pkg)
		}
		for _, imp := range fields[1:] {
			importers[imp] = append(importers[imp], pkg)
		}
	}
	if len(bad) == 0 {
		return
	}
	// Per forbidden tree, the packages it is entered by, with their
	// importers; the packages reached only from inside the tree are counted.
	slices.Sort(bad)
	var msg strings.Builder
	msg.WriteString("authn depends on the server side; forbidden package <- what imports it:\n")
	for _, tree := range forbiddenDeps {
		inside := 0
		for _, pkg := range bad {
			if !within(pkg, tree) {
				continue
			}
			by := importers[pkg]
			if !slices.ContainsFunc(by, func(imp string) bool { return !within(imp, tree) }) {
				inside++
				continue
			}
			slices.Sort(by)
			msg.WriteString("  " + pkg + " <- " + strings.Join(by, ", ") + "\n")
		}
		if inside > 0 {
			fmt.Fprintf(&msg, "  (and %d more packages of %s, imported from within it)\n", inside, tree)
		}
	}
	t.Error(msg.String())
}

// within reports whether pkg is tree or under it.
func within(pkg, tree string) bool {
	return pkg == tree || strings.HasPrefix(pkg, tree+"/")
}

func forbidden(pkg string) bool {
	return slices.ContainsFunc(forbiddenDeps, func(tree string) bool { return within(pkg, tree) })
}
