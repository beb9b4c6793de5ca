package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The REST side of the scenarios: the same closed loop and the same
// clients, each on its own HTTP/1.1 keep-alive connection (HTTP/1.1 has one
// request in flight per connection), against identityd's REST gateway.
//
// The REST no-op is POST /v1/verify with an empty body: it crosses
// everything a REST call crosses (HTTP server, security headers, the
// browser gate, the body limit, the gateway's routing and JSON decoding,
// the hop to the gRPC service with every interceptor, the error handler's
// JSON) and stops at the handler's first check (400 INVALID_REQUEST,
// "token is required"), as Health/Check is the gRPC no-op through the same
// interceptors. It is counted as a success when it gets that 400. No REST
// route does nothing at all, and the API gets none for the benchmark;
// /healthz does not reach the gateway, and an unknown path (404) stops in
// the gateway's router before any interceptor runs.

// restClient speaks identityd's REST API on loopback. It is measured
// against the gRPC client in the same run, on the same CPUs, so it keeps
// its own cost down. Go's http.Client hands every request from the caller
// to a connection's write goroutine and the answer from its read goroutine
// back (three goroutine switches a call); here the caller writes the
// request, built in a buffer of its connection's, with one write, and reads
// the answer itself with net/http's own parser (http.ReadResponse) from a
// buffered reader kept with the connection. Connections are kept alive in
// a pool of one per client (HTTP/1.1: one request in flight on each) and
// dropped on any error or "Connection: close". An answer the scenario does
// not read is drained without being kept, and a refresh's token pair is
// read without reflection (restTokenPair.decode).
type restClient struct {
	addr  string // host:port
	conns chan *restConn
}

type restConn struct {
	c    net.Conn
	br   *bufio.Reader
	wbuf []byte
}

func newRESTClient(addr string, conns int) *restClient {
	return &restClient{addr: addr, conns: make(chan *restConn, conns)}
}

func (c *restClient) close() {
	for {
		select {
		case rc := <-c.conns:
			rc.c.Close()
		default:
			return
		}
	}
}

func (c *restClient) conn(ctx context.Context) (*restConn, error) {
	select {
	case rc := <-c.conns:
		return rc, nil
	default:
	}
	nc, err := loopbackDialer(ctx, c.addr)
	if err != nil {
		return nil, err
	}
	return &restConn{c: nc, br: bufio.NewReaderSize(nc, 4096), wbuf: make([]byte, 0, 1024)}, nil
}

func (c *restClient) release(rc *restConn, reuse bool) {
	if reuse {
		select {
		case c.conns <- rc:
			return
		default:
		}
	}
	rc.c.Close()
}

// roundTrip posts body to path and returns the answer with its body read
// whole (nil when drain is set and the status is 200).
func (c *restClient) roundTrip(ctx context.Context, path string, body []byte, drain bool) (*http.Response, []byte, error) {
	rc, err := c.conn(ctx)
	if err != nil {
		return nil, nil, err
	}
	dl, _ := ctx.Deadline() // zero: none
	if err := rc.c.SetDeadline(dl); err != nil {
		c.release(rc, false)
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = rc.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	w := append(rc.wbuf[:0], "POST "...)
	w = append(w, path...)
	w = append(w, " HTTP/1.1\r\nHost: "...)
	w = append(w, c.addr...)
	w = append(w, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	w = strconv.AppendInt(w, int64(len(body)), 10)
	w = append(w, "\r\n\r\n"...)
	w = append(w, body...)
	rc.wbuf = w
	if _, err := rc.c.Write(w); err != nil {
		c.release(rc, false)
		return nil, nil, err
	}
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		c.release(rc, false)
		return nil, nil, err
	}
	var b []byte
	if drain && resp.StatusCode == http.StatusOK {
		_, err = io.Copy(io.Discard, resp.Body)
	} else {
		b, err = io.ReadAll(resp.Body)
	}
	resp.Body.Close()
	c.release(rc, err == nil && !resp.Close && ctx.Err() == nil)
	if err != nil {
		return nil, nil, err
	}
	return resp, b, nil
}

// restError is a REST error answer, readable by status.Code (its body is
// the google.rpc.Status JSON) with the Retry-After it came with.
type restError struct {
	httpStatus int
	code       codes.Code
	msg        string
	retryAfter time.Duration
}

func (e *restError) Error() string {
	return fmt.Sprintf("HTTP %d: %s: %s", e.httpStatus, e.code, e.msg)
}

func (e *restError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }

// post sends body to path and decodes a 200 answer into out (nil: the body
// is read and dropped). Any other answer is a *restError.
func (c *restClient) post(ctx context.Context, path string, body []byte, out any) error {
	resp, b, err := c.roundTrip(ctx, path, body, out == nil)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	if resp.StatusCode != http.StatusOK {
		e := &restError{httpStatus: resp.StatusCode, code: codes.Unknown}
		var st struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &st) == nil {
			e.code, e.msg = codes.Code(st.Code), st.Message
		}
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			e.retryAfter = time.Duration(s) * time.Second
		}
		return e
	}
	if out == nil {
		return nil
	}
	if tp, ok := out.(*restTokenPair); ok {
		return tp.decode(b)
	}
	return json.Unmarshal(b, out)
}

