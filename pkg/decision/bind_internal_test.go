package decision

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestValuesJSON: the hand-written encoding of bound values reads back as
// what was bound, is ASCII, and is capped.
func TestValuesJSON(t *testing.T) {
	vals := []map[string]any{
		{"/namespace": []any{"bob", "notes"}, "/key": "k 1"},
		{"/s": "quote\" back\\ nl\n tab\t nul\x00 del\x7f <&> é € 😀 \u2028", "/n": 1e21, "/f": 0.000001, "/i": float64(-42),
			"/b": true, "/null": nil, "/obj": map[string]any{"a": []any{1.5, "x"}}, "/a~1b": []any{}},
		{"/bad": "\xff\xfe"},
	}
	g := &Grant{Event: "store:get", Values: vals}
	got, err := valuesJSON(g)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(got); i++ {
		if got[i] < 0x20 || got[i] > 0x7e {
			t.Fatalf("byte %d of %q is not printable ASCII", i, got)
		}
	}
	var back []map[string]any
	if err := json.Unmarshal([]byte(got), &back); err != nil {
		t.Fatalf("%s: %v", got, err)
	}
	vals[2]["/bad"] = "\ufffd\ufffd"
	if !reflect.DeepEqual(back, vals) {
		t.Errorf("read back %v\nwant %v", back, vals)
	}
	big := &Grant{Event: "threads:read", Values: []map[string]any{{"/x": string(make([]byte, MaxBinding))}}}
	if _, err := valuesJSON(big); err == nil {
		t.Error("a binding over MaxBinding encodes")
	}
	if v, err := valuesJSON(&Grant{AnyValue: true, Values: vals}); v != "" || err != nil {
		t.Errorf("any value: %q %v", v, err)
	}
}
