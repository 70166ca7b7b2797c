package upstream

import (
	"fmt"
	"math"
	"strings"

	langgatev1 "github.com/langgate/langgate/proto/langgate/v1"
)

// CheckValue checks the value an event acts on (the object the server
// hands the event's handler, as JSON-decoded Go values) against what the
// context binds for the event (Event.values): nil when the event binds
// none, or when one bound object matches; ErrValue otherwise. A bound
// object matches when the value has, at each of its JSON pointers, an
// equal value: null matches nothing there; numbers compare by value (a
// bool is not a number); lists element by element; objects by their key
// sets and values. The JS and Python adapters check the same way
// (docs/headers.md, "What is bound").
func CheckValue(ev *langgatev1.Event, value map[string]any) error {
	bound := ev.GetValues()
	if len(bound) == 0 {
		return nil
	}
	for _, b := range bound {
		if matchesBinding(value, b.AsMap()) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s:%s runs on a value langgate did not authorize", ErrValue, ev.GetResource(), ev.GetAction())
}

// matchesBinding reports whether value has every pointer of b at its value.
func matchesBinding(value map[string]any, b map[string]any) bool {
	for ptr, want := range b {
		got, ok := resolve(value, ptr)
		if want == nil {
			if ok && got != nil {
				return false
			}
			continue
		}
		if !ok || !sameValue(got, want) {
			return false
		}
	}
	return true
}

// resolve follows a JSON pointer (RFC 6901) through objects.
func resolve(v map[string]any, ptr string) (any, bool) {
	if !strings.HasPrefix(ptr, "/") {
		return nil, false
	}
	var cur any = v
	for _, tok := range strings.Split(ptr[1:], "/") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		if cur, ok = obj[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// sameValue is JSON equality: numbers by value, bools apart from numbers.
func sameValue(a, b any) bool {
	switch x := a.(type) {
	case nil:
		return b == nil
	case bool:
		y, ok := b.(bool)
		return ok && x == y
	case string:
		y, ok := b.(string)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !sameValue(xv, yv) {
				return false
			}
		}
		return true
	}
	fx, ok1 := number(a)
	fy, ok2 := number(b)
	return ok1 && ok2 && fx == fy && !math.IsNaN(fx)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case uint64:
		return float64(n), true
	case uint32:
		return float64(n), true
	}
	return 0, false
}
