package decision

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/policy"
	"github.com/langgate/langgate/pkg/routes"
)

// authorize is the authorize phase: the handler LangGraph would run for
// each event, in order. A denial of one of the route's events denies the
// request; an optional event (one the server fires only in some cases)
// that its handler denies is left out of the grants instead, so the
// upstream adapter refuses it if the server fires it. The filters and
// metadata of the route's events are merged into the request's; every
// allowed event's filters are kept per event in the grants.
func (p *pass) authorize() bool {
	d := p.d
	p.preq = policy.Request{Method: p.req.Method, Path: p.target.Path, Headers: p.req.Headers, Query: p.target.Query}
	var reasons []string
	for i := range d.Events {
		ev := &d.Events[i]
		p.in = policy.Input{User: d.User, Request: &p.preq, Context: p.req.Context, Event: ev, Studio: d.Studio}
		in := &p.in
		if p.tr != nil {
			in.Trace = p.tr.event(ev, p.pol.Handlers)
		}
		var res policy.Result
		var name string
		if m, events := p.memoized(in); m != nil && !p.single(ev) {
			// One of several events (MCP's, A2A's): the handler's result
			// without its CEL; the headers are built for the request.
			res = m.result()
		} else if m != nil {
			res, d.memo, d.memoEvents = m.res, m, events // the maps nil
			if !p.opts.HeadersOnly || p.signs || p.pol.shadow != nil {
				res = m.result()
			}
			if events != "" {
				// The events header begins {"resource:action": no allocation.
				name = events[2 : 3+len(ev.Resource)+len(ev.Action)]
			}
		} else {
			res = p.pol.Handlers.Evaluate(in)
		}
		if name == "" {
			name = ev.Resource + ":" + ev.Action
		}
		if sh := res.Shadow; sh != nil {
			s := ShadowResult{Event: name, Handler: sh.Handler.Key, Allowed: sh.Allowed, Reason: sh.Reason}
			if !sh.Allowed {
				s.Status = sh.Status
			}
			d.Shadow = append(d.Shadow, s)
		}
		if res.Handler != nil && (i == 0 || !res.Allowed && !ev.Optional) {
			d.Handler = res.Handler.Key
		}
		reason := res.Reason
		if ev.Optional && !res.Allowed {
			reason += " (optional: not granted)"
		}
		if len(d.Events) == 1 {
			d.Reason = reason
		} else {
			reasons = append(reasons, ev.Resource+":"+ev.Action+": "+reason)
			d.Reason = strings.Join(reasons, "; ")
		}
		if !res.Allowed {
			if ev.Optional {
				continue
			}
			d.deny(Denied, res.Status, res.Detail, d.Reason)
			return true
		}
		var md map[string]any
		if !ev.Optional || ev.Inner {
			md = res.Metadata
		}
		g, err := d.grant(name, res.Filters, md, res.NamespacePrefix)
		if err != nil {
			if ev.Optional {
				d.revoke(name)
				continue
			}
			d.deny(Denied, 403, "Forbidden", "filters of "+name+": "+err.Error())
			return true
		}
		g.bindValues(bindEvent(ev, res.Handler))
		if ev.Optional {
			if ev.Inner && len(md) > 0 {
				// An in-process call's write: the adapter stamps the
				// request's metadata on it (its grant carries it too).
				merged, err := merge(d.Metadata, md)
				if err != nil {
					d.revoke(name)
					continue
				}
				d.Metadata = merged
			}
			continue
		}
		if d.Filters, err = merge(d.Filters, res.Filters); err != nil {
			d.deny(Denied, 403, "Forbidden", "filters of "+name+": "+err.Error())
			return true
		}
		if d.Metadata, err = merge(d.Metadata, res.Metadata); err != nil {
			d.deny(Denied, 403, "Forbidden", "metadata of "+name+": "+err.Error())
			return true
		}
	}
	d.Outcome, d.Status = Allowed, 200
	return true
}

// memoKey names a handler's result for one user: the handler, the event
// it ran for (only when an expression reads resource or action, so that
// the global handler is one entry for every event it takes), and whether
// the user was seen as a Studio user. The common case, a handler that
// reads neither for a user who is not, is keyed by the handler alone.
type memoKey struct {
	h                *policy.Handler
	resource, action string
	studio           bool
}

// memoized is a pure handler's result for a user, and the JSON of the
// upstream headers it makes (when it allows): what the user's next request
// with one event the handler takes reuses instead of running CEL and
// encoding JSON again. It is held as long as the user is cached, so it
// keeps the filters and metadata as key-value pairs (32 bytes for the seed
// policy's {owner: ...}) instead of maps (336 bytes); result builds the
// maps for a request whose caller reads them (DecideOptions.HeadersOnly).
type memoized struct {
	res               policy.Result // Filters and Metadata nil: see the pairs
	filters, metadata []pair
	sameMetadata      bool // metadata is the filters
	filtersJSON       string
	metadataJSON      string
	// grant is the event's part of x-langgate-events, {"filters": ...}.
	grant string
	err   error
}

// pair is one key of a memoized map.
type pair struct {
	key string
	val any
}

// pairsOf is m as pairs: nil for a nil map, empty for an empty one.
func pairsOf(m map[string]any) []pair {
	if m == nil {
		return nil
	}
	out := make([]pair, 0, len(m))
	for k, v := range m {
		out = append(out, pair{k, v})
	}
	return out
}

// mapOf is the map of pairs (a new one: the caller may keep it).
func mapOf(ps []pair) map[string]any {
	if ps == nil {
		return nil
	}
	m := make(map[string]any, len(ps))
	for _, p := range ps {
		m[p.key] = p.val
	}
	return m
}

