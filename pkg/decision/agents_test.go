package decision_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/decision"
)

func rpcRequest(path, token, body string) *decision.Request {
	h := map[string]string{"content-type": "application/json", "content-length": itoa(len(body))}
	if token != "" {
		h["authorization"] = "Bearer " + token
	}
	return &decision.Request{Method: "POST", Path: path, Headers: h, Body: []byte(body)}
}

func header(d *decision.Decision, name string) string {
	for _, h := range d.Headers {
		if h.Name == name {
			return h.Value
		}
	}
	for _, h := range d.ResponseHeaders {
		if h.Name == name {
			return h.Value
		}
	}
	return ""
}

// TestMCPAndA2AGrants: an MCP or A2A request is allowed with a grant for
// each event its handler's in-process calls may fire, each with its own
// filters and what langgate knows of its value bound; a JSON-RPC message
// langgate refuses gets the JSON-RPC error as its body; an inner event a
// handler denies is left out of the grants (the adapter refuses it, as
// LangGraph's handler would), without denying the request.
func TestMCPAndA2AGrants(t *testing.T) {
	env := testengine.Start(t, testengine.Options{Policy: testengine.PolicyWith("p", `
    - on: "*"
      filters: {owner: user.identity}
      metadata: {owner: user.identity}
    - on: threads.create_run
      allow: 'user.identity != "mallory"'
      filters: {owner: user.identity}
`)})
	bob, mallory := env.Token(t, "bob", nil), env.Token(t, "mallory", nil)
	const aid = "6ba7b821-9dad-11d1-80b4-00c04fd430c8"
	const tid = "1ef6c4a2-0000-4000-8000-000000000001"
	for _, c := range []struct {
		name   string
		req    *decision.Request
		status int
		events string // x-langgate-events, or the denial's body
	}{
		{"initialize fires nothing", rpcRequest("/mcp", bob, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`), 200, `{}`},
		{"a notification fires nothing", rpcRequest("/mcp", bob, `{"jsonrpc":"2.0","method":"notifications/initialized"}`), 200, `{}`},
		{"tools/list: the search and each tool's read, filtered", rpcRequest("/mcp", bob, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`), 200,
			`{"assistants:search":{"filters":{"owner":"bob"}},"assistants:read":{"filters":{"owner":"bob"}}}`},
		{"tools/call: a stateless run, bound to no thread", rpcRequest("/mcp", bob, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"agent","arguments":{}}}`), 200,
			`{"assistants:search":{"filters":{"owner":"bob"}},"threads:create_run":{"filters":{"owner":"bob"},"values":[{"/thread_id":null}]},"assistants:read":{"filters":{"owner":"bob"}},"threads:read":{"filters":{"owner":"bob"}}}`},
		{"a denied inner event is not granted", rpcRequest("/mcp", mallory, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"agent"}}`), 200,
			`{"assistants:search":{"filters":{"owner":"mallory"}},"assistants:read":{"filters":{"owner":"mallory"}},"threads:read":{"filters":{"owner":"mallory"}}}`},
		{"an unknown method", rpcRequest("/mcp", bob, `{"jsonrpc":"2.0","id":"x","method":"resources/list"}`), 400,
			`{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"Method not found: resources/list"}}`},
		{"a batch", rpcRequest("/mcp", bob, `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`), 400,
			`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Invalid Request: batch requests are not supported by the MCP endpoint"}}`},
		{"A2A send on a context: the assistant and the thread bound", rpcRequest("/a2a/"+aid, bob,
			`{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"contextId":"`+tid+`","parts":[]}}}`), 200,
			`{"assistants:read":{"filters":{"owner":"bob"},"values":[{"/assistant_id":"` + aid + `"}]},` +
				`"threads:create_run":{"filters":{"owner":"bob"},"values":[{"/assistant_id":"` + aid + `","/thread_id":"` + tid + `"}]},` +
				`"threads:read":{"filters":{"owner":"bob"},"values":[{"/thread_id":"` + tid + `"}]},` +
				`"threads:search":{"filters":{"owner":"bob"},"values":[{"/thread_id":"` + tid + `"}]}}`},
		{"A2A on an assistant that is not a UUID", rpcRequest("/a2a/agent", bob, `{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"id":"a:b"}}`), 400,
			`{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"Invalid assistant ID: must be a UUID"}}`},
		{"no credential: 401 before the body is read", rpcRequest("/mcp", "", `not json`), 401, `{"detail":"Missing authentication token"}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := env.Engine.Decide(context.Background(), c.req)
			got := d.Body
			if d.Allow() {
				got = header(d, "x-langgate-events")
			}
			if d.Status != c.status || got != c.events {
				t.Errorf("%d %s (%s)\nwant %d %s", d.Status, got, d.Reason, c.status, c.events)
			}
			if d.Status == 400 && header(d, "content-type") != "application/json" {
				t.Errorf("content-type %q", header(d, "content-type"))
			}
		})
	}
	// What the inner calls write is stamped: the run a tool call creates
	// gets the metadata of its threads:create_run.
	d := env.Engine.Decide(context.Background(), rpcRequest("/mcp", bob, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"agent"}}`))
	if got := header(d, "x-langgate-metadata"); got != `{"owner":"bob"}` {
		t.Errorf("tools/call metadata %s, want the create_run's", got)
	}
}

