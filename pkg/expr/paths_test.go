package expr

import (
	"fmt"
	"testing"

	"cel.dev/cel-go/cel"

	"github.com/langgate/langgate/pkg/config"
)

// TestReadPaths: the paths of value and request each expression reads,
// as the binding of a decision (what the upstream must see the same) and
// the refusal of repeated query parameters rely on them.
func TestReadPaths(t *testing.T) {
	env, err := NewEnv(Var{Name: "value", Type: JSONMap}, Var{Name: "request", Type: JSONMap}, Var{Name: "user", Type: JSONMap})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		src            string
		value, request string
	}{
		{`value.namespace[0] == user.identity`, "[[namespace]]", "[]"},
		{`value["key"] == "k"`, "[[key]]", "[]"},
		{`has(value.metadata.team) && value.metadata.team == "a"`, "[[metadata team]]", "[]"},
		{`value.namespace.all(x, x != "")`, "[[namespace]]", "[]"},
		{`value.exists(k, k == "x")`, "[[]]", "[]"},
		{`value[user.identity] == 1`, "[[]]", "[]"},
		{`size(value) > 1`, "[[]]", "[]"},
		{`request.query.tag == "x" && request.method == "GET"`, "[]", "[[method] [query tag]]"},
		{`"tag" in request.query`, "[]", "[[query]]"},
		{`request.query[user.identity] == "1"`, "[]", "[[query]]"},
		{`user.identity == "a"`, "[]", "[]"},
		{`[value.a, {"k": value.b}, value.a.c].size() > 0`, "[[a] [b] [a c]]", "[]"},
	}
	for _, tc := range tests {
		prg, err := Compile(env, "t.yaml", config.Expr{Source: tc.src}, cel.BoolType)
		if err != nil {
			t.Fatalf("%s: %v", tc.src, err)
		}
		if got := fmt.Sprint(prg.ReadPaths("value")); got != tc.value {
			t.Errorf("%s: value paths %s, want %s", tc.src, got, tc.value)
		}
		if got := fmt.Sprint(prg.ReadPaths("request")); got != tc.request {
			t.Errorf("%s: request paths %s, want %s", tc.src, got, tc.request)
		}
	}
}
