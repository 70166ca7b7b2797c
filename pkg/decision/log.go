package decision

import (
	"context"
	"log/slog"
	mrand "math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Observer is told about every decision (the metrics package is one).
type Observer interface {
	Observe(d *Decision, took time.Duration)
}

// LogOptions choose which decisions are logged at info level: every
// denial, and allows when LogAllows, sampled at AllowSampleRate (0..1).
// Decisions not chosen are logged at debug level.
type LogOptions struct {
	LogAllows       bool
	AllowSampleRate float64
}

// sink is where the log phase sends a decision: the observer and the
// decision log.
type sink struct {
	observer Observer
	log      *slog.Logger
	opts     LogOptions
}

// record is the log phase: the observer counts the decision and the
// decision log gets its line.
func (s *sink) record(ctx context.Context, req *Request, d *Decision, took time.Duration) {
	if s.observer != nil {
		s.observer.Observe(d, took)
	}
	level := slog.LevelDebug
	switch {
	case !d.Allow(), d.WouldDeny(), d.ShadowPolicy != nil && d.ShadowPolicy.Verdict != VerdictAgree:
		level = slog.LevelInfo
	case s.opts.LogAllows && (s.opts.AllowSampleRate >= 1 || mrand.Float64() < s.opts.AllowSampleRate): //nolint:gosec // log sampling, not security
		level = slog.LevelInfo
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("decision_id", d.ID),
		slog.String("request_id", req.Headers["x-request-id"]),
		slog.String("method", req.Method),
		slog.String("path", d.Path),
		slog.String("outcome", string(d.Outcome)),
		slog.String("policy", d.Policy),
		slog.Int("status", d.Status),
		slog.String("reason", d.Reason),
		slog.Duration("latency", took),
	}
	if r := d.Route; r != nil {
		attrs = append(attrs, slog.String("route", r.Method+" "+r.Pattern))
		if d.RPC != nil && d.RPC.Method != "" {
			// The route's own list bounds what is logged: an unknown
			// method is logged as such, not as the client spelled it.
			m := d.RPC.Method
			if _, known := r.RPC.Methods[m]; !known {
				m = "(unknown)"
				if d.RPC.Notification {
					m = "(notification)"
				}
			}
			attrs = append(attrs, slog.String("rpc_method", m))
		}
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		// langgate's own span (tracing on): its trace, and its id, which
		// the exported span carries.
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	} else if tid := traceID(req.Headers["traceparent"]); tid != "" {
		// Tracing off: the caller's trace, from the request it sent.
		attrs = append(attrs, slog.String("trace_id", tid))
	}
	if d.User != nil {
		attrs = append(attrs, slog.String("identity", d.User.Identity))
		if d.Studio {
			attrs = append(attrs, slog.Bool("studio", true))
		}
	}
	if len(d.Events) > 0 {
		evs := make([]string, len(d.Events))
		for i, ev := range d.Events {
			evs[i] = ev.Resource + ":" + ev.Action
		}
		attrs = append(attrs, slog.Any("events", evs), slog.String("handler", d.Handler))
	}
	if d.Allow() {
		// What each granted event may run on: what the upstream checks.
		var values map[string][]map[string]any
		for i := range d.Grants {
			if g := &d.Grants[i]; !g.AnyValue && len(g.Values) > 0 {
				if values == nil {
					values = make(map[string][]map[string]any, len(d.Grants))
				}
				values[g.Event] = g.Values
			}
		}
		if values != nil {
			attrs = append(attrs, slog.Any("values", values))
		}
	}
	if len(d.Shadow) > 0 {
		attrs = append(attrs, slog.Any("shadow", d.Shadow))
	}
	if d.ShadowPolicy != nil {
		attrs = append(attrs, slog.Any("shadow_policy", d.ShadowPolicy))
	}
	if len(d.Shadow) > 0 || d.ShadowPolicy != nil {
		attrs = append(attrs, slog.Bool("would_deny", d.WouldDeny()))
	}
	s.log.LogAttrs(context.WithoutCancel(ctx), level, "decision", attrs...)
}

// traceID returns the trace id of a W3C traceparent header
// ("00-<32 hex>-<16 hex>-<2 hex>"), or "" when it is malformed.
func traceID(tp string) string {
	if len(tp) < 55 || tp[2] != '-' || tp[35] != '-' {
		return ""
	}
	id := tp[3:35]
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return ""
		}
	}
	if id == "00000000000000000000000000000000" {
		return ""
	}
	return id
}
