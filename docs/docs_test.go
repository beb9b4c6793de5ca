// Package docs holds identity's user documentation (Markdown). Its tests
// keep the documents true to the code: every error reason, REST path, RPC
// and message field must be documented, and no file of the repository may
// point to a document outside it. The flags are checked in cmd/identityd
// (docs_test.go) and the error table's codes and HTTP statuses in server
// (docs_test.go), where the code they check lives.
package docs

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"unicode"

	"google.golang.org/protobuf/reflect/protoreflect"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// root is the module root, relative to this package.
const root = ".."

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// section returns the part of a Markdown document under the level-2
// heading title, up to the next level-2 heading.
func section(t *testing.T, doc, title string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n## "+title+"\n")
	if !ok {
		t.Fatalf("no section %q", title)
	}
	if i := strings.Index(rest, "\n## "); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// reasonRow matches a row of the errors table: | `REASON` | ...
var reasonRow = regexp.MustCompile("(?m)^\\| `([A-Z_]+)` \\|")

// Every value of identity.v1.ErrorReason has a row in api.md's error table,
// and every row names a value of the enum.
func TestEveryErrorReasonIsDocumented(t *testing.T) {
	errs := section(t, readDoc(t, "api.md"), "Errors")
	rows := map[string]int{}
	for _, m := range reasonRow.FindAllStringSubmatch(errs, -1) {
		rows[m[1]]++
	}
	for n, name := range identityv1.ErrorReason_name {
		if identityv1.ErrorReason(n) == identityv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
			continue
		}
		switch rows[name] {
		case 0:
			t.Errorf("api.md, Errors: no row for ErrorReason %s: add | `%s` | gRPC code | HTTP | when |", name, name)
		case 1:
		default:
			t.Errorf("api.md, Errors: %d rows for %s, want one", rows[name], name)
		}
	}
	for name := range rows {
		if _, ok := identityv1.ErrorReason_value[name]; !ok || name == "ERROR_REASON_UNSPECIFIED" {
			t.Errorf("api.md, Errors: row for %s, which is not a value of identity.v1.ErrorReason", name)
		}
	}
}

// swaggerOperations returns "METHOD /path" for every operation of the
// generated OpenAPI documents.
func swaggerOperations(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "gen", "identity", "v1", "*.swagger.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no generated OpenAPI documents in gen/identity/v1 (%v)", err)
	}
	var ops []string
	for _, f := range files {
		var doc struct {
			Paths map[string]map[string]json.RawMessage `json:"paths"`
		}
		if err := json.Unmarshal([]byte(readDoc(t, f)), &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for path, methods := range doc.Paths {
			for m := range methods {
				ops = append(ops, strings.ToUpper(m)+" "+path)
			}
		}
	}
	sort.Strings(ops)
	if !slices.Contains(ops, "POST /v1/login") {
		t.Fatalf("the OpenAPI documents have no POST /v1/login: %v", ops)
	}
	return ops
}

var restOperation = regexp.MustCompile("`((?:GET|POST|PUT|PATCH|DELETE) /v1/[^`\\s]*)`")

// Every REST operation of gen/identity/v1/*.swagger.json is in api.md as
// `METHOD /path`, and api.md documents no /v1/ operation that does not
// exist.
func TestEveryRESTPathIsDocumented(t *testing.T) {
	api := readDoc(t, "api.md")
	ops := swaggerOperations(t)
	for _, op := range ops {
		if !strings.Contains(api, "`"+op+"`") {
			t.Errorf("api.md does not document the REST operation `%s` of the OpenAPI document", op)
		}
	}
	for _, m := range restOperation.FindAllStringSubmatch(api, -1) {
		if !slices.Contains(ops, m[1]) {
			t.Errorf("api.md documents `%s`, which is not in the OpenAPI document (%v)", m[1], ops)
		}
	}
}

