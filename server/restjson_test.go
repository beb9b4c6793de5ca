package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// protojsonOnly is the REST JSON as protojson alone writes it.
var protojsonOnly = jsonMarshaler.JSONPb

// sameAsProtojson fails unless restMarshaler writes m as protojson does:
// byte for byte once protojson's insignificant (and deliberately unstable)
// whitespace is taken out, or an error where protojson has one.
func sameAsProtojson(t *testing.T, m proto.Message) {
	t.Helper()
	want, wantErr := protojsonOnly.Marshal(m)
	got, err := jsonMarshaler.Marshal(m)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("%v: error %v, protojson's %v", m, err, wantErr)
	}
	if wantErr != nil {
		return
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, want); err != nil {
		t.Fatalf("protojson wrote invalid JSON %s: %v", want, err)
	}
	if !bytes.Equal(got, compact.Bytes()) {
		t.Fatalf("%v:\n got       %s\n protojson %s", m, got, compact.Bytes())
	}
	// And it reads back as the same message.
	back := m.ProtoReflect().New().Interface()
	if err := protojsonOnly.Unmarshal(got, back); err != nil || !proto.Equal(back, m) {
		t.Fatalf("%s reads back as %v (%v), want %v", got, back, err, m)
	}
}

var jsonTestStrings = []string{
	"", "alice", `quote " and backslash \`, "html <script>&amp;</script>", "slash / ",
	"ctl \x00\x01\x07\b\t\n\v\f\r\x1b\x1f\x7f", "unicode é ü 日本", "astral 😀 𝄞", "separators \u2028 \u2029",
	"\ufffd replacement", "bad utf-8 \xff\xfe", "truncated \xe6\x97", "eyJhbGciOiJFZERTQSJ9.e30.c2ln",
}

var jsonTestTimes = []*timestamppb.Timestamp{
	nil, {}, {Seconds: 1764762000}, {Seconds: 1764762000, Nanos: 123000000}, {Seconds: 1764762000, Nanos: 123456000},
	{Seconds: 1764762000, Nanos: 123456789}, {Seconds: 1764762000, Nanos: 1}, {Seconds: 1764762000, Nanos: 100},
	{Seconds: -1, Nanos: 999999999}, {Seconds: minTimestampSeconds}, {Seconds: maxTimestampSeconds, Nanos: 999999999},
	{Seconds: minTimestampSeconds - 1}, {Seconds: maxTimestampSeconds + 1}, {Seconds: 1, Nanos: -1},
	{Seconds: 1, Nanos: 1e9}, {Seconds: 1, Nanos: math.MaxInt32},
}

// The hand-written VerifyResponse and TokenPair JSON is protojson's, for
// every field: strings needing every kind of escape (or refused for bad
// UTF-8), timestamps unset, whole, with 3, 6 and 9 digits, at and past the
// ends of their range, roles absent, empty and many.
func TestRESTMarshalerMatchesProtojson(t *testing.T) {
	t.Parallel()
	for _, s := range jsonTestStrings {
		sameAsProtojson(t, &identityv1.VerifyResponse{Subject: s, Username: s, Roles: []string{s}, SessionId: s})
		sameAsProtojson(t, &identityv1.VerifyResponse{Subject: "u", Username: s})
		sameAsProtojson(t, &identityv1.VerifyResponse{Roles: []string{"admin", s, ""}})
		sameAsProtojson(t, &identityv1.TokenPair{AccessToken: s, TokenType: s, RefreshToken: s, SessionId: s})
		sameAsProtojson(t, &identityv1.TokenPair{SessionId: s})
	}
	for _, ts := range jsonTestTimes {
		sameAsProtojson(t, &identityv1.VerifyResponse{IssuedAt: ts})
		sameAsProtojson(t, &identityv1.VerifyResponse{ExpiresAt: ts, Roles: []string{}})
		sameAsProtojson(t, &identityv1.TokenPair{AccessTokenExpiresAt: ts})
		sameAsProtojson(t, &identityv1.TokenPair{RefreshTokenExpiresAt: ts, ExpiresIn: 900})
	}
	for _, n := range []int32{0, 1, -1, 900, math.MaxInt32, math.MinInt32} {
		sameAsProtojson(t, &identityv1.TokenPair{ExpiresIn: n})
	}
	// A whole answer, as the service writes it.
	sameAsProtojson(t, &identityv1.VerifyResponse{
		Subject: "01JDZ8", Username: "bench", Roles: []string{"admin", "reader"}, SessionId: "01JDZ8.s1",
		IssuedAt: &timestamppb.Timestamp{Seconds: 1764762000}, ExpiresAt: &timestamppb.Timestamp{Seconds: 1764762900},
	})
	sameAsProtojson(t, &identityv1.TokenPair{
		AccessToken: "eyJh.eyJz.c2ln", TokenType: "Bearer", ExpiresIn: 900,
		AccessTokenExpiresAt: &timestamppb.Timestamp{Seconds: 1764762900},
		RefreshToken:         "v1.abc_-", RefreshTokenExpiresAt: &timestamppb.Timestamp{Seconds: 1767354000, Nanos: 5e8},
		SessionId: "01JDZ8.s1",
	})
	// Every other message is protojson's own.
	other := &identityv1.VerifyRequest{Token: "t"}
	want, _ := protojsonOnly.Marshal(other)
	if got, err := jsonMarshaler.Marshal(other); err != nil || !bytes.Equal(got, want) {
		t.Errorf("VerifyRequest: %s, %v; want protojson's %s", got, err, want)
	}
	var _ runtime.Marshaler = jsonMarshaler
}

func FuzzRESTMarshaler(f *testing.F) {
	for _, s := range jsonTestStrings {
		f.Add(s, s, int64(1764762000), int32(0), int32(900))
	}
	f.Add("a", "b", int64(maxTimestampSeconds+1), int32(7), int32(-1))
	f.Fuzz(func(t *testing.T, s1, s2 string, secs int64, nanos, n int32) {
		ts := &timestamppb.Timestamp{Seconds: secs, Nanos: nanos}
		sameAsProtojson(t, &identityv1.VerifyResponse{Subject: s1, Username: s2, Roles: []string{s1, s2}, SessionId: s2, IssuedAt: ts, ExpiresAt: ts})
		sameAsProtojson(t, &identityv1.TokenPair{AccessToken: s1, TokenType: s2, ExpiresIn: n, AccessTokenExpiresAt: ts, RefreshToken: s2, SessionId: s1})
	})
}

// decodeBoth decodes body as a request of m's type with the gateway's own
// decoder and with restMarshaler's (as limitBody hands it a sized body),
// and fails unless both give the same message and the same error.
func decodeBoth(t *testing.T, m proto.Message, body string) {
	t.Helper()
	want := m.ProtoReflect().New().Interface()
	wantErr := protojsonOnly.NewDecoder(strings.NewReader(body)).Decode(want)
	got := m.ProtoReflect().New().Interface()
	capped := &cappedBody{ReadCloser: io.NopCloser(strings.NewReader(body)), limit: 1 << 20, sized: true}
	err := jsonMarshaler.NewDecoder(capped).Decode(got)
	if fmt.Sprint(err) != fmt.Sprint(wantErr) || !proto.Equal(got, want) {
		t.Errorf("%T from %q:\n got       %v, %v\n gateway's %v, %v", m, body, got, err, want, wantErr)
	}
}

// The REST request decoder accepts and refuses exactly what the gateway's
// does, with the same error: empty bodies (io.EOF, which the gateway
// takes as an empty request), whitespace, unknown fields, wrong types,
// duplicates, invalid UTF-8, trailing data after the first value (which
// the gateway ignores), and cut-off JSON.
func TestRESTDecoderMatchesGateway(t *testing.T) {
	t.Parallel()
	bodies := []string{
		``, ` `, "\n\t ", `{}`, ` {} `, `{"token":"a.b.c"}`, `{"refresh_token":"v1.x"}`, `{"token":"a","token":"b"}`,
		`{"token":null}`, `{"token":1}`, `{"token":["a"]}`, `{"unknown":1}`, `{"token":"\u00e9\ud83d\ude00"}`,
		"{\"token\":\"\xff\"}", `{"token":"a"} {"token":"b"}`, `{"token":"a"}x`, `{} []`, `{"token":"a"`, `{"token":`,
		`[]`, `null`, `"token"`, `1`, `{"Token":"a"}`, `{"token":"a",}`, `{'token':'a'}`, `{"token":"a\x01"}`,
	}
	for _, body := range bodies {
		decodeBoth(t, &identityv1.VerifyRequest{}, body)
		decodeBoth(t, &identityv1.RefreshRequest{}, body)
		decodeBoth(t, &identityv1.LoginRequest{}, body)
	}
	// A body of unknown length goes to the gateway's decoder itself.
	unsized := &cappedBody{ReadCloser: io.NopCloser(strings.NewReader(`{}`)), limit: 1 << 20}
	if _, ok := jsonMarshaler.NewDecoder(unsized).(sizedBodyDecoder); ok {
		t.Error("a body without a declared length is read whole")
	}
}
