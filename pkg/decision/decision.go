// Package decision is langgate's transport-neutral core: Decide takes one
// request (method, raw path, headers, body, context) through the named
// phases normalize → authenticate → resolve events → authorize → respond,
// and returns a Decision that the gRPC and HTTP adapters translate.
package decision

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/policy"
	"github.com/langgate/langgate/pkg/routes"
)

// Request is one request to decide, as any transport delivers it.
type Request struct {
	Method string
	// Path is the raw :path, query included, nothing decoded.
	Path string
	// Headers have lower-case names; repeated headers joined with ",".
	Headers map[string]string
	// Body is what the proxy forwarded of the request body.
	Body []byte
	// BodyPartial is set when the transport knows the body was cut.
	BodyPartial bool
	// BodyUnavailable is set when the transport never carries the body
	// (nginx auth_request): rules that need it fail closed.
	BodyUnavailable bool
	// Context holds per-route settings (Envoy's context_extensions).
	Context map[string]string
}

// Outcome classifies a decision; its values double as bounded labels.
type Outcome string

// Outcomes.
const (
	Allowed       Outcome = "allowed"
	Public        Outcome = "public"
	Unauthorized  Outcome = "unauthenticated"
	Forbidden     Outcome = "denied"
	BadRequest    Outcome = "bad_request"
	Unavailable   Outcome = "error"
	headerPartial         = "x-envoy-auth-partial-body"
)

// Decision is the answer for one request.
type Decision struct {
	// ID identifies the decision in logs and Envoy's dynamic metadata.
	ID      string
	Outcome Outcome
	// Status is 200 on allow, else the HTTP status of the denial.
	Status int
	// Detail is the client-facing denial text ({"detail": ...}).
	Detail string
	// Reason explains the outcome for operators; never secret.
	Reason string
	// AuthFailure is set when authentication failed, AuthReason says which
	// check refused (a short fixed text, never the credential).
	AuthFailure authn.Kind
	AuthReason  string

	User    *policy.User
	Events  []routes.Event
	Handler string
	// Policy names the policy that decided ("" when none was selected).
	Policy string
	// Path is the normalized path.
	Path     string
	Filters  map[string]any
	Metadata map[string]any

	// Headers are set on the upstream request (allow only), overwriting.
	Headers []Header
	// RemoveHeaders are client-sent x-langgate-* headers to strip (allow only).
	RemoveHeaders []string
	// ResponseHeaders and Body form the denial sent to the client.
	ResponseHeaders []Header
	Body            string
}

// Allow reports whether the request may proceed.
func (d *Decision) Allow() bool { return d.Outcome == Allowed || d.Outcome == Public }

// Resource returns the first event's resource, or "".
func (d *Decision) Resource() string {
	if len(d.Events) == 0 {
		return ""
	}
	return d.Events[0].Resource
}

// Action returns the first event's action, or "".
func (d *Decision) Action() string {
	if len(d.Events) == 0 {
		return ""
	}
	return d.Events[0].Action
}

// Engine decides requests for one compiled configuration: one or more
// policies and the issuers they share.
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
	observer      Observer
	logOpts       LogOptions
	log           *slog.Logger
	ids           idSource
}

type hostSuffix struct {
	suffix string // ".example.com"
	policy *Policy
}

// Policy is one compiled policy: route table, authentication, handlers.
type Policy struct {
	Name          string
	Table         *routes.Table
	Auth          *authn.Authenticator
	Handlers      *policy.Policy
	Vocabulary    policy.Vocabulary
	unmatchedDeny bool
	// strip lists client headers removed from every request (lower case).
	strip []string
}

// Policies lists the compiled policies in name order.
func (e *Engine) Policies() []*Policy { return e.policies }

// Registry returns the issuers the policies share.
func (e *Engine) Registry() *authn.Registry { return e.registry }

// PolicyContextKey is the context extension that selects a policy.
const PolicyContextKey = "policy"

// Options for one decision beyond the request itself.
type DecideOptions struct {
	// Trace, when not nil, receives every step of the decision.
	Trace *Trace
	// Claims, when not nil, stand in for a verified token: authentication
	// is skipped and the user is built from them (langgate check --claims).
	Claims map[string]any
}

// Decide runs the pipeline. It never panics and never returns an allow on
// an error: every failure becomes an explicit denial with a reason.
func (e *Engine) Decide(ctx context.Context, req *Request) *Decision {
	return e.DecideWith(ctx, req, DecideOptions{})
}

