// Package e2e holds the black-box end-to-end tests of identityd: they build
// cmd/identityd (and cmd/identityctl when present), run it as a real process
// on free loopback ports against a private redis-server, and check the public
// contract in DESIGN.md over REST and gRPC exactly as a client sees it.
//
// The tests import nothing of the server: only the generated API in gen/
// and the internal/testredis helper, so a refactoring inside the server
// cannot make them pass by accident. There is no production code here.
//
// E2E_BIN_DIR, when set, names a directory holding already built identityd
// and identityctl binaries to test instead of building them from this tree.
package e2e
