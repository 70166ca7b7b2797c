package decision

import (
	"context"

	"cel.dev/cel-go/cel"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync/atomic"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/policy"
	"github.com/langgate/langgate/pkg/routes"
)

// Options tune Build.
type Options struct {
	// Authn configures key fetching, the clock and the token caches of a
	// new registry (ignored with Registry).
	Authn authn.Options
	// Registry, when set, is the registry of the engine being replaced: a
	// reload keeps the key sets and token caches it can.
	Registry *authn.Registry
	// Logger receives decision logs (slog.Default()).
	Logger *slog.Logger
	// Log chooses which decisions are logged at info level.
	Log LogOptions
	// Observer is told about every decision (metrics).
	Observer Observer
}

// Build compiles a loaded configuration into an Engine: route tables, user
// mappings and handlers of every policy, every CEL expression type-checked.
// All problems are returned together as a config.ErrorList. Background work
// (OIDC discovery, key refresh) starts with Engine.Start.
func Build(f *config.File, opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Authn.Logger == nil {
		opts.Authn.Logger = opts.Logger
	}
	env, err := policy.NewEnv()
	if err != nil {
		return nil, fmt.Errorf("building the CEL environment: %w", err)
	}
	e := &Engine{
		byName:       map[string]*Policy{},
		hosts:        map[string]*Policy{},
		registry:     opts.Registry,
		reasonHeader: f.Explain.ReasonHeader,
		observer:     opts.Observer,
		logOpts:      opts.Log,
		log:          opts.Logger,
		ids:          newIDSource(),
	}
	if e.registry == nil {
		e.registry = authn.NewRegistry(opts.Authn)
	}
	var errs config.ErrorList
	for _, pc := range f.PolicyList() {
		p, err := buildPolicy(f.Name, pc, env, e.registry)
		if err != nil {
			errs.Append(f.Name, pc.Pos, err)
			continue
		}
		e.policies = append(e.policies, p)
		e.byName[p.Name] = p
		for _, h := range pc.Hosts {
			h = strings.ToLower(h)
			if suffix, ok := strings.CutPrefix(h, "*"); ok {
				e.suffixes = append(e.suffixes, hostSuffix{suffix: suffix, policy: p})
			} else {
				e.hosts[h] = p
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	sort.Slice(e.suffixes, func(i, j int) bool { return len(e.suffixes[i].suffix) > len(e.suffixes[j].suffix) })
	seen := map[*authn.Issuer]bool{}
	for _, p := range e.policies {
		for _, iss := range p.Auth.Issuers() {
			if !seen[iss] {
				seen[iss] = true
				e.issuers = append(e.issuers, iss)
			}
		}
	}
	switch {
	case f.DefaultPolicy != "":
		e.defaultPolicy = e.byName[f.DefaultPolicy]
	case len(e.policies) == 1:
		e.defaultPolicy = e.policies[0]
	}
	return e, nil
}

func buildPolicy(file string, pc *config.Policy, env *cel.Env, reg *authn.Registry) (*Policy, error) {
	rs, strip, err := routeTable(file, pc.Authorize.Routes)
	if err != nil {
		return nil, err
	}
	table, err := routes.NewTable(rs)
	if err != nil {
		return nil, &config.Error{File: file, Pos: pc.Authorize.Routes.Pos, Msg: fmt.Sprintf("policy %q: %v", pc.Name, err)}
	}
	var errs config.ErrorList
	auth, err := authn.New(file, pc.Authenticate, env, reg)
	errs.Append(file, pc.Pos, err)
	vocab := policy.VocabularyOf(rs)
	handlers, err := policy.Compile(env, file, pc.Authorize.Handlers, vocab)
	errs.Append(file, pc.Pos, err)
	if len(errs) > 0 {
		return nil, errs
	}
	return &Policy{
		Name:          pc.Name,
		Table:         table,
		Auth:          auth,
		Handlers:      handlers,
		Vocabulary:    vocab,
		unmatchedDeny: pc.Authorize.Unmatched == config.UnmatchedDeny,
		strip:         strip,
	}, nil
}

// routeTable assembles a policy's routes: a built-in table, or a list of
// custom routes and included built-in tables.
func routeTable(file string, spec config.RouteSpec) ([]routes.Route, []string, error) {
	if spec.List == nil {
		if spec.Table == config.RoutesLangGraph {
			return routes.LangGraph(), routes.LangGraphStripHeaders, nil
		}
		return nil, nil, nil
	}
	var rs []routes.Route
	var strip []string
	for _, entry := range spec.List {
		if entry.Include == config.RoutesLangGraph {
			rs = append(rs, routes.LangGraph()...)
			strip = routes.LangGraphStripHeaders
			continue
		}
		fields, err := valueFields(entry)
		if err != nil {
			return nil, nil, &config.Error{File: file, Pos: entry.Pos, Msg: err.Error()}
		}
		for _, m := range entry.Methods {
			r := routes.Route{Method: m, Pattern: entry.Path, Public: entry.Public}
			if !entry.Public {
				r.Events = []routes.EventSpec{{Resource: entry.Resource, Action: entry.Action, Fields: fields}}
			}
			rs = append(rs, r)
		}
	}
	return rs, strip, nil
}

// valueFields turns a route's `value` map into fields; with none, every
// path parameter is a field of the same name.
func valueFields(entry config.RouteEntry) ([]routes.Field, error) {
	if len(entry.Value) == 0 {
		var out []routes.Field
		for _, p := range routes.TemplateParams(entry.Path) {
			out = append(out, routes.Field{Name: p, From: routes.FromPath})
		}
		return out, nil
	}
	names := make([]string, 0, len(entry.Value))
	for n := range entry.Value {
		names = append(names, n)
	}
	sort.Strings(names)
	params := routes.TemplateParams(entry.Path)
	var out []routes.Field
	for _, name := range names {
		src := entry.Value[name]
		kind, key, _ := strings.Cut(src, ".")
		f := routes.Field{Name: name, Key: key}
		switch kind {
		case "path":
			f.From = routes.FromPath
			if !slices.Contains(params, key) {
				return nil, fmt.Errorf("route %s: value.%s: the path template has no parameter {%s}", entry.Path, name, key)
			}
		case "query":
			f.From = routes.FromQuery
			if k, ok := strings.CutSuffix(key, ".dotted"); ok {
				f.From, f.Key = routes.FromQueryDotted, k
			}
		case "body":
			f.From = routes.FromBody
		default:
			return nil, fmt.Errorf("route %s: value.%s: unknown source %q", entry.Path, name, src)
		}
		out = append(out, f)
	}
	return out, nil
}

// Start begins the engine's background work (OIDC discovery and key
// refresh) until ctx ends. Starting a registry that already runs (a
// reload) only starts the issuers that are new.
func (e *Engine) Start(ctx context.Context) { e.registry.Start(ctx) }

// Ready reports whether the engine can authenticate: every issuer it uses
// has keys.
func (e *Engine) Ready() bool {
	for _, iss := range e.issuers {
		if !iss.Ready() {
			return false
		}
	}
	return true
}

// Issuers lists the issuers the engine's policies trust.
func (e *Engine) Issuers() []*authn.Issuer { return e.issuers }

// Retire stops what this engine uses and next does not (after next has
// been swapped in): issuers' refresh loops, token caches.
func (e *Engine) Retire(next *Engine) {
	if e.registry != next.registry {
		return
	}
	auths := make([]*authn.Authenticator, 0, len(next.policies))
	for _, p := range next.policies {
		auths = append(auths, p.Auth)
	}
	e.registry.Retain(auths)
}

// Holder holds the engine in service, swapped atomically on reload, so a
// request always sees one whole configuration.
type Holder struct {
	p atomic.Pointer[Engine]
}

// Load returns the current engine, or nil before the first configuration.
func (h *Holder) Load() *Engine { return h.p.Load() }

// Store swaps in a new engine.
func (h *Holder) Store(e *Engine) { h.p.Store(e) }
