package server

import (
	"encoding/json"
	"fmt"
	"net/http"

	identity "github.com/identityd/identity"
	"github.com/identityd/identity/internal/buildinfo"
)

// OpenAPIPath is where the HTTP port serves the API document.
const OpenAPIPath = "/openapi.json"

// openAPIDocument is the generated OpenAPI document (title, the Bearer
// scheme and the error answers come from proto/identity/v1's
// identity.openapi.yaml) with info.version set to version: the document
// describes the build that serves it. Built once, at start.
func openAPIDocument(version string) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(identity.OpenAPI, &doc); err != nil {
		return nil, fmt.Errorf("server: the embedded OpenAPI document: %w", err)
	}
	info, ok := doc["info"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("server: the embedded OpenAPI document has no info")
	}
	info["version"] = version
	return json.MarshalIndent(doc, "", "  ")
}

func serveOpenAPI() (http.HandlerFunc, error) {
	body, err := openAPIDocument(buildinfo.Read().Version)
	if err != nil {
		return nil, err
	}
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// It changes only with the binary.
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(body)
	}, nil
}
