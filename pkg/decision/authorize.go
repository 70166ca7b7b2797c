package decision

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/langgate/langgate/pkg/policy"
)

// authorize is the authorize phase: the handler LangGraph would run for
// each event, in order. Any denial denies the request; the filters and
// metadata of every event are merged.
func (p *pass) authorize() bool {
	d := p.d
	preq := &policy.Request{Method: p.req.Method, Path: p.target.Path, Headers: p.req.Headers, Query: p.target.Query}
	var reasons []string
	for i := range d.Events {
		ev := &d.Events[i]
		in := &policy.Input{User: d.User, Request: preq, Context: p.req.Context, Event: ev}
		if p.tr != nil {
			in.Trace = p.tr.event(ev, p.pol.Handlers)
		}
		res := p.pol.Handlers.Evaluate(in)
		if res.Handler != nil && (i == 0 || !res.Allowed) {
			d.Handler = res.Handler.Key
		}
		if len(d.Events) == 1 {
			d.Reason = res.Reason
		} else {
			reasons = append(reasons, ev.Resource+":"+ev.Action+": "+res.Reason)
			d.Reason = strings.Join(reasons, "; ")
		}
		if !res.Allowed {
			d.deny(Denied, res.Status, res.Detail, d.Reason)
			return true
		}
		var err error
		if d.Filters, err = merge(d.Filters, res.Filters); err != nil {
			d.deny(Denied, 403, "Forbidden", "filters of "+ev.Resource+":"+ev.Action+": "+err.Error())
			return true
		}
		if d.Metadata, err = merge(d.Metadata, res.Metadata); err != nil {
			d.deny(Denied, 403, "Forbidden", "metadata of "+ev.Resource+":"+ev.Action+": "+err.Error())
			return true
		}
	}
	d.Outcome, d.Status = Allowed, 200
	return true
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
