package greeter_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/identityd/identity/authn"
	"github.com/identityd/identity/examples/greeter"
	greeterv1 "github.com/identityd/identity/gen/greeter/v1"
)

// serve runs greeter.NewServer with a verifier that knows one token.
func serve(t *testing.T) *grpc.ClientConn {
	t.Helper()
	v := authn.VerifierFunc(func(_ context.Context, tok string) (*authn.Claims, error) {
		if tok == "bob-token" {
			return &authn.Claims{Subject: "u1", Username: "bob"}, nil
		}
		return nil, errors.New("unknown token")
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := greeter.NewServer(v)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Server reflection answers without a token (what grpcurl needs to list,
// describe and call the service), and describes Greeter from its .proto;
// the greeter's own methods still need one.
func TestReflection(t *testing.T) {
	t.Parallel()
	conn := serve(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ask := func(req *rpb.ServerReflectionRequest) *rpb.ServerReflectionResponse {
		t.Helper()
		if err := stream.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("reflection: %v", err)
		}
		return resp
	}

	var services []string
	for _, s := range ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}).GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	for _, want := range []string{greeter.ServiceName, "grpc.health.v1.Health"} {
		if !slices.Contains(services, want) {
			t.Errorf("reflection lists %v, without %s", services, want)
		}
	}

	resp := ask(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_FileContainingSymbol{FileContainingSymbol: greeter.ServiceName}})
	var methods []string
	for _, raw := range resp.GetFileDescriptorResponse().GetFileDescriptorProto() {
		var fd descriptorpb.FileDescriptorProto
		if err := proto.Unmarshal(raw, &fd); err != nil {
			t.Fatal(err)
		}
		if fd.GetName() != "greeter/v1/greeter.proto" {
			continue
		}
		for _, svc := range fd.GetService() {
			for _, m := range svc.GetMethod() {
				methods = append(methods, m.GetName())
			}
		}
	}
	if !slices.Equal(methods, []string{"Hello", "AdminHello", "HelloStream"}) {
		t.Errorf("greeter/v1/greeter.proto describes methods %v", methods)
	}

	if got, err := greeter.Hello(greeter.WithToken(ctx, "bob-token"), conn); err != nil || got != "hello, bob" {
		t.Errorf("Hello with a token = %q, %v", got, err)
	}
	if _, err := greeter.Hello(ctx, conn); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Hello without a token: %v, want UNAUTHENTICATED", err)
	}
	if greeter.ServiceName != greeterv1.Greeter_ServiceDesc.ServiceName {
		t.Errorf("ServiceName %q, the generated code says %q", greeter.ServiceName, greeterv1.Greeter_ServiceDesc.ServiceName)
	}
}
