package metrics_test

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

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
# HELP langgate_shadow_results_total Verdicts of shadow handlers and shadow policies (evaluated, never enforced) by policy, handler and result: would_allow or would_deny for a shadow handler's event; agree, would_deny, would_allow, would_filter or error for a shadow policy's request, against the policy it shadows.
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

// shadowPolicies is a policy in service (current) and its candidate
// replacement (next), decided beside it.
const shadowPolicies = `authenticate:
  oidc: [{issuer: "${OIDC_ISSUER}", audiences: ["${OIDC_AUDIENCE}"]}]
  user: {identity: claims.sub}
policies:
  current:
    authorize:
      routes: langgraph
      handlers:
        - on: "*"
          filters: {owner: user.identity}
        - on: crons
          allow: "false"
`

const nextPolicy = `  next:
    shadow_of: current
    authorize:
      routes: langgraph
      handlers:
        - on: "*"
          filters: {owner: user.identity}
        - on: threads.delete
          allow: user.identity == "admin"
          message: Only admins delete threads
        - on: assistants.read
          filters: {owner: user.identity, team: "'core'"}
`

// TestShadowPolicy: a shadow policy is decided beside the policy it
// shadows and never changes what that policy enforces (the same outcome and
// the same headers as without it); each verdict compares the two and is
// counted, and a shadow policy cannot be selected.
func TestShadowPolicy(t *testing.T) {
	var engines decision.Holder
	reg := prometheus.NewRegistry()
	m := metrics.New(reg, &engines)
	var log bytes.Buffer
	env := testengine.Start(t, testengine.Options{Policy: shadowPolicies + nextPolicy, Observer: m, Log: &log})
	engines.Store(env.Engine)
	// The same issuer's tokens are accepted by an engine without the shadow.
	plain := testengine.Start(t, testengine.Options{Policy: shadowPolicies})
	alice, err := env.Issuer.Token("alice", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	plainAlice, err := plain.Issuer.Token("alice", time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		name, method, path string
		token              bool
		verdict            string
		allowed, wouldDeny bool
	}{
		{"both allow the same", "GET", "/threads/t1", true, decision.VerdictAgree, true, false},
		{"the shadow refuses an allowed request", "DELETE", "/threads/t1", true, decision.VerdictWouldDeny, true, true},
		{"the shadow allows a refused request", "POST", "/runs/crons", true, decision.VerdictWouldAllow, false, false},
		{"both allow, with other filters", "GET", "/assistants/a1", true, decision.VerdictWouldFilter, true, false},
		{"both refuse", "GET", "/threads/t1", false, decision.VerdictAgree, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			req := func(tok string) *decision.Request {
				h := map[string]string{":authority": "lg.test"}
				if c.token {
					h["authorization"] = "Bearer " + tok
				}
				return &decision.Request{Method: c.method, Path: c.path, Headers: h}
			}
			d := engines.Decide(ctx, req(alice))
			base := plain.Engine.Decide(ctx, req(plainAlice))
			if d.Allow() != c.allowed || d.Outcome != base.Outcome || d.Status != base.Status || d.Policy != "current" {
				t.Fatalf("enforced %s %d by %q, want what current alone decides: %s %d", d.Outcome, d.Status, d.Policy, base.Outcome, base.Status)
			}
			if !reflect.DeepEqual(d.Headers, base.Headers) || !reflect.DeepEqual(d.Filters, base.Filters) {
				t.Errorf("the shadow changed the enforced headers:\n got %v\nwant %v", d.Headers, base.Headers)
			}
			sp := d.ShadowPolicy
			if sp == nil || sp.Policy != "next" || sp.Verdict != c.verdict || d.WouldDeny() != c.wouldDeny {
				t.Fatalf("shadow %+v, would_deny %v; want verdict %s, would_deny %v", sp, d.WouldDeny(), c.verdict, c.wouldDeny)
			}
		})
	}
	d := engines.Decide(ctx, &decision.Request{Method: "GET", Path: "/threads/t1", Headers: map[string]string{"authorization": "Bearer " + alice},
		Context: map[string]string{decision.PolicyContextKey: "next"}})
	if d.Allow() || d.Status != 403 || !strings.Contains(d.Reason, "shadow policy") {
		t.Errorf("policy=next selected the shadow: %s %d %s", d.Outcome, d.Status, d.Reason)
	}
	expect := `
# HELP langgate_shadow_results_total Verdicts of shadow handlers and shadow policies (evaluated, never enforced) by policy, handler and result: would_allow or would_deny for a shadow handler's event; agree, would_deny, would_allow, would_filter or error for a shadow policy's request, against the policy it shadows.
# TYPE langgate_shadow_results_total counter
langgate_shadow_results_total{handler="",policy="next",result="agree"} 1
langgate_shadow_results_total{handler="*",policy="next",result="agree"} 1
langgate_shadow_results_total{handler="*",policy="next",result="would_allow"} 1
langgate_shadow_results_total{handler="assistants.read",policy="next",result="would_filter"} 1
langgate_shadow_results_total{handler="threads.delete",policy="next",result="would_deny"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expect), "langgate_shadow_results_total"); err != nil {
		t.Fatal(err)
	}
	// Disagreements are logged at info like denials; an allow both agree
	// on stays at debug.
	lines := 0
	for _, line := range strings.Split(log.String(), "\n") {
		if !strings.Contains(line, "shadow_policy=") {
			continue
		}
		lines++
		want := "level=INFO"
		if strings.Contains(line, "Verdict:agree Outcome:allowed") {
			want = "level=DEBUG"
		}
		if !strings.Contains(line, want) {
			t.Errorf("want %s: %s", want, line)
		}
	}
	if lines != 5 {
		t.Errorf("%d decision lines name the shadow policy, want 5:\n%s", lines, log.String())
	}
}
