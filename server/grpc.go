package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/sessions"
)

// The REST gateway calls IdentityService in process, through an
// inprocChannel (s.inproc, inproc.go) that dispatches on the service's
// ServiceDesc with the same unary interceptor chain as the gRPC server:
// every interceptor runs for REST as for gRPC, and requests and answers are
// copied, not marshalled and sent over a second transport. Metadata that
// only the gateway may set (the client's address, the browser's cookie and
// CSRF verdict) is trusted only on calls that came through that channel
// (fromGateway): a network client cannot make one.
const mdClientAddr = "x-identity-client-addr"

// mdUserAgent is the browser's User-Agent as the gateway saw it (the
// gateway's own gRPC client sends its own user-agent).
const mdUserAgent = "x-identity-user-agent"

// adminRole is the role every AdminService call needs.
const adminRole = "admin"

// Methods that need no access token. Everything else on IdentityService
// (WhoAmI, WatchRevocations) and all of AdminService is checked by authn.
var publicMethods = []string{
	identityv1.IdentityService_Login_FullMethodName,
	identityv1.IdentityService_Refresh_FullMethodName,
	identityv1.IdentityService_Logout_FullMethodName,
	identityv1.IdentityService_Verify_FullMethodName,
	identityv1.IdentityService_GetPublicKeys_FullMethodName,
}

func (s *Server) buildGRPC() error {
	metrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets([]float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}),
	))
	if err := s.registry.Register(metrics); err != nil {
		return fmt.Errorf("register grpc metrics: %w", err)
	}
	if err := s.registry.Register(collectors.NewGoCollector()); err != nil {
		return fmt.Errorf("register go metrics: %w", err)
	}

	panics := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		s.log.ErrorContext(ctx, "panic in handler", slog.Any("panic", p))
		return toStatus(errInternal)
	})
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		s.log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(func(c codes.Code) logging.Level {
			switch c {
			case codes.Internal, codes.Unknown, codes.DataLoss:
				return logging.LevelError
			case codes.Unavailable, codes.DeadlineExceeded:
				return logging.LevelWarn
			}
			// One line per request at debug: Verify runs at tens of
			// thousands per second and must not flood the log.
			return logging.LevelDebug
		}),
	}
	// The library builds a call's fields (about 50 allocations) before it
	// knows the line's level, and at the default info level a successful
	// call's line is dropped: run it only while debug lines are written.
	// With debug off, the failures that are the server's own (INTERNAL,
	// UNAVAILABLE) are still logged, once, by errorUnaryInterceptor.
	whileDebug := selector.MatchFunc(func(ctx context.Context, _ interceptors.CallMeta) bool {
		return s.log.Enabled(ctx, slog.LevelDebug)
	})
	verifier := authn.VerifierFunc(s.verify)
	// Every AdminService call needs the admin role, on both chains (a
	// streaming admin RPC added later is covered the day it is added).
	// WatchRevocations names the session and user of every logout: only
	// services (authn's local verifiers, with a ServiceAccount) read it,
	// or, under mTLS, a caller with a verified client certificate
	// (certifiedWatcher, tls.go).
	access := []authn.Option{
		authn.WithSkip(publicMethods...),
		authn.WithSkipFunc(certifiedWatcher),
		authn.WithRoles(map[string]string{
			"/" + identityv1.AdminService_ServiceDesc.ServiceName + "/": adminRole,
			identityv1.IdentityService_WatchRevocations_FullMethodName:  authn.ServiceRole,
		}),
	}

	failures := newFailureLog(s.log)
	unary := []grpc.UnaryServerInterceptor{
		recovery.UnaryServerInterceptor(panics),
		metrics.UnaryServerInterceptor(),
		selector.UnaryServerInterceptor(logging.UnaryServerInterceptor(logger, logOpts...), whileDebug),
		s.metrics.unaryInterceptor(),
		errorUnaryInterceptor(failures),
		unreadableUnaryInterceptor,
		authn.UnaryServerInterceptor(verifier, access...),
		browserUnaryInterceptor,
	}
	stream := []grpc.StreamServerInterceptor{
		recovery.StreamServerInterceptor(panics),
		metrics.StreamServerInterceptor(),
		logging.StreamServerInterceptor(logger, logOpts...),
		errorStreamInterceptor(failures),
		unreadableStreamInterceptor,
		authn.StreamServerInterceptor(verifier, access...),
	}
	opts := []grpc.ServerOption{
		// An unreadable request gets the contract's answer (codec.go).
		grpc.MaxRecvMsgSize(transportMaxRecvMsgBytes),
		grpc.ForceServerCodecV2(newRequestCodec()),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.NumStreamWorkers(streamWorkers()),
	}
	opts = append(opts, s.grpcConnOptions()...)
	if s.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls.grpcConfig())))
	}
	if s.tracing != nil {
		opts = append(opts, grpc.StatsHandler(s.tracing.statsHandler()))
	}
	s.grpc = grpc.NewServer(opts...)
	ids := &identityServer{s: s}
	identityv1.RegisterIdentityServiceServer(s.grpc, ids)
	// The gateway's channel: the same service behind the same chain (and,
	// with tracing on, the same stats handler: tracing.go).
	s.inproc = newInprocChannel(&identityv1.IdentityService_ServiceDesc, ids, unary...)
	if s.tracing != nil {
		s.inproc = s.inproc.withStatsHandler(s.tracing.statsHandler())
	}
	identityv1.RegisterAdminServiceServer(s.grpc, newAdminServer(s.admin, s.record))
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	s.health.SetServingStatus(identityv1.IdentityService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	reflection.Register(s.grpc)
	metrics.InitializeMetrics(s.grpc)
	return nil
}

// userAgent is the client's User-Agent: the gRPC client's, or for calls
// through the gateway, the HTTP client's.
func userAgent(ctx context.Context) string {
	key := "user-agent"
	if fromGateway(ctx) {
		key = mdUserAgent
	}
	// One key's values, not a copy of the whole metadata (FromIncomingContext).
	if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// client describes the caller, for the sessions it creates and uses.
func client(ctx context.Context) sessions.Client {
	return sessions.Client{UserAgent: userAgent(ctx), Addr: clientAddr(ctx)}
}

// clientAddr is the address rate limits are keyed by: the TCP peer, or
// for calls through the gateway, the address the gateway saw.
func clientAddr(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "unknown"
	}
	if fromGateway(ctx) {
		if v := metadata.ValueFromIncomingContext(ctx, mdClientAddr); len(v) == 1 && v[0] != "" {
			return v[0]
		}
		return "gateway"
	}
	if ta, ok := p.Addr.(*net.TCPAddr); ok {
		if a, ok := netip.AddrFromSlice(ta.IP); ok {
			return a.Unmap().WithZone(ta.Zone).String()
		}
	}
	if ap, err := netip.ParseAddrPort(p.Addr.String()); err == nil {
		return ap.Addr().Unmap().String()
	}
	host, _, err := net.SplitHostPort(p.Addr.String())
	if err != nil {
		return p.Addr.String()
	}
	return host
}

func streamWorkers() uint32 { return uint32(16 * runtime.GOMAXPROCS(0)) }
