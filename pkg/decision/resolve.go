package decision

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"

	"github.com/langgate/langgate/pkg/routes"
)

// headerPartial is the header Envoy adds to a check request whose body it
// buffered ("true" when it cut the body at max_request_bytes).
const headerPartial = "x-envoy-auth-partial-body"

// matchRoute is the first half of the resolve phase, before
// authentication: it normalizes the path and finds the route. A public
// route is allowed here, without a credential; a blocked one is refused.
func (p *pass) matchRoute() bool {
	target, err := routes.Normalize(p.req.Path)
	if err != nil {
		p.d.deny(BadRequest, 400, "Invalid request path", err.Error())
		return true
	}
	p.target, p.d.Path = target, target.Path
	if p.pol.resource.serve(p.d, p.req.Method, target.Path) {
		p.tr.route(target.Path, nil)
		return true
	}
	if p.pol.resource.covers(target.Path) {
		p.d.challenge = p.pol.resource.challenge
	}
	if p.pol.corsPreflight && isPreflight(p.req) {
		// A browser sends no credential with a preflight; the upstream's
		// CORS middleware answers it, and it fires no event.
		p.tr.route(target.Path, nil)
		p.d.Outcome, p.d.Status, p.d.Reason = Public, 200, "CORS preflight (authorize.cors_preflight: allow)"
		return true
	}
	p.route, p.params = p.pol.Table.Match(p.req.Method, target.Segments)
	p.d.Route = p.route
	p.tr.route(target.Path, p.route)
	switch r := p.route; {
	case r != nil && r.Public:
		p.d.Outcome, p.d.Status, p.d.Reason = Public, 200, "public route "+r.Method+" "+r.Pattern
		return true
	case r != nil && r.Blocked:
		p.d.deny(Denied, 403, "Forbidden", "route "+r.Method+" "+r.Pattern+" is blocked by the route table")
		return true
	case r != nil && r.Repeats == routes.RepeatsRefuse:
		if name, n := p.pol.repeated(r, target.Query); n > 1 {
			detail := "Ambiguous request: query parameter " + strconv.Quote(name) + " is given " + strconv.Itoa(n) + " times"
			p.d.deny(BadRequest, 400, detail, detail+" (the servers read a repeat differently; route "+r.Method+" "+r.Pattern+")")
			return true
		}
	}
	return false
}

// repeated is a query parameter given more than once that langgate reads
// on route r (a field of its events, or request.query in a rule), and how
// many times; "", 0 when there is none. Which of the values the server
// acts on depends on the server (the last for Starlette, a refusal or the
// first elsewhere), so no reading of such a request is safe.
func (p *Policy) repeated(r *routes.Route, query map[string][]string) (string, int) {
	name, n := "", 0
	for k, vs := range query {
		if len(vs) > 1 && (r.ReadsQuery(k) || p.queryReads.Reads(k)) && (name == "" || k < name) {
			name, n = k, len(vs)
		}
	}
	return name, n
}

// isPreflight reports whether a request is a CORS preflight (Fetch
// standard): OPTIONS with an Origin and the method it asks about.
func isPreflight(req *Request) bool {
	return req.Method == "OPTIONS" && req.Headers["origin"] != "" && req.Headers["access-control-request-method"] != ""
}

// fireEvents is the second half of the resolve phase, once the caller is
// known: the route's events with their values (path parameters, query,
// body). A request no route matches is settled here by the policy's
// authorize.unmatched.
func (p *pass) fireEvents() bool {
	d := p.d
	if p.route == nil {
		if p.pol.unmatchedDeny {
			d.deny(Denied, 403, "Forbidden", "no route matches "+p.req.Method+" "+p.target.Path+" and authorize.unmatched is deny")
			return true
		}
		d.Outcome, d.Status = Allowed, 200
		d.Reason = "no route matches; authenticated and allowed (authorize.unmatched: allow)"
		return true
	}
	if p.req.LoadBody != nil && p.pol.readsBody(p.route) {
		// Authenticated, on a route whose rules read the body: read it now
		// (a shadow policy that reads it reads it when it decides).
		p.req.loadBody()
	}
	body := &routes.Body{Data: p.req.Body, State: bodyState(p.req), ContentType: p.req.Headers["content-type"]}
	if p.signs && body.State == routes.BodyComplete {
		sum := sha256.Sum256(body.Data)
		p.bodySHA256 = hex.EncodeToString(sum[:])
	}
	if rpc := p.route.RPC; rpc != nil {
		call, evs, err := rpc.Fire(p.params, body)
		d.RPC = &call
		if err != nil {
			d.RPCError = err
			d.deny(BadRequest, 400, err.Message, rpc.Dialect.String()+" "+err.Error())
			return true
		}
		d.Events = evs
		return false
	}
	d.Events = p.route.Fire(p.params, p.target.Query, body)
	for i := range d.Events {
		if err := d.Events[i].ValueErr; errors.Is(err, routes.ErrAmbiguous) {
			// Two readings of what the event acts on: refused whether or not a
			// rule reads the body (the server might act on the other one).
			d.deny(BadRequest, 400, ambiguousDetail(err), err.Error())
			return true
		}
	}
	if p.pol.runAssistant {
		// authorize.run_assistant: required — the assistant check of a
		// run is one of the run's own events.
		for i := range d.Events {
			if ev := &d.Events[i]; ev.Optional && ev.Resource == "assistants" && ev.Action == "read" {
				ev.Optional = false
			}
		}
	}
	return false
}

// bodyState tells a complete body from one the proxy cut or never sent.
// It is the one place that judges a body: transports only report what
// they know (BodyPartial, BodyUnavailable, BodyLengthUnknown).
func bodyState(req *Request) routes.BodyState {
	if req.BodyUnavailable {
		return routes.BodyNotSent
	}
	if req.BodyLengthUnknown && len(req.Body) == 0 && carriesBody(req.Method) {
		// The check request carried no body; for a method that normally
		// has one, "empty" cannot be told from "not forwarded".
		return routes.BodyNotSent
	}
	if req.BodyPartial || strings.EqualFold(req.Headers[headerPartial], "true") {
		return routes.BodyTruncated
	}
	if req.BodyLengthUnknown {
		return routes.BodyComplete
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
	if len(req.Body) == 0 && req.Headers[headerPartial] == "" && carriesBody(req.Method) {
		return routes.BodyNotSent
	}
	return routes.BodyComplete
}

// carriesBody reports whether requests of method normally have a body.
func carriesBody(method string) bool {
	switch method {
	case "POST", "PUT", "PATCH", "DELETE":
		return true
	}
	return false
}

// ambiguousDetail is the client's detail for an ambiguous body: the error
// from "ambiguous request: " on, capitalized.
func ambiguousDetail(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, routes.ErrAmbiguous.Error()); i >= 0 {
		msg = msg[i:]
	}
	return strings.ToUpper(msg[:1]) + msg[1:]
}