// DecideWith is Decide with a trace or substitute claims.
func (e *Engine) DecideWith(ctx context.Context, req *Request, opts DecideOptions) *Decision {
	start := time.Now()
	d := e.decide(ctx, req, opts)
	d.ID = e.ids.next()
	if e.reasonHeader && !d.Allow() && d.Reason != "" {
		d.ResponseHeaders = append(d.ResponseHeaders, Header{Name: HeaderReason, Value: shortReason(d.Reason)})
	}
	if opts.Trace != nil {
		opts.Trace.finish(d)
	}
	took := time.Since(start)
	if e.observer != nil {
		e.observer.Observe(d, took)
	}
	e.logDecision(ctx, req, d, took)
	return d
}

// selectPolicy picks the policy for a request: the context extension
// `policy`, else the :authority host, else the default. A selector that
// names no policy is an error, never a fallback to something looser.
func (e *Engine) selectPolicy(req *Request) (*Policy, string, error) {
	if name, ok := req.Context[PolicyContextKey]; ok {
		if p := e.byName[name]; p != nil {
			return p, "context extension policy=" + name, nil
		}
		return nil, "", fmt.Errorf("context extension policy=%q names no policy", name)
	}
	host := req.Headers[":authority"]
	if host == "" {
		host = req.Headers["host"]
	}
	// A trailing dot names the same host (a fully qualified name): it must
	// not fall through to a looser default.
	host = strings.TrimSuffix(strings.ToLower(stripPort(host)), ".")
	if p := e.hosts[host]; p != nil {
		return p, "host " + host, nil
	}
	for _, s := range e.suffixes {
		if strings.HasSuffix(host, s.suffix) && len(host) > len(s.suffix) {
			return s.policy, "host " + host + " matches *" + s.suffix, nil
		}
	}
	if e.defaultPolicy != nil {
		return e.defaultPolicy, "default policy", nil
	}
	return nil, "", fmt.Errorf("no policy for host %q and no default_policy", host)
}

func stripPort(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && !strings.HasSuffix(host, "]") {
		return host[:i]
	}
	return strings.Trim(host, "[]")
}

func (e *Engine) decide(ctx context.Context, req *Request, opts DecideOptions) *Decision {
	tr := opts.Trace
	pol, why, err := e.selectPolicy(req)
	if err != nil {
		return deny(Forbidden, 403, "Forbidden", err.Error())
	}
	tr.policy(pol.Name, why)

	// Phase 1: normalize.
	target, err := routes.Normalize(req.Path)
	if err != nil {
		return deny(BadRequest, 400, "Invalid request path", err.Error())
	}
	route, params := pol.Table.Match(req.Method, target.Segments)
	tr.route(target.Path, route)
	if route != nil && route.Public {
		d := &Decision{Outcome: Public, Status: 200, Path: target.Path, Policy: pol.Name, Reason: "public route " + route.Method + " " + route.Pattern}
		d.RemoveHeaders = pol.headersToRemove(req.Headers, nil)
		return d
	}
	if route != nil && route.Blocked {
		d := deny(Forbidden, 403, "Forbidden", "route "+route.Method+" "+route.Pattern+" is blocked by the route table")
		d.Path, d.Policy = target.Path, pol.Name
		return d
	}

	// Phase 2: authenticate.
	var user *policy.User
	if opts.Claims != nil {
		user, err = pol.Auth.FromClaims(opts.Claims)
	} else {
		// The policy's credential locations (Authorization by default,
		// other headers, cookies, the query when enabled) and kinds (JWT,
		// opaque token, API key).
		user, err = pol.Auth.AuthenticateRequest(ctx, req.Headers, target.Query)
	}
	if err != nil {
		ae, ok := authn.AsError(err)
		if !ok {
			ae = &authn.Error{Kind: authn.KindInvalid, Reason: "verification failed", Err: err}
		}
		d := deny(Unauthorized, 401, ae.Detail(), ae.Error())
		d.AuthFailure, d.AuthReason = ae.Kind, ae.Reason
		d.Path, d.Policy = target.Path, pol.Name
		// RFC 6750 §3.1: no error code when the request had no credential.
		challenge := `Bearer realm="langgate"`
		if ae.Kind != authn.KindMissing {
			challenge += `, error="invalid_token"`
		}
		d.ResponseHeaders = append(d.ResponseHeaders, Header{Name: "www-authenticate", Value: challenge})
		return d
	}
	if !headerSafe(user.Identity) {
		d := deny(Unauthorized, 401, "Invalid token", "identity contains characters that cannot be sent in a header")
		d.AuthFailure, d.AuthReason = authn.KindInvalid, "identity not header-safe"
		return d
	}
	if err := ctx.Err(); err != nil {
		return deny(Unavailable, 503, "Request cancelled", "context ended: "+err.Error())
	}

	// Phase 3: resolve events.
	d := &Decision{User: user, Path: target.Path, Policy: pol.Name}
	if route == nil {
		if pol.unmatchedDeny {
			d.Outcome, d.Status, d.Detail = Forbidden, 403, "Forbidden"
			d.Reason = "no route matches " + req.Method + " " + target.Path + " and authorize.unmatched is deny"
			d.ResponseHeaders, d.Body = denialBody(d.Detail)
			return d
		}
		d.Reason = "no route matches; authenticated and allowed (authorize.unmatched: allow)"
		return pol.respond(req, d)
	}
	body := &routes.Body{Data: req.Body, State: bodyState(req)}
	d.Events = route.Fire(params, target.Query, body)

	// Phase 4: authorize every event; any denial denies.
	preq := &policy.Request{Method: req.Method, Path: target.Path, Headers: req.Headers, Query: target.Query}
	var reasons []string
	for i := range d.Events {
		ev := &d.Events[i]
		in := &policy.Input{User: user, Request: preq, Context: req.Context, Event: ev}
		if tr != nil {
			in.Trace = tr.event(ev, pol.Handlers)
		}
		res := pol.Handlers.Evaluate(in)
		if i == 0 && res.Handler != nil {
			d.Handler = res.Handler.Key
		}
		if len(d.Events) == 1 {
			d.Reason = res.Reason
		} else {
			reasons = append(reasons, ev.Resource+":"+ev.Action+": "+res.Reason)
			d.Reason = strings.Join(reasons, "; ")
		}
		if !res.Allowed {
			if res.Handler != nil {
				d.Handler = res.Handler.Key
			}
			d.Outcome, d.Status, d.Detail = Forbidden, res.Status, res.Detail
			d.ResponseHeaders, d.Body = denialBody(d.Detail)
			return d
		}
		if d.Filters, err = merge(d.Filters, res.Filters); err != nil {
			return deny(Forbidden, 403, "Forbidden", "filters of "+ev.Resource+":"+ev.Action+": "+err.Error())
		}
		if d.Metadata, err = merge(d.Metadata, res.Metadata); err != nil {
			return deny(Forbidden, 403, "Forbidden", "metadata of "+ev.Resource+":"+ev.Action+": "+err.Error())
		}
	}
	return pol.respond(req, d)
}