// Every RPC of IdentityService and AdminService, and every field of the
// messages they take and answer, is named in api.md.
func TestEveryRPCAndFieldIsDocumented(t *testing.T) {
	api := readDoc(t, "api.md")
	files := []protoreflect.FileDescriptor{
		identityv1.File_identity_v1_identity_proto,
		identityv1.File_identity_v1_admin_proto,
	}
	seen := map[protoreflect.FullName]bool{}
	var fields func(md protoreflect.MessageDescriptor)
	fields = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] || md.ParentFile().Package() != "identity.v1" {
			return
		}
		seen[md.FullName()] = true
		for i := range md.Fields().Len() {
			f := md.Fields().Get(i)
			if !strings.Contains(api, "`"+string(f.Name())+"`") {
				t.Errorf("api.md does not name the field `%s` of %s", f.Name(), md.FullName())
			}
			if f.Message() != nil {
				fields(f.Message())
			}
		}
	}
	for _, fd := range files {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			if !strings.Contains(api, "## "+string(sd.Name())) {
				t.Errorf("api.md has no section for %s", sd.FullName())
			}
			for j := range sd.Methods().Len() {
				m := sd.Methods().Get(j)
				if !strings.Contains(api, "`"+string(m.Name())+"`") {
					t.Errorf("api.md does not name the RPC `%s` of %s", m.Name(), sd.FullName())
				}
				fields(m.Input())
				fields(m.Output())
			}
		}
	}
}

// outsidePointers are what a file points outside the repository with: the
// shared folder and the documents in it. Spelt in pieces so this file does
// not match itself.
var outsidePointers = []string{
	".." + "/shared",
	"/work" + "/shared",
	"shared" + "/" + "DESIGN" + ".md",
	"DESIGN" + ".md",
	"STYLE" + ".md",
	"CODEGEN" + ".md",
	"GATEWAY" + ".md",
}

// repoFiles lists the repository's files, relative to root: what git
// tracks plus untracked files it does not ignore, or without git every
// file under root but .git and node_modules.
func repoFiles(t *testing.T) []string {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	out, err := cmd.Output()
	if err == nil {
		var files []string
		for _, f := range strings.Split(string(out), "\x00") {
			if f != "" {
				files = append(files, filepath.FromSlash(f))
			}
		}
		return files
	}
	t.Logf("git ls-files failed (%v): walking the file tree instead", err)
	var files []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				return err
			}
			files = append(files, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// No file of the repository (code, comments, docs, generated files, web
// and Python clients) points to a document outside it: someone who clones
// only this repository must be able to follow every reference.
func TestNothingPointsOutsideTheRepository(t *testing.T) {
	files := repoFiles(t)
	if !slices.Contains(files, filepath.Join("docs", "api.md")) {
		t.Fatalf("docs/api.md is not among the %d files listed: wrong root?", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if errors.Is(err, fs.ErrNotExist) {
			continue // deleted in the work tree, not yet in the index
		}
		if err != nil {
			t.Fatal(err)
		}
		for n, line := range bytes.Split(b, []byte("\n")) {
			for _, p := range outsidePointers {
				if bytes.Contains(line, []byte(p)) {
					t.Errorf("%s:%d points outside the repository (%q): point to docs/ (api.md, configuration.md) or BENCHMARKS.md instead", filepath.ToSlash(f), n+1, p)
					break // one report per line
				}
			}
		}
	}
}

// mdLink matches an inline Markdown link's target: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// slug is the anchor GitHub gives a heading: lower case, punctuation
// dropped, spaces turned into hyphens.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// anchors returns the heading anchors of a Markdown document (outside
// fenced code blocks).
func anchors(doc string) map[string]bool {
	out := map[string]bool{}
	fenced := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		out[slug(strings.TrimLeft(line, "#"))] = true
	}
	return out
}

// Every relative link of the repository's Markdown files (the README,
// docs/, BENCHMARKS.md, ...) reaches a file of the repository, and a link
// to #anchor a heading of its document.
func TestMarkdownLinksResolve(t *testing.T) {
	for _, f := range repoFiles(t) {
		if !strings.HasSuffix(f, ".md") || strings.HasPrefix(filepath.ToSlash(f), "third_party/") {
			continue
		}
		src, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(string(src), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, anchor, _ := strings.Cut(target, "#")
			path := filepath.Join(root, f) // a link to #anchor alone is in this file
			if file != "" {
				path = filepath.Join(root, filepath.Dir(f), filepath.FromSlash(file))
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Errorf("%s: link %s: %v", filepath.ToSlash(f), target, err)
				continue
			}
			if anchor == "" || st.IsDir() || !strings.HasSuffix(path, ".md") {
				continue
			}
			doc, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !anchors(string(doc))[anchor] {
				t.Errorf("%s: link %s: no heading with anchor #%s", filepath.ToSlash(f), target, anchor)
			}
		}
	}
}
