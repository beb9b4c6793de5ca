package tokenstore

import (
	"encoding/base32"
	"fmt"
	"io"
	"strings"
)

// IDs are lowercase base32 without padding: safe in Redis keys, URLs and
// logs. A session id starts with its user's id, so the store can find the
// user's hash tag from a session id alone.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

const idBytes = 12 // 96 random bits, 20 characters

func randomID(r io.Reader) (string, error) {
	b := make([]byte, idBytes)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", fmt.Errorf("tokenstore: random id: %w", err)
	}
	return idEncoding.EncodeToString(b), nil
}

// NewUserID returns a fresh user id read from r (crypto/rand.Reader in production).
func NewUserID(r io.Reader) (string, error) { return randomID(r) }

// NewSessionID returns a fresh session id of userID: "<userID>.<random>".
func NewSessionID(userID string, r io.Reader) (string, error) {
	id, err := randomID(r)
	if err != nil {
		return "", err
	}
	return userID + "." + id, nil
}

// SessionUserID returns the user id a session id belongs to.
func SessionUserID(sessionID string) (string, bool) {
	uid, rest, ok := strings.Cut(sessionID, ".")
	if !ok || !validID(uid) || !validID(rest) {
		return "", false
	}
	return uid, true
}

// ValidUserID reports whether s has the shape of a user id.
func ValidUserID(s string) bool { return validID(s) }

func validID(s string) bool {
	if len(s) != 20 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}
