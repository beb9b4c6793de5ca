package server

import (
	"net/http"
	"testing"
)

func TestNormalizeOrigin(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://App.Example.com":     "https://app.example.com",
		"https://app.example.com/":    "https://app.example.com",
		"https://app.example.com:443": "https://app.example.com",
		"http://localhost:80":         "http://localhost",
		"http://localhost:8080":       "http://localhost:8080",
		" http://[::1]:3000 ":         "http://[::1]:3000",
	} {
		if got, err := NormalizeOrigin(in); err != nil || got != want {
			t.Errorf("NormalizeOrigin(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "*", "null", "app.example.com", "ftp://x", "https://x/path", "https://x?q", "https://u@x", "https://"} {
		if got, err := NormalizeOrigin(bad); err == nil {
			t.Errorf("NormalizeOrigin(%q) = %q, want an error", bad, got)
		}
	}
	s := &Server{cfg: Config{AllowedOrigins: []string{"*"}}}
	if _, err := s.browserGate(http.NotFoundHandler()); err == nil {
		t.Error("browserGate accepted the origin *")
	}
}
