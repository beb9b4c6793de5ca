package authn_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/testidentityd"
	"github.com/identityd/identity/token"
)

// BenchmarkVerify verifies one real identity token (EdDSA) every way authn
// can, in one run, against identity's real server in process:
//
//   - raw-jwt-ed25519: golang-jwt parse + Ed25519 verify of the same token,
//     the floor any verifier pays for the signature.
//   - local-signature: Local with its cache off, so every call checks the
//     signature and claims (token.Verifier) and the revocation set.
//   - local-cached: Local as configured by default; a repeated token costs
//     a SHA-256 and two map lookups.
//   - remote-cached: Remote with a cache and a revocation watch.
//   - remote: Remote without a cache, one loopback round trip per call.
//   - interceptor-*: the unary interceptor around Local (metadata parsing,
//     claims in the context): what a protected method really pays.
//
// The ratio raw-jwt-ed25519 / local-signature is the target (>= 0.9); the
// paired-* benchmarks measure it directly (speed-vs-raw), immune to a
// machine whose speed drifts between sub-benchmarks.
func BenchmarkVerify(b *testing.B) {
	p := testidentityd.StartInProcess(b)
	tok := p.Login(b, "bench", testidentityd.AddUser(b, p.Store, "bench", "", "reader")).GetAccessToken()
	ctx := context.Background()

	resp, err := p.API.GetPublicKeys(ctx, &identityv1.GetPublicKeysRequest{})
	if err != nil {
		b.Fatal(err)
	}
	var jwks []token.JWK
	for _, k := range resp.GetKeys() {
		jwks = append(jwks, token.JWK{Kid: k.GetKid(), Kty: k.GetKty(), Alg: k.GetAlg(), Use: k.GetUse(), Crv: k.GetCrv(), X: k.GetX()})
	}
	set, err := token.KeySetFromJWKs(jwks)
	if err != nil {
		b.Fatal(err)
	}
	pub := set.Keys()[0].Key
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithIssuer("identity"),
		jwt.WithAudience("identity"), jwt.WithExpirationRequired())
	keyfunc := func(*jwt.Token) (any, error) { return pub, nil }

	newLocal := func(b *testing.B, opts ...authn.LocalOption) *authn.Local {
		l, err := authn.NewLocal(append([]authn.LocalOption{authn.WithKeysFromConn(p.Conn), discard}, opts...)...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { l.Close() })
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := l.WaitReady(wctx); err != nil {
			b.Fatal(err)
		}
		return l
	}
	run := func(b *testing.B, v authn.Verifier) {
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
	}
	intercept := func(b *testing.B, v authn.Verifier) {
		ic := authn.UnaryServerInterceptor(v)
		in := metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+tok))
		info := &grpc.UnaryServerInfo{FullMethod: "/greeter.v1.Greeter/Hello"}
		handler := func(ctx context.Context, _ any) (any, error) { return nil, nil }
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if _, err := ic(in, nil, info, handler); err != nil {
				b.Fatal(err)
			}
		}
	}

	// Paired: each iteration verifies the token the raw way and the authn
	// way, back to back, so a noisy machine slows both alike; the ratio
	// (raw time / authn time: authn's speed relative to raw) is the
	// target's, >= 0.9.
	paired := func(b *testing.B, verify func() error) {
		var raw, mine time.Duration
		b.ReportAllocs()
		for b.Loop() {
			t0 := time.Now()
			var c jwt.RegisteredClaims
			if _, err := parser.ParseWithClaims(tok, &c, keyfunc); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if err := verify(); err != nil {
				b.Fatal(err)
			}
			raw, mine = raw+t1.Sub(t0), mine+time.Since(t1)
		}
		b.ReportMetric(float64(raw.Nanoseconds())/float64(b.N), "raw-ns/op")
		b.ReportMetric(float64(mine.Nanoseconds())/float64(b.N), "authn-ns/op")
		b.ReportMetric(float64(raw)/float64(mine), "speed-vs-raw")
	}
	b.Run("paired-raw-vs-local-signature", func(b *testing.B) {
		l := newLocal(b, authn.WithCache(0, 0))
		paired(b, func() error { _, err := l.Verify(ctx, tok); return err })
	})
	b.Run("paired-raw-vs-interceptor-local-signature", func(b *testing.B) {
		ic := authn.UnaryServerInterceptor(newLocal(b, authn.WithCache(0, 0)))
		in := metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+tok))
		info := &grpc.UnaryServerInfo{FullMethod: "/greeter.v1.Greeter/Hello"}
		handler := func(ctx context.Context, _ any) (any, error) { return nil, nil }
		paired(b, func() error { _, err := ic(in, nil, info, handler); return err })
	})
	b.Run("raw-jwt-ed25519", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c jwt.RegisteredClaims
			if _, err := parser.ParseWithClaims(tok, &c, keyfunc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("local-signature", func(b *testing.B) { run(b, newLocal(b, authn.WithCache(0, 0))) })
	b.Run("local-cached", func(b *testing.B) { run(b, newLocal(b)) })
	b.Run("local-cached-parallel", func(b *testing.B) {
		l := newLocal(b)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := l.Verify(ctx, tok); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	b.Run("remote-cached", func(b *testing.B) {
		r := mustRemote(b, p.Conn, authn.WithCache(10_000, time.Minute), authn.WithRevocationWatch(), discard)
		b.Cleanup(func() { r.Close() })
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := r.WaitReady(wctx); err != nil {
			b.Fatal(err)
		}
		run(b, r)
	})
	b.Run("remote", func(b *testing.B) { run(b, mustRemote(b, p.Conn)) })
	b.Run("interceptor-local-signature", func(b *testing.B) { intercept(b, newLocal(b, authn.WithCache(0, 0))) })
	b.Run("interceptor-local-cached", func(b *testing.B) { intercept(b, newLocal(b)) })
}

var discard = authn.WithLogger(slog.New(slog.DiscardHandler))
