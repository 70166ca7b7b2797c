package e2e

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/internal/langgraphjs"
	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/internal/testproc"
)

// TestSignedContext: langgate signs the auth context, the adapters inside
// the real Python and JS servers verify it against langgate's JWKS (its
// admin port) and ignore the unsigned headers. Through the real Envoy the
// seed's isolation holds; reached directly, with forged headers or with a
// context replayed onto another request, each server refuses.
func TestSignedContext(t *testing.T) {
	fixtures(t)
	section, _ := testengine.ContextSection(t, "ctx-1")
	lg := startLanggate(t, seedVariant(t, section))
	env := []string{"LANGGATE_CONTEXT_JWKS=http://" + lg.admin + "/.well-known/jwks.json"}

	py, _ := pythonServerWith(t, env)
	jsLog := &testproc.SyncBuffer{}
	js, err := langgraphjs.Start(langgraphjs.Options{Dir: ".", Stderr: jsLog, Timeout: 90 * time.Second, Env: env})
	if err != nil {
		t.Fatalf("%v\n%s", err, jsLog.String())
	}
	t.Cleanup(js.Stop)
	jsURL, err := url.Parse(js.URL)
	if err != nil {
		t.Fatal(err)
	}
	jsTap, err := newTap(jsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(jsTap.close)

	alice, bob := bearer(token(t, "alice")), bearer(token(t, "bob"))
	for _, s := range []struct {
		name string
		tap  *tap
	}{{"python", py}, {"js", jsTap}} {
		t.Run(s.name, func(t *testing.T) {
			edge := envoyTo(t, "front-proxy.yaml", lg, s.tap.addr, relaxed).URL("langgraph_http")
			direct := "http://" + s.tap.addr
			id := newProbe()
			thread, metadata := createThread(t, edge, [][2]string{alice, probe(id)}, `{"metadata":{"topic":"signed"}}`)
			if metadata["owner"] != "alice" {
				t.Fatalf("alice's thread through Envoy has metadata %v", metadata)
			}
			seen := s.tap.received(id)
			if len(seen) != 1 || seen[0].Get("X-Langgate-Context") == "" {
				t.Fatalf("the upstream received no signed context: %v", seen)
			}
			signed := seen[0]
			if r := send(t, h1, "GET", edge+"/threads/"+thread, [][2]string{alice}, nil); r.status != 200 {
				t.Errorf("alice reads her thread through Envoy: %d %s", r.status, r.body)
			}
			if r := send(t, h1, "GET", edge+"/threads/"+thread, [][2]string{bob}, nil); r.status != 404 {
				t.Errorf("bob reads alice's thread through Envoy: %d, want 404", r.status)
			}
			// Reached directly: the unsigned headers alone are refused.
			forged := [][2]string{
				{"X-Langgate-User-Id", "alice"},
				{"X-Langgate-User", `{"identity":"alice","display_name":"alice","is_authenticated":true,"permissions":[]}`},
				{"X-Langgate-Filters", "{}"}, {"X-Langgate-Metadata", "{}"},
				{"X-Langgate-Events", `{"threads:read":{"filters":{}}}`},
			}
			if r := send(t, h1, "GET", direct+"/threads/"+thread, forged, nil); r.status != 401 {
				t.Errorf("forged unsigned headers, directly: %d %s, want 401", r.status, r.body)
			}
			// The context of alice's POST /threads, replayed onto a read.
			replay := append(forged, [2]string{"X-Langgate-Context", signed.Get("X-Langgate-Context")})
			if r := send(t, h1, "GET", direct+"/threads/"+thread, replay, nil); r.status != 401 || !strings.Contains(r.body, "request") {
				t.Errorf("a context replayed onto another request, directly: %d %s, want 401", r.status, r.body)
			}
			// A context signed by another key.
			if r := send(t, h1, "GET", direct+"/threads/"+thread, [][2]string{{"X-Langgate-Context", forgeContext(t, thread)}}, nil); r.status != 401 {
				t.Errorf("a context signed by another key, directly: %d %s, want 401", r.status, r.body)
			}
			storeReplays(t, edge, direct, s.tap, alice, bob)
		})
	}
}

// storeReplays: bob's contexts for his own store requests (issued through
// Envoy), replayed straight to the server onto alice's namespace through
// another query or body, are refused (401) and change nothing of hers
// (issue 28).
func storeReplays(t *testing.T, edge, direct string, tp *tap, alice, bob [2]string) {
	t.Helper()
	jsonType := [2]string{"Content-Type", "application/json"}
	marker := "alice-secret-" + newProbe()
	item := `{"namespace":["alice","notes"],"key":"k1","value":{"secret":"` + marker + `"}}`
	if r := send(t, h1, "PUT", edge+"/store/items", [][2]string{alice, jsonType}, []byte(item)); r.status/100 != 2 {
		t.Fatalf("alice puts her item: %d %s", r.status, r.body)
	}
	// contextOf makes bob's own request through Envoy and returns the
	// context the server received for it.
	contextOf := func(method, target, body string) string {
		t.Helper()
		id := newProbe()
		var b []byte
		if body != "" {
			b = []byte(body)
		}
		if r := send(t, h1, method, edge+target, [][2]string{bob, jsonType, probe(id)}, b); r.status >= 500 || r.status == 401 || r.status == 403 {
			t.Fatalf("bob's own %s %s through Envoy: %d %s", method, target, r.status, r.body)
		}
		seen := tp.received(id)
		if len(seen) != 1 || seen[0].Get("X-Langgate-Context") == "" {
			t.Fatalf("bob's %s %s reached the server %d times with no context", method, target, len(seen))
		}
		return seen[0].Get("X-Langgate-Context")
	}
	for _, c := range []struct {
		name                string
		method, own, replay string // own and replay: the target, or the body
		inBody              bool
		target              string
	}{
		{"get onto another query", "GET", "/store/items?namespace=bob&key=k1", "/store/items?namespace=alice.notes&key=k1", false, ""},
		{"get onto a repeat", "GET", "/store/items?namespace=bob&key=k1", "/store/items?namespace=bob&key=k1&namespace=alice.notes", false, ""},
		{"put onto another body", "PUT", `{"namespace":["bob"],"key":"k1","value":{"v":1}}`,
			`{"namespace":["alice","notes"],"key":"k1","value":{"secret":"planted"}}`, true, "/store/items"},
		{"delete onto another body", "DELETE", `{"namespace":["bob"],"key":"k1"}`, `{"namespace":["alice","notes"],"key":"k1"}`, true, "/store/items"},
		{"search onto another prefix", "POST", `{"namespace_prefix":["bob"]}`, `{"namespace_prefix":["alice"]}`, true, "/store/items/search"},
		{"list_namespaces onto another prefix", "POST", `{"prefix":["bob"]}`, `{"prefix":["alice"]}`, true, "/store/namespaces"},
	} {
		var ctx string
		var r response
		if c.inBody {
			ctx = contextOf(c.method, c.target, c.own)
			r = send(t, h1, c.method, direct+c.target, [][2]string{{"X-Langgate-Context", ctx}, jsonType}, []byte(c.replay))
		} else {
			ctx = contextOf(c.method, c.own, "")
			r = send(t, h1, c.method, direct+c.replay, [][2]string{{"X-Langgate-Context", ctx}}, nil)
		}
		if r.status != 401 || strings.Contains(r.body, marker) {
			t.Errorf("store %s, directly with bob's context: %d %s, want 401", c.name, r.status, short(r.body))
		}
	}
	got := send(t, h1, "GET", edge+"/store/items?namespace=alice.notes&key=k1", [][2]string{alice}, nil)
	if got.status != 200 || !strings.Contains(got.body, marker) {
		t.Errorf("alice's item after bob's replays: %d %s", got.status, short(got.body))
	}
}

// forgeContext signs a well-formed context for GET /threads/{id} with a key
// langgate does not publish, under langgate's kid.
func forgeContext(t *testing.T, thread string) string {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: k}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "ctx-1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	payload, _ := json.Marshal(map[string]any{"iss": "langgate", "aud": []string{"langgraph"}, "iat": now, "exp": now + 60,
		"user": map[string]any{"identity": "alice"}, "events": []any{map[string]any{"resource": "threads", "action": "read", "filters": map[string]any{}}},
		"request": map[string]any{"method": "GET", "path": "/threads/" + thread}})
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
