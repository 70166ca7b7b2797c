package decision_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/decision"
)

func withBody(r *decision.Request, method, contentType, body string) *decision.Request {
	r.Method, r.Body = method, []byte(body)
	r.Headers["content-length"] = itoa(len(body))
	if contentType != "" {
		r.Headers["content-type"] = contentType
	}
	return r
}

func headerOf(d *decision.Decision, name string) string {
	for _, h := range d.Headers {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// TestAmbiguousRequests: a request that could be read two ways, where
// langgate reads it (a repeated query parameter a route or a rule reads, a
// body the servers could parse differently), is a 400 with a precise
// detail before any handler runs; a repeat of a parameter nothing reads,
// and a route table that declares its server's reading, pass.
func TestAmbiguousRequests(t *testing.T) {
	env := testengine.Start(t, testengine.Options{})
	bob := env.Token(t, "bob", nil)
	ctx := context.Background()
	const putBody = `{"namespace":["bob"],"key":"k1","value":{}}`
	for _, c := range []struct {
		name   string
		req    *decision.Request
		status int
		detail string
	}{
		{"repeated namespace", get("/store/items?namespace=bob&namespace=alice.notes&key=k1", "", bob, nil),
			400, `Ambiguous request: query parameter "namespace" is given 2 times`},
		{"repeated namespace, other order", get("/store/items?namespace=alice.notes&key=k1&namespace=bob", "", bob, nil),
			400, `Ambiguous request: query parameter "namespace" is given 2 times`},
		{"repeat through an encoded name", get("/store/items?namespace=bob&%6Eamespace=alice&key=k1", "", bob, nil),
			400, `Ambiguous request: query parameter "namespace" is given 2 times`},
		{"repeated key", get("/store/items?namespace=bob&key=k1&key=k2&key=k3", "", bob, nil),
			400, `Ambiguous request: query parameter "key" is given 3 times`},
		{"repeated action", withBody(get("/threads/t1/runs/r1/cancel?action=interrupt&action=rollback", "", bob, nil), "POST", "", ""),
			400, `Ambiguous request: query parameter "action" is given 2 times`},
		{"semicolon", get("/store/items?namespace=bob;namespace=alice&key=k1", "", bob, nil), 400, "Invalid request path"},
		{"a repeat nothing reads", get("/store/items?namespace=bob&key=k1&x=1&x=2", "", bob, nil), 200, ""},
		{"name[] is another name", get("/store/items?namespace=bob&key=k1&namespace[]=alice", "", bob, nil), 200, ""},
		{"duplicate body key", withBody(get("/store/items", "", bob, nil), "PUT", "application/json",
			`{"namespace":["bob"],"key":"k1","namespace":["alice"],"value":{}}`), 400, `Ambiguous request: object key "namespace" appears twice`},
		{"duplicate escaped body key", withBody(get("/store/items", "", bob, nil), "PUT", "application/json",
			`{"namespace":["bob"],"key":"k1","n\u0061mespace":["alice"],"value":{}}`), 400, `Ambiguous request: object key "namespace" appears twice`},
		{"text/plain body", withBody(get("/store/items", "", bob, nil), "PUT", "text/plain", putBody), 400, `content-type "text/plain"`},
		{"no content-type", withBody(get("/store/items", "", bob, nil), "PUT", "", putBody), 400, `content-type ""`},
		{"latin-1 charset", withBody(get("/store/items", "", bob, nil), "PUT", "application/json; charset=latin-1", putBody), 400, `charset=latin-1`},
		{"byte order mark", withBody(get("/store/items", "", bob, nil), "PUT", "application/json", "\ufeff"+putBody), 400, "byte order mark"},
		{"lone surrogate", withBody(get("/store/items", "", bob, nil), "PUT", "application/json",
			`{"namespace":["bob"],"key":"k\ud800","value":{}}`), 400, "surrogate"},
		{"duplicate key on a route no rule reads", withBody(get("/threads", "", bob, nil), "POST", "application/json",
			`{"metadata":{},"metadata":{"owner":"alice"}}`), 400, `object key "metadata" appears twice`},
		{"+json type", withBody(get("/store/items", "", bob, nil), "PUT", "application/merge-patch+json", putBody), 400, `content-type "application/merge-patch+json"`},
		{"upper case", withBody(get("/store/items", "", bob, nil), "PUT", "APPLICATION/JSON; Charset=UTF-8", putBody), 200, ""},
		{"utf-8 charset", withBody(get("/store/items", "", bob, nil), "PUT", "application/json; charset=utf-8", putBody), 200, ""},
		{"plain put", withBody(get("/store/items", "", bob, nil), "PUT", "application/json", putBody), 200, ""},
	} {
		d := env.Engine.Decide(ctx, c.req)
		if d.Status != c.status || !strings.Contains(d.Detail+" "+d.Reason, c.detail) {
			t.Errorf("%s: %s %d %q (%s)", c.name, d.Outcome, d.Status, d.Detail, d.Reason)
		}
		if c.status == 400 && (d.Outcome != decision.BadRequest || len(d.Grants) != 0) {
			t.Errorf("%s: %s with grants %v", c.name, d.Outcome, d.Grants)
		}
	}

	// A custom route whose server reads the last value declares so.
	policy := testengine.PolicyWith("custom", `    - on: docs
      allow: value.folder == user.identity
`)
	policy = strings.Replace(policy, "routes: langgraph", `routes:
    - {method: GET, path: /docs, resource: docs, action: read, value: {folder: query.folder}, repeated_query: last}
    - {method: GET, path: /strict, resource: docs, action: read, value: {folder: query.folder}}`, 1)
	custom := testengine.Start(t, testengine.Options{Policy: policy})
	tok := custom.Token(t, "bob", nil)
	for _, c := range []struct {
		path   string
		status int
	}{
		{"/docs?folder=alice&folder=bob", 200},
		{"/docs?folder=bob&folder=alice", 403},
		{"/strict?folder=bob&folder=bob", 400},
		{"/strict?folder=bob", 200},
	} {
		if d := custom.Engine.Decide(ctx, get(c.path, "", tok, nil)); d.Status != c.status {
			t.Errorf("%s: %d, want %d (%s)", c.path, d.Status, c.status, d.Reason)
		}
	}
}

// TestBoundValues: an allowed store event binds its namespace and key, in
// x-langgate-events and in the signed context, with the canonical query;
// an event whose identifiers langgate did not read and whose rule reads
// no value binds nothing (any value).
func TestBoundValues(t *testing.T) {
	section, priv := testengine.ContextSection(t, "k1")
	env := testengine.Start(t, testengine.Options{Policy: readExample(t, "examples/langgraph/langgate.yaml") + section})
	bob := env.Token(t, "bob", nil)
	ctx := context.Background()
	payload := func(d *decision.Decision) map[string]any {
		t.Helper()
		obj, err := jose.ParseSignedCompact(headerOf(d, decision.HeaderContext), []jose.SignatureAlgorithm{jose.EdDSA})
		if err != nil {
			t.Fatal(err)
		}
		raw, err := obj.Verify(priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	for _, c := range []struct {
		name          string
		req           *decision.Request
		events, query string
		values        string // the context's events[0].values
	}{
		{"get", get("/store/items?key=k+1&namespace=bob.notes&refresh_ttl=", "", bob, nil),
			`{"store:get":{"filters":{},"values":[{"/key":"k 1","/namespace":["bob","notes"]}]}}`,
			"key=k%201&namespace=bob.notes&refresh_ttl=", `[{"/key":"k 1","/namespace":["bob","notes"]}]`},
		{"put", withBody(get("/store/items", "", bob, nil), "PUT", "application/json", `{"namespace":["bob"],"key":"k1","value":{"a":1}}`),
			`{"store:put":{"filters":{},"values":[{"/key":"k1","/namespace":["bob"]}]}}`, "", `[{"/key":"k1","/namespace":["bob"]}]`},
		{"search", withBody(get("/store/items/search", "", bob, nil), "POST", "application/json", `{"namespace_prefix":["bob"]}`),
			`{"store:search":{"filters":{},"values":[{"/namespace":["bob"]}]}}`, "", `[{"/namespace":["bob"]}]`},
		{"thread read", get("/threads/t1?x=%2F", "", bob, nil),
			`{"threads:read":{"filters":{"owner":"bob"}}}`, "x=%2F", ""},
	} {
		for round := range 2 { // the second is memoized
			d := env.Engine.Decide(ctx, c.req)
			if !d.Allow() {
				t.Fatalf("%s: %s %s", c.name, d.Outcome, d.Reason)
			}
			if got := headerOf(d, decision.HeaderEvents); got != c.events {
				t.Errorf("%s (%d): x-langgate-events %s, want %s", c.name, round, got, c.events)
			}
			p := payload(d)
			req, _ := p["request"].(map[string]any)
			if q, _ := req["query"].(string); q != c.query {
				t.Errorf("%s: context query %q, want %q", c.name, q, c.query)
			}
			ev := p["events"].([]any)[0].(map[string]any)
			if got := ev["values"]; c.values == "" && got != nil || c.values != "" && enc(got) != c.values {
				t.Errorf("%s: context values %s, want %s", c.name, enc(got), c.values)
			}
		}
	}
}
