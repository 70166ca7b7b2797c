package decision_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/decision"
)

// TestMemoizedResults: a pure handler's result is computed on a user's
// first request and reused; what the upstream gets is the same as a fresh
// evaluation (a traced decision never uses the memo), and a handler that
// reads the request is evaluated on every request.
func TestMemoizedResults(t *testing.T) {
	policy := testengine.PolicyWith("memo", `    - on: threads
      filters: {owner: user.identity}
      metadata: {owner: user.identity}
    - on: assistants
      filters: {tenant: 'request.headers["x-tenant"]'}
`)
	env := testengine.Start(t, testengine.Options{Policy: policy})
	ctx := context.Background()
	headers := func(d *decision.Decision) map[string]string {
		if !d.Allow() {
			t.Fatalf("%s %d %s", d.Outcome, d.Status, d.Reason)
		}
		out := map[string]string{}
		for _, h := range d.Headers {
			out[h.Name] = h.Value
		}
		return out
	}
	search := func(tok string) *decision.Request {
		r := get("/threads/search", "lg.example", tok, nil)
		r.Method, r.Body = "POST", []byte(`{"limit":1}`)
		r.Headers["content-length"] = "11"
		r.Headers["content-type"] = "application/json"
		return r
	}
	// One memo entry serves both threads events (the handler reads
	// neither resource nor action); each keeps its own name in the events
	// header.
	for _, user := range []string{"alice", "bob"} {
		tok := env.Token(t, user, nil)
		reqs := []func() *decision.Request{
			func() *decision.Request { return get("/threads/t1", "lg.example", tok, nil) },
			func() *decision.Request { return search(tok) },
		}
		if user == "bob" {
			reqs[0], reqs[1] = reqs[1], reqs[0]
		}
		for i := range 6 {
			req := reqs[i%2]
			fresh := env.Engine.DecideWith(ctx, req(), decision.DecideOptions{Trace: &decision.Trace{}})
			d := env.Engine.Decide(ctx, req())
			if got, want := headers(d), headers(fresh); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s: memoized headers differ from a fresh evaluation:\n got %v\nwant %v", user, got, want)
			}
			if d.Filters["owner"] != user || d.Reason != fresh.Reason || d.Handler != "threads" ||
				len(d.Grants) != 1 || d.Grants[0].Event != fresh.Grants[0].Event {
				t.Fatalf("%s: filters %v, reason %q, handler %q, grants %v", user, d.Filters, d.Reason, d.Handler, d.Grants)
			}
		}
	}
	// The request-reading handler sees each request's header.
	tok := env.Token(t, "carol", nil)
	for _, tenant := range []string{"t1", "t2", "t1", "t3"} {
		r := get("/assistants/a1", "lg.example", tok, nil)
		r.Headers["x-tenant"] = tenant
		d := env.Engine.Decide(ctx, r)
		if got := headers(d)[decision.HeaderFilters]; got != `{"tenant":"`+tenant+`"}` {
			t.Fatalf("tenant %s: filters %s", tenant, got)
		}
	}
}

// TestHeadersOnly: a transport's decision (HeadersOnly) of a memoized
// result sends the same headers as a full one and leaves the maps nil;
// with a signed context the maps are built anyway, so the context still
// carries the event's filters.
func TestHeadersOnly(t *testing.T) {
	ctx := context.Background()
	lean := decision.DecideOptions{HeadersOnly: true}
	names := func(d *decision.Decision) map[string]string {
		out := map[string]string{}
		for _, h := range d.Headers {
			if h.Name != "x-langgate-decision-id" && h.Name != decision.HeaderContext {
				out[h.Name] = h.Value
			}
		}
		return out
	}
	env := testengine.Start(t, testengine.Options{})
	tok := env.Token(t, "alice", nil)
	for i := range 3 {
		full := env.Engine.Decide(ctx, get("/threads/t1", "", tok, nil))
		d := env.Engine.DecideWith(ctx, get("/threads/t1", "", tok, nil), lean)
		if !d.Allow() || !reflect.DeepEqual(names(d), names(full)) {
			t.Fatalf("request %d: headers only %v, full %v", i, names(d), names(full))
		}
		if d.Filters != nil || d.Metadata != nil || d.Grants[0].Filters != nil || full.Filters["owner"] != "alice" {
			t.Fatalf("request %d: headers-only maps %v %v %v, full %v", i, d.Filters, d.Metadata, d.Grants[0].Filters, full.Filters)
		}
	}

	section, _ := testengine.ContextSection(t, "k1")
	signed := testengine.Start(t, testengine.Options{Policy: readExample(t, "examples/langgraph/langgate.yaml") + section})
	tok = signed.Token(t, "alice", nil)
	for i := range 3 {
		d := signed.Engine.DecideWith(ctx, get("/threads/t1", "", tok, nil), lean)
		var jws string
		for _, h := range d.Headers {
			if h.Name == decision.HeaderContext {
				jws = h.Value
			}
		}
		parts := strings.Split(jws, ".")
		if !d.Allow() || len(parts) != 3 {
			t.Fatalf("request %d: %s, context %q", i, d.Outcome, jws)
		}
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			Events []struct{ Filters map[string]any }
		}
		if err := json.Unmarshal(payload, &c); err != nil || len(c.Events) != 1 || c.Events[0].Filters["owner"] != "alice" {
			t.Fatalf("request %d: signed context %s (%v): want the event's filter owner alice", i, payload, err)
		}
	}

	// A shadow policy compares its grant with the enforced one's maps.
	shadowed := testengine.Start(t, testengine.Options{Policy: currentPolicy + nextPolicy})
	tok = shadowed.Token(t, "alice", nil)
	for i := range 3 {
		d := shadowed.Engine.DecideWith(ctx, get("/threads/t1", "", tok, nil), lean)
		if !d.Allow() || d.ShadowPolicy == nil || d.ShadowPolicy.Verdict != decision.VerdictAgree {
			t.Fatalf("request %d: %s, shadow %+v: want agree", i, d.Outcome, d.ShadowPolicy)
		}
	}
}
