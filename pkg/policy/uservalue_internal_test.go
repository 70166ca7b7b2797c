package policy

import (
	"fmt"
	"testing"

	"cel.dev/cel-go/interpreter"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/expr"
)

// TestUserValueReadsAsTheMap: every expression gives the same result over
// the user's CEL value as over the map it stands for (cel-go's own map,
// the oracle), errors included.
func TestUserValueReadsAsTheMap(t *testing.T) {
	env, err := expr.NewEnv(expr.Var{Name: VarUser, Type: expr.JSONMap})
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]*authn.User{
		"plain":  authn.NewUser("alice", "", nil, nil),
		"fields": authn.NewUserWithFields("bob", "Bob B", []string{"read", "admin"}, nil, map[string]any{"org": "acme", "n": 3.0, "tags": []any{"a", "b"}, "meta": map[string]any{"k": "v"}}),
	}
	exprs := []string{
		`user.identity`, `user.display_name`, `user.is_authenticated`, `user.permissions`,
		`user.is_studio_user`, `user["identity"]`, `"admin" in user.permissions`,
		`size(user.permissions)`, `user.org`, `user.meta.k`, `user.tags[1]`, `user.n + 1.0`,
		`has(user.org)`, `has(user.missing)`, `has(user.identity)`, `"org" in user`, `"nope" in user`,
		`size(user)`, `user.missing`, `user.missing == "x"`, `user.exists(k, k == "org")`,
		`user.all(k, k != "")`, `user.map(k, k).size()`, `user == user`,
		`user == {"identity": "alice", "display_name": "alice", "is_authenticated": true, "permissions": [], "is_studio_user": false}`,
		`user != {}`, `type(user) == map`, `{"u": user}.u.identity`, `[user][0].identity`, `dyn(user)[1]`, `1 in dyn(user)`,
		`user.identity.startsWith("a") ? user.display_name : user.identity`,
	}
	for name, u := range users {
		for _, src := range exprs {
			prg, err := expr.Compile(env, "t.yaml", config.Expr{Source: src}, nil)
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
			got := eval(prg, userValue{u})
			want := eval(prg, u.Attributes())
			if got != want {
				t.Errorf("%s: %s: user value gives %s, the map %s", name, src, got, want)
			}
		}
	}
}

// eval runs prg with user bound to v and describes the result (as JSON,
// which is what a filter or metadata makes of it) or the error.
func eval(prg *expr.Program, v any) string {
	act, err := interpreter.NewActivation(map[string]any{VarUser: v})
	if err != nil {
		return "activation: " + err.Error()
	}
	out, err := prg.Eval(act)
	if err != nil {
		return "error: " + err.Error()
	}
	j, err := expr.ToJSON(out)
	if err != nil {
		return "not JSON: " + err.Error()
	}
	return fmt.Sprintf("%#v", j)
}
