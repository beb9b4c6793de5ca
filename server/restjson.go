package server

import (
	"bytes"
	"github.com/identityd/identity/internal/jsonesc"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
)

// restMarshaler is the REST JSON (jsonMarshaler's rules) with the answers of
// the hot routes, VerifyResponse and TokenPair, written by hand: protojson
// walks a message by reflection, and was ~10% of a REST Verify's CPU in the
// profile (BENCHMARKS.md). The hand-written JSON is what protojson writes
// with UseProtoNames and EmitUnpopulated: the same names, in field number
// order, every field present (an unset timestamp as null, no roles as []),
// strings escaped as protojson escapes them, timestamps in RFC 3339 with 0,
// 3, 6 or 9 fractional digits. What protojson refuses (invalid UTF-8, a
// timestamp out of its range) goes to protojson, which refuses it.
// TestRESTMarshalerMatchesProtojson holds the two together field by field.
// Every other message is protojson's.
//
// Requests are protojson's too, without the gateway's pre-pass: the
// gateway's decoder runs encoding/json over the body to cut out the first
// JSON value, then protojson over that value (~8% of a REST Verify's CPU,
// the scan of the token byte by byte twice). A body that declared its
// length (so reading it whole never trips the body limit) is read whole and
// given to protojson at once; if protojson refuses it, the gateway's own
// decoder runs over the same bytes and gives the answer it always gave
// (trailing data after the first value, which it ignores, included).
// TestRESTDecoderMatchesGateway holds the two together.
type restMarshaler struct {
	*runtime.JSONPb
}

func (m restMarshaler) NewDecoder(r io.Reader) runtime.Decoder {
	if b, ok := r.(*cappedBody); ok && b.sized {
		return sizedBodyDecoder{b, m.JSONPb}
	}
	return m.JSONPb.NewDecoder(r)
}

type sizedBodyDecoder struct {
	body io.Reader
	pb   *runtime.JSONPb
}

func (d sizedBodyDecoder) Decode(v any) error {
	p, ok := v.(proto.Message)
	if !ok {
		return d.pb.NewDecoder(d.body).Decode(v)
	}
	data, err := io.ReadAll(d.body) // at most the declared length
	if err == nil && d.pb.UnmarshalOptions.Unmarshal(data, p) == nil {
		return nil
	}
	proto.Reset(p)
	var again io.Reader = bytes.NewReader(data)
	if err != nil {
		again = io.MultiReader(again, failingReader{err})
	}
	return d.pb.NewDecoder(again).Decode(v)
}

// failingReader replays a body's read error after its bytes.
type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

func (m restMarshaler) Marshal(v any) ([]byte, error) {
	var b []byte
	ok := false
	switch msg := v.(type) {
	case *identityv1.VerifyResponse:
		b, ok = appendVerifyResponse(getJSONBuf(), msg)
	case *identityv1.TokenPair:
		b, ok = appendTokenPair(getJSONBuf(), msg)
	default:
		return m.JSONPb.Marshal(v)
	}
	if !ok {
		putJSONBuf(b)
		return m.JSONPb.Marshal(v)
	}
	// The gateway writes the answer and drops it: hand it a copy of its
	// own, and keep the buffer for the next answer.
	out := append([]byte(nil), b...)
	putJSONBuf(b)
	return out, nil
}

var jsonBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func getJSONBuf() []byte { return (*jsonBufs.Get().(*[]byte))[:0] }

func putJSONBuf(b []byte) {
	if cap(b) <= 64<<10 {
		jsonBufs.Put(&b)
	}
}

func appendVerifyResponse(b []byte, m *identityv1.VerifyResponse) ([]byte, bool) {
	ok := true
	b = append(b, `{"subject":`...)
	b, ok = appendProtoJSONString(b, m.GetSubject(), ok)
	b = append(b, `,"username":`...)
	b, ok = appendProtoJSONString(b, m.GetUsername(), ok)
	b = append(b, `,"roles":[`...)
	for i, r := range m.GetRoles() {
		if i > 0 {
			b = append(b, ',')
		}
		b, ok = appendProtoJSONString(b, r, ok)
	}
	b = append(b, `],"session_id":`...)
	b, ok = appendProtoJSONString(b, m.GetSessionId(), ok)
	b = append(b, `,"issued_at":`...)
	b, ok = appendProtoJSONTimestamp(b, m.GetIssuedAt(), ok)
	b = append(b, `,"expires_at":`...)
	b, ok = appendProtoJSONTimestamp(b, m.GetExpiresAt(), ok)
	return append(b, '}'), ok
}

func appendTokenPair(b []byte, m *identityv1.TokenPair) ([]byte, bool) {
	ok := true
	b = append(b, `{"access_token":`...)
	b, ok = appendProtoJSONString(b, m.GetAccessToken(), ok)
	b = append(b, `,"token_type":`...)
	b, ok = appendProtoJSONString(b, m.GetTokenType(), ok)
	b = append(b, `,"expires_in":`...)
	b = strconv.AppendInt(b, int64(m.GetExpiresIn()), 10)
	b = append(b, `,"access_token_expires_at":`...)
	b, ok = appendProtoJSONTimestamp(b, m.GetAccessTokenExpiresAt(), ok)
	b = append(b, `,"refresh_token":`...)
	b, ok = appendProtoJSONString(b, m.GetRefreshToken(), ok)
	b = append(b, `,"refresh_token_expires_at":`...)
	b, ok = appendProtoJSONTimestamp(b, m.GetRefreshTokenExpiresAt(), ok)
	b = append(b, `,"session_id":`...)
	b, ok = appendProtoJSONString(b, m.GetSessionId(), ok)
	return append(b, '}'), ok
}

// appendProtoJSONString appends s as protojson writes a string: only '"',
// '\\' and control characters escaped (\b \f \n \r \t, else \u00XX), the
// rest as is; ok turns false on invalid UTF-8, which protojson refuses.
func appendProtoJSONString(b []byte, s string, ok bool) ([]byte, bool) {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				ok = false
			}
			i += n
			continue
		}
		if c >= ' ' && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		b = jsonesc.AppendByte(b, c)
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"'), ok
}

// The range of a google.protobuf.Timestamp (0001-01-01 to 9999-12-31 UTC).
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
)

// appendProtoJSONTimestamp appends t as protojson writes a Timestamp
// (null when unset); ok turns false when t is out of range.
func appendProtoJSONTimestamp(b []byte, t *timestamppb.Timestamp, ok bool) ([]byte, bool) {
	if t == nil {
		return append(b, "null"...), ok
	}
	secs, nanos := t.GetSeconds(), t.GetNanos()
	if secs < minTimestampSeconds || secs > maxTimestampSeconds || nanos < 0 || nanos >= 1e9 {
		return b, false
	}
	b = append(b, '"')
	b = time.Unix(secs, int64(nanos)).UTC().AppendFormat(b, "2006-01-02T15:04:05")
	if nanos != 0 {
		// 3, 6 or 9 digits, the fewest that hold the nanoseconds.
		digits, v := 9, int64(nanos)
		for digits > 3 && v%1000 == 0 {
			digits, v = digits-3, v/1000
		}
		var tmp [9]byte
		d := strconv.AppendInt(tmp[:0], v, 10)
		b = append(b, '.')
		for range digits - len(d) {
			b = append(b, '0')
		}
		b = append(b, d...)
	}
	return append(b, 'Z', '"'), ok
}
