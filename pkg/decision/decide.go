package decision

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/langgate/langgate/pkg/policy"
	"github.com/langgate/langgate/pkg/routes"
)

// DecideOptions are options for one decision beyond the request itself.
type DecideOptions struct {
	// Trace, when not nil, receives every step of the decision.
	Trace *Trace
	// Claims, when not nil, stand in for a verified token: authentication
	// is skipped and the user is built from them (langgate check --claims).
	Claims map[string]any
	// HeadersOnly says the caller reads the decision's outcome, headers
	// and response, never its Filters, Metadata or the grants' Filters and
	// Metadata (the transports). A result memoized on the user then leaves
	// those maps nil, since the headers carry them encoded, which spares
	// building them per request. Signing and a shadow policy read the maps,
	// so they are built anyway where either applies.
	HeadersOnly bool
}

// pass is one request on its way through the phases: what each phase
// learned for the next ones, and the one Decision they all fill in.
type pass struct {
	ctx  context.Context
	req  *Request
	opts DecideOptions
	tr   *Trace
	d    *Decision
	// span is the transport's span when it is recording (sampled): the
	// phases then run in child spans of tracer, and the decision is
	// recorded on it.
	span   trace.Span
	tracer trace.Tracer

	pol    *Policy
	target routes.Target
	route  *routes.Route
	params routes.Params
	// signs is set when the engine signs a context; bodySHA256 is then
	// the hex SHA-256 of a complete body langgate read.
	signs      bool
	bodySHA256 string
	// preq and in are the authorize phase's policy input, held here so
	// that a request allocates them with its pass.
	preq policy.Request
	in   policy.Input
}

// Decide runs the pipeline. It never returns an allow on an error: every
// failure becomes an explicit denial with a reason. Transports call
// Holder.Decide, which also recovers a panic.
func (e *Engine) Decide(ctx context.Context, req *Request) *Decision {
	return e.DecideWith(ctx, req, DecideOptions{})
}

// DecideWith is Decide with a trace or substitute claims.
func (e *Engine) DecideWith(ctx context.Context, req *Request, opts DecideOptions) *Decision {
	start := time.Now()
	p := &pass{ctx: ctx, req: req, opts: opts, tr: opts.Trace, d: &Decision{ID: ids.next()}, signs: e.signer != nil}
	if p.span = recording(ctx); p.span != nil {
		p.tracer = p.span.TracerProvider().Tracer(tracerScope)
	}
	e.run(p)
	e.respond(p)
	e.decideShadow(p)
	if p.span != nil {
		annotate(p.span, p.d, p.route, e.traceIdentity)
	}
	if p.tr != nil {
		p.tr.finish(p.d)
	}
	e.sink.record(ctx, req, p.d, time.Since(start))
	return p.d
}

// run takes the request through the phases until one settles it: select
// the policy, match the route (a public route is settled here),
// authenticate, fire the route's events, authorize them.
func (e *Engine) run(p *pass) {
	if !e.choose(p) {
		p.decidePolicy()
	}
}

// decidePolicy takes the request through the phases of the policy in
// p.pol (route, authenticate, events, authorize) until one settles it;
// the selected policy's shadow runs the same.
func (p *pass) decidePolicy() {
	if p.phase(SpanRoute, (*pass).matchRoute) || p.phase(SpanAuthenticate, (*pass).authenticate) ||
		p.phase(SpanResolve, (*pass).fireEvents) || p.phase(SpanAuthorize, (*pass).authorize) {
		return
	}
	// authorize settles every request that reaches it; this is a guard.
	p.d.deny(Error, 500, "Internal error", "no phase settled the request")
}

// ids issues the decision ids of this process.
var ids = newIDSource()

// idSource issues decision ids: a random per-process prefix and a counter,
// unique without a random read per request.
type idSource struct {
	prefix string
	n      atomic.Uint64
}

func newIDSource() *idSource {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return &idSource{prefix: hex.EncodeToString(b[:])}
}

func (s *idSource) next() string {
	return s.prefix + "-" + strconv.FormatUint(s.n.Add(1), 36)
}
