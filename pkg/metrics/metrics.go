// Package metrics owns langgate's Prometheus metrics: it observes every
// decision, every configuration reload, and reads the key sets and token
// caches of the engine in service when scraped. Everything is registered on
// a registry the caller injects (no globals, no init), and every label takes
// a bounded set of values: outcomes, HTTP statuses, and the resources,
// actions, policies and issuers the configuration names — never an
// identity, a token or a path.
package metrics

import (
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/langgate/langgate/pkg/decision"
)

// Metrics holds the collectors.
type Metrics struct {
	decisions    *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	authFailures *prometheus.CounterVec
	shadow       *prometheus.CounterVec
	reloads      *prometheus.CounterVec
	configInfo   *prometheus.GaugeVec
	configTime   prometheus.Gauge
}

var _ decision.Observer = (*Metrics)(nil)

// New registers langgate's metrics, the Go runtime's and the process's on
// reg. engines is read at scrape time for key-set and cache state.
func New(reg prometheus.Registerer, engines *decision.Holder) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "langgate_decisions_total",
			Help: "Decisions by outcome (allowed, public, unauthenticated, denied, bad_request, error), HTTP status, policy and the first event's resource and action.",
		}, []string{"outcome", "status", "policy", "resource", "action"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "langgate_decision_duration_seconds",
			Help: "Time to decide one request, from the transport's request to its answer, by outcome.",
			// From 10 µs (a cached token) to 100 ms (half Envoy's default budget).
			Buckets: []float64{1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 1e-1},
		}, []string{"outcome"}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "langgate_authentication_failures_total",
			Help: "Requests refused with 401, by kind (missing, invalid, unavailable), the check that refused (expired, bad signature, untrusted issuer, ...) and policy.",
		}, []string{"kind", "reason", "policy"}),
		shadow: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "langgate_shadow_results_total",
			Help: "Verdicts of shadow handlers and shadow policies (evaluated, never enforced) by policy, handler and result: would_allow or would_deny for a shadow handler's event; agree, would_deny, would_allow, would_filter or error for a shadow policy's request, against the policy it shadows.",
		}, []string{"policy", "handler", "result"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "langgate_config_reloads_total",
			Help: "Configuration loads by result (success, error); a failed reload keeps the last good configuration.",
		}, []string{"result"}),
		configInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "langgate_config_info",
			Help: "The configuration in service: 1 for its SHA-256 (first 16 hex digits).",
		}, []string{"sha256"}),
		configTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "langgate_config_loaded_timestamp_seconds",
			Help: "When the configuration in service was loaded (Unix time).",
		}),
	}
	version, goVersion := "(devel)", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		goVersion = bi.GoVersion
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "langgate_build_info",
		Help: "The running build: 1 for its version and Go version.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(version, goVersion).Set(1)
	reg.MustRegister(m.decisions, m.latency, m.authFailures, m.shadow, m.reloads, m.configInfo, m.configTime, build,
		&engineCollector{engines: engines},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Decisions is the decision counter (for tests and dashboards' sake).
func (m *Metrics) Decisions() *prometheus.CounterVec { return m.decisions }

// Latency is the decision latency histogram.
func (m *Metrics) Latency() *prometheus.HistogramVec { return m.latency }

// Observe counts one decision.
func (m *Metrics) Observe(d *decision.Decision, took time.Duration) {
	m.decisions.WithLabelValues(string(d.Outcome), strconv.Itoa(d.Status), d.Policy, d.Resource(), d.Action()).Inc()
	m.latency.WithLabelValues(string(d.Outcome)).Observe(took.Seconds())
	if d.AuthFailure != 0 {
		m.authFailures.WithLabelValues(d.AuthFailure.String(), d.AuthReason, d.Policy).Inc()
	}
	for _, s := range d.Shadow {
		result := "would_allow"
		if !s.Allowed {
			result = "would_deny"
		}
		m.shadow.WithLabelValues(d.Policy, s.Handler, result).Inc()
	}
	if s := d.ShadowPolicy; s != nil {
		m.shadow.WithLabelValues(s.Policy, s.Handler, s.Verdict).Inc()
	}
}

// Reloaded records a configuration load; hash identifies the new one on
// success.
func (m *Metrics) Reloaded(ok bool, hash string, at time.Time) {
	if !ok {
		m.reloads.WithLabelValues("error").Inc()
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.configInfo.Reset()
	m.configInfo.WithLabelValues(hash).Set(1)
	m.configTime.Set(float64(at.UnixNano()) / 1e9)
}

// engineCollector reads the engine in service at scrape time.
type engineCollector struct {
	engines *decision.Holder
}

var (
	descFetches = prometheus.NewDesc("langgate_jwks_fetches_total",
		"Key set fetches by issuer and result (scheduled refreshes, first loads and unknown-kid refetches).", []string{"issuer", "result"}, nil)
	descIssuerReady = prometheus.NewDesc("langgate_issuer_ready",
		"1 when the issuer's keys are loaded, else 0.", []string{"issuer"}, nil)
	descKeys = prometheus.NewDesc("langgate_jwks_keys",
		"Usable signing keys held for the issuer.", []string{"issuer"}, nil)
	descRateLimited = prometheus.NewDesc("langgate_jwks_refetch_rate_limited_total",
		"Unknown-kid refetches refused by the per-issuer rate limit (a flood of forged kids shows here, not at the identity provider).", []string{"issuer"}, nil)
	descNegativeKid = prometheus.NewDesc("langgate_jwks_unknown_kid_cached_total",
		"Tokens refused at once because their kid was recently looked for and not found.", []string{"issuer"}, nil)
	descIntrospection = prometheus.NewDesc("langgate_introspection_requests_total",
		"Token introspection requests by policy and result (success, error); restarts at a reload that changes the policy's introspection.", []string{"policy", "result"}, nil)
	descIntrospectionInactive = prometheus.NewDesc("langgate_introspection_inactive_total",
		"Tokens the introspection endpoint declared inactive, by policy.", []string{"policy"}, nil)
	descAPIKeys = prometheus.NewDesc("langgate_api_keys",
		"API keys held, by policy.", []string{"policy"}, nil)
	descAPIKeyReloads = prometheus.NewDesc("langgate_api_key_reloads_total",
		"API key file loads by policy and result (success, error); a failed load keeps the last good keys.", []string{"policy", "result"}, nil)
	descCacheHits   = prometheus.NewDesc("langgate_token_cache_hits_total", "Verified-token cache hits.", nil, nil)
	descCacheMisses = prometheus.NewDesc("langgate_token_cache_misses_total", "Verified-token cache misses.", nil, nil)
	descCacheEvict  = prometheus.NewDesc("langgate_token_cache_evictions_total", "Verified-token cache evictions (expired or for room).", nil, nil)
	descCacheSize   = prometheus.NewDesc("langgate_token_cache_entries", "Users in the verified-token caches.", nil, nil)
	descCacheBytes  = prometheus.NewDesc("langgate_token_cache_bytes", "Approximate memory of the verified-token caches.", nil, nil)
)

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFetches, descIssuerReady, descKeys, descRateLimited, descNegativeKid,
		descIntrospection, descIntrospectionInactive, descAPIKeys, descAPIKeyReloads,
		descCacheHits, descCacheMisses, descCacheEvict, descCacheSize, descCacheBytes} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	eng := c.engines.Load()
	if eng == nil {
		return
	}
	for _, iss := range eng.Issuers() {
		ks := iss.KeySet()
		ok, failed := ks.FetchResults()
		ch <- prometheus.MustNewConstMetric(descFetches, prometheus.CounterValue, float64(ok), iss.URL(), "success")
		ch <- prometheus.MustNewConstMetric(descFetches, prometheus.CounterValue, float64(failed), iss.URL(), "error")
		ready := 0.0
		if iss.Ready() {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(descIssuerReady, prometheus.GaugeValue, ready, iss.URL())
		st := ks.Stats()
		ch <- prometheus.MustNewConstMetric(descKeys, prometheus.GaugeValue, float64(st.Keys), iss.URL())
		ch <- prometheus.MustNewConstMetric(descRateLimited, prometheus.CounterValue, float64(st.RateLimited), iss.URL())
		ch <- prometheus.MustNewConstMetric(descNegativeKid, prometheus.CounterValue, float64(st.NegativeHits), iss.URL())
	}
	for _, p := range eng.Policies() {
		if in := p.Auth.Introspection(); in != nil {
			st := in.Stats()
			ch <- prometheus.MustNewConstMetric(descIntrospection, prometheus.CounterValue, float64(st.Requests-st.Failures), p.Name, "success")
			ch <- prometheus.MustNewConstMetric(descIntrospection, prometheus.CounterValue, float64(st.Failures), p.Name, "error")
			ch <- prometheus.MustNewConstMetric(descIntrospectionInactive, prometheus.CounterValue, float64(st.Inactive), p.Name)
		}
		if ks := p.Auth.APIKeys(); ks != nil {
			st := ks.Stats()
			ch <- prometheus.MustNewConstMetric(descAPIKeys, prometheus.GaugeValue, float64(st.Keys), p.Name)
			ch <- prometheus.MustNewConstMetric(descAPIKeyReloads, prometheus.CounterValue, float64(st.Reloads), p.Name, "success")
			ch <- prometheus.MustNewConstMetric(descAPIKeyReloads, prometheus.CounterValue, float64(st.Failures), p.Name, "error")
		}
	}
	st := eng.Registry().CacheTotals()
	ch <- prometheus.MustNewConstMetric(descCacheHits, prometheus.CounterValue, float64(st.Hits))
	ch <- prometheus.MustNewConstMetric(descCacheMisses, prometheus.CounterValue, float64(st.Misses))
	ch <- prometheus.MustNewConstMetric(descCacheEvict, prometheus.CounterValue, float64(st.Evictions))
	ch <- prometheus.MustNewConstMetric(descCacheSize, prometheus.GaugeValue, float64(st.Entries))
	ch <- prometheus.MustNewConstMetric(descCacheBytes, prometheus.GaugeValue, float64(st.Bytes))
}
