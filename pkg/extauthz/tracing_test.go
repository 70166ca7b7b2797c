package extauthz_test

import (
	"context"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"

	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/internal/testproc"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/extauthz"
	"github.com/langgate/langgate/pkg/tracing"
)

// Two callers' trace contexts: Envoy's ext_authz span (gRPC metadata) and
// the client's (the CheckRequest's traceparent header).
const (
	envoyTrace  = "0af7651916cd43dd8448eb211c80319c"
	envoySpan   = "b7ad6b7169203331"
	clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientSpan  = "00f067aa0ba902b7"
)

func traceparent(tid, sid, flags string) string { return "00-" + tid + "-" + sid + "-" + flags }

// TestCheckSpans: a Check is a server span, the child of the trace context
// in the gRPC metadata when there is one, else of the CheckRequest's
// traceparent, else a root; each phase that ran is its child; the span
// carries the decision and no identity; the decision log names the span.
func TestCheckSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tracer := tracing.New(tracing.Defaults(), sdktrace.WithSpanProcessor(rec))
	logs := &testproc.SyncBuffer{}
	h := startWith(t, testengine.Options{Log: logs}, tracer)
	alice := h.env.Token(t, "alice", nil)

	for _, c := range []struct {
		name       string
		metadata   string // traceparent in the gRPC metadata
		header     string // traceparent in the CheckRequest
		wantTrace  string // "" for a new root
		wantParent string
		sampled    bool
	}{
		{"metadata", traceparent(envoyTrace, envoySpan, "01"), "", envoyTrace, envoySpan, true},
		{"header only", "", traceparent(clientTrace, clientSpan, "01"), clientTrace, clientSpan, true},
		{"metadata wins over the header", traceparent(envoyTrace, envoySpan, "01"), traceparent(clientTrace, clientSpan, "01"), envoyTrace, envoySpan, true},
		{"a malformed metadata value falls back to the header", "00-zz-yy-01", traceparent(clientTrace, clientSpan, "01"), clientTrace, clientSpan, true},
		{"no trace context: a root", "", "", "", "", true},
		{"the caller did not sample: not recorded", traceparent(envoyTrace, envoySpan, "00"), "", envoyTrace, envoySpan, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec.Reset()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if c.metadata != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", c.metadata)
			}
			hdrs := map[string]string{":method": "GET", ":path": "/threads/t1", ":authority": "langgraph.test", "authorization": "Bearer " + alice}
			if c.header != "" {
				hdrs["traceparent"] = c.header
			}
			resp, err := h.client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/threads/t1", Headers: hdrs}}}})
			if err != nil {
				t.Fatal(err)
			}
			id := resp.GetDynamicMetadata().GetFields()["decision_id"].GetStringValue()
			if id == "" {
				t.Fatal("no decision_id in the dynamic metadata")
			}
			spans := rec.Ended()
			if !c.sampled {
				if len(spans) != 0 {
					t.Fatalf("%d spans recorded for an unsampled caller", len(spans))
				}
				// The log still joins the caller's trace.
				line := logLine(t, logs, id)
				if !strings.Contains(line, "trace_id="+envoyTrace) {
					t.Errorf("decision log %q lacks the caller's trace id", line)
				}
				return
			}
			check := only(t, spans, extauthz.SpanName)
			sc := check.SpanContext()
			if check.SpanKind() != trace.SpanKindServer {
				t.Errorf("kind %v, want server", check.SpanKind())
			}
			if c.wantTrace == "" {
				if check.Parent().IsValid() {
					t.Errorf("parent %v, want a root span", check.Parent())
				}
			} else {
				if got := sc.TraceID().String(); got != c.wantTrace {
					t.Errorf("trace id %s, want %s", got, c.wantTrace)
				}
				if got := check.Parent().SpanID().String(); got != c.wantParent || !check.Parent().IsRemote() {
					t.Errorf("parent span %s (remote %v), want the caller's %s", got, check.Parent().IsRemote(), c.wantParent)
				}
			}
			attrs := attrMap(check.Attributes())
			for k, want := range map[string]string{
				decision.AttrDecisionID: id,
				decision.AttrOutcome:    "allowed",
				decision.AttrStatus:     "200",
				decision.AttrPolicy:     "langgraph",
				decision.AttrRoute:      "GET /threads/{thread_id}",
				decision.AttrResource:   "threads",
				decision.AttrAction:     "read",
				decision.AttrEvents:     `["threads:read"]`,
				"rpc.system":            "grpc",
				"rpc.method":            "Check",
			} {
				if got := attrs[k]; got != want {
					t.Errorf("attribute %s = %q, want %q", k, got, want)
				}
			}
			if _, ok := attrs[decision.AttrIdentity]; ok {
				t.Errorf("the span names the caller (%s) without --trace-identity", decision.AttrIdentity)
			}
			for k, v := range attrs {
				if strings.Contains(v, alice) || strings.Contains(v, "alice") {
					t.Errorf("attribute %s = %q carries the token or the identity", k, v)
				}
			}
			phases := map[string]bool{}
			for _, s := range spans {
				if s.Name() == extauthz.SpanName {
					continue
				}
				phases[s.Name()] = true
				if s.Parent().SpanID() != sc.SpanID() || s.SpanContext().TraceID() != sc.TraceID() {
					t.Errorf("phase span %s: parent %s, want the Check span %s", s.Name(), s.Parent().SpanID(), sc.SpanID())
				}
			}
			for _, name := range []string{decision.SpanRoute, decision.SpanAuthenticate, decision.SpanResolve, decision.SpanAuthorize} {
				if !phases[name] {
					t.Errorf("no %s span (have %v)", name, phases)
				}
			}
			line := logLine(t, logs, id)
			if !strings.Contains(line, "trace_id="+sc.TraceID().String()) || !strings.Contains(line, "span_id="+sc.SpanID().String()) {
				t.Errorf("decision log %q does not name trace %s span %s", line, sc.TraceID(), sc.SpanID())
			}
		})
	}
}

