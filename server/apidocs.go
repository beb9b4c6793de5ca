package server

import (
	"io/fs"
	"net/http"
	"strings"

	"github.com/identityd/identity/web"
)

// DocsPath is where the HTTP port serves the browsable API documentation
// (Swagger UI over OpenAPIPath) when Config.APIDocs is set.
const DocsPath = "/docs/"

// docsCSP is demoCSP's counterpart for Swagger UI: its bundle, its stylesheet
// and docs.js from 'self', no inline script, no eval, no framing; "Try it
// out" calls this origin only (connect-src 'self'), and the SVG icons its
// stylesheet inlines are data: images. Unlike the demo, no Trusted Types:
// Swagger UI renders the descriptions' Markdown through innerHTML (after
// DOMPurify).
const docsCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// docsHandler serves web.DocsFS at DocsPath, like demoHandler: a path that
// is not one of its files goes to notFound.
func docsHandler(notFound http.HandlerFunc) http.Handler {
	docs := web.DocsFS()
	files := http.StripPrefix(DocsPath, http.FileServerFS(docs))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name := strings.TrimPrefix(r.URL.Path, DocsPath); name != "" {
			if st, err := fs.Stat(docs, name); err != nil || !st.Mode().IsRegular() {
				notFound(w, r)
				return
			}
		}
		h := w.Header()
		h.Set("Content-Security-Policy", docsCSP)
		if strings.HasPrefix(r.URL.Path, DocsPath+"vendor/") {
			// 1.9 MB that changes only with the binary, like /openapi.json.
			h.Set("Cache-Control", "public, max-age=300")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		files.ServeHTTP(w, r)
	})
}
