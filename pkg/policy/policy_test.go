package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/routes"
)

func compile(t *testing.T, yaml string) *Handlers {
	t.Helper()
	p, err := compileText(yaml)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func compileText(yaml string) (*Handlers, error) {
	f, err := config.Parse("p.yaml", []byte(`authenticate:
  oidc: [{issuer: "https://i.example", audiences: [a]}]
  user: {identity: claims.sub}
authorize:
  handlers:
`+yaml), func(string) (string, bool) { return "", false })
	if err != nil {
		return nil, err
	}
	env, err := NewEnv()
	if err != nil {
		return nil, err
	}
	return Compile(env, f.Name, f.Authorize.Handlers, VocabularyOf(routes.LangGraph()))
}

// TestPrecedence checks LangGraph's rule: exactly one handler runs, the
// first that exists of (resource, action), (resource, *), (*, action), (*, *).
func TestPrecedence(t *testing.T) {
	all := compile(t, `    - {on: "*"}
    - {on: "*.create"}
    - {on: threads}
    - {on: threads.create}
    - {on: store.put}
`)
	onlyGlobal := compile(t, `    - {on: "*"}
`)
	actionOnly := compile(t, `    - {on: "*.read"}
    - {on: assistants}
`)
	none := compile(t, ``)
	tests := []struct {
		p                *Handlers
		resource, action string
		want             string
	}{
		{all, "threads", "create", "threads.create"},
		{all, "threads", "read", "threads"},
		{all, "threads", "create_run", "threads"},
		{all, "assistants", "create", "*.create"},
		{all, "crons", "create", "*.create"},
		{all, "assistants", "read", "*"},
		{all, "store", "put", "store.put"},
		{all, "store", "get", "*"},
		{onlyGlobal, "store", "search", "*"},
		{actionOnly, "threads", "read", "*.read"},
		{actionOnly, "assistants", "read", "assistants"},
		{actionOnly, "threads", "create", ""},
		{none, "threads", "read", ""},
	}
	for _, tc := range tests {
		got := ""
		if h := tc.p.Select(tc.resource, tc.action); h != nil {
			got = h.Key
		}
		if got != tc.want {
			t.Errorf("%s:%s selected %q, want %q", tc.resource, tc.action, got, tc.want)
		}
	}
}

func TestEvaluate(t *testing.T) {
	p := compile(t, `    - on: "*"
      filters: {owner: user.identity, tags: {$contains: "'x'"}, org: {$eq: claims.org}}
      metadata: {owner: user.identity, n: "1 + 1"}
    - on: threads.delete
      allow: "'admin' in user.permissions"
    - on: assistants.create
      allow: value.graph_id == 'agent'
      status: 404
      message: Not found
    - on: crons
      filters: {x: "{'$in': [1]}"}
    - on: store
      allow: value.namespace[0] == user.identity
    - on: store.search
      allow: "value.query.glob('reports/*') && !value.query.glob('reports/secret*')"
`)
	alice := authn.NewUser("alice", "", []string{"read"}, map[string]any{"org": "acme"})
	ev := func(res, act string, value map[string]any) *Input {
		return &Input{User: alice, Event: &routes.Event{Resource: res, Action: act, Value: value}}
	}
	r := p.Evaluate(ev("threads", "read", map[string]any{}))
	if !r.Allowed || r.Filters["owner"] != "alice" || r.Metadata["n"] != int64(2) {
		t.Errorf("global handler: %+v", r)
	}
	if c, ok := r.Filters["tags"].(map[string]any); !ok || c["$contains"] != "x" {
		t.Errorf("$contains filter: %#v", r.Filters["tags"])
	}
	// $eq is sent in the plain form every LangGraph server enforces.
	if r.Filters["org"] != "acme" {
		t.Errorf("$eq filter: %#v", r.Filters["org"])
	}
	if r := p.Evaluate(ev("threads", "delete", nil)); r.Allowed || r.Status != 403 || r.Detail != "Forbidden" {
		t.Errorf("delete without admin: %+v", r)
	}
	if r := p.Evaluate(ev("assistants", "create", map[string]any{"graph_id": "other"})); r.Allowed || r.Status != 404 || r.Detail != "Not found" {
		t.Errorf("custom status: %+v", r)
	}
	if r := p.Evaluate(ev("assistants", "create", map[string]any{"graph_id": "agent"})); !r.Allowed || r.Filters != nil {
		t.Errorf("allowed create: %+v", r)
	}
	// A computed filter with an unknown operator fails closed.
	if r := p.Evaluate(ev("crons", "read", nil)); r.Allowed || !strings.Contains(r.Reason, `unknown filter operator "$in"`) {
		t.Errorf("unknown computed operator: %+v", r)
	}
	for q, want := range map[string]bool{"reports/q1": true, "reports/secret-q1": false, "reports/a/b": false, "other": false} {
		if r := p.Evaluate(ev("store", "search", map[string]any{"query": q})); r.Allowed != want {
			t.Errorf("glob on %q: allowed %v, want %v (%s)", q, r.Allowed, want, r.Reason)
		}
	}
	// An unusable value (truncated body) denies the rule that reads it.
	in := ev("store", "put", nil)
	in.Event.ValueErr = routes.ErrBodyTruncated
	if r := p.Evaluate(in); r.Allowed || !strings.Contains(r.Reason, "truncated") {
		t.Errorf("truncated body: %+v", r)
	}
}

// TestFilterValuesNeverMatchEverything: values LangGraph's JS server would
// treat as "no filter" (a falsy operand, a list, a nested object) deny.
func TestFilterValuesNeverMatchEverything(t *testing.T) {
	tests := []struct {
		expr string
		want any // nil with err
		err  string
	}{
		{`"acme"`, "acme", ""},
		{`""`, "", ""},
		{`0`, int64(0), ""},
		{`null`, nil, ""},
		{`{"$eq": ""}`, "", ""},
		{`{"$eq": false}`, false, ""},
		{`{"$eq": ["a"]}`, nil, "$eq needs a string"},
		{`{"$contains": "x"}`, map[string]any{"$contains": "x"}, ""},
		{`{"$contains": ["a", "b"]}`, map[string]any{"$contains": []any{"a", "b"}}, ""},
		{`{"$contains": ""}`, nil, "falsy operand"},
		{`{"$contains": 0}`, nil, "falsy operand"},
		{`{"$contains": null}`, nil, "falsy operand"},
		{`{"$contains": [{"a": 1}]}`, nil, "list elements"},
		{`["a"]`, nil, "a list is not a filter value"},
		{`{"a": 1}`, nil, `unknown filter operator "a"`},
		{`{"$eq": 1, "$contains": 2}`, nil, "exactly one operator"},
	}
	for _, tc := range tests {
		p := compile(t, "    - on: \"*\"\n      filters: {k: '"+tc.expr+"'}\n")
		r := p.Evaluate(&Input{User: authn.NewUser("u", "", nil, nil), Event: &routes.Event{Resource: "threads", Action: "read"}})
		if tc.err != "" {
			if r.Allowed || !strings.Contains(r.Reason, tc.err) {
				t.Errorf("%s: allowed=%v reason %q, want a denial mentioning %q", tc.expr, r.Allowed, r.Reason, tc.err)
			}
			continue
		}
		if !r.Allowed {
			t.Errorf("%s: denied: %s", tc.expr, r.Reason)
			continue
		}
		if got := r.Filters["k"]; fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: filter %#v, want %#v", tc.expr, got, tc.want)
		}
	}
}

