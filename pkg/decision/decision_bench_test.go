package decision_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/langgate/langgate/examples/langgraph"
	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/policy"
	"github.com/langgate/langgate/pkg/routes"
	"github.com/langgate/langgate/pkg/tracing"
)

// benchRequests are the shapes measured: a read with the owner filter, a
// store write whose rule reads the JSON body, an MCP tool call and an A2A
// message (JSON-RPC: the body read, four inner events granted).
func benchRequests(token string) map[string]*decision.Request {
	body := []byte(`{"namespace":["alice","notes"],"key":"k1","value":{"text":"hello"}}`)
	rpc := func(path, body string) *decision.Request {
		return &decision.Request{Method: "POST", Path: path, Body: []byte(body),
			Headers: map[string]string{"authorization": "Bearer " + token, "content-type": "application/json", "content-length": strconv.Itoa(len(body))}}
	}
	return map[string]*decision.Request{
		"mcp_tools_call": rpc("/mcp", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"alice_agent","arguments":{"messages":[{"role":"human","content":"hello"}]}}}`),
		"a2a_send": rpc("/a2a/6ba7b821-9dad-11d1-80b4-00c04fd430c8",
			`{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"role":"user","messageId":"m1","contextId":"1ef6c4a2-0000-4000-8000-000000000001","parts":[{"kind":"text","text":"hi"}]}}}`),
		"read": {Method: "GET", Path: "/threads/1ef5c0de-1b2c-6d3e-8f90-123456789abc",
			Headers: map[string]string{"authorization": "Bearer " + token, ":authority": "lg.example", "x-request-id": "r1", "user-agent": "langgraph-sdk"}},
		"store_put": {Method: "PUT", Path: "/store/items", Body: body,
			Headers: map[string]string{"authorization": "Bearer " + token, "content-type": "application/json", "content-length": strconv.Itoa(len(body))}},
	}
}

// BenchmarkDecideCached: a token already verified (the steady state of a
// client session): hash, cache hit, route, CEL, headers; as the
// transports decide (HeadersOnly: a memoized result's maps are not built).
func BenchmarkDecideCached(b *testing.B) {
	env := testengine.Start(b, testengine.Options{})
	tok := env.Token(b, "alice", nil)
	opts := decision.DecideOptions{HeadersOnly: true}
	for name, req := range benchRequests(tok) {
		b.Run(name, func(b *testing.B) {
			ctx := context.Background()
			if d := env.Engine.DecideWith(ctx, req, opts); !d.Allow() {
				b.Fatalf("denied: %s", d.Reason)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				env.Engine.DecideWith(ctx, req, opts)
			}
		})
	}
}

// BenchmarkDecideTraced: the cached read with tracing off (no span in the
// context), with an unsampled caller (a span that records nothing), and
// sampled (the request's span and its four phase spans, exported to a
// no-op exporter): the ratio of each to "off" is tracing's cost.
func BenchmarkDecideTraced(b *testing.B) {
	env := testengine.Start(b, testengine.Options{})
	req := benchRequests(env.Token(b, "alice", nil))["read"]
	tracer := tracing.New(tracing.Defaults(), sdktrace.WithSpanProcessor(sdktrace.NewSimpleSpanProcessor(tracetest.NewNoopExporter())))
	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-"
	for _, c := range []struct {
		name  string
		flags string // the caller's trace flags; "" for tracing off
	}{{"off", ""}, {"unsampled", "00"}, {"sampled", "01"}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ctx := context.Background()
				var sp trace.Span
				if c.flags != "" {
					ctx, sp = tracer.Start(ctx, "check", nil, tracing.MapCarrier{"traceparent": parent + c.flags})
				}
				if d := env.Engine.Decide(ctx, req); !d.Allow() {
					b.Fatalf("denied: %s", d.Reason)
				}
				if sp != nil {
					if sp.IsRecording() != (c.flags == "01") {
						b.Fatalf("recording %v with flags %s", sp.IsRecording(), c.flags)
					}
					sp.End()
				}
			}
		})
	}
}

// currentPolicy is a policy in service; nextPolicy, appended to it, is a
// shadow policy decided beside it that agrees on everything but
// threads.delete.
const (
	currentPolicy = `authenticate:
  oidc: [{issuer: "${OIDC_ISSUER}", audiences: ["${OIDC_AUDIENCE}"]}]
  user: {identity: claims.sub}
policies:
  current:
    authorize:
      routes: langgraph
      handlers: [{on: "*", filters: {owner: user.identity}}]
`
	nextPolicy = `  next:
    shadow_of: current
    authorize:
      routes: langgraph
      handlers: [{on: "*", filters: {owner: user.identity}}, {on: threads.delete, allow: "false"}]
