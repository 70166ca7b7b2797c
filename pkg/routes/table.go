package routes

import (
	"fmt"
	"slices"
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
	// Optional marks an event the server fires only in some cases (the
	// assistant check of a run on a user's assistant, the thread read that
	// joins a run). Its handler runs like any other; a denial does not deny
	// the request but leaves the event unauthorized, so the upstream
	// adapter refuses it (403) if the server does fire it — as LangGraph
	// answers when the handler denies.
	Optional bool
	// Inner marks an event the server fires through an in-process call
	// of its own (MCP's and A2A's handlers calling its API): Optional,
	// and what its handler stamps (metadata) is what that call writes,
	// so the request's metadata includes it.
	Inner bool
	// Fields are the value's fields as the route declares them (shared
	// with the route, never modified): which are identifiers, which come
	// from the body.
	Fields []Field
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
	// FromBodyObject is the whole JSON body object (a cron's `payload`).
	FromBodyObject
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
	// ID marks a field that names what the event acts on (a path
	// parameter, a store namespace or key, a thread, assistant, run or
	// cron id): a decision binds it whether or not a rule reads it, and
	// the upstream checks the value it acts on is the same.
	ID bool
}

// FromBodyField reports whether the field's value comes from the body.
func (f Field) FromBodyField() bool {
	return f.From == FromBody || f.From == FromBodyGroup || f.From == FromBodyObject
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
	// EachBodyItem fires the event once per object of a JSON array body,
	// each with its own value (POST /runs/batch).
	EachBodyItem bool
	// Optional: see Event.Optional.
	Optional bool
}

// NeedsBody reports whether the event's value takes a field from the
// request body.
func (e EventSpec) NeedsBody() bool {
	return slices.ContainsFunc(e.Fields, Field.FromBodyField)
}

// Repeats says how a route's server resolves a query parameter given more
// than once, for the parameters langgate reads.
type Repeats int

// How repeated query parameters are read.
const (
	// RepeatsRefuse refuses the request (400): the servers do not agree
	// (the LangGraph Python server reads the last value, the JS server
	// refuses a list where it wants a string), so no reading is safe.
	RepeatsRefuse Repeats = iota
	// RepeatsFirst reads the first value, as a route table declares its
	// server does.
	RepeatsFirst
	// RepeatsLast reads the last value.
	RepeatsLast
)

// Pick is the value a repeated parameter has under r ("" for none, and
// for RepeatsRefuse the first: the caller refused the request already).
func (r Repeats) Pick(vals []string) string {
	switch {
	case len(vals) == 0:
		return ""
	case r == RepeatsLast:
		return vals[len(vals)-1]
	}
	return vals[0]
}

// Route maps a method and a path template to events.
type Route struct {
	Method string
	// Pattern is a path template: literal segments, {param} segments and
	// an optional final {name...} matching one or more segments.
	Pattern string
	// Public routes need no credential and fire no event.
	Public bool
	// Blocked routes are refused (403) for every caller.
	Blocked bool
	// Builtin marks the routes of a built-in table. Two built-in routes
	// may overlap: the literal segment wins, as in LangGraph's own router
	// (its ids are UUIDs, so GET /runs/crons/{cron_id} never meets a run
	// whose id is "crons"). Any other overlap is a configuration error.
	Builtin bool
	Events  []EventSpec
	// RPC, when set, makes the route a JSON-RPC endpoint: its events are
	// those of the body's method (Events is then empty).
	RPC *RPC
	// Repeats is how the route's server reads a query parameter given
	// twice; RepeatsRefuse (the default) refuses such a request when
	// langgate reads the parameter.
	Repeats Repeats
}

