package password

import (
	"testing"

	"golang.org/x/crypto/argon2"
)

// BenchmarkRawArgon2id and BenchmarkCheck run on every CPU with the default
// parameters; Login must reach 0.9× the raw rate, so their ratio is the
// pool's overhead.
func BenchmarkRawArgon2id(b *testing.B) {
	p := DefaultParams
	salt := make([]byte, p.SaltLen)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			argon2.IDKey([]byte("correct horse battery staple"), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	h, err := New()
	if err != nil {
		b.Fatal(err)
	}
	stored, err := h.Hash(b.Context(), "correct horse battery staple")
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if ok, err := h.Check(b.Context(), stored, "correct horse battery staple"); err != nil || !ok {
				b.Error(ok, err)
				return
			}
		}
	})
}
