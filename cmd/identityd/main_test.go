package main

import (
	"log/slog"
	"net"
	"testing"

	"github.com/identityd/identity/internal/testcerts"
)

func TestHashWorkers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ flag, procs, want int }{
		{0, 1, 1}, // never zero workers
		{0, 2, 1},
		{0, 8, 7},
		{4, 2, 4}, // an explicit value wins
	} {
		if got := hashWorkers(tc.flag, tc.procs); got != tc.want {
			t.Errorf("hashWorkers(%d, %d) = %d, want %d", tc.flag, tc.procs, got, tc.want)
		}
	}
}

// identityd refuses to start on TLS files it cannot use, and builds the
// server's TLS from good ones.
func TestLoadTLS(t *testing.T) {
	set := testcerts.NewSet(t)
	log := slog.New(slog.DiscardHandler)
	if tl, err := loadTLS(config{}, log); tl != nil || err != nil {
		t.Fatalf("no files: %v, %v; want plaintext (nil, nil)", tl, err)
	}
	tl, err := loadTLS(config{TLSCertFile: set.ServerCertFile, TLSKeyFile: set.ServerKeyFile, TLSClientCAFile: set.CAFile}, log)
	if err != nil || tl.GetCertificate == nil || tl.ClientCAs == nil {
		t.Fatalf("good files: %+v, %v", tl, err)
	}
	cert, err := tl.GetCertificate(nil)
	if err != nil || cert.Leaf.SerialNumber.Cmp(set.Server.Leaf.SerialNumber) != 0 {
		t.Errorf("served certificate: %v, %v; want the file's", cert, err)
	}
	for name, c := range map[string]config{
		"key of another certificate": {TLSCertFile: set.ServerCertFile, TLSKeyFile: set.ClientKeyFile},
		"client CA file not a CA":    {TLSCertFile: set.ServerCertFile, TLSKeyFile: set.ServerKeyFile, TLSClientCAFile: set.ServerKeyFile},
	} {
		if _, err := loadTLS(c, log); err == nil {
			t.Errorf("%s: loaded; want identityd to refuse to start", name)
		}
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:9090": true, "[::1]:9090": true, "0.0.0.0:9090": false, "[::]:9090": false, "192.0.2.1:9090": false} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := isLoopback(a); got != want {
			t.Errorf("isLoopback(%s) = %t, want %t", addr, got, want)
		}
	}
}