// TestCheckSpanDenial: a denial ends the phases at the one that settled
// it, and says why on the span; a denial is not a span error.
func TestCheckSpanDenial(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	h := startWith(t, testengine.Options{}, tracing.New(tracing.Defaults(), sdktrace.WithSpanProcessor(rec)))
	resp := h.check(t, call{method: "GET", path: "/threads/t1", token: "not-a-token"})
	if resp.GetDeniedResponse() == nil {
		t.Fatal("want a denial")
	}
	spans := rec.Ended()
	check := only(t, spans, extauthz.SpanName)
	attrs := attrMap(check.Attributes())
	if attrs[decision.AttrOutcome] != "unauthenticated" || attrs[decision.AttrStatus] != "401" || attrs[decision.AttrAuthFail] != "invalid" {
		t.Errorf("attributes %v", attrs)
	}
	if check.Status().Code.String() == "Error" {
		t.Errorf("a 401 marked the span as an error: %v", check.Status())
	}
	var names []string
	for _, s := range spans {
		names = append(names, s.Name())
	}
	for _, name := range []string{decision.SpanResolve, decision.SpanAuthorize} {
		for _, n := range names {
			if n == name {
				t.Errorf("phase %s ran after authentication failed (spans %v)", name, names)
			}
		}
	}
}

// TestTraceIdentity: with TraceIdentity the span names the caller.
func TestTraceIdentity(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	env := testengine.Start(t, testengine.Options{})
	eng, err := decision.Build(env.Config, decision.Options{TraceIdentity: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	eng.Start(ctx)
	testproc.WaitFor(t, 10*time.Second, eng.Ready, "engine not ready")
	var engines decision.Holder
	engines.Store(eng)
	tracer := tracing.New(tracing.Defaults(), sdktrace.WithSpanProcessor(rec))
	sctx, sp := tracer.Start(ctx, "test", nil)
	engines.Decide(sctx, &decision.Request{Method: "GET", Path: "/threads/t1", Headers: map[string]string{
		":authority": "langgraph.test", "authorization": "Bearer " + env.Token(t, "alice", nil)}})
	sp.End()
	if got := attrMap(only(t, rec.Ended(), "test").Attributes())[decision.AttrIdentity]; got != "alice" {
		t.Errorf("%s = %q, want alice", decision.AttrIdentity, got)
	}
}

// only returns the one span named name.
func only(t *testing.T, spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d spans named %s, want 1 (of %d)", len(found), name, len(spans))
	}
	return found[0]
}

func attrMap(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

// logLine returns the decision log line of decision id.
func logLine(t *testing.T, logs *testproc.SyncBuffer, id string) string {
	t.Helper()
	for _, line := range strings.Split(logs.String(), "\n") {
		if strings.Contains(line, "decision_id="+id) {
			return line
		}
	}
	t.Fatalf("no decision log line for %s in:\n%s", id, logs.String())
	return ""
}
