package decision

import (
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"

	"cel.dev/cel-go/cel"

	"github.com/langgate/langgate/pkg/authctx"
	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/policy"
	"github.com/langgate/langgate/pkg/routes"
)

// Options tune Build.
type Options struct {
	// Authn configures key fetching, the clock and the token caches.
	Authn authn.Options
	// Previous, when set, is the engine in service that the new one will
	// replace: the build takes over its unchanged issuers, API key stores
	// and token caches (read only; nothing of it changes until Retire).
	Previous *Engine
	// Logger receives decision logs (slog.Default()).
	Logger *slog.Logger
	// Log chooses which decisions are logged at info level.
	Log LogOptions
	// Observer is told about every decision (metrics).
	Observer Observer
	// TraceIdentity records the caller's identity (enduser.id) on the
	// spans of traced decisions; off, no span names a person.
	TraceIdentity bool
}

// Build compiles a loaded configuration into an Engine: route tables, user
// mappings and handlers of every policy, every CEL expression type-checked
// in the environment of its place. All problems are returned together as
// a config.ErrorList. Build has no side effects: it starts no goroutine,
// fetches nothing and watches nothing (it reads the API key lists the
// configuration names, which are part of it); Engine.Start commits.
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
		byName:        map[string]*Policy{},
		hosts:         map[string]*Policy{},
		reasonHeader:  f.Explain.ReasonHeader,
		traceIdentity: opts.TraceIdentity,
		sink:          sink{observer: opts.Observer, log: opts.Logger, opts: opts.Log},
	}
	if f.CORS != nil {
		e.cors = newCORSRules(f.CORS.AllowOrigins, f.CORS.AllowCredentials)
	}
	if c := f.Context; c != nil {
		data, err := config.ReadBounded(c.Keys, authctx.MaxKeyFileBytes)
		var keys *authctx.Keys
		if err == nil {
			keys, err = authctx.ParseKeys(data)
		}
		if err != nil {
			return nil, config.ErrorList{{File: f.Name, Pos: c.Pos, Msg: fmt.Sprintf("context.keys %s: %v", c.Keys, err)}}
		}
		e.signer = authctx.NewSigner(keys, authctx.Options{Issuer: c.Issuer, Audience: c.Audience, TTL: c.TTL.Duration})
	}
	if opts.Previous != nil {
		e.registry = opts.Previous.registry.Next(opts.Authn)
	} else {
		e.registry = authn.NewRegistry(opts.Authn)
	}
	var errs config.ErrorList
	for _, pc := range f.PolicyList() {
		p, err := buildPolicy(f.Name, pc, env, e.registry)
		if err != nil {
			errs.Append(f.Name, pc.Pos, err)
			continue
		}
		p.ShadowOf = pc.ShadowOf
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
	var enforced []*Policy
	for _, p := range e.policies {
		if p.ShadowOf == "" {
			enforced = append(enforced, p)
		} else {
			e.byName[p.ShadowOf].shadow = p // validated: it exists and is enforced
		}
	}
	switch {
	case f.DefaultPolicy != "":
		e.defaultPolicy = e.byName[f.DefaultPolicy]
	case len(enforced) == 1:
		e.defaultPolicy = enforced[0]
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
	vocab := policy.VocabularyOf(rs)
	handlers, err := policy.Compile(env, file, pc.Authorize.Handlers, vocab)
	errs.Append(file, pc.Pos, err)
	var studio *policy.Condition
	if !pc.Authorize.Studio.IsZero() {
		studio, err = policy.CompileCondition(env, file, pc.Authorize.Studio)
		errs.Append(file, pc.Pos, err)
	}
	// What the users must keep: their claims only when an expression reads
	// them (or when the handlers did not compile, to report every error).
	resource, err := newProtectedResource(file, pc.Authenticate)
	errs.Append(file, pc.Pos, err)
	// The MCP resource checks the token's aud: its users keep their claims.
	needs := authn.Needs{Claims: handlers == nil || handlers.ReadsClaims() || studio != nil && studio.ReadsClaims() || resource != nil}
	auth, err := authn.New(file, pc.Authenticate, reg, needs)
	errs.Append(file, pc.Pos, err)
	if len(errs) > 0 {
		return nil, errs
	}
	reads := handlers.QueryReads()
	if studio != nil {
		sr := studio.QueryReads()
		reads.All = reads.All || sr.All
		reads.Keys = append(reads.Keys, sr.Keys...)
	}
	return &Policy{
		queryReads:    reads,
		studio:        studio,
		Name:          pc.Name,
		corsPreflight: pc.Authorize.CORSPreflight == config.CORSPreflightAllow,
		runAssistant:  pc.Authorize.RunAssistant == config.RunAssistantRequired,
		Table:         table,
		Auth:          auth,
		Handlers:      handlers,
		Vocabulary:    vocab,
		unmatchedDeny: pc.Authorize.Unmatched == config.UnmatchedDeny,
		strip:         strip,
		resource:      resource,
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
			rs = append(rs, routes.Mounted(routes.LangGraph(), entry.MountPrefix)...)
			strip = routes.LangGraphStripHeaders
			continue
		}
		fields, err := valueFields(entry)
		if err != nil {
			return nil, nil, &config.Error{File: file, Pos: entry.Pos, Msg: err.Error()}
		}
		var rep routes.Repeats
		switch entry.RepeatedQuery {
		case config.RepeatedQueryFirst:
			rep = routes.RepeatsFirst
		case config.RepeatedQueryLast:
			rep = routes.RepeatsLast
		}
		for _, m := range entry.Methods {
			r := routes.Route{Method: m, Pattern: entry.Path, Public: entry.Public, Repeats: rep}
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
		src, err := config.ParseValueSource(entry.Value[name])
		if err != nil {
			return nil, fmt.Errorf("route %s: value.%s: %w", entry.Path, name, err)
		}
		// A custom route's query and body fields are what its server acts
		// on: bound, as path parameters are by the path.
		f := routes.Field{Name: name, Key: src.Key, ID: src.Kind != config.SourcePath}
		switch src.Kind {
		case config.SourcePath:
			f.From = routes.FromPath
			if !slices.Contains(params, src.Key) {
				return nil, fmt.Errorf("route %s: value.%s: the path template has no parameter {%s}", entry.Path, name, src.Key)
			}
		case config.SourceQuery:
			f.From = routes.FromQuery
			if src.Dotted {
				f.From = routes.FromQueryDotted
			}
		case config.SourceBody:
			f.From = routes.FromBody
		}
		out = append(out, f)
	}
	return out, nil
}
