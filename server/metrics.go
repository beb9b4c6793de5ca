package server

import (
	"context"
	"net/http"
	"strconv"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	rpccode "google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	identityv1 "github.com/identityd/identity/gen/identity/v1"
	"github.com/identityd/identity/internal/buildinfo"
	"github.com/identityd/identity/sessions"
)

// The service's own metrics, beside grpcprom's grpc_server_* (per RPC and
// code, with latency histograms) and the Go and process collectors. Names
// follow Prometheus' conventions: the identity_ prefix, base units
// (seconds), _total for counters, and labels from closed sets only:
//
//   - result: "ok" or the identity.v1.ErrorReason the client got
//     (INVALID_CREDENTIALS, REFRESH_TOKEN_REUSED, ...), the gRPC code's
//     name for an error without one (CANCELED);
//   - cause: sessions.Causes;
//   - limit: the limits below;
//   - route: the pattern that matched (the gateway's, such as
//     "POST /v1/login", or the HTTP mux's, such as
//     "GET /.well-known/jwks.json"), "other" for anything unrouted: never
//     a raw path, which a client chooses;
//   - code: the HTTP status.
//
// The domain packages stay free of Prometheus: sessions reports
// revocations through Config.OnRevoke, tokencheck counts cache hits that
// are read here (Cache.Stats), and the rest is observed in this package.

// Rate limits, the values of identity_rate_limit_refusals_total's label.
const (
	limitLoginIP     = "login_ip"            // --login-rate-per-ip
	limitLoginUser   = "login_user"          // --login-failures-per-user
	limitLoginHashes = "login_hash_queue"    // every hash worker busy (password.ErrBusy)
	limitWatchers    = "revocation_watchers" // MaxWatchers streams open
)

const resultOK = "ok"

type metrics struct {
	logins      *prometheus.CounterVec
	refreshes   *prometheus.CounterVec
	reuse       prometheus.Counter
	revocations *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
	http        *prometheus.CounterVec
	storeErrors prometheus.Counter
	storeUp     prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "identity_logins_total",
			Help: "Login attempts by result: ok, or the ErrorReason answered.",
		}, []string{"result"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "identity_refreshes_total",
			Help: "Refresh-token rotations by result: ok, or the ErrorReason answered.",
		}, []string{"result"}),
		reuse: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "identity_refresh_reuse_detected_total",
			Help: "Rotated refresh tokens presented again after the grace window: each revoked its whole session (possible token theft).",
		}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "identity_sessions_revoked_total",
			Help: "Sessions revoked by this instance, by cause.",
		}, []string{"cause"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "identity_rate_limit_refusals_total",
			Help: "Requests refused by a rate limit or capacity bound, by limit.",
		}, []string{"limit"}),
		http: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "identity_http_requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		storeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "identity_store_errors_total",
			Help: "RPCs answered STORE_UNAVAILABLE: the session store failed or did not answer in time.",
		}),
		storeUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "identity_store_up",
			Help: "1 if the session store answered the last health ping (every second), else 0.",
		}),
	}
	// Start the known series at zero, so a rate() over them has a
	// beginning and an alert on them has something to read.
	for _, r := range []string{resultOK, identityv1.ErrorReason_INVALID_CREDENTIALS.String(), identityv1.ErrorReason_RATE_LIMITED.String(), identityv1.ErrorReason_STORE_UNAVAILABLE.String()} {
		m.logins.WithLabelValues(r)
	}
	for _, r := range []string{resultOK, identityv1.ErrorReason_REFRESH_TOKEN_INVALID.String(), identityv1.ErrorReason_REFRESH_TOKEN_REUSED.String(), identityv1.ErrorReason_STORE_UNAVAILABLE.String()} {
		m.refreshes.WithLabelValues(r)
	}
	for _, c := range sessions.Causes {
		m.revocations.WithLabelValues(string(c))
	}
	for _, l := range []string{limitLoginIP, limitLoginUser, limitLoginHashes, limitWatchers} {
		m.rateLimited.WithLabelValues(l)
	}
	// The server is built on a store that has just answered (the keys
	// were read from it); the background ping keeps this true from then.
	m.storeUp.Set(1)
	return m
}

// sessionsRevoked is sessions.Config.OnRevoke.
func (m *metrics) sessionsRevoked(c sessions.Cause, n int) {
	m.revocations.WithLabelValues(string(c)).Add(float64(n))
	if c == sessions.CauseReuse {
		m.reuse.Add(float64(n))
	}
}

func (m *metrics) refused(limit string) { m.rateLimited.WithLabelValues(limit).Inc() }

