package server

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"google.golang.org/grpc/codes"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// apiDoc is the user documentation of the API.
const apiDoc = "../docs/api.md"

// codeName is a gRPC code as the documentation spells it: UNAUTHENTICATED,
// INVALID_ARGUMENT (the names of the google.rpc.Code enum).
func codeName(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// errorRows returns api.md's error table by reason: its cells after the
// reason (gRPC code, HTTP, when).
func errorRows(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(apiDoc)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		reason := strings.Trim(strings.TrimSpace(cells[0]), "`")
		if _, ok := identityv1.ErrorReason_value[reason]; !ok || len(cells) != 4 {
			continue
		}
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows[reason] = cells[1:]
	}
	return rows
}

// The gRPC code and HTTP status of every row of errorTable are in the row
// of docs/api.md's error table for that row's reason, so the document
// shows every answer a reason comes with (INVALID_REQUEST is 400, and on
// REST also 404, 405 and 413). A reason no row produces yet is documented
// as not sent; one that a row produces is not.
func TestAPIDocumentsTheErrorTable(t *testing.T) {
	rows := errorRows(t)
	if len(rows) < 10 {
		t.Fatalf("found %d rows in api.md's error table, want one per ErrorReason", len(rows))
	}
	produced := map[string]bool{}
	for _, row := range errorTable {
		if row.reason == identityv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
			continue
		}
		reason := row.reason.String()
		produced[reason] = true
		doc, ok := rows[reason]
		if !ok {
			t.Errorf("api.md, Errors: no row for %s (errorTable: %s)", reason, row.err)
			continue
		}
		if !strings.Contains(doc[0], "`"+codeName(row.code)+"`") {
			t.Errorf("api.md, Errors, %s: gRPC code cell %q lacks `%s` (errorTable: %s)", reason, doc[0], codeName(row.code), row.err)
		}
		if !regexp.MustCompile(`\b` + strconv.Itoa(row.http) + `\b`).MatchString(doc[1]) {
			t.Errorf("api.md, Errors, %s: HTTP cell %q lacks %d (errorTable: %s)", reason, doc[1], row.http, row.err)
		}
	}
	for r, who := range reasonsOutsideTheTable {
		doc, ok := rows[r.String()]
		if !ok {
			t.Errorf("api.md, Errors: no row for %s (%s)", r, who)
			continue
		}
		notYet := strings.HasPrefix(who, "nothing yet")
		if documented := strings.Contains(doc[2], "does not send it yet"); documented != notYet {
			t.Errorf("api.md, Errors, %s: says %q, but the server's answer is %q", r, doc[2], who)
		}
	}
	for reason, doc := range rows {
		if produced[reason] && strings.Contains(doc[2], "does not send it yet") {
			t.Errorf("api.md, Errors, %s: documented as not sent, but errorTable produces it", reason)
		}
	}
}

// Every endpoint the HTTP port serves beside the gateway (http.go) is in
// docs/api.md as `METHOD /path`.
func TestAPIDocumentsTheHTTPEndpoints(t *testing.T) {
	src, err := os.ReadFile("http.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile(apiDoc)
	if err != nil {
		t.Fatal(err)
	}
	patterns := regexp.MustCompile(`mux\.Handle(?:Func)?\("((?:GET|POST) /[^"]*)"`).FindAllSubmatch(src, -1)
	if len(patterns) < 4 {
		t.Fatalf("found %d mux patterns in http.go", len(patterns))
	}
	for _, p := range patterns {
		if !strings.Contains(string(doc), "`"+string(p[1])) {
			t.Errorf("api.md does not document `%s` (http.go)", p[1])
		}
	}
}
