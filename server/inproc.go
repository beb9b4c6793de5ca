package server

import (
	"context"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// inprocChannel is the gateway's way into IdentityService: a
// grpc.ClientConnInterface that runs a unary call on the caller's own
// goroutine, through the gRPC server's unary interceptor chain, with the
// request and the answer copied (never serialized) across.
//
// It replaces grpchan's inprocgrpc.Channel, which ran every call on a new
// goroutine: that goroutine's stack started small and was grown (copied)
// two or three times on the way through the interceptors, ~20% of a REST
// Verify's CPU in the profile (BENCHMARKS.md). The HTTP server's goroutine
// that calls Invoke has its stack grown already. Every REST route of the
// API is unary, so the channel carries unary calls only.
//
// The handler's context keeps the caller's deadline and cancellation but
// none of its values (the HTTP request's context is not the gRPC
// handler's), gets the gateway's outgoing metadata as incoming metadata,
// and is marked as a gateway call with a key of this package
// (fromGateway): a context value, which no call from the network can
// carry, unlike metadata or a peer address.
type inprocChannel struct {
	srv         any
	methods     map[string]grpc.MethodDesc // by full method name
	interceptor grpc.UnaryServerInterceptor
	stats       stats.Handler // nil: none
}

// withStatsHandler gives every call a server-side stats handler (tracing's),
// as grpc.StatsHandler does on the gRPC server: the call is tagged once its
// context has the gateway's metadata, then Begin before the interceptors
// and End after them.
func (c *inprocChannel) withStatsHandler(h stats.Handler) *inprocChannel {
	c.stats = h
	return c
}

// newInprocChannel serves desc's unary methods, implemented by srv, behind
// the interceptors (outermost first, as grpc.ChainUnaryInterceptor).
func newInprocChannel(desc *grpc.ServiceDesc, srv any, interceptors ...grpc.UnaryServerInterceptor) *inprocChannel {
	c := &inprocChannel{srv: srv, methods: make(map[string]grpc.MethodDesc, len(desc.Methods))}
	for _, m := range desc.Methods {
		c.methods["/"+desc.ServiceName+"/"+m.MethodName] = m
	}
	if len(interceptors) > 0 {
		c.interceptor = chainUnary(interceptors)
	}
	return c
}

// gatewayCallKey marks the context of a call through an inprocChannel.
type gatewayCallKey struct{}

// gatewayPeer is the peer of every gateway call (clientAddr reads the
// client's address from the gateway's metadata instead).
var gatewayPeer = peer.Peer{Addr: gatewayAddr{}}

type gatewayAddr struct{}

func (gatewayAddr) Network() string { return "inproc" }
func (gatewayAddr) String() string  { return "gateway" }

var _ net.Addr = gatewayAddr{}

func (c *inprocChannel) Invoke(ctx context.Context, method string, req, resp any, opts ...grpc.CallOption) error {
	m, ok := c.methods[method]
	if !ok {
		return status.Errorf(codes.Unimplemented, "method %s not implemented", method)
	}
	in, ok := req.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "in-process channel: request %T is not a protobuf message", req)
	}
	st := &inprocStream{method: method}
	sctx := context.Context(noValues{ctx})
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		sctx = metadata.NewIncomingContext(sctx, md)
	}
	sctx = peer.NewContext(sctx, &gatewayPeer)
	sctx = context.WithValue(sctx, gatewayCallKey{}, true)
	sctx = grpc.NewContextWithServerTransportStream(sctx, st)
	if c.stats != nil {
		sctx = c.stats.TagRPC(sctx, &stats.RPCTagInfo{FullMethodName: method})
		c.stats.HandleRPC(sctx, &stats.Begin{BeginTime: time.Now()})
	}
	v, err := m.Handler(c.srv, sctx, func(dst any) error { return copyMessage(dst, in) }, c.interceptor)
	if c.stats != nil {
		c.stats.HandleRPC(sctx, &stats.End{EndTime: time.Now(), Error: err})
	}
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = st.header
		case grpc.TrailerCallOption:
			*o.TrailerAddr = st.trailer
		}
	}
	if err != nil {
		return err
	}
	return copyMessage(resp, v)
}

func (c *inprocChannel) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "in-process channel: unary calls only")
}

// copyMessage copies in into out, both protobuf messages of one type.
func copyMessage(out, in any) error {
	o, ok1 := out.(proto.Message)
	i, ok2 := in.(proto.Message)
	if !ok1 || !ok2 || o.ProtoReflect().Descriptor() != i.ProtoReflect().Descriptor() {
		return status.Errorf(codes.Internal, "in-process channel: cannot copy %T into %T", in, out)
	}
	proto.Reset(o)
	proto.Merge(o, i)
	return nil
}

// chainUnary runs interceptors outermost first, as the gRPC server's
// grpc.ChainUnaryInterceptor does.
func chainUnary(interceptors []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return interceptors[0](ctx, req, info, chainedHandler(interceptors, 0, info, handler))
	}
}

func chainedHandler(interceptors []grpc.UnaryServerInterceptor, i int, info *grpc.UnaryServerInfo, final grpc.UnaryHandler) grpc.UnaryHandler {
	if i == len(interceptors)-1 {
		return final
	}
	return func(ctx context.Context, req any) (any, error) {
		return interceptors[i+1](ctx, req, info, chainedHandler(interceptors, i+1, info, final))
	}
}

// noValues is a context's deadline and cancellation without its values.
type noValues struct{ context.Context }

func (noValues) Value(any) any { return nil }

// inprocStream is the grpc.ServerTransportStream of one in-process call:
// what the handler sets with grpc.SetHeader and grpc.SetTrailer reaches the
// gateway's grpc.Header and grpc.Trailer call options. A unary call runs on
// one goroutine, so it needs no lock.
type inprocStream struct {
	method          string
	header, trailer metadata.MD
}

func (s *inprocStream) Method() string { return s.method }

func (s *inprocStream) SetHeader(md metadata.MD) error {
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *inprocStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }

func (s *inprocStream) SetTrailer(md metadata.MD) error {
	s.trailer = metadata.Join(s.trailer, md)
	return nil
}

var _ grpc.ClientConnInterface = (*inprocChannel)(nil)
