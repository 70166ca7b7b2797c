package decision

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/langgate/langgate/pkg/expr"
	"github.com/langgate/langgate/pkg/policy"
	"github.com/langgate/langgate/pkg/routes"
)

// What a decision binds. An allow authorizes each event for the values
// langgate read, so the upstream must run the event on those values and no
// others: the headers and the signed context carry, per granted event, the
// values it may run on (Grant.Values), one object per time the route fires
// it, from a JSON pointer (RFC 6901) into the event's value to the value
// found there (null: absent). Bound are the route's identifiers that the
// request gives (Field.ID: store namespace and key, ids the body names)
// and every path of value the event's handler read. The upstream
// adapters compare the value LangGraph hands their handler with these, so
// a request that the server reads differently from langgate (a parser
// differential) runs nothing.

// bindEvent is what one granted event binds of its value; nil when it
// binds nothing (any value: the route has no identifier langgate could
// read, and no rule read the value).
func bindEvent(ev *routes.Event, h *policy.Handler) map[string]any {
	var out map[string]any
	put := func(ptr string, v any) {
		if out == nil {
			out = make(map[string]any, 4)
		}
		out[ptr] = v
	}
	for _, f := range ev.Fields {
		// An identifier the request does not give is the server's to
		// choose (a new thread's id): bound only when given.
		if v, ok := ev.Value[f.Name]; ok && f.ID && (ev.ValueErr == nil || !f.FromBodyField()) {
			put(pointer(expr.Path{f.Name}), v)
		}
	}
	if h == nil || ev.ValueErr != nil {
		// A handler that read an unusable value failed: the event is not
		// granted, and nothing is bound for it.
		return out
	}
	for _, path := range h.ValuePaths() {
		if len(path) == 0 {
			// The value as a whole: each field the route declares.
			for _, f := range ev.Fields {
				put(pointer(expr.Path{f.Name}), ev.Value[f.Name])
			}
			continue
		}
		put(pointer(path), lookup(ev.Value, path))
	}
	return out
}

// lookup is the value at path (nil when absent, or under something that
// is not an object).
func lookup(v map[string]any, path expr.Path) any {
	var cur any = v
	for _, name := range path {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = obj[name]; !ok {
			return nil
		}
	}
	return cur
}

// pointer is path as a JSON pointer: "/a/b", with "~" and "/" in a name
// escaped as "~0" and "~1".
func pointer(path expr.Path) string {
	var b strings.Builder
	for _, name := range path {
		b.WriteByte('/')
		if !strings.ContainsAny(name, "~/") {
			b.WriteString(name)
			continue
		}
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(name))
	}
	return b.String()
}

// bindValues adds one firing's binding to an event's grant: no binding
// makes the event run on any value.
func (g *Grant) bindValues(b map[string]any) {
	switch {
	case g.AnyValue:
	case b == nil:
		g.AnyValue, g.Values = true, nil
	case !slices.ContainsFunc(g.Values, func(v map[string]any) bool { return reflect.DeepEqual(v, b) }):
		g.Values = append(g.Values, b)
	}
}

// MaxBinding bounds the JSON of one event's bound values in the headers
// and the signed context: a rule that reads a large part of a value (a
// run's whole input) cannot be bound, and such a request is refused
// rather than allowed unbound.
const MaxBinding = 8 << 10

// valuesJSON is the "values" member of an event's grant, "" when it binds
// nothing.
func valuesJSON(g *Grant) (string, error) {
	if g.AnyValue || len(g.Values) == 0 {
		return "", nil
	}
	b := make([]byte, 0, 64*len(g.Values))
	b = append(b, '[')
	for i, binding := range g.Values {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = appendBinding(b, binding); err != nil {
			return "", err
		}
	}
	v := string(append(b, ']'))
	if len(v) > MaxBinding {
		return "", fmt.Errorf("the values %s runs on take %d bytes, over the %d a decision binds", g.Event, len(v), MaxBinding)
	}
	return v, nil
}

// appendBinding appends one binding as a JSON object with its pointers in
// order, every string ASCII-only (as asciiJSON writes them): the common
// values (strings, lists of them, numbers, bools, null) without
// reflection, anything else through asciiJSON.
func appendBinding(b []byte, binding map[string]any) ([]byte, error) {
	var stack [8]string
	keys := stack[:0]
	for k := range binding {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		var err error
		if b, err = appendJSONValue(b, binding[k]); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendJSONValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case string:
		return appendJSONString(b, x), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("unsupported number %v", x)
		}
		return strconv.AppendFloat(b, x, 'g', -1, 64), nil
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSONValue(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	}
	s, err := asciiJSON(v)
	if err != nil {
		return nil, err
	}
	return append(b, s...), nil
}

// appendJSONString appends s as a JSON string, every character outside
// printable ASCII escaped as \uXXXX (a surrogate pair above U+FFFF).
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	u := func(b []byte, r rune) []byte {
		return append(b, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
	}
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r < 0x20 || r == 0x7f || r == '<' || r == '>' || r == '&':
			b = u(b, r)
		case r < utf8.RuneSelf:
			b = append(b, byte(r))
		case r > 0xffff:
			r -= 0x10000
			b = u(u(b, 0xd800+(r>>10)&0x3ff), 0xdc00+r&0x3ff)
		default:
			// U+FFFD for invalid UTF-8, as encoding/json writes it.
			b = u(b, r)
		}
	}
	return append(b, '"')
}
