package routes

import (
	"fmt"
	"sort"
	"strings"
)

// Event is one (resource, action) pair a request fires, with the `value` its
// handler sees.
type Event struct {
	Resource string
	Action   string
	// Value holds the fields LangGraph passes to the handler for this event.
	Value map[string]any
	// ValueErr is set when the value needs the request body and the body is
	// unusable (not sent, truncated, malformed). A rule that reads `value`
	// then fails, and the request is denied.
	ValueErr error
}

// Source says where a value field comes from.
type Source int

// The places a value field can come from.
const (
	// FromPath is a path parameter, e.g. {thread_id}.
	FromPath Source = iota
	// FromQuery is a query parameter, as a string.
	FromQuery
	// FromQueryDotted is a query parameter split on "." into a list, as the
	// store's GET /store/items?namespace=a.b sends namespaces.
	FromQueryDotted
	// FromBody is a field of the JSON body object.
	FromBody
	// FromBodyGroup gathers the body fields named in Keys into one object
	// (LangGraph's run `kwargs`).
	FromBodyGroup
)

// Field is one value field and where it comes from.
type Field struct {
	// Name is the field name in `value`.
	Name string
	From Source
	// Key is the name at the source (path parameter, query key, body field);
	// empty means Name.
	Key string
	// Keys are the body fields a FromBodyGroup field gathers.
	Keys []string
}

func (f Field) key() string {
	if f.Key != "" {
		return f.Key
	}
	return f.Name
}

// EventSpec describes one event a route fires and how its value is built.
type EventSpec struct {
	Resource string
	Action   string
	Fields   []Field
}

func (e EventSpec) needsBody() bool {
	for _, f := range e.Fields {
		if f.From == FromBody || f.From == FromBodyGroup {
			return true
		}
	}
	return false
}

// Route maps a method and a path template to events.
type Route struct {
	Method string
	// Pattern is a path template: literal segments and {param} segments.
	Pattern string
	// Public routes need no credential and fire no event.
	Public bool
	// Blocked routes are refused (403) for every caller.
	Blocked bool
	Events  []EventSpec
}

// Param is one matched path parameter.
type Param struct{ Name, Value string }

// Params are the path parameters of a match, in template order.
type Params []Param

// Get returns the named parameter's value.
func (p Params) Get(name string) (string, bool) {
	for _, kv := range p {
		if kv.Name == name {
			return kv.Value, true
		}
	}
	return "", false
}

// Table is a compiled route table: a segment trie in which literal segments
// take precedence over parameters, so matching costs one step per path
// segment however many routes there are.
type Table struct {
	root   *node
	routes []*Route
}

type node struct {
	literal   map[string]*node
	param     *node
	paramName string
	methods   map[string]*Route
}

// NewTable compiles routes. Two routes with the same method and the same
// template shape (parameter names aside) are a conflict.
func NewTable(routes []Route) (*Table, error) {
	t := &Table{root: &node{}}
	for i := range routes {
		r := &routes[i]
		if err := t.add(r); err != nil {
			return nil, err
		}
		t.routes = append(t.routes, r)
	}
	return t, nil
}

// Routes lists the table's routes in the order they were given.
func (t *Table) Routes() []*Route { return t.routes }

func (t *Table) add(r *Route) error {
	if r.Method == "" || !strings.HasPrefix(r.Pattern, "/") {
		return fmt.Errorf("route %s %q: method and an absolute path template are required", r.Method, r.Pattern)
	}
	n := t.root
	seen := map[string]bool{}
	for _, seg := range strings.Split(strings.Trim(r.Pattern, "/"), "/") {
		if seg == "" {
			continue
		}
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			name := seg[1 : len(seg)-1]
			if name == "" || seen[name] {
				return fmt.Errorf("route %s %s: parameter {%s} is empty or repeated", r.Method, r.Pattern, name)
			}
			seen[name] = true
			if n.param == nil {
				n.param = &node{paramName: name}
			} else if n.param.paramName != name {
				return fmt.Errorf("route %s %s: parameter {%s} conflicts with {%s} at the same position", r.Method, r.Pattern, name, n.param.paramName)
			}
			n = n.param
			continue
		}
		if strings.ContainsAny(seg, "{}") {
			return fmt.Errorf("route %s %s: segment %q mixes a parameter with text", r.Method, r.Pattern, seg)
		}
		if n.literal == nil {
			n.literal = map[string]*node{}
		}
		child := n.literal[seg]
		if child == nil {
			child = &node{}
			n.literal[seg] = child
		}
		n = child
	}
	if n.methods == nil {
		n.methods = map[string]*Route{}
	}
	if prev := n.methods[r.Method]; prev != nil {
		return fmt.Errorf("route %s %s conflicts with %s %s", r.Method, r.Pattern, prev.Method, prev.Pattern)
	}
	n.methods[r.Method] = r
	return nil
}

// Match finds the route for a method and normalized path segments. Literal
// segments win over parameters; when a literal branch has no route for the
// method, the parameter branch is tried (GET /threads/search is a read of
// the thread "search", as the LangGraph server routes it).
func (t *Table) Match(method string, segs []string) (*Route, Params) {
	var params Params
	r := t.root.match(method, segs, &params)
	if r == nil {
		return nil, nil
	}
	return r, params
}

func (n *node) match(method string, segs []string, params *Params) *Route {
	if len(segs) == 0 {
		return n.methods[method]
	}
	if child := n.literal[segs[0]]; child != nil {
		if r := child.match(method, segs[1:], params); r != nil {
			return r
		}
	}
	if n.param != nil {
		mark := len(*params)
		*params = append(*params, Param{Name: n.param.paramName, Value: segs[0]})
		if r := n.param.match(method, segs[1:], params); r != nil {
			return r
		}
		*params = (*params)[:mark]
	}
	return nil
}

// Describe renders the table as sorted lines "METHOD PATTERN -> events",
// for golden files and `langgate routes`.
func (t *Table) Describe() []string {
	out := make([]string, 0, len(t.routes))
	for _, r := range t.routes {
		var evs []string
		for _, e := range r.Events {
			evs = append(evs, e.Resource+":"+e.Action)
		}
		target := strings.Join(evs, ", ")
		switch {
		case r.Public:
			target = "public"
		case r.Blocked:
			target = "blocked"
		}
		out = append(out, fmt.Sprintf("%-6s %-45s -> %s", r.Method, r.Pattern, target))
	}
	sort.Strings(out)
	return out
}
