package decision

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"
)

// Holder holds the engine in service, swapped atomically on reload, so a
// request always sees one whole configuration. Its Decide is the one
// entry point of every transport.
type Holder struct {
	p atomic.Pointer[Engine]
	// Log and Observer receive the decisions made when there is no engine
	// to make them (before the first configuration, after a panic);
	// slog.Default() when Log is nil. Set them before serving.
	Log      *slog.Logger
	Observer Observer
}

// Load returns the current engine, or nil before the first configuration.
func (h *Holder) Load() *Engine { return h.p.Load() }

// Store swaps in a new engine.
func (h *Holder) Store(e *Engine) { h.p.Store(e) }

// Decide decides one request with the engine in service. Every outcome is
// a Decision with an id, a log line and a metric: before the first
// configuration a 503, and a panic anywhere in the pipeline is recovered
// into a 500. Only an allow lets the request through.
func (h *Holder) Decide(ctx context.Context, req *Request) *Decision {
	return h.DecideWith(ctx, req, DecideOptions{})
}

// DecideWith is Decide with options (the transports pass HeadersOnly).
func (h *Holder) DecideWith(ctx context.Context, req *Request, opts DecideOptions) (d *Decision) {
	start := time.Now()
	eng := h.Load()
	defer func() {
		if r := recover(); r != nil {
			d = h.Recovered(ctx, eng, req, r, start)
		}
	}()
	if eng == nil {
		d = &Decision{ID: ids.next()}
		d.deny(Error, 503, "Service unavailable", "no configuration loaded")
		renderDenial(d, false)
		if sp := recording(ctx); sp != nil {
			annotate(sp, d, nil, false)
		}
		h.fallback().record(ctx, req, d, time.Since(start))
		return d
	}
	return eng.DecideWith(ctx, req, opts)
}

// Recovered turns a panic (r, from recover) while deciding req into a 500
// denial, logged with its stack and counted. Transports call it from
// their own recover, so a panic in a translation is answered like one in
// the core. eng may be nil.
func (h *Holder) Recovered(ctx context.Context, eng *Engine, req *Request, r any, start time.Time) *Decision {
	s := h.fallback()
	if eng != nil {
		s = &eng.sink
	}
	s.log.Error("panic while deciding; denying", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	d := &Decision{ID: ids.next()}
	d.deny(Error, 500, "Internal error", "internal error: panic recovered")
	renderDenial(d, false)
	if req == nil {
		req = &Request{}
	}
	if sp := recording(ctx); sp != nil {
		annotate(sp, d, nil, false)
	}
	s.record(ctx, req, d, time.Since(start))
	return d
}

func (h *Holder) fallback() *sink {
	log := h.Log
	if log == nil {
		log = slog.Default()
	}
	return &sink{observer: h.Observer, log: log}
}
