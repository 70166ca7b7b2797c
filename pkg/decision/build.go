package decision

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/policy"
	"github.com/langgate/langgate/pkg/routes"
)

// Options tune Build.
type Options struct {
	// Authn configures key fetching, the clock and the token cache.
	Authn authn.Options
	// Logger receives decision logs (slog.Default()).
	Logger *slog.Logger
}

// Build compiles a loaded configuration into an Engine: route table, user
// mapping and handlers, every CEL expression type-checked. All problems are
// returned together as a config.ErrorList. Background work (discovery, key
// refresh) starts with Engine.Start.
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
	var rs []routes.Route
	var strip []string
	if f.Authorize.Routes == config.RoutesLangGraph {
		rs, strip = routes.LangGraph(), routes.LangGraphStripHeaders
	}
	table, err := routes.NewTable(rs)
	if err != nil {
		return nil, fmt.Errorf("%s: route table: %w", f.Name, err)
	}
	var errs config.ErrorList
	collect := func(err error) {
		var list config.ErrorList
		if errors.As(err, &list) {
			errs = append(errs, list...)
		} else if err != nil {
			errs = append(errs, &config.Error{File: f.Name, Msg: err.Error()})
		}
	}
	auth, err := authn.New(f, env, opts.Authn)
	collect(err)
	pol, err := policy.Compile(env, f.Name, f.Authorize.Handlers, policy.VocabularyOf(rs))
	collect(err)
	if len(errs) > 0 {
		return nil, errs
	}
	return &Engine{
		table:         table,
		auth:          auth,
		policy:        pol,
		unmatchedDeny: f.Authorize.Unmatched == config.UnmatchedDeny,
		strip:         strip,
		log:           opts.Logger,
		ids:           newIDSource(),
	}, nil
}

// Start begins the engine's background work (OIDC discovery and key
// refresh) until ctx ends.
func (e *Engine) Start(ctx context.Context) { e.auth.Start(ctx) }

// Ready reports whether the engine can authenticate: every issuer has keys.
func (e *Engine) Ready() bool { return e.auth.Ready() }

// Holder holds the engine in service, swapped atomically on reload, so a
// request always sees one whole configuration.
type Holder struct {
	p atomic.Pointer[Engine]
}

// Load returns the current engine, or nil before the first configuration.
func (h *Holder) Load() *Engine { return h.p.Load() }

// Store swaps in a new engine.
func (h *Holder) Store(e *Engine) { h.p.Store(e) }
