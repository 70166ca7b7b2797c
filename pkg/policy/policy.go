// Package policy owns authorization: the handlers of a configuration
// compiled to CEL programs, LangGraph's handler precedence, and the
// evaluation of one event into allow or deny, filters and metadata.
package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/expr"
	"github.com/langgate/langgate/pkg/routes"
)

// Wildcard matches any resource or any action in a handler key.
const Wildcard = "*"

// Filter operators, as LangGraph writes them.
const (
	OpEq       = "$eq"
	OpContains = "$contains"
)

// Variables a handler's expressions can read.
const (
	VarUser     = "user"
	VarClaims   = "claims"
	VarResource = "resource"
	VarAction   = "action"
	VarValue    = "value"
	VarRequest  = "request"
	VarContext  = "context"
)

// PerRequestVars are the variables whose values differ between two
// requests of the same user for the same event; a handler reading none of
// them is Pure. Every variable NewEnv declares is either one of these or
// one of user, claims, resource and action (a test holds it to that).
var PerRequestVars = []string{VarValue, VarRequest, VarContext}

// NewEnv builds the CEL environment of handlers: the user and its claims,
// the event (resource, action, value), the request and the route context.
func NewEnv() (*cel.Env, error) {
	return expr.NewEnv(
		expr.Var{Name: VarUser, Type: expr.JSONMap},
		expr.Var{Name: VarClaims, Type: expr.JSONMap},
		expr.Var{Name: VarResource, Type: cel.StringType},
		expr.Var{Name: VarAction, Type: cel.StringType},
		expr.Var{Name: VarValue, Type: expr.JSONMap},
		expr.Var{Name: VarRequest, Type: expr.JSONMap},
		expr.Var{Name: VarContext, Type: cel.MapType(cel.StringType, cel.StringType)},
	)
}

// Request is the part of the HTTP request expressions can read as `request`.
type Request struct {
	Method  string
	Path    string
	Headers map[string]string
	Query   map[string][]string
	// Repeats picks the value of a parameter given more than once (the
	// route's reading; langgate refused the request unless the route
	// table declares one).
	Repeats routes.Repeats
}

// Input is everything one event's evaluation reads.
type Input struct {
	User    *authn.User
	Request *Request
	Context map[string]string
	Event   *routes.Event
	// Studio marks a request decided for a LangGraph Studio user
	// (authorize.studio): `user` then shows is_studio_user true and kind
	// "StudioUser".
	Studio bool
	// Trace, when not nil, records each expression and its value.
	Trace *EvalTrace
}

// EvalTrace records the expressions one event's handler evaluated.
type EvalTrace struct {
	Steps []Step
}

// Step is one evaluated expression.
type Step struct {
	// Part is "allow", "filters.<key>" or "metadata.<key>".
	Part   string `json:"part"`
	Expr   string `json:"expr"`
	Result any    `json:"result,omitempty"`
	Error  string `json:"error,omitempty"`
}

func (t *EvalTrace) record(part, expr string, result any, err error) {
	if t == nil {
		return
	}
	s := Step{Part: part, Expr: expr, Result: result}
	if err != nil {
		s.Error = err.Error()
	}
	t.Steps = append(t.Steps, s)
}

// activation resolves CEL variables from an Input without building a map
// per evaluation; `request` is assembled only if an expression reads it.
type activation struct {
	in  *Input
	req map[string]any
}

var _ interpreter.Activation = (*activation)(nil)

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case VarUser:
		if a.in.User == nil {
			return map[string]any{}, true
		}
		if a.in.Studio {
			return StudioView(a.in.User), true
		}
		return userValue{a.in.User}, true
	case VarClaims:
		if a.in.User == nil {
			return map[string]any{}, true
		}
		if c := a.in.User.ClaimsMap(); c != nil {
			return c, true
		}
		return map[string]any{}, true
	case VarResource:
		return a.in.Event.Resource, true
	case VarAction:
		return a.in.Event.Action, true
	case VarValue:
		if a.in.Event.ValueErr != nil {
			return types.NewErr("value is unavailable: %v", a.in.Event.ValueErr), true
		}
		return a.in.Event.Value, true
	case VarRequest:
		if a.req == nil {
			a.req = requestView(a.in.Request)
		}
		return a.req, true
	case VarContext:
		if a.in.Context == nil {
			return map[string]string{}, true
		}
		return a.in.Context, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }

