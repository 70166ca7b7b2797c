package decision_test

import (
	"slices"
	"testing"

	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/decision"
)

// bodyRoutes builds a configuration and lists, per policy, the routes
// BodyRoutes reports as "METHOD PATTERN", without the JSON-RPC endpoints:
// what they do is their body's method, so the body is read on them
// whatever the rules (checked here, for every policy).
func bodyRoutes(t *testing.T, text string) map[string][]string {
	t.Helper()
	f, err := config.Parse("test.yaml", []byte(text), func(string) (string, bool) { return "https://idp.example.com", true })
	if err != nil {
		t.Fatal(err)
	}
	eng, err := decision.Build(f, decision.Options{Logger: testengine.Logger(nil)})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, p := range eng.Policies() {
		list, rpc := []string{}, []string{}
		for _, r := range p.BodyRoutes() {
			if r.RPC != nil {
				rpc = append(rpc, r.Method+" "+r.Pattern)
				continue
			}
			list = append(list, r.Method+" "+r.Pattern)
		}
		if want := []string{"POST /mcp", "POST /a2a/{assistant_id}"}; !slices.Equal(rpc, want) {
			t.Errorf("policy %s: JSON-RPC body routes %q, want %q", p.Name, rpc, want)
		}
		out[p.Name] = list
	}
	return out
}

const bodyAuthn = `
authenticate:
  oidc:
    - issuer: ${OIDC_ISSUER}
      audiences: [langgraph]
  user:
    identity: claims.sub
`

// TestBodyRoutes: the routes on which the proxy must send the body are
// exactly those where an event's value comes from the body and the
// handler that takes it (or one rolled out in shadow beside it, or the
// shadow policy's) reads value. Everywhere else the decision does not
// depend on the body.
func TestBodyRoutes(t *testing.T) {
	store := []string{"PUT /store/items", "DELETE /store/items", "POST /store/items/search", "POST /store/namespaces"}
	for _, c := range []struct {
		name, handlers string
		want           []string
	}{
		{"the global handler reads the user only", `
    - on: "*"
      metadata: {owner: user.identity}
      filters: {owner: user.identity}`, nil},
		{"a handler reading the request and context, not value", `
    - on: "*"
      allow: 'request.method != "DELETE" && !has(context.x) && resource != "crons"'`, nil},
		{"threads.create reads the metadata sent", `
    - on: "*"
      filters: {owner: user.identity}
    - on: threads.create
      allow: '!has(value.metadata.owner) || value.metadata.owner == user.identity'`, []string{"POST /threads"}},
		{"a store handler reading the event only", `
    - on: store
      allow: 'action != "delete"'`, nil},
		{"a store handler reading the namespace", `
    - on: store
      allow: value.namespace[0] == user.identity`, store},
		{"a shadow handler reads value", `
    - on: "*"
      filters: {owner: user.identity}
    - on: assistants.create
      allow: 'value.graph_id != "admin"'
      shadow: true`, []string{"POST /assistants"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := bodyRoutes(t, bodyAuthn+"name: p\nauthorize:\n  routes: langgraph\n  handlers:"+c.handlers+"\n")["p"]
			want := c.want
			if want == nil {
				want = []string{}
			}
			if !slices.Equal(got, want) {
				t.Errorf("body routes:\n got %q\nwant %q", got, want)
			}
		})
	}

	t.Run("the seed example", func(t *testing.T) {
		got := bodyRoutes(t, readExample(t, "examples/langgraph/langgate.yaml"))["langgraph"]
		if !slices.Equal(got, store) {
			t.Errorf("body routes:\n got %q\nwant %q", got, store)
		}
	})

	t.Run("a shadow policy adds its own", func(t *testing.T) {
		got := bodyRoutes(t, bodyAuthn+`
policies:
  live:
    authorize:
      routes: langgraph
      handlers:
        - {on: "*", filters: {owner: user.identity}}
  next:
    shadow_of: live
    authorize:
      routes: langgraph
      handlers:
        - {on: "*", filters: {owner: user.identity}}
        - {on: crons.create, allow: 'value.schedule != "* * * * *"'}
`)
		want := []string{"POST /runs/crons", "POST /threads/{thread_id}/runs/crons"}
		if !slices.Equal(got["next"], want) {
			t.Errorf("the shadow policy's body routes:\n got %q\nwant %q", got["next"], want)
		}
		// The live policy reads no body itself, but the proxy sends one
		// request to both: it must carry the body its shadow reads.
		if !slices.Equal(got["live"], want) {
			t.Errorf("the live policy's body routes:\n got %q\nwant %q", got["live"], want)
		}
	})
}