// TestLogicalFilters: $or and $and, as the Python server takes them: a
// list of at least two filter objects, each normalized like a filter, at
// most two levels deep; written as a key or computed in a whole map.
func TestLogicalFilters(t *testing.T) {
	for _, tc := range []struct {
		filters string
		want    string // the filters as JSON, or the denial's reason
		ok      bool
	}{
		{`{"$or": '[{"owner": user.identity}, {"public": true}]'}`, `map[$or:[map[owner:u] map[public:true]]]`, true},
		{`'{"$and": [{"owner": user.identity}, {"tags": {"$contains": "x"}}]}'`, `map[$and:[map[owner:u] map[tags:map[$contains:x]]]]`, true},
		{`{"$or": '[{"$and": [{"a": 1}, {"b": 2}]}, {"c": 3}]'}`, `map[$or:[map[$and:[map[a:1] map[b:2]]] map[c:3]]]`, true},
		{`{"$or": '[{"owner": user.identity}]'}`, "at least two filter objects", false},
		{`{"$or": '[{"a": 1}, {}]'}`, "non-empty filter object", false},
		{`{"$or": '[{"a": ["x"]}, {"b": 1}]'}`, "a list is not a filter value", false},
		{`{"$or": '[{"$or": [{"$or": [{"a": 1}, {"b": 1}]}, {"c": 1}]}, {"d": 1}]'}`, "nested more than 2 levels", false},
		{`{"$not": '{"a": 1}'}`, `unknown logical operator "$not"`, false},
	} {
		p := compile(t, "    - on: \"*\"\n      filters: "+tc.filters+"\n")
		r := p.Evaluate(&Input{User: authn.NewUser("u", "", nil, nil), Event: &routes.Event{Resource: "threads", Action: "read"}})
		switch {
		case tc.ok && !r.Allowed:
			t.Errorf("%s: denied: %s", tc.filters, r.Reason)
		case tc.ok && fmt.Sprint(r.Filters) != tc.want:
			t.Errorf("%s: filters %v, want %s", tc.filters, r.Filters, tc.want)
		case !tc.ok && (r.Allowed || !strings.Contains(r.Reason, tc.want)):
			t.Errorf("%s: allowed=%v (%s), want a denial mentioning %q", tc.filters, r.Allowed, r.Reason, tc.want)
		}
	}
}

