// Package admin serves langgate's operator endpoints on the admin port:
// liveness (/healthz), readiness (/readyz), Prometheus metrics (/metrics)
// and, when enabled, Go's profiler (/debug/pprof/).
package admin

import (
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/langgate/langgate/pkg/decision"
)

// State is what readiness depends on besides the engine: whether the
// process is shutting down.
type State struct {
	draining atomic.Bool
	open     atomic.Bool
}

// Open marks the check ports as accepting: until then the process is not
// ready, even with an engine that is (langgate serve opens them once its
// issuers have keys).
func (s *State) Open() { s.open.Store(true) }

// Drain marks the process as shutting down: readiness turns false so load
// balancers and Envoy's health checks move traffic away before the gRPC
// server stops.
func (s *State) Drain() { s.draining.Store(true) }

// Draining reports whether Drain was called.
func (s *State) Draining() bool { return s.draining.Load() }

// JWKSPath serves the signed auth context's public keys.
const JWKSPath = "/.well-known/jwks.json"

// Options configure the admin handler.
type Options struct {
	// Gatherer serves /metrics (nothing is served when nil).
	Gatherer prometheus.Gatherer
	// Pprof mounts net/http/pprof under /debug/pprof/.
	Pprof bool
}

// Handler returns the admin mux.
func Handler(h *decision.Holder, st *State, opts Options) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		rs := Readiness(h, st)
		w.Header().Set("Content-Type", "application/json")
		if !rs.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rs)
	})
	// The public keys of the signed auth context (x-langgate-context), for
	// upstreams to verify it: every key of the configuration in service,
	// the signing one first. Cacheable for 5 minutes; 404 when the
	// configuration signs no context.
	mux.HandleFunc("GET "+JWKSPath, func(w http.ResponseWriter, _ *http.Request) {
		eng := h.Load()
		if eng == nil || eng.ContextKeys() == nil {
			http.Error(w, "this configuration signs no auth context", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(eng.ContextKeys().JWKS())
	})
	// The MCP endpoints' protected resource metadata (RFC 9728), as the
	// check port answers it: for a proxy that routes these paths here
	// (an HTTP-mode check cannot answer with a document of its own).
	metadata := func(w http.ResponseWriter, r *http.Request) {
		eng := h.Load()
		var doc string
		ok := eng != nil
		if ok {
			doc, ok = eng.ResourceMetadata(r.URL.Path)
		}
		if !ok {
			http.Error(w, "no MCP resource is configured at this path", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_, _ = w.Write([]byte(doc)) //nolint:gosec // JSON langgate encoded from its configuration, served as application/json
	}
	mux.HandleFunc("GET "+decision.WellKnownResourceMetadata, metadata)
	mux.HandleFunc("GET "+decision.WellKnownResourceMetadata+"/{path...}", metadata)
	if opts.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{}))
	}
	if opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// Status is the readiness report.
type Status struct {
	Ready         bool          `json:"ready"`
	ConfigLoaded  bool          `json:"config_loaded"`
	Draining      bool          `json:"draining,omitempty"`
	Issuers       []IssuerState `json:"issuers,omitempty"`
	NotReadyCause string        `json:"cause,omitempty"`
}

// IssuerState is one issuer's readiness.
type IssuerState struct {
	Issuer string `json:"issuer"`
	Ready  bool   `json:"ready"`
}

// Readiness reports whether langgate should receive traffic: a
// configuration is loaded, every issuer it trusts has usable keys, and the
// process is not shutting down.
func Readiness(h *decision.Holder, st *State) Status {
	eng := h.Load()
	if eng == nil {
		return Status{NotReadyCause: "no configuration loaded"}
	}
	rs := Status{ConfigLoaded: true, Ready: true}
	for _, iss := range eng.Issuers() {
		ok := iss.Ready()
		rs.Issuers = append(rs.Issuers, IssuerState{Issuer: iss.URL(), Ready: ok})
		if !ok && rs.Ready {
			rs.Ready = false
			rs.NotReadyCause = "issuer has no keys yet: " + iss.URL()
		}
	}
	if st != nil && !st.open.Load() && rs.Ready {
		rs.Ready, rs.NotReadyCause = false, "the check ports are not open yet"
	}
	if st != nil && st.Draining() {
		rs.Ready, rs.Draining, rs.NotReadyCause = false, true, "shutting down"
	}
	return rs
}
