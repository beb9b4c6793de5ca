package testpids

import (
	"os"
	"slices"
	"testing"
)

func TestStarted(t *testing.T) {
	out := "# --- suite ---\n# redis-server pid 12 on 127.0.0.1:1 (appendonly yes)\n# identityd pid 34: /tmp/identityd --grpc-addr x\nnoise # identityd pid 56\n# identityd pid x: bad\n"
	if got, want := Started(out), []int{12, 34}; !slices.Equal(got, want) {
		t.Fatalf("Started = %v, want %v", got, want)
	}
}

func TestGone(t *testing.T) {
	// This process is there: Gone must report it.
	rec := &recorder{TB: t}
	Gone(rec, []int{os.Getpid()}, "the test")
	if rec.errors != 1 {
		t.Fatalf("Gone reported %d errors for a live process, want 1", rec.errors)
	}
}

type recorder struct {
	testing.TB
	errors int
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.errors++ }
