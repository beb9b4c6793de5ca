// Package web holds identity's browser side: the dependency-free client
// module identity-client.js (silent single-flight refresh across tabs, the
// refresh token in an HttpOnly cookie) and the demo page that identityd
// serves at /demo/ when IDENTITY_WEB_DEMO=1, and the API documentation page
// (Swagger UI, from npm into apidocs/vendor/ by apidocs/scripts/vendor.js)
// served at /docs/ when IDENTITY_API_DOCS=1. The Go code here only embeds
// those files; the client's own tests run under Node and in Chromium
// (browser_test.go runs them with `go test`).
package web

import (
	"embed"
	"errors"
	"io/fs"
)

//go:embed identity-client.js demo/index.html demo/demo.js demo/format.js demo/demo.css
var files embed.FS

//go:embed apidocs/index.html apidocs/docs.js apidocs/vendor
var apidocs embed.FS

// DemoFS returns the demo page's files, flat: index.html, demo.js and the
// format.js it imports, demo.css, and the client module identity-client.js.
func DemoFS() fs.FS { return demoFS{} }

type demoFS struct{}

func (demoFS) Open(name string) (fs.File, error) {
	switch {
	case !fs.ValidPath(name):
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	case name == "identity-client.js":
		return files.Open(name)
	case name == ".":
		return files.Open("demo")
	}
	f, err := files.Open("demo/" + name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return f, err
}

// DocsFS returns the API documentation page's files: index.html, docs.js
// and vendor/ (Swagger UI's bundle, stylesheet and licences).
func DocsFS() fs.FS {
	sub, err := fs.Sub(apidocs, "apidocs")
	if err != nil {
		panic(err) // a constant, valid path
	}
	return sub
}