// result is the memoized result, with maps of its own.
func (m *memoized) result() policy.Result {
	r := m.res
	r.Filters = mapOf(m.filters)
	if r.Metadata = r.Filters; !m.sameMetadata {
		r.Metadata = mapOf(m.metadata)
	}
	return r
}

// single reports whether ev is the request's one event, which a memoized
// result answers whole (its x-langgate-events too).
func (p *pass) single(ev *routes.Event) bool {
	return len(p.d.Events) == 1 && !ev.Optional
}

// memoized returns the memoized result for in, computing it on the
// user's first such request, when its handler is pure and nothing traces
// the evaluation; nil otherwise. For the request's single event it also
// returns the x-langgate-events value, whose first key is the event's
// name.
func (p *pass) memoized(in *policy.Input) (*memoized, string) {
	d := p.d
	ev := in.Event
	if p.tr != nil || d.User == nil {
		return nil, ""
	}
	h := p.pol.Handlers.Select(ev.Resource, ev.Action)
	if h == nil || !h.Pure() || p.pol.Handlers.SelectShadow(ev.Resource, ev.Action) != nil {
		// (A shadow being rolled out is evaluated on every request.)
		return nil, ""
	}
	compute := func() any {
		m := &memoized{res: p.pol.Handlers.Evaluate(in)}
		if m.res.Allowed {
			var e1, e2, e3 error
			filters, e1 := asciiJSON(orEmpty(m.res.Filters))
			m.grant, e2 = grantJSON(Grant{Filters: m.res.Filters, NamespacePrefix: m.res.NamespacePrefix}, filters)
			if e2 == nil {
				// The grant begins {"filters":<filters>: one string for both.
				filters = m.grant[len(`{"filters":`):][:len(filters)]
			}
			m.filtersJSON, m.metadataJSON = filters, filters
			m.filters = pairsOf(m.res.Filters)
			// {owner: identity} twice, the seed policy's: kept once.
			if m.sameMetadata = reflect.DeepEqual(m.res.Filters, m.res.Metadata); !m.sameMetadata {
				m.metadataJSON, e3 = asciiJSON(orEmpty(m.res.Metadata))
				m.metadata = pairsOf(m.res.Metadata)
			}
			m.err = errors.Join(e1, e2, e3)
		}
		m.res.Filters, m.res.Metadata = nil, nil
		return m
	}
	var v any
	switch {
	case h.ReadsEvent():
		v = authn.Memo(d.User, memoKey{h: h, resource: ev.Resource, action: ev.Action, studio: d.Studio}, compute)
	case d.Studio:
		v = authn.Memo(d.User, memoKey{h: h, studio: true}, compute)
	default:
		// The common key, the handler alone: a pointer, stored unboxed.
		v = authn.Memo(d.User, h, compute)
	}
	m := v.(*memoized) //nolint:forcetypeassert // memoKey values are *memoized
	if !m.res.Allowed || m.err != nil || !p.single(ev) {
		return m, ""
	}
	// One allocation: the event's name is a substring of it.
	return m, `{"` + ev.Resource + ":" + ev.Action + `":` + m.grant + `}`
}

// Grant is one event the upstream may run for this request, with what its
// handler returned: filters (nil when none) and, for a store event, the
// labels to put before the namespace (nil when none).
type Grant struct {
	Event           string // "resource:action"
	Filters         map[string]any
	Metadata        map[string]any // the route's own events only
	NamespacePrefix []string
	// Values are the values the event may run on, one object per firing
	// (from a JSON pointer into the event's value to what langgate read
	// there; see bindEvent), unless AnyValue: a firing bound nothing.
	Values   []map[string]any
	AnyValue bool
}

// grant adds an allowed event and returns its grant; the same event
// fired twice (the runs of a batch) must agree on what its handler
// returned.
func (d *Decision) grant(name string, filters, metadata map[string]any, prefix []string) (*Grant, error) {
	for i := range d.Grants {
		if g := &d.Grants[i]; g.Event == name {
			if !slices.Equal(g.NamespacePrefix, prefix) {
				return nil, fmt.Errorf("namespace_prefix differs across events")
			}
			var err error
			if g.Filters, err = merge(g.Filters, filters); err != nil {
				return nil, err
			}
			g.Metadata, err = merge(g.Metadata, metadata)
			return g, err
		}
	}
	// merge never modifies a map, so the grant may share the handler's
	// (and the request's merged filters may be this very map).
	d.Grants = append(d.Grants, Grant{Event: name, Filters: filters, Metadata: metadata, NamespacePrefix: prefix})
	return &d.Grants[len(d.Grants)-1], nil
}

// revoke removes an event's grant.
func (d *Decision) revoke(name string) {
	d.Grants = slices.DeleteFunc(d.Grants, func(g Grant) bool { return g.Event == name })
}

// merge combines the filters (or metadata) of several events; the same key
// with different values cannot be expressed as one filter and is refused.
// It never modifies its arguments (a grant may hold either map): the
// common single-event case returns add itself, without a copy.
func merge(into, add map[string]any) (map[string]any, error) {
	if len(add) == 0 {
		return into, nil
	}
	if into == nil {
		return add, nil
	}
	out := maps.Clone(into)
	for k, v := range add {
		if old, ok := out[k]; ok && !reflect.DeepEqual(old, v) {
			return nil, fmt.Errorf("key %q has conflicting values across events", k)
		}
		out[k] = v
	}
	return out, nil
}
