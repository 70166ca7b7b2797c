package routes

import (
	"encoding/json"
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
	ErrBodyNotSent   = errors.New("the request body was not sent to langgate (enable with_request_body on the ext_authz filter)")
	ErrBodyTruncated = errors.New("the request body was truncated before it reached langgate (raise max_request_bytes)")
	ErrBodyTooLarge  = fmt.Errorf("the request body is larger than langgate's %d-byte limit", MaxBodyBytes)
	ErrBodyNotJSON   = errors.New("the request body is not a JSON object")
)

// Body is the request body as the proxy delivered it. Its JSON is parsed at
// most once, and only when an event's value needs it.
type Body struct {
	Data  []byte
	State BodyState

	parsed bool
	obj    map[string]any
	err    error
}

// Object returns the body as a JSON object; an empty body is an empty object.
func (b *Body) Object() (map[string]any, error) {
	if b.parsed {
		return b.obj, b.err
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
		b.obj = map[string]any{}
	default:
		var v any
		if err := json.Unmarshal(b.Data, &v); err != nil {
			b.err = fmt.Errorf("%w: %w", ErrBodyNotJSON, err)
			break
		}
		obj, ok := v.(map[string]any)
		if !ok {
			b.err = fmt.Errorf("%w (got %s)", ErrBodyNotJSON, jsonKind(v))
			break
		}
		b.obj = obj
	}
	return b.obj, b.err
}

func jsonKind(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
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
	out := make([]Event, len(r.Events))
	for i, spec := range r.Events {
		out[i] = Event{Resource: spec.Resource, Action: spec.Action}
		out[i].Value, out[i].ValueErr = spec.value(params, query, body)
	}
	return out
}

func (e EventSpec) value(params Params, query url.Values, body *Body) (map[string]any, error) {
	v := make(map[string]any, len(e.Fields))
	var obj map[string]any
	if e.needsBody() {
		var err error
		if obj, err = body.Object(); err != nil {
			return nil, err
		}
	}
	for _, f := range e.Fields {
		switch f.From {
		case FromPath:
			if s, ok := params.Get(f.key()); ok {
				v[f.Name] = s
			}
		case FromQuery:
			if vals, ok := query[f.key()]; ok && len(vals) > 0 {
				v[f.Name] = vals[0]
			}
		case FromQueryDotted:
			if vals, ok := query[f.key()]; ok && len(vals) > 0 {
				parts := strings.Split(vals[0], ".")
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
		case FromBodyGroup:
			group := make(map[string]any, len(f.Keys))
			for _, k := range f.Keys {
				if x, ok := obj[k]; ok {
					group[k] = x
				}
			}
			v[f.Name] = group
		}
	}
	return v, nil
}