`
)

// BenchmarkDecideShadowPolicy: the cached read decided by a policy alone
// ("alone"), and by the same policy with a shadow policy decided beside it
// ("shadowed"): the ratio is what a rollout costs while it is in place.
func BenchmarkDecideShadowPolicy(b *testing.B) {
	for _, c := range []struct{ name, policy string }{{"alone", currentPolicy}, {"shadowed", currentPolicy + nextPolicy}} {
		b.Run(c.name, func(b *testing.B) {
			env := testengine.Start(b, testengine.Options{Policy: c.policy})
			req := benchRequests(env.Token(b, "alice", nil))["read"]
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				d := env.Engine.Decide(ctx, req)
				if !d.Allow() || (c.name == "shadowed") != (d.ShadowPolicy != nil) {
					b.Fatalf("%s: %s, shadow %+v", c.name, d.Reason, d.ShadowPolicy)
				}
			}
		})
	}
}

// BenchmarkDecideUncached: every request carries a token not in the cache
// (a one-entry cache cycled through distinct tokens), so each decision
// includes a full RS256 verification.
func BenchmarkDecideUncached(b *testing.B) {
	env := testengine.Start(b, testengine.Options{CacheEntries: 1})
	tokens := make([]string, 64)
	for i := range tokens {
		tokens[i] = env.Token(b, "alice", map[string]any{"jti": strconv.Itoa(i)})
	}
	b.Run("read", func(b *testing.B) {
		ctx := context.Background()
		reqs := make([]*decision.Request, len(tokens))
		for i, t := range tokens {
			reqs[i] = benchRequests(t)["read"]
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if d := env.Engine.Decide(ctx, reqs[i%len(reqs)]); !d.Allow() {
				b.Fatalf("denied: %s", d.Reason)
			}
		}
	})
}

// BenchmarkDecideSigned: the cached read with a signed context
// (x-langgate-context, EdDSA): "repeat" asks for the same thread again (its
// signature is reused), "distinct" for a different thread every time (a
// fresh signature each).
func BenchmarkDecideSigned(b *testing.B) {
	section, _ := testengine.ContextSection(b, "k1")
	env := testengine.Start(b, testengine.Options{Policy: string(langgraph.Policy) + section})
	tok := env.Token(b, "alice", nil)
	ctx := context.Background()
	b.Run("repeat", func(b *testing.B) {
		req := benchRequests(tok)["read"]
		b.ReportAllocs()
		for b.Loop() {
			if d := env.Engine.Decide(ctx, req); !d.Allow() {
				b.Fatalf("denied: %s", d.Reason)
			}
		}
	})
	b.Run("distinct", func(b *testing.B) {
		req := benchRequests(tok)["read"]
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			i++
			req.Path = "/threads/t" + strconv.Itoa(i)
			if d := env.Engine.Decide(ctx, req); !d.Allow() {
				b.Fatalf("denied: %s", d.Reason)
			}
		}
	})
}

// BenchmarkDecideHandlers: the cached read as the policy grows from one
// handler to one for every resource, every resource.action and every
// *.action of the LangGraph vocabulary (the most a policy can have):
// selection is at most four map lookups, so the cost must not grow.
func BenchmarkDecideHandlers(b *testing.B) {
	vocab := policy.VocabularyOf(routes.LangGraph())
	var all strings.Builder
	actions := map[string]bool{}
	for res, acts := range vocab {
		fmt.Fprintf(&all, "    - {on: %s, filters: {owner: user.identity}}\n", res)
		for _, a := range acts {
			fmt.Fprintf(&all, "    - {on: %s.%s, filters: {owner: user.identity}}\n", res, a)
			actions[a] = true
		}
	}
	for a := range actions {
		fmt.Fprintf(&all, "    - {on: \"*.%s\", filters: {owner: user.identity}}\n", a)
	}
	global := "    - {on: \"*\", filters: {owner: user.identity}}\n"
	for _, c := range []struct {
		name     string
		handlers string
	}{{"1", ""}, {fmt.Sprint(strings.Count(all.String(), "\n") + 1), all.String()}} {
		b.Run(c.name, func(b *testing.B) {
			env := testengine.Start(b, testengine.Options{Policy: testengine.PolicyWith("langgraph", global+c.handlers)})
			req := benchRequests(env.Token(b, "alice", nil))["read"]
			ctx := context.Background()
			if d := env.Engine.Decide(ctx, req); !d.Allow() {
				b.Fatalf("denied: %s", d.Reason)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				env.Engine.Decide(ctx, req)
			}
		})
	}
}
