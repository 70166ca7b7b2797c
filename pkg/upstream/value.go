package upstream

import (
	"crypto/sha1" //nolint:gosec // RFC 4122 version 5 UUIDs
	"encoding/hex"
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
// sets and values; a UUID in any spelling, and at /assistant_id a graph's
// id for its assistant's (the servers' uuid5). The JS and Python adapters check the same way
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
		if !ok || !sameValue(got, want) && !sameID(got, want, ptr) {
			return false
		}
	}
	return true
}

// NamespaceGraph is the namespace of the LangGraph servers' uuid5 ids of a
// graph's own assistant: they hand a handler uuid5(NamespaceGraph,
// graph_id) where the client named the graph.
var NamespaceGraph = [16]byte{0x6b, 0xa7, 0xb8, 0x21, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

// sameID reports whether two strings name the same id: one UUID in two
// spellings (the Python server hands handlers its canonical form), or,
// at /assistant_id, a graph's id and its assistant's.
func sameID(got, want any, ptr string) bool {
	g, ok1 := got.(string)
	w, ok2 := want.(string)
	if !ok1 || !ok2 {
		return false
	}
	gu, gok := uuidOf(g)
	wu, wok := uuidOf(w)
	switch {
	case gok && wok:
		return gu == wu
	case gok && ptr == "/assistant_id":
		return gu == uuid5(NamespaceGraph, w)
	}
	return false
}

// uuidOf parses a UUID spelled as 32 hex digits in any case, hyphens
// anywhere ignored (as the servers read one).
func uuidOf(s string) ([16]byte, bool) {
	var u [16]byte
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 {
		return u, false
	}
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, false
	}
	return u, true
}

// uuid5 is RFC 4122's name-based (SHA-1) UUID.
func uuid5(ns [16]byte, name string) [16]byte {
	h := sha1.New() //nolint:gosec // RFC 4122 version 5 is defined on SHA-1
	h.Write(ns[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return u
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