func requestView(r *Request) map[string]any {
	if r == nil {
		return map[string]any{}
	}
	q := make(map[string]any, len(r.Query))
	for k, v := range r.Query {
		if len(v) > 0 {
			q[k] = r.Repeats.Pick(v)
		}
	}
	return map[string]any{"method": r.Method, "path": r.Path, "headers": r.Headers, "query": q}
}

// StudioView is the user as a Studio request shows it: the user's
// attributes with is_studio_user true and kind "StudioUser", as LangGraph's
// StudioUser (and langgraph_sdk.auth.is_studio_user) have them. It is built
// per request: Studio requests are rare, the cached user is shared.
func StudioView(u *authn.User) map[string]any {
	out := u.Attributes()
	out["is_studio_user"], out["kind"] = true, "StudioUser"
	return out
}

// Condition is a compiled CEL bool over the user, its claims, the request
// and the route context: a rule that is not about one event (for example
// authorize.studio).
type Condition struct {
	prg *expr.Program
}

// CompileCondition compiles e in the handlers' environment; it must
// produce a bool.
func CompileCondition(env *cel.Env, file string, e config.Expr) (*Condition, error) {
	prg, err := expr.Compile(env, file, e, cel.BoolType)
	if err != nil {
		return nil, err
	}
	return &Condition{prg: prg}, nil
}

// Holds evaluates the condition; in.Event may be nil (resource, action and
// value are then empty). An error or a non-bool is false, with the error.
func (c *Condition) Holds(in *Input) (bool, error) {
	if in.Event == nil {
		in.Event = &routes.Event{}
	}
	v, err := c.prg.Eval(&activation{in: in})
	if err != nil {
		return false, err
	}
	b, ok := v.(types.Bool)
	if !ok {
		return false, fmt.Errorf("%s: produced %s, not a bool", c.prg.Source, v.Type().TypeName())
	}
	return bool(b), nil
}

// Handler is one compiled authorization rule.
type Handler struct {
	// Key is the handler's `on` as written; Resource and Action its parts.
	Key      string
	Resource string
	Action   string
	Pos      config.Pos

	allow    *expr.Program
	allowed  string // the reason of an allow, built once
	message  string
	status   int
	filters  []entry
	metadata []entry
	// wholeFilters and wholeMetadata compute the whole map in one
	// expression (instead of filters/metadata entries).
	wholeFilters  *expr.Program
	wholeMetadata *expr.Program
	// nsPrefix is put before a store event's namespace.
	nsPrefix *expr.Program
	// Shadow is set on a handler being rolled out (config.Handler.Shadow).
	Shadow bool
	// pure is set when no expression reads a PerRequestVars variable;
	// readsEvent when one reads resource or action; readsValue when one
	// reads value.
	pure, readsEvent, readsValue bool
	// valuePaths are the paths of value its expressions read.
	valuePaths []expr.Path
}

// ValuePaths are the paths of the event's value that the handler's
// expressions read (an empty path: the whole value), each once: what a
// decision binds for the upstream to check beside the route's
// identifiers.
func (h *Handler) ValuePaths() []expr.Path { return h.valuePaths }

// QueryReads is what expressions read of request.query: the parameters
// they name, or, with All, any (the query as a whole, or a key computed
// when they run).
type QueryReads struct {
	Keys []string
	All  bool
}