// restTokenPair is the part of a TokenPair answer the scenarios use.
type restTokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

// decode reads the two tokens of identityd's TokenPair JSON. Tokens are
// base64url and dots, so their JSON strings hold no escapes; anything else
// (an escape, a field missing) goes through encoding/json.
func (tp *restTokenPair) decode(b []byte) error {
	at, ok1 := jsonTokenField(b, `"access_token":"`)
	rt, ok2 := jsonTokenField(b, `"refresh_token":"`)
	if !ok1 || !ok2 {
		*tp = restTokenPair{}
		return json.Unmarshal(b, tp)
	}
	tp.AccessToken, tp.RefreshToken = at, rt
	return nil
}

// jsonTokenField is the value of the string field that key (`"name":"`)
// opens in b, if it has no escape. identityd writes no space after the
// colon (a space would send decode to encoding/json).
func jsonTokenField(b []byte, key string) (string, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return "", false
	}
	v := b[i+len(key):]
	end := bytes.IndexByte(v, '"')
	if end < 0 || bytes.IndexByte(v[:end], '\\') >= 0 {
		return "", false
	}
	return string(v[:end]), true
}

// refreshBody is the JSON of a RefreshRequest for rt, appended to buf.
func refreshBody(buf []byte, rt string) []byte {
	for i := 0; i < len(rt); i++ {
		if c := rt[i]; c < ' ' || c == '"' || c == '\\' || c >= 0x7f {
			return mustJSON(map[string]string{"refresh_token": rt})
		}
	}
	buf = append(buf[:0], `{"refresh_token":"`...)
	buf = append(buf, rt...)
	return append(buf, `"}`...)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func (l *loader) restNoopOps() []op {
	ops := make([]op, l.cfg.clients)
	body := []byte(`{}`)
	for i := range ops {
		ops[i] = func(ctx context.Context) error {
			err := l.rest.post(ctx, "/v1/verify", body, nil)
			if e, ok := err.(*restError); ok && e.httpStatus == http.StatusBadRequest && e.code == codes.InvalidArgument {
				return nil // the answer the no-op is for
			}
			if err == nil {
				return fmt.Errorf("REST no-op: Verify of an empty token answered 200")
			}
			return err
		}
	}
	return ops
}

func (l *loader) restVerifyOps(tokens []string) []op {
	bodies := make([][]byte, len(tokens))
	for i, t := range tokens {
		bodies[i] = mustJSON(map[string]string{"token": t})
	}
	ops := make([]op, l.cfg.clients)
	for i := range ops {
		next := i
		ops[i] = func(ctx context.Context) error {
			next = (next + 1) % len(bodies)
			return l.rest.post(ctx, "/v1/verify", bodies[next], nil)
		}
	}
	return ops
}

// restRefreshOps rotate sessions of their own (l.restSessions), never the
// gRPC refresh clients': a refresh token is used once, and a reused one
// kills its session.
func (l *loader) restRefreshOps(ctx context.Context) ([]op, error) {
	pairs, err := l.restRefreshSessions(ctx)
	if err != nil {
		return nil, err
	}
	ops := make([]op, l.cfg.clients)
	for i := range ops {
		rt := pairs[i].GetRefreshToken()
		var tp restTokenPair
		ops[i] = func(ctx context.Context) error {
			if rt == "" { // the session died on an error: start another
				tp, err := l.login(ctx, i)
				if err == nil {
					rt = tp.GetRefreshToken()
				}
				return errSkip
			}
			// A new body each call: the transport may still hold the last.
			if err := l.rest.post(ctx, "/v1/refresh", refreshBody(nil, rt), &tp); err != nil {
				rt = ""
				return err
			}
			rt = tp.RefreshToken
			return nil
		}
	}
	return ops, nil
}

// restLoginOps are loginOps over REST: a polite client waits out a 429's
// Retry-After (or -busy-backoff without one).
func (l *loader) restLoginOps(clients int, polite bool) []op {
	ops := make([]op, clients)
	body := mustJSON(map[string]string{"username": l.cfg.user, "password": l.password})
	for i := range ops {
		ops[i] = func(ctx context.Context) error {
			err := l.rest.post(ctx, "/v1/login", body, nil)
			if e, ok := err.(*restError); ok && polite && e.httpStatus == http.StatusTooManyRequests {
				d := e.retryAfter
				if d <= 0 {
					d = l.cfg.busyBackoff
				}
				return &pauseAfter{err, d}
			}
			return err
		}
	}
	return ops
}