// ReadsQuery reports whether a field of one of the route's events comes
// from the query parameter name.
func (r *Route) ReadsQuery(name string) bool {
	for _, e := range r.Events {
		for _, f := range e.Fields {
			if (f.From == FromQuery || f.From == FromQueryDotted) && f.key() == name {
				return true
			}
		}
	}
	return false
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
// take precedence over parameters and parameters over a trailing wildcard,
// so matching costs one step per path segment however many routes there
// are. NewTable refuses ambiguous tables, so the match is always the single
// most specific route.
type Table struct {
	root   *node
	routes []*Route
}

type node struct {
	literal   map[string]*node
	param     *node
	paramName string
	// wildcard is a final {name...} segment matching one or more segments.
	wildcard *node
	methods  map[string]*Route
}

// segKind classifies a template segment.
type segKind int

const (
	segLiteral segKind = iota
	segParam
	segWildcard
)

type segment struct {
	kind segKind
	text string // literal text or parameter name
}

// parseTemplate splits a path template into segments.
func parseTemplate(pattern string) ([]segment, error) {
	if !strings.HasPrefix(pattern, "/") {
		return nil, fmt.Errorf("path template %q must start with /", pattern)
	}
	var segs []segment
	seen := map[string]bool{}
	parts := strings.Split(strings.Trim(pattern, "/"), "/")
	for i, p := range parts {
		if p == "" {
			if len(parts) == 1 {
				break // the root
			}
			return nil, fmt.Errorf("path template %q has an empty segment", pattern)
		}
		if !strings.HasPrefix(p, "{") || !strings.HasSuffix(p, "}") {
			if strings.ContainsAny(p, "{}") {
				return nil, fmt.Errorf("path template %q: segment %q mixes a parameter with text", pattern, p)
			}
			if p == "." || p == ".." {
				return nil, fmt.Errorf("path template %q: dot segments never match a normalized path", pattern)
			}
			segs = append(segs, segment{kind: segLiteral, text: p})
			continue
		}
		name, kind := p[1:len(p)-1], segParam
		if n, ok := strings.CutSuffix(name, "..."); ok {
			if i != len(parts)-1 {
				return nil, fmt.Errorf("path template %q: {%s} must be the last segment", pattern, name)
			}
			name, kind = n, segWildcard
		}
		if !validParam(name) || seen[name] {
			return nil, fmt.Errorf("path template %q: parameter {%s} is empty, invalid or repeated", pattern, name)
		}
		seen[name] = true
		segs = append(segs, segment{kind: kind, text: name})
	}
	return segs, nil
}

func validParam(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

// NewTable compiles routes. Two routes for one method conflict when some
// path matches both and neither template is strictly more specific than
// the other (e.g. /a/{x} and /{y}/b); the error names both and a path they
// share.
func NewTable(routes []Route) (*Table, error) {
	t := &Table{root: &node{}}
	parsed := make([][]segment, len(routes))
	for i := range routes {
		r := &routes[i]
		if r.Method == "" {
			return nil, fmt.Errorf("route %q: a method is required", r.Pattern)
		}
		segs, err := parseTemplate(r.Pattern)
		if err != nil {
			return nil, fmt.Errorf("route %s %s: %w", r.Method, r.Pattern, err)
		}
		parsed[i] = segs
	}
	if err := checkOverlaps(routes, parsed); err != nil {
		return nil, err
	}
	for i := range routes {
		if err := t.add(&routes[i], parsed[i]); err != nil {
			return nil, err
		}
		t.routes = append(t.routes, &routes[i])
	}
	return t, nil
}

// checkOverlaps refuses ambiguous pairs. Routes are grouped by method and
// by first literal segment, so a large table costs far less than all pairs.
func checkOverlaps(routes []Route, parsed [][]segment) error {
	type key struct{ method, first string }
	groups := map[key][]int{}
	var open []int // routes whose first segment is not a literal
	for i, segs := range parsed {
		if len(segs) > 0 && segs[0].kind == segLiteral {
			k := key{routes[i].Method, segs[0].text}
			groups[k] = append(groups[k], i)
		} else {
			open = append(open, i)
		}
	}
	check := func(i, j int) error {
		if i > j {
			i, j = j, i
		}
		if routes[i].Method != routes[j].Method || (routes[i].Builtin && routes[j].Builtin) {
			return nil
		}
		a, b := parsed[i], parsed[j]
		example, overlap := overlaps(a, b)
		if !overlap {
			return nil
		}
		ab, ba := covers(b, a), covers(a, b)
		switch {
		case ab && ba:
			return fmt.Errorf("route %s %s duplicates %s %s", routes[j].Method, routes[j].Pattern, routes[i].Method, routes[i].Pattern)
		case ab || ba:
			return nil
		}
		return fmt.Errorf("routes %s %s and %s %s overlap (both match %s) and neither is more specific",
			routes[i].Method, routes[i].Pattern, routes[j].Method, routes[j].Pattern, example)
	}
	for _, idx := range groups {
		for x := 0; x < len(idx); x++ {
			for y := x + 1; y < len(idx); y++ {
				if err := check(idx[x], idx[y]); err != nil {
					return err
				}
			}
		}
	}
	for x, i := range open {
		for j := range routes {
			if j == i || (slices.Contains(open[:x+1], j)) {
				continue
			}
			if err := check(i, j); err != nil {
				return err
			}
		}
	}
	return nil
}

// overlaps reports whether some path matches both templates, with one.
func overlaps(a, b []segment) (string, bool) {
	var ex []string
	for i := 0; ; i++ {
		if i < len(b) && b[i].kind == segWildcard {
			// The example so far is the same either way round: treat a
			// wildcard on either side as a's.
			a, b = b, a
		}
		switch {
		case i == len(a) && i == len(b):
			return "/" + strings.Join(ex, "/"), true
		case i < len(a) && a[i].kind == segWildcard:
			if i == len(b) {
				return "", false // the wildcard needs at least one more segment
			}
			ex = append(ex, exampleSeg(b[i:])...)
			return "/" + strings.Join(ex, "/"), true
		case i == len(a) || i == len(b):
			return "", false
		}
		x, y := a[i], b[i]
		switch {
		case x.kind == segLiteral && y.kind == segLiteral:
			if x.text != y.text {
				return "", false
			}
			ex = append(ex, x.text)
		case x.kind == segLiteral:
			ex = append(ex, x.text)
		case y.kind == segLiteral:
			ex = append(ex, y.text)
		default:
			ex = append(ex, "x")
		}
	}
}

func exampleSeg(segs []segment) []string {
	out := make([]string, 0, len(segs))
	for _, s := range segs {
		if s.kind == segLiteral {
			out = append(out, s.text)
		} else {
			out = append(out, "x")
		}
	}
	return out
}

// covers reports whether every path matching b also matches a.
func covers(a, b []segment) bool {
	for i := 0; ; i++ {
		switch {
		case i == len(a) && i == len(b):
			return true
		case i < len(a) && a[i].kind == segWildcard:
			return i < len(b) // a's wildcard takes b's remaining (non-empty) segments
		case i == len(a) || i == len(b):
			return false
		case b[i].kind == segWildcard:
			return false // b matches arbitrarily long paths a does not
		case a[i].kind == segParam:
			continue
		case b[i].kind != segLiteral || a[i].text != b[i].text:
			return false
		}
	}
}

// Routes lists the table's routes in the order they were given.
func (t *Table) Routes() []*Route { return t.routes }

func (t *Table) add(r *Route, segs []segment) error {
	n := t.root
	for _, seg := range segs {
		switch seg.kind {
		case segParam:
			if n.param == nil {
				n.param = &node{paramName: seg.text}
			} else if n.param.paramName != seg.text {
				return fmt.Errorf("route %s %s: parameter {%s} conflicts with {%s} at the same position (use one name)", r.Method, r.Pattern, seg.text, n.param.paramName)
			}
			n = n.param
		case segWildcard:
			if n.wildcard == nil {
				n.wildcard = &node{paramName: seg.text}
			} else if n.wildcard.paramName != seg.text {
				return fmt.Errorf("route %s %s: wildcard {%s...} conflicts with {%s...} at the same position", r.Method, r.Pattern, seg.text, n.wildcard.paramName)
			}
			n = n.wildcard
		default:
			if n.literal == nil {
				n.literal = map[string]*node{}
			}
			child := n.literal[seg.text]
			if child == nil {
				child = &node{}
				n.literal[seg.text] = child
			}
			n = child
		}
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
// segments win over parameters, parameters over a wildcard; when a branch
// has no route for the method the next is tried (GET /threads/search is a
// read of the thread "search", as the LangGraph server routes it).
//
// HEAD is matched as GET when the table has no HEAD route for the path:
// HTTP servers (Hono, Starlette, net/http) answer HEAD with their GET
// handler, so a HEAD must be authorized exactly like the GET it runs.
func (t *Table) Match(method string, segs []string) (*Route, Params) {
	var params Params
	r := t.root.match(method, segs, &params)
	if r == nil && method == "HEAD" {
		params = params[:0]
		r = t.root.match("GET", segs, &params)
	}
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
	if n.wildcard != nil {
		if r := n.wildcard.methods[method]; r != nil {
			*params = append(*params, Param{Name: n.wildcard.paramName, Value: strings.Join(segs, "/")})
			return r
		}
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
			name := e.Resource + ":" + e.Action
			if e.Optional {
				name += "?" // fired only in some cases
			}
			evs = append(evs, name)
		}
		target := strings.Join(evs, ", ")
		if r.RPC != nil {
			target = r.RPC.Dialect.String() + " JSON-RPC: " + strings.Join(r.RPC.MethodNames(), ", ")
		}
		switch {
		case r.Public:
			target = "public"
		case r.Blocked:
			target = "blocked"
		case len(evs) == 0 && r.RPC == nil:
			target = "signed in, no event"
		}
		out = append(out, fmt.Sprintf("%-6s %-45s -> %s", r.Method, r.Pattern, target))
	}
	sort.Strings(out)
	return out
}

// TemplateParams lists the parameter names of a path template, in order.
func TemplateParams(pattern string) []string {
	segs, err := parseTemplate(pattern)
	if err != nil {
		return nil
	}
	var out []string
	for _, s := range segs {
		if s.kind != segLiteral {
			out = append(out, s.text)
		}
	}
	return out
}
