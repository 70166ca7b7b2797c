package decision

import (
	"github.com/langgate/langgate/pkg/policy"
	"github.com/langgate/langgate/pkg/routes"
)

// Trace records every step of one decision, for `langgate check`. Its
// methods accept a nil receiver, so the request path pays nothing when no
// one asks for a trace.
type Trace struct {
	Policy    string        `json:"policy"`
	PolicyWhy string        `json:"policy_selected_by"`
	Path      string        `json:"normalized_path,omitempty"`
	Route     string        `json:"route,omitempty"`
	Events    []*EventTrace `json:"events,omitempty"`

	Outcome         string   `json:"outcome"`
	Status          int      `json:"status"`
	Reason          string   `json:"reason"`
	Detail          string   `json:"detail,omitempty"`
	Identity        string   `json:"identity,omitempty"`
	Headers         []Header `json:"headers,omitempty"`
	RemoveHeaders   []string `json:"headers_to_remove,omitempty"`
	ResponseHeaders []Header `json:"response_headers,omitempty"`
	Body            string   `json:"body,omitempty"`

	// Shadow and ShadowPolicy are the shadow handlers' and the shadow
	// policy's verdicts (Decision.Shadow, Decision.ShadowPolicy).
	Shadow       []ShadowResult `json:"shadow,omitempty"`
	ShadowPolicy *PolicyShadow  `json:"shadow_policy,omitempty"`
}

// EventTrace is one event: its value, the handler chosen and why, and the
// value of each expression the handler evaluated.
type EventTrace struct {
	Event      string         `json:"event"`
	Optional   bool           `json:"optional,omitempty"`
	Value      map[string]any `json:"value,omitempty"`
	ValueError string         `json:"value_error,omitempty"`
	Handler    string         `json:"handler,omitempty"`
	Why        string         `json:"why"`
	Steps      []policy.Step  `json:"steps,omitempty"`
	eval       policy.EvalTrace
}

func (t *Trace) policy(name, why string) {
	if t != nil {
		t.Policy, t.PolicyWhy = name, why
	}
}

func (t *Trace) route(path string, r *routes.Route) {
	if t == nil {
		return
	}
	t.Path = path
	if r != nil {
		t.Route = routeName(r)
	}
}

// routeName names a route as traces and shadow verdicts do: its method
// and pattern, and whether it is public or blocked.
func routeName(r *routes.Route) string {
	switch {
	case r.Public:
		return r.Method + " " + r.Pattern + " (public)"
	case r.Blocked:
		return r.Method + " " + r.Pattern + " (blocked)"
	}
	return r.Method + " " + r.Pattern
}

func (t *Trace) event(ev *routes.Event, p *policy.Handlers) *policy.EvalTrace {
	et := &EventTrace{Event: ev.Resource + ":" + ev.Action, Optional: ev.Optional, Value: ev.Value}
	if ev.ValueErr != nil {
		et.ValueError = ev.ValueErr.Error()
	}
	h, why := p.Explain(ev.Resource, ev.Action)
	if h != nil {
		et.Handler = h.Key
	}
	et.Why = why
	t.Events = append(t.Events, et)
	return &et.eval
}

func (t *Trace) finish(d *Decision) {
	for _, et := range t.Events {
		et.Steps = et.eval.Steps
	}
	t.Outcome, t.Status, t.Reason, t.Detail = string(d.Outcome), d.Status, d.Reason, d.Detail
	if d.User != nil {
		t.Identity = d.User.Identity
	}
	t.Headers, t.RemoveHeaders = d.Headers, d.RemoveHeaders
	t.Shadow, t.ShadowPolicy = d.Shadow, d.ShadowPolicy
	if !d.Allow() {
		t.ResponseHeaders, t.Body = d.ResponseHeaders, d.Body
	}
}
