package routes

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// MaxBodyBytes bounds the body langgate parses; a larger body is treated as
// truncated, so rules that need it fail closed.
const MaxBodyBytes = 1 << 20

// BodyState says how much of the request body langgate received.
type BodyState int

// Body states.
const (
	// BodyComplete: the whole body was received (possibly empty).
	BodyComplete BodyState = iota
	// BodyNotSent: the request has a body but the proxy did not forward it
	// (Envoy without with_request_body, nginx auth_request).
	BodyNotSent
	// BodyTruncated: the proxy cut the body (Envoy's allow_partial_message).
	BodyTruncated
)

// Errors describing why a value that needs the body is unavailable.
var (
	ErrBodyNotSent   = errors.New("the request body was not sent to langgate (send it on this route: with_request_body; langgate validate lists the routes whose rules read it)")
	ErrBodyTruncated = errors.New("the request body was truncated before it reached langgate (raise max_request_bytes)")
	ErrBodyTooLarge  = fmt.Errorf("the request body is larger than langgate's %d-byte limit", MaxBodyBytes)
	ErrBodyNotJSON   = errors.New("the request body is not a JSON object")
)

// Body is the request body as the proxy delivered it. Its JSON is parsed at
// most once, and only when an event's value needs it.
type Body struct {
	Data  []byte
	State BodyState
	// ContentType is the request's content-type header ("" when none).
	ContentType string

	parsed bool
	val    any // the parsed JSON; nil for an empty body
	err    error
}

// parse decodes the body once.
func (b *Body) parse() (any, error) {
	if b.parsed {
		return b.val, b.err
	}
	b.parsed = true
	switch {
	case b.State == BodyNotSent:
		b.err = ErrBodyNotSent
	case b.State == BodyTruncated:
		b.err = ErrBodyTruncated
	case len(b.Data) > MaxBodyBytes:
		b.err = ErrBodyTooLarge
	case len(strings.TrimSpace(string(b.Data))) == 0:
	case !JSONContentType(b.ContentType):
		// The JS server (Hono's validator) reads a body of any other type
		// as {}, the Python server parses it all the same.
		b.err = fmt.Errorf("%w: a JSON body sent as content-type %q (send application/json)", ErrAmbiguous, b.ContentType)
	default:
		b.val, b.err = parseJSON(b.Data)
	}
	return b.val, b.err
}

// JSONContentType reports whether a content-type header names JSON the
// way every server reads it: "application/json" (in any case), with no
// parameter but charset=utf-8. Hono's validator reads a body of another
// type (text/plain, none) as {} where Starlette parses it; a charset
// other than UTF-8 is decoded as UTF-8 by one and refused by the other;
// the +json types are JSON to some servers only.
func JSONContentType(ct string) bool {
	mt, params, _ := strings.Cut(ct, ";")
	if !strings.EqualFold(strings.TrimRight(mt, " \t"), "application/json") {
		return false
	}
	params = strings.Trim(params, " \t")
	if params == "" {
		return !strings.Contains(ct, ";")
	}
	name, value, ok := strings.Cut(params, "=")
	value = strings.Trim(value, `"`)
	return ok && strings.EqualFold(name, "charset") && strings.EqualFold(value, "utf-8")
}

// Object returns the body as a JSON object; an empty body is an empty object.
func (b *Body) Object() (map[string]any, error) {
	v, err := b.parse()
	if err != nil {
		return nil, err
	}
	if v == nil {
		return map[string]any{}, nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%w (got %s)", ErrBodyNotJSON, jsonKind(v))
	}
	return obj, nil
}

// Objects returns the body as a JSON array of objects (POST /runs/batch);
// an empty body is an empty list.
func (b *Body) Objects() ([]map[string]any, error) {
	v, err := b.parse()
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: want a JSON array (got %s)", ErrBodyNotJSON, jsonKind(v))
	}
	out := make([]map[string]any, len(list))
	for i, e := range list {
		obj, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%w: item %d is %s, not an object", ErrBodyNotJSON, i, jsonKind(e))
		}
		out[i] = obj
	}
	return out, nil
}

func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// Fire assembles the route's events for one request.
func (r *Route) Fire(params Params, query url.Values, body *Body) []Event {
	out := make([]Event, 0, len(r.Events))
	for _, spec := range r.Events {
		if spec.EachBodyItem {
			out = append(out, spec.fireEach(params, query, body, r.Repeats)...)
			continue
		}
		ev := Event{Resource: spec.Resource, Action: spec.Action, Optional: spec.Optional, Fields: spec.Fields}
		obj, err := map[string]any(nil), error(nil)
		if spec.NeedsBody() {
			obj, err = body.Object()
		}
		// With the body unusable the value still has its path and query
		// fields (what a decision binds), but a rule that reads it fails.
		ev.ValueErr = err
		ev.Value = spec.value(params, query, obj, r.Repeats)
		out = append(out, ev)
	}
	return out
}

// fireEach fires the event once per object of a JSON array body, as
// LangGraph runs its handler once per run of a batch. A body that cannot
// be read as such an array is one event whose value is unavailable, so a
// rule that reads it denies.
func (e EventSpec) fireEach(params Params, query url.Values, body *Body, rep Repeats) []Event {
	items, err := body.Objects()
	if err != nil {
		return []Event{{Resource: e.Resource, Action: e.Action, ValueErr: err, Optional: e.Optional, Fields: e.Fields,
			Value: e.value(params, query, nil, rep)}}
	}
	out := make([]Event, len(items))
	for i, obj := range items {
		out[i] = Event{Resource: e.Resource, Action: e.Action, Value: e.value(params, query, obj, rep), Optional: e.Optional, Fields: e.Fields}
	}
	return out
}

// value assembles the event's value; obj is the body object (nil when
// the body is unusable: its fields are then absent).
func (e EventSpec) value(params Params, query url.Values, obj map[string]any, rep Repeats) map[string]any {
	v := make(map[string]any, len(e.Fields))
	for _, f := range e.Fields {
		switch f.From {
		case FromPath:
			if s, ok := params.Get(f.key()); ok {
				v[f.Name] = s
			}
		case FromQuery:
			if vals, ok := query[f.key()]; ok && len(vals) > 0 {
				v[f.Name] = rep.Pick(vals)
			}
		case FromQueryDotted:
			if vals, ok := query[f.key()]; ok && len(vals) > 0 {
				parts := strings.Split(rep.Pick(vals), ".")
				list := make([]any, len(parts))
				for i, p := range parts {
					list[i] = p
				}
				v[f.Name] = list
			}
		case FromBody:
			if x, ok := obj[f.key()]; ok {
				v[f.Name] = x
			}
		case FromBodyObject:
			if obj != nil {
				v[f.Name] = obj
			}
		case FromBodyGroup:
			if obj == nil {
				continue
			}
			group := make(map[string]any, len(f.Keys))
			for _, k := range f.Keys {
				if x, ok := obj[k]; ok {
					group[k] = x
				}
			}
			v[f.Name] = group
		}
	}
	return v
}
