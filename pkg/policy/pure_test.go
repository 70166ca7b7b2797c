package policy

import (
	"slices"
	"strings"
	"testing"
)

// TestEveryVariableClassified: a variable added to NewEnv must be listed
// in PerRequestVars or be one that only the user and the event determine,
// or Pure would call a handler reading it memoizable.
func TestEveryVariableClassified(t *testing.T) {
	env, err := NewEnv()
	if err != nil {
		t.Fatal(err)
	}
	perUser := []string{VarUser, VarClaims, VarResource, VarAction}
	vars := env.Variables()
	if len(vars) == 0 {
		t.Fatal("the environment declares no variables")
	}
	for _, v := range vars {
		if !slices.Contains(perUser, v.Name()) && !slices.Contains(PerRequestVars, v.Name()) {
			t.Errorf("variable %q is neither per user nor in PerRequestVars", v.Name())
		}
	}
}

func TestPure(t *testing.T) {
	for _, c := range []struct {
		handler string
		pure    bool
	}{
		{`{on: "*", filters: {owner: user.identity}, metadata: {owner: user.identity}}`, true},
		{`{on: threads, allow: 'claims.org == "acme" && resource == "threads" && action != "delete"'}`, true},
		{`{on: threads, filters: '{"owner": user.identity}'}`, true},
		{`{on: threads, allow: '[1, 2].exists(x, x > 0)'}`, true},
		{`{on: threads}`, true},
		{`{on: store, allow: 'value.namespace[0] == user.identity'}`, false},
		{`{on: threads, filters: {owner: 'request.headers["x-tenant"]'}}`, false},
		{`{on: threads, metadata: {m: 'context.mount'}}`, false},
		{`{on: threads, filters: {owner: user.identity}, metadata: {m: 'has(value.metadata) ? "a" : "b"'}}`, false},
		{`{on: store, namespace_prefix: '[request.path]'}`, false},
	} {
		p := compile(t, "    - "+c.handler+"\n")
		if len(p.handlers) != 1 {
			t.Fatalf("%s: %d handlers", c.handler, len(p.handlers))
		}
		if got := p.handlers[0].Pure(); got != c.pure {
			t.Errorf("%s: Pure() = %v, want %v", c.handler, got, c.pure)
		}
		if got, want := p.handlers[0].ReadsEvent(), strings.Contains(c.handler, "resource") || strings.Contains(c.handler, "action"); got != want {
			t.Errorf("%s: ReadsEvent() = %v, want %v", c.handler, got, want)
		}
	}
}
