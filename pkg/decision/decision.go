// Package decision is langgate's transport-neutral core. One request goes
// through named phases, each in the file of its name:
//
//	select.go        which policy decides (context extension, host, default)
//	resolve.go       what the request means: normalized path, route, events
//	authenticate.go  who is asking (the policy's authn.Authenticator)
//	authorize.go     what the handlers say about every event
//	respond.go       the upstream headers of an allow, the body of a denial
//	log.go           the decision log line and the observer (metrics)
//
// decide.go runs them in order over one Decision that is created first and
// carried to the end, so every outcome, a denial included, knows its
// policy, path, user and events. Holder.Decide (holder.go) is the one entry
// point of the transports: it also renders "no configuration yet" and a
// recovered panic as denials with a decision id, a log line and a metric.
package decision

import (
	"github.com/langgate/langgate/pkg/authn"
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
	// BodyLengthUnknown is set when the headers do not describe the
	// client's body (an HTTP check request's content-length is its own):
	// an empty body is then never taken for a complete one.
	BodyLengthUnknown bool
	// Context holds per-route settings (Envoy's context_extensions).
	Context map[string]string
	// LoadBody, when set, reads the body on demand: the core calls it
	// once, after authenticating the caller, and only on a route whose
	// rules read the body, so an anonymous or unauthenticated client
	// never makes langgate buffer one (the HTTP transport). It fills in
	// Body and the Body* flags (BodyUnavailable when it cannot read one).
	LoadBody func(*Request)
}

// loadBody reads a lazily loaded body, once.
func (r *Request) loadBody() {
	if f := r.LoadBody; f != nil {
		r.LoadBody = nil
		f(r)
	}
}

// Outcome classifies a decision. Each constant's name is its value, which
// is also its metric and log label.
type Outcome string

// Outcomes.
const (
	Allowed         Outcome = "allowed"
	Public          Outcome = "public"
	Unauthenticated Outcome = "unauthenticated"
	Denied          Outcome = "denied"
	BadRequest      Outcome = "bad_request"
	Error           Outcome = "error"
	// Served: langgate answered the request itself, with a 200 (the MCP
	// endpoint's protected resource metadata); nothing reaches the upstream.
	Served Outcome = "served"
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

	User *authn.User
	// Studio is set when the request is decided for a LangGraph Studio
	// user (authorize.studio).
	Studio  bool
	Events  []routes.Event
	Handler string
	// Policy names the policy that decided ("" when none was selected).
	Policy string
	// Path is the normalized path ("" when it could not be normalized).
	Path string
	// Route is the route of the table the path matched (nil when none
	// did, or the request was settled before the route was matched).
	Route    *routes.Route
	Filters  map[string]any
	Metadata map[string]any
	// Grants are the events the upstream may run, with each one's own
	// filters (allow only; x-langgate-events).
	Grants []Grant

	// Headers are set on the upstream request (allow only), overwriting.
	Headers []Header
	// RemoveHeaders are client-sent x-langgate-* headers to strip (allow only).
	RemoveHeaders []string
	// RPC is the JSON-RPC message of a request to an MCP or A2A endpoint
	// (its method and id), when its envelope could be read; RPCError is
	// why langgate refused it (the denial's body is then that JSON-RPC
	// error).
	RPC      *routes.Call
	RPCError *routes.RPCError

	// ResponseHeaders and Body form the denial sent to the client.
	ResponseHeaders []Header
	Body            string

	// Shadow holds what the shadow handlers decided for the events they
	// would take; never enforced (config.Handler.Shadow).
	Shadow []ShadowResult
	// ShadowPolicy is what the selected policy's shadow policy decided,
	// when it has one; never enforced.
	ShadowPolicy *PolicyShadow

	// memo is set when the one event's result was memoized on the user;
	// memoEvents is then its x-langgate-events value.
	memo       *memoized
	memoEvents string
	// challenge replaces a 401's WWW-Authenticate (before its error): the
	// MCP resource's, naming its metadata.
	challenge string
}

// ShadowResult is a shadow handler's verdict on one event.
type ShadowResult struct {
	Event   string `json:"event"` // "resource:action"
	Handler string `json:"handler"`
	Allowed bool   `json:"allowed"`
	// Status is the denial's status when it would deny.
	Status int    `json:"status,omitempty"`
	Reason string `json:"reason"`
}

// WouldDeny reports whether a shadow handler would have refused an event,
// or the shadow policy an allowed request.
func (d *Decision) WouldDeny() bool {
	if d.ShadowPolicy != nil && d.ShadowPolicy.Verdict == VerdictWouldDeny {
		return true
	}
	for _, s := range d.Shadow {
		if !s.Allowed {
			return true
		}
	}
	return false
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

// deny records a denial on the decision, keeping what earlier phases
// learned (policy, path, user, events); respond renders it.
func (d *Decision) deny(o Outcome, status int, detail, reason string) {
	d.Outcome, d.Status, d.Detail, d.Reason = o, status, detail, reason
}
