package httpauthz_test

import (
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/httpauthz"
	"github.com/langgate/langgate/pkg/tracing"
)

// TestRequestSpans: each endpoint's request is a server span named after
// its method and endpoint, the child of the traceparent it carries, with
// the decision on it; an unknown path starts none.
func TestRequestSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	env := testengine.Start(t, testengine.Options{})
	var engines decision.Holder
	engines.Store(env.Engine)
	srv := httptest.NewServer(httpauthz.Handler(&engines, nil, tracing.New(tracing.Defaults(), sdktrace.WithSpanProcessor(rec))))
	t.Cleanup(srv.Close)
	alice := "Bearer " + env.Token(t, "alice", nil)
	const tid, sid = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	tp := "00-" + tid + "-" + sid + "-01"

	for _, c := range []struct {
		name, url, span string
		headers         map[string]string
	}{
		{"envoy", "/envoy/threads/t1", "GET /envoy", map[string]string{"Authorization": alice, "Traceparent": tp}},
		{"nginx", "/nginx", "GET /nginx", map[string]string{"Authorization": alice, "Traceparent": tp, "X-Original-Method": "GET", "X-Original-URI": "/threads/t1"}},
		{"traefik", "/traefik", "GET /traefik", map[string]string{"Authorization": alice, "Traceparent": tp, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/threads/t1"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec.Reset()
			if a := do(t, "GET", srv.URL+c.url, c.headers, ""); a.status != 200 {
				t.Fatalf("status %d %s", a.status, a.rawBody)
			}
			var found bool
			for _, s := range rec.Ended() {
				if s.Name() != c.span {
					continue
				}
				found = true
				if s.SpanContext().TraceID().String() != tid || s.Parent().SpanID().String() != sid {
					t.Errorf("span %s: trace %s parent %s, want %s %s", s.Name(), s.SpanContext().TraceID(), s.Parent().SpanID(), tid, sid)
				}
				var route string
				for _, kv := range s.Attributes() {
					if kv.Key == decision.AttrRoute {
						route = kv.Value.AsString()
					}
				}
				if route != "GET /threads/{thread_id}" {
					t.Errorf("route attribute %q", route)
				}
			}
			if !found {
				t.Fatalf("no span %q among %d", c.span, len(rec.Ended()))
			}
		})
	}
	rec.Reset()
	if a := do(t, "GET", srv.URL+"/elsewhere", nil, ""); a.status != 404 {
		t.Fatalf("status %d", a.status)
	}
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("a 404 started %d spans", n)
	}
}
