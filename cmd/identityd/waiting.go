package main

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/identityd/identity/authn"
	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/server"
	"github.com/identityd/identity/tokenstore"
)

// Waiting for the store. identityd starts with its store unreachable (Redis
// not up yet, a failover in progress, the keyring's node down): it binds
// its ports at once, answers as a service that cannot reach its store
// (/healthz 200, /readyz 503, gRPC health NOT_SERVING, every RPC and REST
// call UNAVAILABLE / STORE_UNAVAILABLE), retries with backoff, and serves
// for real as soon as the store answers. Only an error the store did not
// cause (an unreadable --keys-dir, a keyring that does not decode) ends
// the process, as before.

// backoff paces start attempts: doubling from first, jittered, at most
// max.
type backoff struct{ first, max time.Duration }

// startBackoff is identityd's.
var startBackoff = backoff{first: 100 * time.Millisecond, max: 3 * time.Second}

// waitAttempt bounds one attempt (each Redis call inside has its own,
// shorter deadline too).
const waitAttempt = 10 * time.Second

// startStep is one thing identityd needs from its store before it serves.
type startStep struct {
	// waitsFor says, for the log, what identityd waits for when it fails.
	waitsFor string
	run      func(ctx context.Context) error
}

// waitForStore runs the steps in order until they have all succeeded,
// retrying from the failed one with backoff while its error is the store's
// (tokenstore.ErrUnavailable, or the attempt's deadline). It logs one line
// when it starts waiting for something and one when it stops, not one per
// attempt. It returns ctx's error if ctx ends first, and at once any error
// that is not the store's.
func waitForStore(ctx context.Context, log *slog.Logger, pace backoff, steps []startStep) error {
	began := time.Now()
	delay := pace.first
	attempts := 0
	waiting := ""
	for i := 0; i < len(steps); {
		attempts++
		actx, cancel := context.WithTimeout(ctx, waitAttempt)
		err := steps[i].run(actx)
		cancel()
		if err == nil {
			i++
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !errors.Is(err, tokenstore.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		if waiting != steps[i].waitsFor {
			waiting = steps[i].waitsFor
			log.Warn("waiting for "+waiting+" (retrying with backoff up to "+pace.max.String()+"; /readyz answers 503 until then)",
				slog.String("error", err.Error()))
		}
		t := time.NewTimer(delay/2 + rand.N(delay/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, pace.max)
	}
	if waiting != "" {
		log.Info("the store answers: starting to serve",
			slog.Int("attempts", attempts), slog.Duration("waited", time.Since(began).Round(time.Millisecond)))
	}
	return nil
}

// waitingServer answers on identityd's ports while it waits for its store.
type waitingServer struct {
	grpc *grpc.Server
	http *http.Server
	done chan struct{}
}

// storeUnavailable is what every call gets while identityd waits.
func storeUnavailable() *status.Status {
	return status.Convert(authn.Error(codes.Unavailable, identityv1.ErrorReason_STORE_UNAVAILABLE,
		"identity is starting: its session store does not answer yet"))
}

// serveWaiting answers on the listeners, with the TLS the server will use
// (nil: plaintext), until stop.
func serveWaiting(grpcLis, httpLis net.Listener, serverTLS *server.TLS) *waitingServer {
	hs := health.NewServer()
	for _, svc := range []string{"", identityv1.IdentityService_ServiceDesc.ServiceName} {
		hs.SetServingStatus(svc, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	opts := []grpc.ServerOption{grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return storeUnavailable().Err()
	})}
	if serverTLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(serverTLS.GRPCConfig())))
	}
	g := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(g, hs)

	body, _ := protojson.Marshal(storeUnavailable().Proto())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("store unavailable\n"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write(body)
	})
	h := &http.Server{
		Handler:           server.SecurityHeaders(mux),
		ReadHeaderTimeout: 10 * time.Second,
	}
	w := &waitingServer{grpc: g, http: h, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		errc := make(chan struct{})
		go func() { _ = g.Serve(grpcLis); close(errc) }()
		if serverTLS != nil {
			h.TLSConfig = serverTLS.HTTPConfig()
			_ = h.ServeTLS(httpLis, "", "")
		} else {
			_ = h.Serve(httpLis)
		}
		<-errc
	}()
	return w
}

// stop ends the waiting server: open calls finish (within timeout), its
// connections close, and clients reconnect to whatever serves next.
func (w *waitingServer) stop(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = w.http.Shutdown(ctx)
	stopped := make(chan struct{})
	go func() { w.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-ctx.Done():
		w.grpc.Stop()
	}
	<-w.done
}

// onceHandler passes each distinct message once: a step retried with
// backoff says what it does on its first attempt, not on every one.
type onceHandler struct {
	slog.Handler
	seen *sync.Map
}

func newOnceHandler(h slog.Handler) *onceHandler { return &onceHandler{h, &sync.Map{}} }

func (h *onceHandler) Handle(ctx context.Context, r slog.Record) error {
	if _, dup := h.seen.LoadOrStore(r.Message, true); dup {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h *onceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &onceHandler{h.Handler.WithAttrs(attrs), h.seen}
}

func (h *onceHandler) WithGroup(name string) slog.Handler {
	return &onceHandler{h.Handler.WithGroup(name), h.seen}
}