// add records what p reads of request.query.
func (q *QueryReads) add(p *expr.Program) {
	for _, path := range p.ReadPaths(VarRequest) {
		switch {
		case len(path) == 0 || path[0] == "query" && len(path) == 1:
			q.All = true
		case path[0] == "query" && !slices.Contains(q.Keys, path[1]):
			q.Keys = append(q.Keys, path[1])
		}
	}
}

// Reads reports whether the query parameter name is read.
func (q QueryReads) Reads(name string) bool { return q.All || slices.Contains(q.Keys, name) }

// QueryReads is what the handlers (shadow handlers too) read of
// request.query.
func (p *Handlers) QueryReads() QueryReads {
	var q QueryReads
	for prg := range p.everyProgram {
		q.add(prg)
	}
	slices.Sort(q.Keys)
	return q
}

// ReadsClaims reports whether an expression of a handler (a shadow's
// included) reads `claims`: only then must a cached user keep them.
func (p *Handlers) ReadsClaims() bool {
	for prg := range p.everyProgram {
		if prg.Reads(VarClaims) {
			return true
		}
	}
	return false
}

// everyProgram yields every compiled expression of every handler, the
// shadow handlers' included (an iter.Seq).
func (p *Handlers) everyProgram(yield func(*expr.Program) bool) {
	for _, set := range []map[string]map[string]*Handler{p.byResource, p.shadows} {
		for _, byAction := range set {
			for _, h := range byAction {
				for _, prg := range h.programs() {
					if !yield(prg) {
						return
					}
				}
			}
		}
	}
}

// ReadsClaims reports whether the condition reads `claims`.
func (c *Condition) ReadsClaims() bool { return c.prg.Reads(VarClaims) }

// QueryReads is what the condition reads of request.query.
func (c *Condition) QueryReads() QueryReads {
	var q QueryReads
	q.add(c.prg)
	return q
}

// ReadsEvent reports whether an expression reads resource or action: a
// pure handler that reads neither gives a user the same result for every
// event it takes.
func (h *Handler) ReadsEvent() bool { return h.readsEvent }

// ReadsValue reports whether an expression reads the event's value: only
// then can the handler's result depend on the request body, so a route
// whose handlers never read it needs no body from the proxy.
func (h *Handler) ReadsValue() bool { return h.readsValue }

// Pure reports whether the handler's result for an event depends on the
// user alone: none of its expressions reads the request, the event's value
// or the route context (CEL here has no clock or randomness). Its Result
// for a user and an event can then be computed once and reused.
func (h *Handler) Pure() bool { return h.pure }

// programs lists every compiled expression of the handler.
func (h *Handler) programs() []*expr.Program {
	out := []*expr.Program{h.allow, h.wholeFilters, h.wholeMetadata, h.nsPrefix}
	for _, e := range h.filters {
		out = append(out, e.prg)
	}
	for _, e := range h.metadata {
		out = append(out, e.prg)
	}
	return slices.DeleteFunc(out, func(p *expr.Program) bool { return p == nil })
}

type entry struct {
	key string
	op  string
	prg *expr.Program
}

// Handlers is a policy's compiled handlers with LangGraph's precedence
// resolved.
type Handlers struct {
	handlers []*Handler
	// byResource[resource][action]; "*" keys hold wildcard handlers.
	byResource map[string]map[string]*Handler
	// shadows holds the shadow handlers the same way.
	shadows map[string]map[string]*Handler
}

// Vocabulary lists the resources and actions a route table can fire, so
// handler keys naming anything else are caught when the policy loads.
type Vocabulary map[string][]string

// VocabularyOf collects the events of a route table.
func VocabularyOf(rs []routes.Route) Vocabulary {
	v := Vocabulary{}
	for _, r := range rs {
		for _, e := range r.Events {
			if !slices.Contains(v[e.Resource], e.Action) {
				v[e.Resource] = append(v[e.Resource], e.Action)
			}
		}
	}
	for _, actions := range v {
		sort.Strings(actions)
	}
	return v
}