const mcpPolicy = `name: p
authenticate:
  oidc:
    - issuer: "${OIDC_ISSUER}"
      audiences: ["${OIDC_AUDIENCE}", "https://agents.example.com/mcp"]
  user: {identity: claims.sub}
  mcp:
    resource: https://agents.example.com/mcp
    scopes_supported: [openid]
    resource_name: Agents
authorize:
  routes: langgraph
  handlers:
    - {on: "*", filters: {owner: user.identity}}
`

// TestMCPProtectedResource: with authenticate.mcp, langgate serves the
// resource's metadata (RFC 9728) itself, names it in the 401 of the MCP
// endpoint, and accepts there only a token whose aud is the resource.
func TestMCPProtectedResource(t *testing.T) {
	env := testengine.Start(t, testengine.Options{Policy: mcpPolicy})
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	challenge := `Bearer realm="langgate", resource_metadata="https://agents.example.com/.well-known/oauth-protected-resource/mcp"`

	for _, path := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"} {
		d := env.Engine.Decide(context.Background(), get(path, "agents.example.com", "", nil))
		if d.Outcome != decision.Served || d.Status != 200 {
			t.Fatalf("GET %s: %s %d (%s)", path, d.Outcome, d.Status, d.Reason)
		}
		var doc map[string]any
		if err := json.Unmarshal([]byte(d.Body), &doc); err != nil {
			t.Fatal(err)
		}
		want := `{"authorization_servers":["` + env.Issuer.URL + `"],"bearer_methods_supported":["header"],"resource":"https://agents.example.com/mcp","resource_name":"Agents","scopes_supported":["openid"]}`
		if b, _ := json.Marshal(doc); string(b) != want {
			t.Errorf("GET %s:\n got %s\nwant %s", path, b, want)
		}
		if doc, ok := env.Engine.ResourceMetadata(path); !ok || doc != d.Body {
			t.Errorf("ResourceMetadata(%s) = %q, %v", path, doc, ok)
		}
	}
	if _, ok := env.Engine.ResourceMetadata("/.well-known/oauth-protected-resource/other"); ok {
		t.Error("a metadata document for a path that is not the resource")
	}

	d := env.Engine.Decide(context.Background(), rpcRequest("/mcp", "", ping))
	if d.Status != 401 || header(d, "www-authenticate") != challenge {
		t.Errorf("no token: %d %q", d.Status, header(d, "www-authenticate"))
	}
	other := env.Token(t, "alice", nil) // aud: the issuer's default, another API
	d = env.Engine.Decide(context.Background(), rpcRequest("/mcp", other, ping))
	if d.Status != 401 || header(d, "www-authenticate") != challenge+`, error="invalid_token"` || !strings.Contains(d.Reason, "aud") {
		t.Errorf("a token for another audience: %d %q (%s)", d.Status, header(d, "www-authenticate"), d.Reason)
	}
	for _, aud := range []any{"https://agents.example.com/mcp", []any{"x", "https://agents.example.com/mcp"}} {
		tok := env.Token(t, "alice", map[string]any{"aud": aud})
		if d := env.Engine.Decide(context.Background(), rpcRequest("/mcp", tok, ping)); d.Outcome != decision.Allowed {
			t.Errorf("aud %v: %s %d (%s)", aud, d.Outcome, d.Status, d.Reason)
		}
	}
	// Elsewhere the 401 has no resource metadata, and the API's own tokens pass.
	d = env.Engine.Decide(context.Background(), get("/threads/t1", "agents.example.com", "", nil))
	if d.Status != 401 || header(d, "www-authenticate") != `Bearer realm="langgate"` {
		t.Errorf("GET /threads/t1 without a token: %d %q", d.Status, header(d, "www-authenticate"))
	}
	if d := env.Engine.Decide(context.Background(), get("/threads/t1", "agents.example.com", other, nil)); d.Outcome != decision.Allowed {
		t.Errorf("GET /threads/t1: %s (%s)", d.Outcome, d.Reason)
	}
}

// TestMCPResourceConfig: authenticate.mcp's errors, each with its line.
func TestMCPResourceConfig(t *testing.T) {
	for _, c := range []struct{ resource, extra, want string }{
		{"https://agents.example.com/other", "", `no authenticate.oidc issuer lists "https://agents.example.com/other" in its audiences`},
		{"http://agents.example.com/mcp", "", "over https (http only on a loopback host)"},
		{"https://agents.example.com/mcp/", "", "without a trailing slash"},
		{"https://agents.example.com", "", "name the endpoint's path"},
		{"https://Agents.example.com/mcp", "", "is not canonical"},
		{"https://agents.example.com/mcp?x=1", "", "no query or fragment"},
		{"https://agents.example.com/mcp", "    authorization_servers: []\n", "authorization_servers: empty"},
		{"https://agents.example.com/mcp", "    authorization_servers: [\"idp\"]\n", `"idp" is not an http(s) URL`},
	} {
		text := strings.Replace(mcpPolicy, "    resource: https://agents.example.com/mcp\n", "    resource: "+c.resource+"\n"+c.extra, 1)
		_, err := config.Parse("test.yaml", []byte(text), func(string) (string, bool) { return "https://idp.example.com", true })
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "test.yaml:8:") {
			t.Errorf("resource %s %q: %v, want test.yaml:8 ... %s", c.resource, c.extra, err, c.want)
		}
	}
}
