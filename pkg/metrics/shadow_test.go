package metrics_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/metrics"
)

// TestShadowHandler: a shadow rule never denies, on every request (a
// memoized result included), and each of its verdicts is counted and a
// would-deny logged; the enforced rule still decides.
func TestShadowHandler(t *testing.T) {
	policy := testengine.PolicyWith("langgraph", `    - on: "*"
      filters: {owner: user.identity}
    - on: threads.delete
      allow: user.identity == "admin"
      message: Only admins delete threads
      shadow: true
    - on: store
      allow: value.namespace[0] == user.identity
      message: Not authorized
`)
	var engines decision.Holder
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, &engines)
	var log bytes.Buffer
	env := testengine.Start(t, testengine.Options{Policy: policy, Observer: m, Log: &log})
	engines.Store(env.Engine)
	ctx := context.Background()
	del := func(tok string) *decision.Decision {
		return env.Engine.Decide(ctx, &decision.Request{Method: "DELETE", Path: "/threads/t1", Headers: map[string]string{"authorization": "Bearer " + tok}})
	}
	alice, admin := env.Token(t, "alice", nil), env.Token(t, "admin", nil)
	for range 2 {
		d := del(alice)
		if !d.Allow() || d.Handler != "*" || d.Filters["owner"] != "alice" {
			t.Fatalf("the shadow rule was enforced: %s %d %s (handler %q)", d.Outcome, d.Status, d.Reason, d.Handler)
		}
		if len(d.Shadow) != 1 || d.Shadow[0].Allowed || d.Shadow[0].Handler != "threads.delete" || d.Shadow[0].Status != 403 || !d.WouldDeny() {
			t.Fatalf("shadow verdict %+v", d.Shadow)
		}
	}
	if d := del(admin); !d.Allow() || d.WouldDeny() || len(d.Shadow) != 1 {
		t.Fatalf("admin: %s, shadow %+v", d.Outcome, d.Shadow)
	}
	// Events the shadow does not take carry no verdict.
	if d := env.Engine.Decide(ctx, &decision.Request{Method: "GET", Path: "/threads/t1", Headers: map[string]string{"authorization": "Bearer " + alice}}); len(d.Shadow) != 0 {
		t.Fatalf("a read carries a shadow verdict: %+v", d.Shadow)
	}
	expect := `
# HELP langgate_shadow_results_total Verdicts of shadow handlers (evaluated, never enforced) by policy, handler and result (would_allow, would_deny): how a rule being rolled out would decide.
# TYPE langgate_shadow_results_total counter
langgate_shadow_results_total{handler="threads.delete",policy="langgraph",result="would_allow"} 1
langgate_shadow_results_total{handler="threads.delete",policy="langgraph",result="would_deny"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expect), "langgate_shadow_results_total"); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(log.String(), "would_deny=true"); n != 2 {
		t.Fatalf("%d would-deny log lines, want 2:\n%s", n, log.String())
	}
}
