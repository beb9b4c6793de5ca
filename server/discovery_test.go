package server_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"testing"

	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/server"
)

func getJSON(t *testing.T, url, host string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("GET %s: %s, not JSON: %v", url, resp.Status, err)
	}
	return resp, body
}

func strs(v any) []string {
	list, _ := v.([]any)
	out := []string{}
	for _, e := range list {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

// The discovery document says what a JWT verifier needs (issuer, an
// absolute jwks_uri, the algorithms of the published keys) and the two
// fields Discovery 1.0 requires, with identity's honest values; no
// endpoint of an authorization server identity does not have.
func TestDiscoveryDocument(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		issuer      string
		publicURL   string
		host        string // the request's Host; "" the server's address
		wantJWKS    string // "" base URL of the server + the path
		cacheShared bool
	}{
		{name: "https issuer", issuer: "https://id.example.com", wantJWKS: "https://id.example.com/.well-known/jwks.json", cacheShared: true},
		{name: "https issuer with a path", issuer: "https://example.com/identity/", wantJWKS: "https://example.com/identity/.well-known/jwks.json", cacheShared: true},
		{name: "public URL wins", issuer: "https://id.example.com", publicURL: "https://keys.example.com", wantJWKS: "https://keys.example.com/.well-known/jwks.json", cacheShared: true},
		{name: "plain issuer: the request's Host", issuer: "identity"},
		{name: "plain issuer, another Host", issuer: "identity", host: "identity.internal:8080", wantJWKS: "http://identity.internal:8080/.well-known/jwks.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := testidentityd.StartInProcess(t, testidentityd.InProcessConfig(func(c *server.Config) {
				c.Issuer, c.PublicURL = tc.issuer, tc.publicURL
			}))
			resp, doc := getJSON(t, s.BaseURL+server.DiscoveryPath, tc.host)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("%s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
			}
			want := tc.wantJWKS
			if want == "" {
				want = s.BaseURL + server.JWKSPath
			}
			if doc["issuer"] != tc.issuer || doc["jwks_uri"] != want {
				t.Errorf("issuer %v, jwks_uri %v; want %q, %q", doc["issuer"], doc["jwks_uri"], tc.issuer, want)
			}
			cc := "private, max-age=60"
			if tc.cacheShared {
				cc = "public, max-age=60"
			}
			if got := resp.Header.Get("Cache-Control"); got != cc {
				t.Errorf("Cache-Control %q, want %q", got, cc)
			}
			keys := make([]string, 0, len(doc))
			for k := range doc {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			wantKeys := []string{"claims_supported", "id_token_signing_alg_values_supported", "issuer", "jwks_uri", "response_types_supported", "subject_types_supported"}
			if !slices.Equal(keys, wantKeys) {
				t.Errorf("fields %v, want %v", keys, wantKeys)
			}
			if got := strs(doc["response_types_supported"]); len(got) != 0 {
				t.Errorf("response_types_supported %v: identity has no authorization endpoint", got)
			}
			if got := strs(doc["subject_types_supported"]); !slices.Equal(got, []string{"public"}) {
				t.Errorf("subject_types_supported %v", got)
			}
			for _, c := range []string{"iss", "sub", "aud", "exp", "sid", "roles", "preferred_username"} {
				if !slices.Contains(strs(doc["claims_supported"]), c) {
					t.Errorf("claims_supported lacks %s", c)
				}
			}
			// The algorithms are those of the published keys.
			_, jwks := getJSON(t, s.BaseURL+server.JWKSPath, "")
			var algs []string
			for _, k := range jwks["keys"].([]any) {
				if alg := k.(map[string]any)["alg"].(string); !slices.Contains(algs, alg) {
					algs = append(algs, alg)
				}
			}
			sort.Strings(algs)
			if got := strs(doc["id_token_signing_alg_values_supported"]); !slices.Equal(got, algs) || !slices.Equal(got, []string{"EdDSA"}) {
				t.Errorf("id_token_signing_alg_values_supported %v; the JWKS has %v (EdDSA keys)", got, algs)
			}
		})
	}
}

func TestParsePublicURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://id.example.com":            "https://id.example.com",
		"https://id.example.com/":           "https://id.example.com",
		"https://example.com/identity/":     "https://example.com/identity",
		"http://127.0.0.1:8080":             "http://127.0.0.1:8080",
		"identity":                          "",
		"ftp://id.example.com":              "",
		"https://":                          "",
		"https://user:pw@id.example.com":    "",
		"https://id.example.com/?q=1":       "",
		"https://id.example.com/#fragment":  "",
		"https://id.example.com/path?":      "",
		"://missing-scheme.example.com/abc": "",
	} {
		got, err := server.ParsePublicURL(in)
		if want == "" {
			if err == nil {
				t.Errorf("ParsePublicURL(%q) = %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("ParsePublicURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
