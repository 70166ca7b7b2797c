package decision

import (
	"context"

	"github.com/langgate/langgate/pkg/authctx"
	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/policy"
	"github.com/langgate/langgate/pkg/routes"
)

// Engine decides requests for one compiled configuration: one or more
// policies and the issuers, key stores and caches they use. Build makes
// one without side effects; Start commits it.
type Engine struct {
	policies []*Policy
	byName   map[string]*Policy
	// hosts maps an exact host to its policy; suffixes are "*.x" hosts,
	// longest first.
	hosts         map[string]*Policy
	suffixes      []hostSuffix
	defaultPolicy *Policy
	registry      *authn.Registry
	issuers       []*authn.Issuer
	reasonHeader  bool
	cors          *corsRules // nil without a cors section
	// signer signs x-langgate-context; nil without a context section.
	signer *authctx.Signer
	sink   sink
	// traceIdentity: Options.TraceIdentity.
	traceIdentity bool
}

// ContextKeys returns the keys that sign x-langgate-context, or nil when
// the configuration signs no context.
func (e *Engine) ContextKeys() *authctx.Keys {
	if e.signer == nil {
		return nil
	}
	return e.signer.Keys()
}

// Policy is one policy of a configuration, compiled: its route table,
// its authentication and its handlers.
type Policy struct {
	Name          string
	Table         *routes.Table
	Auth          *authn.Authenticator
	Handlers      *policy.Handlers
	Vocabulary    policy.Vocabulary
	unmatchedDeny bool
	corsPreflight bool // CORS preflights pass without a credential
	// runAssistant: a run's assistants:read must be allowed.
	runAssistant bool
	// studio admits LangGraph Studio requests for the users it holds for.
	studio *policy.Condition
	// queryReads is what the rules read of request.query: with the
	// route's own query fields, the parameters a repeat makes ambiguous.
	queryReads policy.QueryReads
	// strip lists client headers removed from every request (lower case).
	strip []string
	// ShadowOf names the policy this one shadows ("" for an enforced
	// policy); shadow is this policy's own shadow, decided beside it.
	ShadowOf string
	shadow   *Policy
	// resource is the policy's MCP endpoint as an OAuth protected
	// resource (authenticate.mcp), nil when it has none.
	resource *protectedResource
}

// BodyRoutes lists the routes on which a rule of the policy reads the
// request body: routes with an event whose value takes a field from the
// body and whose handler (or the shadow handler rolled out beside it)
// reads value. The policy's shadow policy, decided on the same requests,
// adds its own such routes after the policy's. On every other route
// langgate decides the same with or without the body, so the proxy need
// not buffer it; on these a body the proxy did not send is a denial.
func (p *Policy) BodyRoutes() []*routes.Route {
	var out []*routes.Route
	seen := map[[2]string]bool{}
	for _, q := range []*Policy{p, p.shadow} {
		if q == nil {
			continue
		}
		for _, r := range q.Table.Routes() {
			if k := [2]string{r.Method, r.Pattern}; !seen[k] && q.readsBody(r) {
				seen[k] = true
				out = append(out, r)
			}
		}
	}
	return out
}

// readsBody reports whether one of the route's events needs the body and
// goes to a handler of this policy that reads value.
func (p *Policy) readsBody(r *routes.Route) bool {
	if r.RPC != nil {
		// What a JSON-RPC request does is its body's method.
		return true
	}
	for _, ev := range r.Events {
		if !ev.NeedsBody() {
			continue
		}
		for _, h := range []*policy.Handler{p.Handlers.Select(ev.Resource, ev.Action), p.Handlers.SelectShadow(ev.Resource, ev.Action)} {
			if h != nil && h.ReadsValue() {
				return true
			}
		}
	}
	return false
}

// Policies lists the compiled policies in name order.
func (e *Engine) Policies() []*Policy { return e.policies }

// Registry returns the issuers, API key stores and token caches the
// engine's policies use.
func (e *Engine) Registry() *authn.Registry { return e.registry }

// Issuers lists the issuers the engine's policies trust.
func (e *Engine) Issuers() []*authn.Issuer { return e.issuers }

// Start commits the engine: the background work of its issuers (OIDC
// discovery, key refresh) and API key file watchers begins, until ctx
// ends. What it took over from the engine it replaces already runs and is
// left alone.
func (e *Engine) Start(ctx context.Context) { e.registry.Start(ctx) }

// Ready reports whether the engine can authenticate: every issuer it uses
// has keys.
func (e *Engine) Ready() bool {
	for _, iss := range e.issuers {
		if !iss.Ready() {
			return false
		}
	}
	return true
}

// Retire stops what this engine uses and next (which replaced it) does
// not: issuers' refresh loops, key file watchers; the counters of dropped
// token caches are carried into next's totals.
func (e *Engine) Retire(next *Engine) { e.registry.Handover(next.registry) }