// registerMetrics registers the service's metrics, those read from the
// verification core and the feed at scrape time, and the process
// collector (CPU, memory, open files; the Go collector is registered with
// grpcprom's metrics).
func (s *Server) registerMetrics() error {
	m := s.metrics
	cache, revoked := s.checker.Cache(), s.checker.Revoked()
	bi := buildinfo.Read()
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "identity_build_info",
		Help:        "Always 1; the labels say which build of identityd runs.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "goversion": bi.GoVersion},
	})
	build.Set(1)
	cs := []prometheus.Collector{
		m.logins, m.refreshes, m.reuse, m.revocations, m.rateLimited, m.http, m.storeErrors, m.storeUp, build,
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "identity_verify_cache_hits_total",
			Help: "Verify calls answered from the cache of verified tokens (no signature check).",
		}, func() float64 { h, _ := cache.Stats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "identity_verify_cache_misses_total",
			Help: "Verify calls whose token was not in the cache of verified tokens.",
		}, func() float64 { _, miss := cache.Stats(); return float64(miss) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "identity_verify_cache_entries",
			Help: "Tokens in the cache of verified tokens.",
		}, func() float64 { return float64(cache.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "identity_revocation_feed_last_sync_timestamp_seconds",
			Help: "When the revocation feed last caught up with the store (Unix time); 0 before the first catch-up and while its reads fail.",
		}, func() float64 {
			if at := revoked.LastHeard(); !at.IsZero() {
				return float64(at.UnixNano()) / 1e9
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "identity_revocation_feed_fresh",
			Help: "1 while the revocation set is fresh enough to answer Verify's session check; 0 while Verify must ask the store.",
		}, func() float64 {
			if revoked.Fresh(s.now()) {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "identity_revocation_watchers",
			Help: "Open WatchRevocations streams.",
		}, func() float64 { return float64(s.feed.Watchers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "identity_password_hash_queue_depth",
			Help: "Logins and password changes waiting for a password-hashing worker.",
		}, func() float64 {
			if s.hasher == nil {
				return 0
			}
			return float64(s.hasher.Queued())
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "identity_password_hash_expected_wait_seconds",
			Help: "How long a password hash asked for now is expected to wait for a worker (the queue ahead of it times the measured hash time, over the workers); admission refuses past --login-wait-budget.",
		}, func() float64 {
			if s.hasher == nil {
				return 0
			}
			return s.hasher.ExpectedWait(s.hasher.Queued()).Seconds()
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "identity_password_hash_duration_seconds",
			Help: "argon2id's own time per hash, averaged over the last hashes (without the wait); 0 before the first.",
		}, func() float64 {
			if s.hasher == nil {
				return 0
			}
			return s.hasher.HashTime().Seconds()
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "identity_audit_events_dropped_total",
			Help: "Audit events not appended to the --audit-redis-stream stream (its queue was full or the write failed); the log has them all.",
		}, func() float64 {
			if s.auditStream == nil {
				return 0
			}
			return float64(s.auditStream.Dropped())
		}),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
	for _, c := range cs {
		if err := s.registry.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// unaryInterceptor counts login and refresh results, and the RPCs the
// store failed. It runs outside errorUnaryInterceptor, so it sees the
// status the client gets.
func (m *metrics) unaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		var results *prometheus.CounterVec
		switch info.FullMethod {
		case identityv1.IdentityService_Login_FullMethodName:
			results = m.logins
		case identityv1.IdentityService_Refresh_FullMethodName:
			results = m.refreshes
		}
		if err == nil {
			if results != nil {
				results.WithLabelValues(resultOK).Inc()
			}
			return resp, nil
		}
		result := resultOf(err)
		if results != nil {
			results.WithLabelValues(result).Inc()
		}
		if result == identityv1.ErrorReason_STORE_UNAVAILABLE.String() {
			m.storeErrors.Inc()
		}
		return resp, err
	}
}

// resultOf is the result label of a failed call: the ErrorReason of its
// status, else the name of its code (both closed sets).
func resultOf(err error) string {
	st := status.Convert(err)
	if info := errorInfo(st); info != nil {
		if _, known := identityv1.ErrorReason_value[info.GetReason()]; known {
			return info.GetReason()
		}
	}
	return rpccode.Code(st.Code()).String()
}

// HTTP requests are counted by route pattern. The HTTP mux sets
// Request.Pattern on the request it routes; the gateway's patterns are
// behind its catch-all route, so a gateway middleware (recordRoute) writes
// the one it matched into a holder that countHTTP put in the context.

type routeKey struct{}

type routeHolder struct{ route string }

func (s *Server) countHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := &routeHolder{}
		r = r.WithContext(context.WithValue(r.Context(), routeKey{}, h))
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := h.route
		if route == "" && r.Pattern != "/" {
			route = r.Pattern // "" when nothing matched
		}
		if s.tracing != nil {
			nameHTTPSpan(r.Context(), r.Method, route)
		}
		if route == "" {
			route = "other"
		}
		s.metrics.http.WithLabelValues(route, strconv.Itoa(rec.code)).Inc()
	})
}

// recordRoute is the gateway's middleware naming the route it matched.
func recordRoute(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		if h, ok := r.Context().Value(routeKey{}).(*routeHolder); ok {
			if pat, ok := runtime.HTTPPattern(r.Context()); ok {
				h.route = r.Method + " " + pat.String()
			}
		}
		next(w, r, params)
	}
}

// statusRecorder remembers the status written through it.
type statusRecorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
