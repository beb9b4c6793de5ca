// Package e2e holds the black-box end-to-end tests of identityd: they run
// the cmd/identityd binary (and cmd/identityctl) built from this tree as a
// real process on free loopback ports against a private redis-server, and
// check the public contract (the API reference, docs/api.md) over REST and
// gRPC exactly as a client sees it.
//
// The tests call nothing of the server: only the generated API in gen/,
// internal/testredis, internal/testidentityd's process mode, which builds
// and runs the binaries, and a Redis client to read what identityd stored
// (as a reader of Redis would), so a refactoring inside the server cannot
// make them pass by accident. There is no production code here.
//
// TESTIDENTITYD_BIN_DIR (or E2E_BIN_DIR), when set, names a directory
// holding already built identityd and identityctl binaries to test instead
// of building them from this tree.
package e2e
