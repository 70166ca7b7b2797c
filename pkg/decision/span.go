package decision

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/langgate/langgate/pkg/routes"
)

// Names of the child spans of a traced decision, one per phase that ran.
const (
	SpanRoute        = "langgate.route"        // normalize the path, match the route
	SpanAuthenticate = "langgate.authenticate" // credential to user (key set or introspection calls are its children)
	SpanResolve      = "langgate.resolve"      // the route's events and their values
	SpanAuthorize    = "langgate.authorize"    // the handlers
)

// Attributes of the transport's span that the decision sets. None holds a
// credential, a claim or a path parameter; the identity is recorded only
// with Options.TraceIdentity.
const (
	AttrDecisionID = "langgate.decision_id"
	AttrPolicy     = "langgate.policy"
	AttrRoute      = "langgate.route"    // "METHOD /pattern/{param}"
	AttrResource   = "langgate.resource" // the first event's
	AttrAction     = "langgate.action"
	AttrEvents     = "langgate.events" // every event, "resource:action"
	AttrHandler    = "langgate.handler"
	AttrOutcome    = "langgate.outcome"
	AttrStatus     = "langgate.status"
	AttrAuthFail   = "langgate.auth_failure" // the kind of authentication failure
	AttrWouldDeny  = "langgate.shadow.would_deny"
	// AttrShadowVerdict is the shadow policy's verdict (VerdictAgree, ...).
	AttrShadowVerdict = "langgate.shadow.verdict"
	AttrIdentity      = "enduser.id"
)

// phase runs one phase of a traced pass in a child span, with the span's
// context as the pass's for the phase (so that a key set fetch during
// authenticate is the authenticate span's child). An untraced pass runs
// the phase directly.
func (p *pass) phase(name string, run func(*pass) bool) bool {
	if p.span == nil {
		return run(p)
	}
	parent := p.ctx
	ctx, sp := p.tracer.Start(parent, name)
	p.ctx = ctx
	done := run(p)
	p.ctx = parent
	sp.End()
	return done
}

// tracerScope is the instrumentation scope of the phase spans.
const tracerScope = "github.com/langgate/langgate/pkg/decision"

// annotate records d on the transport's span sp; route is the route that
// matched (nil if none), identity is Options.TraceIdentity.
func annotate(sp trace.Span, d *Decision, route *routes.Route, identity bool) {
	attrs := make([]attribute.KeyValue, 0, 12)
	attrs = append(attrs,
		attribute.String(AttrDecisionID, d.ID),
		attribute.String(AttrOutcome, string(d.Outcome)),
		attribute.Int(AttrStatus, d.Status),
	)
	if d.Policy != "" {
		attrs = append(attrs, attribute.String(AttrPolicy, d.Policy))
	}
	if r := route; r != nil {
		attrs = append(attrs, attribute.String(AttrRoute, r.Method+" "+r.Pattern))
	}
	if len(d.Events) > 0 {
		evs := make([]string, len(d.Events))
		for i, ev := range d.Events {
			evs[i] = ev.Resource + ":" + ev.Action
		}
		attrs = append(attrs,
			attribute.String(AttrResource, d.Events[0].Resource),
			attribute.String(AttrAction, d.Events[0].Action),
			attribute.StringSlice(AttrEvents, evs))
	}
	if d.Handler != "" {
		attrs = append(attrs, attribute.String(AttrHandler, d.Handler))
	}
	if d.AuthFailure != 0 {
		attrs = append(attrs, attribute.String(AttrAuthFail, d.AuthFailure.String()))
	}
	if len(d.Shadow) > 0 || d.ShadowPolicy != nil {
		attrs = append(attrs, attribute.Bool(AttrWouldDeny, d.WouldDeny()))
	}
	if sp := d.ShadowPolicy; sp != nil {
		attrs = append(attrs, attribute.String(AttrShadowVerdict, sp.Verdict))
	}
	if identity && d.User != nil {
		attrs = append(attrs, attribute.String(AttrIdentity, d.User.Identity))
	}
	sp.SetAttributes(attrs...)
	if d.Outcome == Error {
		// A denial is the service working; an error is langgate failing.
		sp.SetStatus(codes.Error, d.Reason)
	}
}

// recording returns the span in ctx when it is recording, else nil: only
// a sampled request pays for phase spans and attributes.
func recording(ctx context.Context) trace.Span {
	if sp := trace.SpanFromContext(ctx); sp.IsRecording() {
		return sp
	}
	return nil
}
