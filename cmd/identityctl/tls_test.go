package main

import (
	"crypto/tls"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testcerts"
	"github.com/identityd/identity/internal/testredis"
)

// startTLSFakeIdentityd is startFakeIdentityd behind TLS, requiring client
// certificates of set's CA when mTLS.
func startTLSFakeIdentityd(t *testing.T, set *testcerts.Set, mTLS bool) string {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{set.Server.TLS(t)}, MinVersion: tls.VersionTLS12}
	if mTLS {
		cfg.ClientAuth, cfg.ClientCAs = tls.RequireAndVerifyClientCert, set.CA.Pool()
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	f := &fakeIdentityd{}
	identityv1.RegisterIdentityServiceServer(srv, f)
	identityv1.RegisterAdminServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

func TestRemoteOverTLS(t *testing.T) {
	t.Parallel()
	set := testcerts.NewSet(t)
	mtls := startTLSFakeIdentityd(t, set, true)
	tlsOnly := startTLSFakeIdentityd(t, set, false)
	token := map[string]string{"IDENTITY_TOKEN": "tok-123", "IDENTITY_TIMEOUT": "5s"}
	with := func(server string, kv ...string) map[string]string {
		env := map[string]string{"IDENTITY_SERVER": server}
		for k, v := range token {
			env[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			env[kv[i]] = kv[i+1]
		}
		return env
	}
	clientCert := []string{"--tls-ca-file", set.CAFile, "--tls-cert-file", set.ClientCertFile, "--tls-key-file", set.ClientKeyFile}

	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
	}{
		{"mTLS with a client certificate", with(mtls), clientCert, 0},
		{"mTLS, the files from the environment", with(mtls,
			"IDENTITY_SERVER_CA_FILE", set.CAFile, "IDENTITY_CLIENT_CERT_FILE", set.ClientCertFile, "IDENTITY_CLIENT_KEY_FILE", set.ClientKeyFile), nil, 0},
		{"TLS with the CA only", with(tlsOnly), []string{"--tls-ca-file", set.CAFile}, 0},
		{"mTLS without a client certificate", with(mtls), []string{"--tls-ca-file", set.CAFile}, 1},
		{"plaintext to a TLS port", with(tlsOnly), nil, 1},
		{"system roots for a private CA", with(tlsOnly), []string{"--tls"}, 1},
		{"system roots from the environment", with(tlsOnly, "IDENTITY_SERVER_TLS", "true"), nil, 1},
		{"certificate without its key", with(mtls), []string{"--tls-ca-file", set.CAFile, "--tls-cert-file", set.ClientCertFile}, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runWith(t, tc.env, "", append(tc.args, "user", "list")...)
			t.Logf("stderr: %s", r.stderr)
			if r.code != tc.wantCode {
				t.Fatalf("exit %d, want %d: %+v", r.code, tc.wantCode, r)
			}
			if tc.wantCode == 0 && !strings.Contains(r.stdout, "root") {
				t.Errorf("user list over TLS: %q", r.stdout)
			}
		})
	}
}

// identityctl reaches a Redis that serves TLS with a private CA through
// --redis-ca-file (the same option identityd has), and refuses it without.
func TestRedisOverTLS(t *testing.T) {
	t.Parallel()
	set := testcerts.NewSet(t)
	srv := testredis.NewServer(t, testredis.WithTLS(set.ServerCertFile, set.ServerKeyFile, set.CAFile))
	env := map[string]string{"IDENTITY_REDIS_URL": srv.TLSURL(), "IDENTITY_TIMEOUT": "5s"}

	r := runWith(t, env, "new-user-pw\n", "--redis-ca-file", set.CAFile, "user", "add", "tess", "--password-stdin")
	if r.code != 0 {
		t.Fatalf("user add over TLS: %+v", r)
	}
	env["IDENTITY_REDIS_CA_FILE"] = set.CAFile
	if r = runWith(t, env, "", "user", "list"); r.code != 0 || !strings.Contains(r.stdout, "tess") {
		t.Fatalf("user list over TLS (CA from the environment): %+v", r)
	}
	delete(env, "IDENTITY_REDIS_CA_FILE")
	if r = runWith(t, env, "", "user", "list"); r.code != 1 {
		t.Errorf("user list over TLS without the CA: %+v, want a refused handshake (exit 1)", r)
	}
}

func TestRedisOptionsWithCA(t *testing.T) {
	t.Parallel()
	set := testcerts.NewSet(t)
	o, err := (&config{redisURL: "rediss://redis.example:6380/0", redisCAFile: set.CAFile}).redisOptions()
	if err != nil {
		t.Fatal(err)
	}
	if o.TLSConfig == nil || o.TLSConfig.RootCAs == nil || o.TLSConfig.ServerName != "redis.example" {
		t.Errorf("TLS config %+v: want the CA's pool and the URL's server name", o.TLSConfig)
	}
	o, err = (&config{redisAddrs: "10.0.0.1:7000", redisCAFile: set.CAFile}).redisOptions()
	if err != nil || o.TLSConfig == nil || o.TLSConfig.RootCAs == nil {
		t.Errorf("cluster seeds with a CA: %+v, %v; want TLS with the CA", o, err)
	}
	if _, err := (&config{redisURL: "redis://redis.example:6379/0", redisCAFile: set.CAFile}).redisOptions(); err == nil {
		t.Error("a CA file for a plaintext redis:// URL was accepted")
	}
	if _, err := (&config{redisURL: "rediss://redis.example:6380/0", redisCAFile: set.ServerKeyFile}).redisOptions(); err == nil {
		t.Error("a CA file without a certificate was accepted")
	}
}
