// Package greeter is a tiny gRPC service protected by authn: the example
// that cmd/greeter runs and that authn's tests call against a real
// identityd. Hello and HelloStream greet any caller with a valid access
// token; AdminHello only callers with the "admin" role. The gRPC health
// service and server reflection answer without a token, so grpcurl can
// list and describe it.
//
// Its API is examples/greeter/proto/greeter/v1/greeter.proto, generated
// into gen/greeter/v1 with identity's own (go tool buf generate); protecting
// it takes the few lines of NewServer.
package greeter

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/identityd/identity/authn"
	greeterv1 "github.com/identityd/identity/gen/greeter/v1"
)

// The service's full method names.
const (
	ServiceName       = "greeter.v1.Greeter"
	HelloMethod       = greeterv1.Greeter_Hello_FullMethodName
	AdminHelloMethod  = greeterv1.Greeter_AdminHello_FullMethodName
	HelloStreamMethod = greeterv1.Greeter_HelloStream_FullMethodName
)

// NewServer returns a gRPC server serving Greeter, health and reflection,
// with every Greeter call checked by v (authn lets health and reflection
// through without a token). This is all it takes to protect a service.
func NewServer(v authn.Verifier, opts ...grpc.ServerOption) *grpc.Server {
	roles := authn.WithRoles(map[string]string{AdminHelloMethod: "admin"})
	s := grpc.NewServer(append(opts,
		grpc.ChainUnaryInterceptor(authn.UnaryServerInterceptor(v, roles)),
		grpc.ChainStreamInterceptor(authn.StreamServerInterceptor(v, roles)),
	)...)
	greeterv1.RegisterGreeterServer(s, greeter{})
	healthpb.RegisterHealthServer(s, health.NewServer())
	reflection.Register(s)
	return s
}

type greeter struct {
	greeterv1.UnimplementedGreeterServer
}

func (greeter) Hello(ctx context.Context, _ *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	c, ok := authn.ClaimsFromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "no verified caller") // a wiring bug
	}
	return wrapperspb.String("hello, " + c.Username), nil
}

func (greeter) AdminHello(ctx context.Context, _ *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	c, _ := authn.ClaimsFromContext(ctx)
	return wrapperspb.String("hello, admin " + c.Username), nil
}

func (greeter) HelloStream(_ *wrapperspb.StringValue, stream grpc.ServerStreamingServer[wrapperspb.StringValue]) error {
	for i := range 3 {
		c, _ := authn.ClaimsFromContext(stream.Context())
		if err := stream.Send(wrapperspb.String(fmt.Sprintf("hello #%d, %s", i+1, c.Username))); err != nil {
			return err
		}
	}
	return nil
}

