// Package identity holds the API documents generated into gen/ that the
// server serves (/openapi.json). They are embedded here, at the module's
// root, because go:embed reaches only files below a package's directory,
// and gen/ cannot hold a hand-written file: buf generate rewrites it whole.
// The service itself lives in the packages below (see the README's
// layout); nothing else belongs here.
package identity

import _ "embed"

// OpenAPI is gen/identity/v1/identity.swagger.json, the OpenAPI 2.0
// document protoc-gen-openapiv2 makes of IdentityService's REST bindings
// and proto/identity/v1/identity.openapi.yaml.
//
//go:embed gen/identity/v1/identity.swagger.json
var OpenAPI []byte