// respond builds the upstream headers of an allowed decision.
func (p *Policy) respond(req *Request, d *Decision) *Decision {
	u := d.User
	userJSON, perms, err2 := u.HeaderJSON(asciiJSON)
	filters, err3 := asciiJSON(orEmpty(d.Filters))
	metadata, err4 := asciiJSON(orEmpty(d.Metadata))
	if err := errors.Join(err2, err3, err4); err != nil {
		return deny(Forbidden, 403, "Forbidden", "encoding headers: "+err.Error())
	}
	d.Outcome, d.Status = Allowed, 200
	d.Headers = []Header{
		{HeaderUserID, u.Identity},
		{HeaderUser, userJSON},
		{HeaderPermissions, perms},
		{HeaderFilters, filters},
		{HeaderMetadata, metadata},
	}
	if len(d.Events) > 0 {
		d.Headers = append(d.Headers, Header{HeaderResource, d.Events[0].Resource}, Header{HeaderAction, d.Events[0].Action})
	}
	d.RemoveHeaders = p.headersToRemove(req.Headers, d.Headers)
	return d
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// headersToRemove lists the x-langgate-* headers the client sent that
// langgate does not set itself, plus the route table's dangerous headers:
// they are removed, so nothing langgate did not write reaches the upstream
// under its prefix. Headers langgate sets are overwritten instead (Envoy
// applies removals after sets, so a header must never be in both lists).
func (p *Policy) headersToRemove(h map[string]string, set []Header) []string {
	var out []string
	for name := range h {
		if !strings.HasPrefix(name, HeaderPrefix) {
			if slices.Contains(p.strip, name) {
				out = append(out, name)
			}
			continue
		}
		owned := false
		for _, s := range set {
			if s.Name == name {
				owned = true
				break
			}
		}
		if !owned {
			out = append(out, name)
		}
	}
	return out
}

// merge combines the filters (or metadata) of several events; the same key
// with different values cannot be expressed as one filter and is refused.
func merge(into, add map[string]any) (map[string]any, error) {
	if len(add) == 0 {
		return into, nil
	}
	if into == nil {
		return add, nil
	}
	for k, v := range add {
		if old, ok := into[k]; ok && !reflect.DeepEqual(old, v) {
			return nil, fmt.Errorf("key %q has conflicting values across events", k)
		}
		into[k] = v
	}
	return into, nil
}

// bodyState tells a complete body from one the proxy cut or never sent.
func bodyState(req *Request) routes.BodyState {
	if req.BodyUnavailable {
		return routes.BodyNotSent
	}
	if req.BodyPartial || strings.EqualFold(req.Headers[headerPartial], "true") {
		return routes.BodyTruncated
	}
	cl, hasLen := req.Headers["content-length"]
	if hasLen {
		n, err := strconv.ParseInt(strings.TrimSpace(cl), 10, 64)
		switch {
		case err != nil || n < 0:
			return routes.BodyTruncated // unknown length: never trust as complete
		case n > 0 && len(req.Body) == 0:
			return routes.BodyNotSent
		case int64(len(req.Body)) < n:
			return routes.BodyTruncated
		}
		return routes.BodyComplete
	}
	if len(req.Body) == 0 && req.Headers["transfer-encoding"] != "" {
		return routes.BodyNotSent
	}
	// HTTP/2 and HTTP/3 requests need no content-length. Envoy marks every
	// body it buffered with x-envoy-auth-partial-body (true or false, and a
	// client cannot send that header through it); an empty body without
	// the mark on a method that carries one may be a body Envoy was never
	// asked to forward, so it is never taken for a complete, empty one.
	if len(req.Body) == 0 && req.Headers[headerPartial] == "" {
		switch req.Method {
		case "POST", "PUT", "PATCH", "DELETE":
			return routes.BodyNotSent
		}
	}
	return routes.BodyComplete
}

func deny(o Outcome, status int, detail, reason string) *Decision {
	d := &Decision{Outcome: o, Status: status, Detail: detail, Reason: reason}
	d.ResponseHeaders, d.Body = denialBody(detail)
	return d
}

func denialBody(detail string) ([]Header, string) {
	body, err := asciiJSON(map[string]string{"detail": detail})
	if err != nil {
		body = `{"detail":"Forbidden"}`
	}
	return []Header{{Name: "content-type", Value: "application/json"}}, body
}

// idSource issues decision ids: a random per-process prefix and a counter,
// unique without a random read per request.
type idSource struct {
	prefix string
	n      atomic.Uint64
}

func newIDSource() idSource {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return idSource{prefix: hex.EncodeToString(b[:])}
}

func (s *idSource) next() string {
	return s.prefix + "-" + strconv.FormatUint(s.n.Add(1), 36)
}

// traceID returns the trace id of a W3C traceparent header
// ("00-<32 hex>-<16 hex>-<2 hex>"), or "" when it is malformed.
func traceID(tp string) string {
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' {
		return ""
	}
	id := tp[3:35]
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return ""
		}
	}
	if id == "00000000000000000000000000000000" {
		return ""
	}
	return id
}

