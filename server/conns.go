package server

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// What a connection may cost the server, on both ports. A client that
// opens connections and sends nothing, or sends its headers a byte at a
// time, holds a file descriptor and a little memory until one of these
// ends it; none of them limits a well-behaved client.
const (
	// DefaultIdleTimeout closes a connection with no request in flight
	// (Config.IdleTimeout, --idle-timeout).
	DefaultIdleTimeout = 2 * time.Minute
	// handshakeTimeout bounds a new connection's TLS handshake and
	// HTTP/2 preface on the gRPC port, and a request's headers on the
	// HTTP port (ReadHeaderTimeout, the slowloris defence: it runs from
	// the request's first byte and trickling does not extend it).
	handshakeTimeout = 10 * time.Second
	// httpReadTimeout and httpWriteTimeout bound one REST request's body
	// and answer (bodies are at most Config.MaxBodyBytes).
	httpReadTimeout  = 30 * time.Second
	httpWriteTimeout = 30 * time.Second
	// maxHeaderBytes caps a REST request's headers.
	maxHeaderBytes = 64 << 10
	// maxStreamsPerConn caps concurrent calls on one gRPC connection
	// (grpc-go's default is unlimited); a client past it waits for a
	// slot, it is not refused.
	maxStreamsPerConn = 1000
	// keepaliveTime and keepaliveTimeout: a gRPC connection silent this
	// long is pinged, and closed if the ping is not answered in time (a
	// watcher whose host vanished, its TCP connection still open).
	keepaliveTime    = time.Minute
	keepaliveTimeout = 20 * time.Second
	// minPingInterval is the most often a client may ping: grpc-go's
	// clients ping at most every 10s. A client pinging faster (a ping
	// flood) is sent GOAWAY ENHANCE_YOUR_CALM at its third ping and cut.
	minPingInterval = 5 * time.Second
	// maxDrainNotice bounds the shutdown phase in which the HTTP port
	// answers 503 with Connection: close (drainHTTP).
	maxDrainNotice = time.Second
)

// grpcConnOptions are the gRPC port's connection limits.
func (s *Server) grpcConnOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: s.cfg.IdleTimeout,
			Time:              keepaliveTime,
			Timeout:           keepaliveTimeout,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime: minPingInterval,
			// Clients that keep an idle connection warm with pings are
			// allowed (at the rate above); MaxConnectionIdle still ends
			// a connection that carries no call.
			PermitWithoutStream: true,
		}),
	}
}

// httpServer is the HTTP port's server, its connections counted in conns.
func (s *Server) httpServer(conns *connCount) *http.Server {
	return &http.Server{
		Handler:           s.drainGate(s.http),
		ReadHeaderTimeout: handshakeTimeout,
		ReadTimeout:       httpReadTimeout,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnState:         conns.track,
		// net/http's own complaints (a failed TLS handshake, say) go to
		// the server's log, not to the standard logger.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// connCount counts the HTTP port's open connections.
type connCount struct{ n atomic.Int64 }

func (c *connCount) track(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		c.n.Add(1)
	case http.StateHijacked, http.StateClosed:
		c.n.Add(-1)
	}
}

func (c *connCount) open() int64 { return c.n.Load() }

// drainNotice is how long the HTTP port answers 503 before it closes.
func drainNotice(shutdownTimeout time.Duration) time.Duration {
	return min(shutdownTimeout/4, maxDrainNotice)
}

// drainGate answers every request that arrives once the server drains
// with 503 IDENTITY_UNAVAILABLE and Connection: close.
func (s *Server) drainGate(next http.Handler) http.Handler {
	refuse := SecurityHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		s.writeError(r.Context(), nil, nil, w, r, errShuttingDown)
	}))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			refuse.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// drainHTTP shuts the HTTP port down without resetting a request.
// http.Server.Shutdown alone closes idle keep-alive connections at once,
// and a client may be sending its next request on one at that moment: it
// gets a reset (Go's client: "server closed idle connection") and cannot
// tell whether the request ran. So first, for up to notice (or until no
// connection is left), every request is answered 503 with Connection:
// close, which tells the client to take its next request elsewhere; the
// requests in flight finish as usual. Then Shutdown closes the listener
// and waits for what is still running, until ctx ends.
func (s *Server) drainHTTP(ctx context.Context, srv *http.Server, conns *connCount, notice time.Duration) error {
	s.draining.Store(true)
	deadline := time.NewTimer(notice)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
wait:
	for conns.open() > 0 {
		select {
		case <-deadline.C:
			break wait
		case <-ctx.Done():
			break wait
		case <-poll.C:
		}
	}
	return srv.Shutdown(ctx)
}
