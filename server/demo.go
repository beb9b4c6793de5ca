package server

import (
	"io/fs"
	"net/http"
	"strings"

	"github.com/identityd/identity/web"
)

// demoCSP lets the demo page load its own script, style and API and nothing
// else: no inline script, no eval, no framing, no form posts, and DOM
// writes only through textContent (Trusted Types enforced).
const demoCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'"

// demoHandler serves the browser demo (web/demo) at /demo/. It is mounted
// only when Config.WebDemo is set. A path that is not one of its files
// (nor /demo/ itself, the page) goes to notFound, for the JSON error every
// other unknown path gets: the file server would answer in plain text, or
// list a directory.
func demoHandler(notFound http.HandlerFunc) http.Handler {
	demo := web.DemoFS()
	files := http.StripPrefix("/demo/", http.FileServerFS(demo))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name := strings.TrimPrefix(r.URL.Path, "/demo/"); name != "" {
			if st, err := fs.Stat(demo, name); err != nil || !st.Mode().IsRegular() {
				notFound(w, r)
				return
			}
		}
		h := w.Header()
		h.Set("Content-Security-Policy", demoCSP)
		h.Set("Cache-Control", "no-cache")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		files.ServeHTTP(w, r)
	})
}