// TestNamespacePrefix: a store handler's namespace_prefix is computed per
// event, checked as labels, and refused on handlers of other resources.
func TestNamespacePrefix(t *testing.T) {
	p := compile(t, "    - on: store\n      namespace_prefix: '[user.identity, \"v1\"]'\n")
	r := p.Evaluate(&Input{User: authn.NewUser("alice", "", nil, nil), Event: &routes.Event{Resource: "store", Action: "put"}})
	if !r.Allowed || fmt.Sprint(r.NamespacePrefix) != "[alice v1]" {
		t.Errorf("prefix: %v %v (%s)", r.Allowed, r.NamespacePrefix, r.Reason)
	}
	for _, bad := range []string{`'[user.identity + ".x"]'`, `'[]'`, `'[""]'`} {
		p := compile(t, "    - on: store\n      namespace_prefix: "+bad+"\n")
		if r := p.Evaluate(&Input{User: authn.NewUser("alice", "", nil, nil), Event: &routes.Event{Resource: "store", Action: "put"}}); r.Allowed {
			t.Errorf("namespace_prefix %s: allowed %v", bad, r.NamespacePrefix)
		}
	}
	if _, err := compileText("    - on: threads\n      namespace_prefix: '[user.identity]'\n"); err == nil || !strings.Contains(err.Error(), "applies only to store handlers") {
		t.Errorf("namespace_prefix on threads: %v", err)
	}
	if _, err := compileText("    - on: store\n      namespace_prefix: '\"x\"'\n"); err == nil || !strings.Contains(err.Error(), "must produce list(dyn)") {
		t.Errorf("namespace_prefix not a list: %v", err)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"    - {on: thread}\n", `p.yaml:6:7: handler "thread": unknown resource "thread" (known: assistants, crons, store, threads)`},
		{"    - {on: threads.creat}\n", `p.yaml:6:7: handler "threads.creat": resource "threads" has no action "creat" (known: create, create_run, delete, read, search, update)`},
		{"    - {on: \"*.list\"}\n", `p.yaml:6:7: handler "*.list": no resource has the action "list"`},
		{"    - {on: \"*\"}\n    - {on: \"*\"}\n", `p.yaml:7:7: handler "*" duplicates the handler "*" at line 6`},
		{"    - {on: threads, allow: \"'yes'\"}\n", `p.yaml:6:28: CEL: expression "'yes'" must produce bool, but produces string`},
		{"    - {on: threads, allow: \"'a' + 1\"}\n", `p.yaml:6:33: CEL: found no matching overload for '_+_' applied to '(string, int)'`},
		{"    - {on: threads, allow: usr.identity == 'a'}\n", `p.yaml:6:28: CEL: undeclared reference to 'usr' (did you mean 'user'?)`},
		{"    - {on: threads, filters: {a: {$in: x}}}\n", `p.yaml:6:35: filter "a": unknown filter operator "$in" (known: $eq, $contains)`},
		{"    - {on: threads, metadata: {a: {$eq: x}}}\n", `p.yaml:6:36: metadata "a": operators are only allowed in filters`},
	}
	for _, tc := range tests {
		_, err := compileText(tc.yaml)
		var list config.ErrorList
		if !errors.As(err, &list) {
			t.Errorf("%q: error %v is not a config.ErrorList", tc.yaml, err)
			continue
		}
		if got := list[0].Error(); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%q:\n got %s\nwant %s", tc.yaml, got, tc.want)
		}
	}
}
