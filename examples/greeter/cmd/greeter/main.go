// Command greeter runs the example Greeter service (package greeter),
// protected by authn, next to a running identityd:
//
//	go run ./examples/greeter/cmd/greeter --identity 127.0.0.1:9090 --mode local
//	go run ./examples/greeter/cmd/greeter --mode local --jwks-url http://127.0.0.1:8080/.well-known/jwks.json
//	go run ./examples/greeter/cmd/greeter --mode remote
//	go run ./examples/greeter/cmd/greeter --identity localhost:9090 --identity-ca-file ca.pem \
//	    --identity-cert-file greeter.pem --identity-key-file greeter-key.pem   # identity with mTLS
//
// Call it from Go with greeter.Hello(greeter.WithToken(ctx, accessToken), conn).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/identityd/identity/authn"
	"github.com/identityd/identity/examples/greeter"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "greeter:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("greeter", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9190", "gRPC listen address")
	var cfg greeter.Config
	fs.StringVar(&cfg.IdentityAddr, "identity", "127.0.0.1:9090", "identity's gRPC address")
	fs.StringVar(&cfg.Mode, "mode", "local", "token verification: remote (identity's Verify) or local (published keys + revocation stream)")
	fs.StringVar(&cfg.JWKSURL, "jwks-url", "", "local mode: JWKS URL, e.g. http://127.0.0.1:8080/.well-known/jwks.json (default: keys over gRPC)")
	fs.DurationVar(&cfg.Staleness, "staleness", 5*time.Second, "local mode: fail closed after this long without word from identity")
	fs.BoolVar(&cfg.RemoteFallback, "remote-fallback", false, "local mode: ask identity instead of failing closed while stale")
	fs.StringVar(&cfg.ServiceUser, "service-user", "", "the greeter's identity account (role service), to open the revocation stream")
	pwFile := fs.String("service-password-file", "", "file holding -service-user's password")
	useTLS := fs.Bool("identity-tls", false, "reach identity over TLS, trusting the system's roots (implied by the other -identity-*-file flags)")
	caFile := fs.String("identity-ca-file", "", "PEM CA certificates to verify identity's TLS certificate with")
	certFile := fs.String("identity-cert-file", "", "PEM client certificate for an identity that requires one (mTLS); it then also opens the revocation stream, no -service-user needed")
	keyFile := fs.String("identity-key-file", "", "PEM private key of -identity-cert-file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *useTLS || *caFile != "" || *certFile != "" || *keyFile != "" {
		c, err := authn.TLSConfig(*caFile, *certFile, *keyFile)
		if err != nil {
			return err
		}
		cfg.IdentityTLS = c
	}
	if *pwFile != "" {
		b, err := os.ReadFile(*pwFile)
		if err != nil {
			return err
		}
		cfg.ServicePassword = strings.TrimRight(string(b), "\r\n")
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	return greeter.Run(ctx, cfg, lis)
}
