package server

import (
	"bytes"
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
// describes the build that serves it. The top-level fields keep the
// generator's order (swagger, info, ... first). Built once, at start.
func openAPIDocument(version string) ([]byte, error) {
	fail := func(err error) ([]byte, error) {
		return nil, fmt.Errorf("server: the embedded OpenAPI document: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(identity.OpenAPI))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fail(fmt.Errorf("not a JSON object (%v)", err))
	}
	var out bytes.Buffer
	out.WriteByte('{')
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return fail(err)
		}
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return fail(err)
		}
		if key == "info" {
			var info map[string]any
			if err := json.Unmarshal(value, &info); err != nil {
				return fail(err)
			}
			info["version"] = version
			if value, err = json.Marshal(info); err != nil {
				return fail(err)
			}
		}
		if out.Len() > 1 {
			out.WriteByte(',')
		}
		k, _ := json.Marshal(key)
		out.Write(k)
		out.WriteByte(':')
		out.Write(value)
	}
	out.WriteByte('}')
	var indented bytes.Buffer
	if err := json.Indent(&indented, out.Bytes(), "", "  "); err != nil {
		return fail(err)
	}
	return indented.Bytes(), nil
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
