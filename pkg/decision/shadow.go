package decision

import (
	"fmt"
	"reflect"
)

// Verdicts of a shadow policy, compared with the decision of the policy it
// shadows.
const (
	// VerdictAgree: both allow with the same identity, filters and
	// metadata, or both refuse.
	VerdictAgree = "agree"
	// VerdictWouldDeny: the shadow refuses a request that is allowed.
	VerdictWouldDeny = "would_deny"
	// VerdictWouldAllow: the shadow allows a request that is refused.
	VerdictWouldAllow = "would_allow"
	// VerdictWouldFilter: both allow, with a different identity, filters
	// or metadata.
	VerdictWouldFilter = "would_filter"
	// VerdictError: the shadow could not decide (a panic, recovered); the
	// enforced decision is unaffected.
	VerdictError = "error"
)

// PolicyShadow is what a shadow policy (config.Policy.ShadowOf) decided
// for a request the policy it shadows decided; never enforced.
type PolicyShadow struct {
	Policy  string  `json:"policy"`
	Verdict string  `json:"verdict"`
	Outcome Outcome `json:"outcome"`
	Status  int     `json:"status"`
	// Route is the shadow's route that matched (as Trace.Route names it;
	// "" when none did), Handler its handler that decided ("" when none
	// did).
	Route   string `json:"route,omitempty"`
	Handler string `json:"handler,omitempty"`
	Reason  string `json:"reason"`
}

// decideShadow decides the request again with the selected policy's
// shadow, when it has one, and records the verdict on the decision. The
// shadow runs the same phases on the same request (its own route table,
// authentication and handlers) but builds no headers; nothing it does can
// change the enforced decision, a panic included.
func (e *Engine) decideShadow(p *pass) {
	if p.pol == nil || p.pol.shadow == nil {
		return
	}
	sh, d := p.pol.shadow, p.d
	defer func() {
		if r := recover(); r != nil {
			e.sink.log.Error("panic while deciding a shadow policy; the enforced decision stands", "policy", sh.Name, "panic", fmt.Sprint(r))
			d.ShadowPolicy = &PolicyShadow{Policy: sh.Name, Verdict: VerdictError, Outcome: Error, Status: 500, Reason: "panic recovered"}
		}
	}()
	sp := &pass{ctx: p.ctx, req: p.req, opts: DecideOptions{Claims: p.opts.Claims}, d: &Decision{ID: d.ID, Policy: sh.Name}, pol: sh}
	sp.decidePolicy() // untraced: no span, so no phase spans
	sd := sp.d
	res := &PolicyShadow{Policy: sh.Name, Verdict: VerdictAgree, Outcome: sd.Outcome, Status: sd.Status, Handler: sd.Handler, Reason: sd.Reason}
	switch allowed, would := d.Allow(), sd.Allow(); {
	case allowed && !would:
		res.Verdict = VerdictWouldDeny
	case !allowed && would:
		res.Verdict = VerdictWouldAllow
	case allowed && !sameGrant(d, sd):
		res.Verdict = VerdictWouldFilter
	}
	if sp.route != nil {
		res.Route = routeName(sp.route)
	}
	d.ShadowPolicy = res
}

// sameGrant reports whether two allows give the upstream the same thing:
// the identity, the filters and the metadata.
func sameGrant(a, b *Decision) bool {
	if (a.User == nil) != (b.User == nil) || a.User != nil && a.User.Identity != b.User.Identity {
		return false
	}
	return reflect.DeepEqual(a.Filters, b.Filters) && reflect.DeepEqual(a.Metadata, b.Metadata)
}
