package metrics_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/metrics"
)

// TestMetricsAfterKnownDecisions drives a known sequence of decisions
// through a real engine and checks the scraped values.
func TestMetricsAfterKnownDecisions(t *testing.T) {
	var engines decision.Holder
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, &engines)
	env := testengine.Start(t, testengine.Options{Observer: m})
	engines.Store(env.Engine)
	m.Reloaded(true, "0123456789abcdef", time.Unix(1_800_000_000, 0))
	m.Reloaded(false, "", time.Now())

	alice := env.Token(t, "alice", nil)
	bob := env.Token(t, "bob", nil)
	ctx := context.Background()
	req := func(method, path, token, body string) *decision.Request {
		h := map[string]string{"content-type": "application/json"}
		if token != "" {
			h["authorization"] = "Bearer " + token
		}
		return &decision.Request{Method: method, Path: path, Headers: h, Body: []byte(body)}
	}
	put := `{"namespace":["alice"],"key":"k","value":{}}`
	for _, r := range []*decision.Request{
		req("POST", "/threads", alice, "{}"),        // allowed
		req("POST", "/threads", alice, "{}"),        // allowed (cache hit)
		req("GET", "/threads/1", bob, ""),           // allowed
		req("PUT", "/store/items", bob, put),        // denied 403
		req("GET", "/threads/1", "", ""),            // 401 missing
		req("GET", "/threads/1", "not.a.token", ""), // 401 invalid
		req("GET", "/ok", "", ""),                   // public
		req("GET", "/threads/%zz", alice, ""),       // 400
	} {
		env.Engine.Decide(ctx, r)
	}

	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"allowed", "200", "langgraph", "threads", "create"}, 2},
		{[]string{"allowed", "200", "langgraph", "threads", "read"}, 1},
		{[]string{"denied", "403", "langgraph", "store", "put"}, 1},
		{[]string{"unauthenticated", "401", "langgraph", "", ""}, 2},
		{[]string{"public", "200", "langgraph", "", ""}, 1},
		{[]string{"bad_request", "400", "langgraph", "", ""}, 1}, // a denial keeps its policy
	} {
		got := testutil.ToFloat64(m.Decisions().WithLabelValues(c.labels...))
		if got != c.want {
			t.Errorf("langgate_decisions_total%v = %v, want %v", c.labels, got, c.want)
		}
	}
	expect := `
# HELP langgate_authentication_failures_total Requests refused with 401, by kind (missing, invalid, unavailable), the check that refused (expired, bad signature, untrusted issuer, ...) and policy.
# TYPE langgate_authentication_failures_total counter
langgate_authentication_failures_total{kind="invalid",policy="langgraph",reason="malformed token"} 1
langgate_authentication_failures_total{kind="missing",policy="langgraph",reason="no authorization header"} 1
# HELP langgate_config_info The configuration in service: 1 for its SHA-256 (first 16 hex digits).
# TYPE langgate_config_info gauge
langgate_config_info{sha256="0123456789abcdef"} 1
# HELP langgate_config_loaded_timestamp_seconds When the configuration in service was loaded (Unix time).
# TYPE langgate_config_loaded_timestamp_seconds gauge
langgate_config_loaded_timestamp_seconds 1.8e+09
# HELP langgate_config_reloads_total Configuration loads by result (success, error); a failed reload keeps the last good configuration.
# TYPE langgate_config_reloads_total counter
langgate_config_reloads_total{result="error"} 1
langgate_config_reloads_total{result="success"} 1
# HELP langgate_token_cache_hits_total Verified-token cache hits.
# TYPE langgate_token_cache_hits_total counter
langgate_token_cache_hits_total 2
# HELP langgate_token_cache_entries Users in the verified-token caches.
# TYPE langgate_token_cache_entries gauge
langgate_token_cache_entries 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expect),
		"langgate_authentication_failures_total", "langgate_config_info", "langgate_config_loaded_timestamp_seconds",
		"langgate_config_reloads_total", "langgate_token_cache_hits_total", "langgate_token_cache_entries"); err != nil {
		t.Error(err)
	}
	// Key set state of the test issuer, and the latency histogram.
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range fams {
		seen[f.GetName()] = true
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				// Bounded labels: never an identity or a path.
				if v := l.GetValue(); v == "alice" || v == "bob" || strings.HasPrefix(v, "/") {
					t.Errorf("%s has an unbounded label %s=%q", f.GetName(), l.GetName(), v)
				}
			}
			if f.GetName() == "langgate_jwks_fetches_total" && mt.GetLabel()[1].GetValue() == "success" && mt.GetCounter().GetValue() < 1 {
				t.Errorf("no successful key fetch counted: %v", mt)
			}
		}
	}
	for _, name := range []string{"langgate_decision_duration_seconds", "langgate_jwks_fetches_total", "langgate_issuer_ready",
		"langgate_build_info", "go_goroutines", "process_cpu_seconds_total", "langgate_token_cache_misses_total",
		"langgate_jwks_keys", "langgate_jwks_refetch_rate_limited_total", "langgate_jwks_unknown_kid_cached_total"} {
		if !seen[name] {
			t.Errorf("%s not exported", name)
		}
	}
	if n := testutil.CollectAndCount(m.Latency()); n != 5 {
		t.Errorf("latency series for %d outcomes, want 5", n)
	}
}