// Observer is told about every decision (the metrics package is one).
type Observer interface {
	Observe(d *Decision, took time.Duration)
}

// LogOptions choose which decisions are logged at info level: every
// denial, and allows when LogAllows, sampled at AllowSampleRate (0..1).
// Decisions not chosen are logged at debug level.
type LogOptions struct {
	LogAllows       bool
	AllowSampleRate float64
}

func (e *Engine) logDecision(ctx context.Context, req *Request, d *Decision, took time.Duration) {
	level := slog.LevelDebug
	switch {
	case !d.Allow():
		level = slog.LevelInfo
	case e.logOpts.LogAllows && (e.logOpts.AllowSampleRate >= 1 || mrand.Float64() < e.logOpts.AllowSampleRate): //nolint:gosec // log sampling, not security
		level = slog.LevelInfo
	}
	if !e.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("decision_id", d.ID),
		slog.String("request_id", req.Headers["x-request-id"]),
		slog.String("method", req.Method),
		slog.String("path", d.Path),
		slog.String("outcome", string(d.Outcome)),
		slog.String("policy", d.Policy),
		slog.Int("status", d.Status),
		slog.String("reason", d.Reason),
		slog.Duration("latency", took),
	}
	if tid := traceID(req.Headers["traceparent"]); tid != "" {
		attrs = append(attrs, slog.String("trace_id", tid))
	}
	if d.User != nil {
		attrs = append(attrs, slog.String("identity", d.User.Identity))
	}
	if len(d.Events) > 0 {
		evs := make([]string, len(d.Events))
		for i, ev := range d.Events {
			evs[i] = ev.Resource + ":" + ev.Action
		}
		attrs = append(attrs, slog.Any("events", evs), slog.String("handler", d.Handler))
	}
	e.log.LogAttrs(context.WithoutCancel(ctx), level, "decision", attrs...)
}
