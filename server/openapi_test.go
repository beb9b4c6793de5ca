package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/identityd/identity/internal/buildinfo"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/server"
)

// /openapi.json is the generated document, with the build's version, the
// Bearer scheme on /v1/me and each operation's error answers; and every
// operation it lists is one the gateway routes.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	s := testidentityd.StartInProcess(t)
	resp, doc := getJSON(t, s.BaseURL+server.OpenAPIPath, "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Cache-Control") == "" {
		t.Fatalf("%s, Content-Type %q, Cache-Control %q", resp.Status, resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
	}
	info, _ := doc["info"].(map[string]any)
	if doc["swagger"] != "2.0" || info["title"] != "identity" || info["version"] != buildinfo.Read().Version {
		t.Errorf("swagger %v, info %v; want 2.0, title identity, version %q (the build's)", doc["swagger"], info, buildinfo.Read().Version)
	}
	bearer, _ := doc["securityDefinitions"].(map[string]any)["Bearer"].(map[string]any)
	if bearer["type"] != "apiKey" || bearer["in"] != "header" || bearer["name"] != "Authorization" {
		t.Errorf("securityDefinitions.Bearer = %v", bearer)
	}
	if _, global := doc["security"]; global {
		t.Error("a document-wide security requirement: Login, Refresh, Logout and Verify need no token")
	}

	// The errors each operation can answer (server/errors.go's rows that
	// reach it), besides 200 and the catch-all default.
	want := map[string][]string{
		"POST /v1/login":      {"400", "401", "413", "429", "503"},
		"POST /v1/refresh":    {"400", "401", "403", "413", "503"},
		"POST /v1/logout":     {"400", "401", "403", "413", "503"},
		"POST /v1/verify":     {"400", "401", "413", "503"},
		"GET /v1/me":          {"401", "503"},
		"GET /v1/me/sessions": {"401", "503"},
		"POST /v1/me/sessions/{session_id}/revoke": {"400", "401", "404", "503"},
		"POST /v1/me/password":                     {"400", "401", "429", "503"},
	}
	paths, _ := doc["paths"].(map[string]any)
	seen := 0
	for path, ops := range paths {
		for method, op := range ops.(map[string]any) {
			name := strings.ToUpper(method) + " " + path
			seen++
			o := op.(map[string]any)
			responses := o["responses"].(map[string]any)
			for _, code := range append([]string{"200", "default"}, want[name]...) {
				r, ok := responses[code].(map[string]any)
				if !ok {
					t.Errorf("%s: no %s response", name, code)
					continue
				}
				if code != "200" && !strings.Contains(r["schema"].(map[string]any)["$ref"].(string), "rpcStatus") {
					t.Errorf("%s %s: schema %v, want google.rpc.Status", name, code, r["schema"])
				}
			}
			if r401, _ := json.Marshal(responses["401"]); !strings.Contains(strings.ToLower(string(r401)), "www-authenticate") {
				t.Errorf("%s: the 401 answer does not document WWW-Authenticate", name)
			}
			_, secured := o["security"]
			if secured != strings.Contains(name, " /v1/me") {
				t.Errorf("%s: security %v", name, o["security"])
			}
			if secured && !slices.ContainsFunc(o["security"].([]any), func(v any) bool { _, ok := v.(map[string]any)["Bearer"]; return ok }) {
				t.Errorf("%s: security %v, want Bearer", name, o["security"])
			}
			// The gateway routes it: an empty call gets the contract's
			// error (or an answer), never "no such path" or "method not allowed".
			req, _ := http.NewRequestWithContext(t.Context(), strings.ToUpper(method), s.BaseURL+path, strings.NewReader("{}"))
			r, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			if r.StatusCode == http.StatusNotFound || r.StatusCode == http.StatusMethodNotAllowed {
				t.Errorf("%s is in the document but the gateway answers %s", name, r.Status)
			}
		}
	}
	if seen != len(want) {
		t.Errorf("%d operations in the document, want %d", seen, len(want))
	}
}

// The document keeps the generator's field order: "swagger" first.
func TestOpenAPIDocumentOrder(t *testing.T) {
	t.Parallel()
	s := testidentityd.StartInProcess(t)
	resp, err := http.Get(s.BaseURL + server.OpenAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	if first, err := dec.Token(); err != nil || first != "swagger" {
		t.Errorf("first field %v (%v), want swagger", first, err)
	}
}