func (v Vocabulary) resources() []string {
	out := make([]string, 0, len(v))
	for r := range v {
		out = append(out, r)
	}
	sort.Strings(out)
	return out
}

func (v Vocabulary) hasAction(action string) bool {
	for _, actions := range v {
		if slices.Contains(actions, action) {
			return true
		}
	}
	return false
}

// Compile builds the Handlers of configured handlers. Every problem (bad key,
// unknown resource, CEL error, unknown operator) is collected.
func Compile(env *cel.Env, file string, hs []config.Handler, vocab Vocabulary) (*Handlers, error) {
	p := &Handlers{byResource: map[string]map[string]*Handler{}, shadows: map[string]map[string]*Handler{}}
	var errs config.ErrorList
	for i := range hs {
		h, err := compileHandler(env, file, &hs[i], vocab)
		if err != nil {
			errs.Append(file, hs[i].Pos, err)
			continue
		}
		set := p.byResource
		if h.Shadow {
			// A shadow may take the place of an enforced handler: rolling
			// out a new version of a rule.
			set = p.shadows
		}
		byAction := set[h.Resource]
		if byAction == nil {
			byAction = map[string]*Handler{}
			set[h.Resource] = byAction
		}
		if prev := byAction[h.Action]; prev != nil {
			errs = append(errs, &config.Error{File: file, Pos: h.Pos, Msg: fmt.Sprintf("handler %q duplicates the handler %q at line %d", h.Key, prev.Key, prev.Pos.Line)})
			continue
		}
		byAction[h.Action] = h
		p.handlers = append(p.handlers, h)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

func compileHandler(env *cel.Env, file string, c *config.Handler, vocab Vocabulary) (*Handler, error) {
	h := &Handler{Key: c.On, Pos: c.Pos, message: c.Message, status: c.Status, Shadow: c.Shadow}
	var errs config.ErrorList
	fail := func(format string, args ...any) {
		errs = append(errs, &config.Error{File: file, Pos: c.Pos, Msg: fmt.Sprintf(format, args...)})
	}
	res, act, dotted := strings.Cut(c.On, ".")
	if !dotted {
		act = Wildcard
	}
	h.Resource, h.Action = res, act
	switch {
	case res == "" || act == "":
		fail("handler %q: key must be \"*\", \"resource\", \"resource.action\" or \"*.action\"", c.On)
	case res != Wildcard && vocab[res] == nil:
		fail("handler %q: unknown resource %q (known: %s)", c.On, res, strings.Join(vocab.resources(), ", "))
	case act != Wildcard && res != Wildcard && !slices.Contains(vocab[res], act):
		fail("handler %q: resource %q has no action %q (known: %s)", c.On, res, act, strings.Join(vocab[res], ", "))
	case act != Wildcard && res == Wildcard && !vocab.hasAction(act):
		fail("handler %q: no resource has the action %q", c.On, act)
	}
	collect := func(err error) { errs.Append(file, c.Pos, err) }
	if !c.Allow.IsZero() {
		prg, err := expr.Compile(env, file, c.Allow, cel.BoolType)
		collect(err)
		h.allow = prg
	}
	compileMap := func(name string, m config.ValueMap, allowOps bool) []entry {
		out := make([]entry, 0, len(m.Entries))
		for _, e := range m.Entries {
			if e.Op != "" && !allowOps {
				errs = append(errs, &config.Error{File: file, Pos: e.OpPos, Msg: fmt.Sprintf("%s %q: operators are only allowed in filters", name, e.Key)})
				continue
			}
			if e.Op != "" && e.Op != OpEq && e.Op != OpContains {
				errs = append(errs, &config.Error{File: file, Pos: e.OpPos, Msg: fmt.Sprintf("%s %q: unknown filter operator %q (known: %s, %s)", name, e.Key, e.Op, OpEq, OpContains)})
				continue
			}
			prg, err := expr.Compile(env, file, e.Expr, nil)
			collect(err)
			out = append(out, entry{key: e.Key, op: e.Op, prg: prg})
		}
		return out
	}
	h.allowed = fmt.Sprintf("handler %q allowed", h.Key)
	h.filters = compileMap("filter", c.Filters, true)
	h.metadata = compileMap("metadata", c.Metadata, false)
	mapType := expr.JSONMap
	if c.Filters.Whole != nil {
		prg, err := expr.Compile(env, file, *c.Filters.Whole, mapType)
		collect(err)
		h.wholeFilters = prg
	}
	if c.Metadata.Whole != nil {
		prg, err := expr.Compile(env, file, *c.Metadata.Whole, mapType)
		collect(err)
		h.wholeMetadata = prg
	}
	if !c.NamespacePrefix.IsZero() {
		if res != "store" {
			errs = append(errs, &config.Error{File: file, Pos: c.NamespacePrefix.Pos, Msg: fmt.Sprintf("handler %q: namespace_prefix applies only to store handlers (on: store or store.<action>)", c.On)})
		} else {
			// list(dyn): the labels are checked when computed.
			prg, err := expr.Compile(env, file, c.NamespacePrefix, cel.ListType(cel.DynType))
			collect(err)
			h.nsPrefix = prg
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	h.pure = !slices.ContainsFunc(h.programs(), func(p *expr.Program) bool {
		return slices.ContainsFunc(PerRequestVars, p.Reads)
	})
	h.readsEvent = slices.ContainsFunc(h.programs(), func(p *expr.Program) bool {
		return p.Reads(VarResource) || p.Reads(VarAction)
	})
	h.readsValue = slices.ContainsFunc(h.programs(), func(p *expr.Program) bool { return p.Reads(VarValue) })
	for _, prg := range h.programs() {
		for _, path := range prg.ReadPaths(VarValue) {
			if !slices.ContainsFunc(h.valuePaths, func(q expr.Path) bool { return slices.Equal(q, path) }) {
				h.valuePaths = append(h.valuePaths, path)
			}
		}
	}
	return h, nil
}

// List returns the handlers in the order they were written.
func (p *Handlers) List() []*Handler { return p.handlers }

// Select returns the one handler LangGraph would run for an event: the
// first that exists of (resource, action), (resource, *), (*, action),
// (*, *). Nil means no handler: the event is allowed with no filter.
func (p *Handlers) Select(resource, action string) *Handler {
	if m := p.byResource[resource]; m != nil {
		if h := m[action]; h != nil {
			return h
		}
		if h := m[Wildcard]; h != nil {
			return h
		}
	}
	if m := p.byResource[Wildcard]; m != nil {
		if h := m[action]; h != nil {
			return h
		}
		return m[Wildcard]
	}
	return nil
}

// SelectShadow returns the shadow handler that would run for an event if
// the shadows were enforced: one at a level of the precedence above which
// no enforced handler exists (at its own level it takes the enforced
// one's place). Nil when no shadow applies.
func (p *Handlers) SelectShadow(resource, action string) *Handler {
	if len(p.shadows) == 0 {
		return nil
	}
	for _, k := range [4][2]string{{resource, action}, {resource, Wildcard}, {Wildcard, action}, {Wildcard, Wildcard}} {
		if h := p.shadows[k[0]][k[1]]; h != nil {
			return h
		}
		if p.byResource[k[0]][k[1]] != nil {
			return nil
		}
	}
	return nil
}

// Explain returns the handler Select picks and which precedence rule
// picked it.
func (p *Handlers) Explain(resource, action string) (*Handler, string) {
	h := p.Select(resource, action)
	switch {
	case h == nil:
		return nil, "no handler matches " + resource + ":" + action + ": allowed with no filter"
	case h.Resource == resource && h.Action == action:
		return h, "exact match"
	case h.Resource == resource:
		return h, "resource handler; there is no " + resource + "." + action
	case h.Action == action:
		return h, "action handler; there is no " + resource + "." + action + " or " + resource
	default:
		return h, "global handler; there is no " + resource + "." + action + ", " + resource + " or *." + action
	}
}

// Warning is a policy problem that is not an error: a handler that can
// never run, an event no handler covers.
type Warning struct {
	Pos config.Pos
	Msg string
}

// Lint reports handlers that no event of the vocabulary selects (a more
// specific handler always takes their events) and events no handler
// covers (allowed with no filter), as LangGraph's server warns too.
func (p *Handlers) Lint(vocab Vocabulary) []Warning {
	var out []Warning
	used := map[*Handler]bool{}
	for _, res := range vocab.resources() {
		for _, act := range vocab[res] {
			if sh := p.SelectShadow(res, act); sh != nil {
				used[sh] = true
			}
			h := p.Select(res, act)
			if h == nil {
				out = append(out, Warning{Msg: fmt.Sprintf("no handler covers %s:%s: it is allowed with no filter", res, act)})
				continue
			}
			used[h] = true
		}
	}
	for _, h := range p.handlers {
		if !used[h] {
			out = append(out, Warning{Pos: h.Pos, Msg: fmt.Sprintf("handler %q can never run: a more specific handler takes every event it matches", h.Key)})
		}
	}
	return out
}

// Result is the outcome of one event.
type Result struct {
	// Handler is the handler that ran; nil when none matched.
	Handler *Handler
	Allowed bool
	// Status and Detail describe a denial (HTTP status, client-facing text).
	Status int
	Detail string
	// Reason explains the outcome for logs and traces; never secret.
	Reason   string
	Filters  map[string]any
	Metadata map[string]any
	// NamespacePrefix is put before a store event's namespace by the
	// upstream (nil when the handler sets none).
	NamespacePrefix []string
	// Shadow is the result of the shadow handler for the event, when one
	// applies (SelectShadow); it never changes the outcome above.
	Shadow *Result
}

// Evaluate runs the handler selected for in.Event. Any evaluation error is a
// denial: the policy fails closed.
func (p *Handlers) Evaluate(in *Input) Result {
	r := p.evaluate(p.Select(in.Event.Resource, in.Event.Action), in)
	if sh := p.SelectShadow(in.Event.Resource, in.Event.Action); sh != nil {
		// Evaluated without the trace: it records what is enforced.
		shadowIn := *in
		shadowIn.Trace = nil
		s := p.evaluate(sh, &shadowIn)
		r.Shadow = &s
	}
	return r
}

// evaluate runs one handler (nil: none) for in.Event.
func (p *Handlers) evaluate(h *Handler, in *Input) Result {
	if h == nil {
		return Result{Allowed: true, Reason: "no handler"}
	}
	act := &activation{in: in}
	r := Result{Handler: h}
	if h.allow != nil {
		v, err := h.allow.Eval(act)
		if err != nil {
			in.Trace.record("allow", h.allow.Source, nil, err)
			return h.failed("allow", err)
		}
		ok, isBool := v.(types.Bool)
		in.Trace.record("allow", h.allow.Source, bool(ok), nil)
		if !isBool {
			return h.failed("allow", fmt.Errorf("%s: produced %s, not a bool", h.allow.Source, v.Type().TypeName()))
		}
		if !ok {
			r.Status, r.Detail = h.status, h.message
			if r.Status == 0 {
				r.Status = 403
			}
			if r.Detail == "" {
				r.Detail = "Forbidden"
			}
			r.Reason = fmt.Sprintf("handler %q: allow %q is false", h.Key, h.allow.Source)
			return r
		}
	}
	var err error
	if h.wholeFilters != nil {
		r.Filters, err = evalWhole(h.wholeFilters, act, true, in.Trace)
	} else {
		r.Filters, err = evalEntries(h.filters, act, true, in.Trace)
	}
	if err != nil {
		return h.failed("filters", err)
	}
	if h.wholeMetadata != nil {
		r.Metadata, err = evalWhole(h.wholeMetadata, act, false, in.Trace)
	} else {
		r.Metadata, err = evalEntries(h.metadata, act, false, in.Trace)
	}
	if err != nil {
		return h.failed("metadata", err)
	}
	if h.nsPrefix != nil {
		if r.NamespacePrefix, err = evalNamespacePrefix(h.nsPrefix, act, in.Trace); err != nil {
			return h.failed("namespace_prefix", err)
		}
	}
	r.Allowed = true
	r.Reason = h.allowed
	return r
}

func (h *Handler) failed(part string, err error) Result {
	return Result{Handler: h, Status: 403, Detail: "Forbidden", Reason: fmt.Sprintf("handler %q: %s failed: %v", h.Key, part, err)}
}

func evalEntries(es []entry, act *activation, filters bool, tr *EvalTrace) (map[string]any, error) {
	if len(es) == 0 {
		return nil, nil
	}
	part := "metadata."
	if filters {
		part = "filters."
	}
	out := make(map[string]any, len(es))
	for _, e := range es {
		v, err := e.prg.Eval(act)
		if err != nil {
			tr.record(part+e.key, e.prg.Source, nil, err)
			return nil, err
		}
		j, err := expr.ToJSON(v)
		tr.record(part+e.key, e.prg.Source, j, err)
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", e.prg.Source, e.key, err)
		}
		if filters {
			if e.op != "" {
				j = map[string]any{e.op: j}
			}
			if j, err = normalizeFilter(e.key, j, 0); err != nil {
				return nil, fmt.Errorf("filter %q: %w", e.key, err)
			}
		}
		out[e.key] = j
	}
	return out, nil
}

// evalNamespacePrefix computes a store namespace prefix: one or more
// labels, each a non-empty string without "." (LangGraph's namespace
// labels; the query form of a namespace splits on ".").
func evalNamespacePrefix(p *expr.Program, act *activation, tr *EvalTrace) ([]string, error) {
	v, err := p.Eval(act)
	if err != nil {
		tr.record("namespace_prefix", p.Source, nil, err)
		return nil, err
	}
	j, err := expr.ToJSON(v)
	tr.record("namespace_prefix", p.Source, j, err)
	if err != nil {
		return nil, err
	}
	list, _ := j.([]any)
	if len(list) == 0 {
		return nil, fmt.Errorf("%s: produced %v, want a non-empty list of labels", p.Source, j)
	}
	out := make([]string, len(list))
	for i, x := range list {
		label, ok := x.(string)
		if !ok || label == "" || strings.Contains(label, ".") {
			return nil, fmt.Errorf("%s: label %v is not a non-empty string without \".\"", p.Source, x)
		}
		out[i] = label
	}
	return out, nil
}

// evalWhole runs an expression that computes a whole filter or metadata
// map, and checks each computed filter value like a written one.
func evalWhole(p *expr.Program, act *activation, filters bool, tr *EvalTrace) (map[string]any, error) {
	part := "metadata"
	if filters {
		part = "filters"
	}
	v, err := p.Eval(act)
	if err != nil {
		tr.record(part, p.Source, nil, err)
		return nil, err
	}
	j, err := expr.ToJSON(v)
	tr.record(part, p.Source, j, err)
	if err != nil {
		return nil, err
	}
	m, ok := j.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s: produced %T, not a map", p.Source, j)
	}
	if filters {
		for k, fv := range m {
			if m[k], err = normalizeFilter(k, fv, 0); err != nil {
				return nil, fmt.Errorf("filter %q: %w", k, err)
			}
		}
	}
	if len(m) == 0 {
		return nil, nil
	}
	return m, nil
}

// Logical filter operators, as the LangGraph Python server accepts them at
// the top of a filter object (and at most two levels deep): a list of at
// least two filter objects, any (or all) of which must match.
const (
	OpOr  = "$or"
	OpAnd = "$and"
)

// maxFilterNesting is the Python server's limit on nested $or/$and.
const maxFilterNesting = 2

// normalizeFilter normalizes the value of one key of a filter object: a
// logical operator's list of filter objects, or a metadata key's value.
func normalizeFilter(key string, v any, depth int) (any, error) {
	if key != OpOr && key != OpAnd {
		if strings.HasPrefix(key, "$") {
			return nil, fmt.Errorf("unknown logical operator %q (known: %s, %s)", key, OpOr, OpAnd)
		}
		return normalizeFilterValue(v)
	}
	if depth >= maxFilterNesting {
		return nil, fmt.Errorf("%s nested more than %d levels deep (the LangGraph server refuses it)", key, maxFilterNesting)
	}
	list, ok := v.([]any)
	if !ok || len(list) < 2 {
		return nil, fmt.Errorf("%s needs a list of at least two filter objects, got %v", key, v)
	}
	out := make([]any, len(list))
	for i, g := range list {
		group, ok := g.(map[string]any)
		if !ok || len(group) == 0 {
			return nil, fmt.Errorf("%s[%d] must be a non-empty filter object, got %v", key, i, g)
		}
		norm := make(map[string]any, len(group))
		for k, gv := range group {
			nv, err := normalizeFilter(k, gv, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s[%d].%s: %w", key, i, k, err)
			}
			norm[k] = nv
		}
		out[i] = norm
	}
	return out, nil
}

// normalizeFilterValue puts a filter value in the one form every LangGraph
// server enforces, and refuses any value a server would silently treat as
// "match everything" — LangGraph's JS server (isAuthMatching) skips an
// operator whose operand is falsy ("", 0, false, null), ignores unknown
// operators, and lets plain lists and objects match anything:
//
//   - a scalar (string, number, bool, null) stays: strict equality;
//   - {"$eq": scalar} becomes the scalar (the same test, without the falsy
//     hole);
//   - {"$contains": x} stays when x is a truthy scalar or a list of scalars;
//   - anything else is an error, and the event is denied.
func normalizeFilterValue(v any) (any, error) {
	switch x := v.(type) {
	case nil, string, bool, int64, uint64, float64:
		return v, nil
	case []any:
		return nil, fmt.Errorf("a list is not a filter value (LangGraph would match everything); use {%s: list}", OpContains)
	case map[string]any:
		if len(x) != 1 {
			return nil, fmt.Errorf("an object filter value must hold exactly one operator (%s or %s), got %d keys", OpEq, OpContains, len(x))
		}
		for op, operand := range x {
			switch op {
			case OpEq:
				if !isScalar(operand) {
					return nil, fmt.Errorf("%s needs a string, number, boolean or null, got %T", OpEq, operand)
				}
				return operand, nil
			case OpContains:
				if list, ok := operand.([]any); ok {
					for _, e := range list {
						if !isScalar(e) {
							return nil, fmt.Errorf("%s list elements must be strings, numbers, booleans or null, got %T", OpContains, e)
						}
					}
					return x, nil
				}
				if !isScalar(operand) || !truthy(operand) {
					return nil, fmt.Errorf("%s needs a non-empty, non-zero scalar or a list (LangGraph skips a falsy operand, matching everything), got %v", OpContains, operand)
				}
				return x, nil
			default:
				return nil, fmt.Errorf("unknown filter operator %q", op)
			}
		}
	}
	return nil, fmt.Errorf("unsupported filter value %T", v)
}

func isScalar(v any) bool {
	switch v.(type) {
	case nil, string, bool, int64, uint64, float64:
		return true
	}
	return false
}

// truthy is JavaScript's truthiness for scalars.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case string:
		return x != ""
	case bool:
		return x
	case int64:
		return x != 0
	case uint64:
		return x != 0
	case float64:
		return x != 0
	}
	return true
}