// WithToken returns ctx sending token as the calls' bearer access token.
func WithToken(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// Hello calls Greeter.Hello (the token comes from ctx, see WithToken).
func Hello(ctx context.Context, conn grpc.ClientConnInterface) (string, error) {
	out, err := greeterv1.NewGreeterClient(conn).Hello(ctx, wrapperspb.String(""))
	return out.GetValue(), err
}

// AdminHello calls Greeter.AdminHello.
func AdminHello(ctx context.Context, conn grpc.ClientConnInterface) (string, error) {
	out, err := greeterv1.NewGreeterClient(conn).AdminHello(ctx, wrapperspb.String(""))
	return out.GetValue(), err
}

// HelloStream calls Greeter.HelloStream and collects its greetings.
func HelloStream(ctx context.Context, conn grpc.ClientConnInterface) ([]string, error) {
	stream, err := greeterv1.NewGreeterClient(conn).HelloStream(ctx, wrapperspb.String(""))
	if err != nil {
		return nil, err
	}
	var got []string
	for {
		out, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		got = append(got, out.GetValue())
	}
}

// Config is what cmd/greeter's flags set.
type Config struct {
	// IdentityAddr is identity's gRPC address (host:port).
	IdentityAddr string
	// IdentityTLS reaches identity over TLS (authn.TLSConfig: its CA, and
	// a client certificate when identity requires one), on gRPC and for
	// the JWKS; nil: plaintext, for an identity on loopback.
	IdentityTLS *tls.Config
	// Mode is "remote" (identity's Verify on every call, behind a short
	// cache) or "local" (signatures checked here, revocations pushed).
	Mode string
	// JWKSURL, in local mode, is where the keys come from; empty: over
	// gRPC with GetPublicKeys.
	JWKSURL string
	// Staleness, in local mode, is how long to trust the revocation set
	// without word from identity (0: authn's default).
	Staleness time.Duration
	// RemoteFallback, in local mode, asks identity instead of failing
	// closed while the revocation stream is stale.
	RemoteFallback bool
	// ServiceUser and ServicePassword are the greeter's own identity
	// account (role "service"): identity streams revocations only to
	// services, so the local verifier and the remote one's cache watch
	// open the stream as that account. Under identity's mTLS, the client
	// certificate in IdentityTLS is enough instead.
	ServiceUser     string
	ServicePassword string
	// ReadyTimeout is how long Run waits for a local verifier to load the
	// keys and catch up with revocations before serving (it serves anyway,
	// failing closed, after that).
	ReadyTimeout time.Duration
	Logger       *slog.Logger
}

// Run serves Greeter on lis, protected as cfg says, until ctx is done. It
// closes lis.
func Run(ctx context.Context, cfg Config, lis net.Listener) error {
	defer lis.Close() // already closed by the server once it serves
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	transport := insecure.NewCredentials()
	if cfg.IdentityTLS != nil {
		transport = credentials.NewTLS(cfg.IdentityTLS)
	}
	conn, err := grpc.NewClient(cfg.IdentityAddr, grpc.WithTransportCredentials(transport))
	if err != nil {
		return fmt.Errorf("identity address %q: %w", cfg.IdentityAddr, err)
	}
	defer conn.Close()

	var v interface {
		authn.Verifier
		io.Closer
	}
	watchAs := authn.WithWatchCredentials(nil)
	if cfg.ServiceUser != "" {
		watchAs = authn.WithWatchCredentials(authn.NewServiceAccount(conn, cfg.ServiceUser, cfg.ServicePassword))
	}
	switch cfg.Mode {
	case "remote":
		// A short positive cache, dropped at once by revocation events.
		remote, err := authn.NewRemote(conn, authn.WithCache(10_000, 30*time.Second), authn.WithRevocationWatch(), watchAs, authn.WithLogger(log))
		if err != nil {
			return err
		}
		v = remote
	case "local":
		opts := []authn.LocalOption{authn.WithRevocationsFromConn(conn), watchAs, authn.WithLogger(log)}
		if cfg.JWKSURL != "" {
			opts = append(opts, authn.WithJWKSURL(cfg.JWKSURL))
			if cfg.IdentityTLS != nil {
				opts = append(opts, authn.WithHTTPClient(&http.Client{
					Timeout:   10 * time.Second,
					Transport: &http.Transport{TLSClientConfig: cfg.IdentityTLS},
				}))
			}
		} else {
			opts = append(opts, authn.WithKeysFromConn(conn))
		}
		if cfg.Staleness > 0 {
			opts = append(opts, authn.WithStaleness(cfg.Staleness))
		}
		if cfg.RemoteFallback {
			opts = append(opts, authn.WithRemoteFallback(conn))
		}
		local, err := authn.NewLocal(opts...)
		if err != nil {
			return err
		}
		wait := cfg.ReadyTimeout
		if wait <= 0 {
			wait = 10 * time.Second
		}
		rctx, cancel := context.WithTimeout(ctx, wait)
		if err := local.WaitReady(rctx); err != nil {
			log.Warn("greeter: serving before the verifier is ready: calls fail closed until it is", slog.String("error", err.Error()))
		}
		cancel()
		v = local
	default:
		return fmt.Errorf("mode %q: want remote or local", cfg.Mode)
	}
	defer v.Close()

	srv := NewServer(v)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	log.Info("greeter listening", slog.String("addr", lis.Addr().String()), slog.String("mode", cfg.Mode))
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		srv.Stop()
	}
	<-done
	return nil
}
