package sessions

import (
	"strings"
	"testing"
)

func TestTruncateUTF8(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"grpc-go/1.84.0", 128, "grpc-go/1.84.0"},
		{"", 8, ""},
		{strings.Repeat("a", 130), 128, strings.Repeat("a", 128)},
		{"a\x00b\x7fc\td", 128, "abcd"},
		{"zoë名前", 6, "zoë"},       // never half a character
		{"ab\xffcd", 128, "abcd"}, // invalid UTF-8 dropped
		{"é", 1, ""},
	} {
		if got := truncateUTF8(c.in, c.n); got != c.want {
			t.Errorf("truncateUTF8(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}
