// Package admin serves langgate's operator endpoints on the admin port:
// liveness (/healthz) and readiness (/readyz), with room for metrics and
// profiling beside them.
package admin

import (
	"encoding/json"
	"net/http"

	"github.com/langgate/langgate/pkg/decision"
)

// Handler returns the admin mux for the engines in h.
func Handler(h *decision.Holder) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		st := Readiness(h)
		w.Header().Set("Content-Type", "application/json")
		if !st.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	return mux
}

// Status is the readiness report.
type Status struct {
	Ready         bool          `json:"ready"`
	ConfigLoaded  bool          `json:"config_loaded"`
	Issuers       []IssuerState `json:"issuers,omitempty"`
	NotReadyCause string        `json:"cause,omitempty"`
}

// IssuerState is one issuer's readiness.
type IssuerState struct {
	Issuer string `json:"issuer"`
	Ready  bool   `json:"ready"`
}

// Readiness reports whether langgate can decide: a configuration is loaded
// and every issuer has usable keys.
func Readiness(h *decision.Holder) Status {
	eng := h.Load()
	if eng == nil {
		return Status{NotReadyCause: "no configuration loaded"}
	}
	st := Status{ConfigLoaded: true, Ready: true}
	for _, iss := range eng.Issuers() {
		ok := iss.Ready()
		st.Issuers = append(st.Issuers, IssuerState{Issuer: iss.URL(), Ready: ok})
		if !ok {
			st.Ready = false
			st.NotReadyCause = "issuer has no keys yet: " + iss.URL()
		}
	}
	return st
}
