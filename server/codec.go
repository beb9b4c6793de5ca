package server

import (
	"bytes"
	"context"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// A gRPC request message that is too large or does not decode must get the
// contract's answer, INVALID_ARGUMENT with ErrorInfo INVALID_REQUEST. grpc-go
// refuses such a message itself, inside the stream's RecvMsg, and writes its
// own status there (RESOURCE_EXHAUSTED or INTERNAL, no details) before any
// interceptor or handler runs; no server option changes that status. What a
// server can do is decode the request itself: the codec below leaves an
// unreadable message empty and marked, and the interceptors after
// errorUnaryInterceptor refuse a marked message with a sentinel, which the
// one error table maps like any other.
//
// grpc-go still decides alone above its own limit, transportMaxRecvMsgBytes:
// a message over that is answered RESOURCE_EXHAUSTED without ErrorInfo, as
// before. The transport limit is twice the contract's so that a message just
// over 4 MiB, the usual mistake, gets the contract's answer, at the price of
// buffering up to 8 MiB of a refused message; a larger one cannot get it in
// grpc-go without buffering without bound.
const (
	// maxRecvMsgBytes caps a request message (the gRPC default size).
	maxRecvMsgBytes = 4 << 20
	// transportMaxRecvMsgBytes is grpc-go's own cap (grpc.MaxRecvMsgSize).
	transportMaxRecvMsgBytes = 2 * maxRecvMsgBytes
)

// The marks: an unknown field of the highest field number, which no message
// of ours uses, holding why the message could not be read.
var (
	markTooLarge   = protowire.AppendString(protowire.AppendTag(nil, protowire.MaxValidNumber, protowire.BytesType), "identity: too large")
	markUndecoding = protowire.AppendString(protowire.AppendTag(nil, protowire.MaxValidNumber, protowire.BytesType), "identity: does not decode")
)

// requestCodec is grpc-go's proto codec, except that it never fails to
// unmarshal a protobuf message: one over maxRecvMsgBytes, or one that does
// not decode, is reset and marked instead.
type requestCodec struct{ encoding.CodecV2 }

func newRequestCodec() requestCodec {
	return requestCodec{encoding.GetCodecV2(protoenc.Name)}
}

func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	mark := markTooLarge
	if data.Len() <= maxRecvMsgBytes {
		if c.CodecV2.Unmarshal(data, v) == nil {
			return nil
		}
		mark = markUndecoding
	}
	proto.Reset(m)
	m.ProtoReflect().SetUnknown(bytes.Clone(mark))
	return nil
}

// unreadable is the error for a message the codec marked, nil for any
// other.
func unreadable(req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	switch u := m.ProtoReflect().GetUnknown(); {
	case len(u) == 0:
		return nil
	case bytes.Equal(u, markTooLarge):
		return invalidRequest("request message larger than " + strconv.Itoa(maxRecvMsgBytes) + " bytes")
	case bytes.Equal(u, markUndecoding):
		return &clientError{errMalformedRequest, "invalid request: the request message does not decode"}
	}
	return nil
}

// unreadableUnaryInterceptor refuses a request the codec marked.
func unreadableUnaryInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := unreadable(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

// unreadableStreamInterceptor refuses every message of a stream the codec
// marked, as RecvMsg's error.
func unreadableStreamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, unreadableStream{ss})
}

type unreadableStream struct{ grpc.ServerStream }

func (s unreadableStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return unreadable(m)
}
