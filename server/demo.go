package server

import (
	"net/http"

	"github.com/identityd/identity/web"
)

// demoCSP lets the demo page load its own script, style and API and nothing
// else: no inline script, no eval, no framing, no form posts, and DOM
// writes only through textContent (Trusted Types enforced).
const demoCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'; require-trusted-types-for 'script'"

// demoHandler serves the browser demo (web/demo) at /demo/. It is mounted
// only when Config.WebDemo is set.
func demoHandler() http.Handler {
	files := http.StripPrefix("/demo/", http.FileServerFS(web.DemoFS()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", demoCSP)
		h.Set("Cache-Control", "no-cache")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		files.ServeHTTP(w, r)
	})
}
