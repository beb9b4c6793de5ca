package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestMayHaveRun pins which errors of a cluster node the redirect loop may
// resend (nothing ran, or Redis refused) and which it may not (a reply
// that may have been lost).
func TestMayHaveRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection closed after the write", io.EOF, true},
		{"truncated reply", io.ErrUnexpectedEOF, true},
		{"read reset", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{"read timeout", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, true},
		{"write failed", &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}, true},
		{"dial refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, false},
		{"dial refused, wrapped", fmt.Errorf("redis: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), false},
		{"a Redis reply", redis.Nil, false},
		{"the caller's deadline", context.DeadlineExceeded, false},
		{"canceled", fmt.Errorf("x: %w", context.Canceled), false},
		{"pool timeout", redis.ErrPoolTimeout, false},
		{"pool exhausted", redis.ErrPoolExhausted, false},
		{"client closed", redis.ErrClosed, false},
		{"no error", nil, false},
	}
	for _, tc := range tests {
		if got := mayHaveRun(tc.err); got != tc.want {
			t.Errorf("%s: mayHaveRun(%v) = %t, want %t", tc.name, tc.err, got, tc.want)
		}
	}
	// What go-redis's redirect loop looks for must not be visible through
	// the wrapper: that is what keeps the command from being resent.
	wrapped := error(&mayHaveRunError{io.EOF})
	var netErr net.Error
	if errors.Is(wrapped, io.EOF) || errors.As(&mayHaveRunError{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}}, &netErr) {
		t.Error("mayHaveRunError can be seen through: go-redis would resend the command")
	}
	if wrapped.Error() != io.EOF.Error() {
		t.Errorf("mayHaveRunError text %q, want the original's", wrapped.Error())
	}
}
