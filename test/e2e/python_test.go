package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/langgate/langgate/internal/envoyproc"
	"github.com/langgate/langgate/internal/langgraphpy"
	"github.com/langgate/langgate/internal/testproc"
)

// pythonServer runs the real LangGraph Python server (langgraph-api, in
// memory, from the pinned packages in .cache/venv) with the e2e graphs
// (graph.py) and the upstream adapter examples/langgraph/upstream/auth.py,
// behind a tap of its own, for the test's lifetime. It returns the tap.
func pythonServer(t *testing.T) (*tap, *testproc.SyncBuffer) {
	t.Helper()
	return pythonServerWith(t, nil)
}

// pythonServerWith is pythonServer with env added to the server's.
func pythonServerWith(t *testing.T, env []string) (*tap, *testproc.SyncBuffer) {
	t.Helper()
	fixtures(t)
	root, err := envoyproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	log := &testproc.SyncBuffer{}
	srv, err := langgraphpy.Start(langgraphpy.Options{Config: "langgraph.python.json", Venv: langgraphpy.Venv(root), Stderr: log, Timeout: 90 * time.Second, Env: env})
	if err != nil {
		t.Fatalf("%v; its log:\n%s", err, log.String())
	}
	t.Cleanup(func() {
		srv.Stop()
		if t.Failed() {
			t.Logf("the LangGraph Python server's log:\n%s", log.String())
		}
	})
	up, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := newTap(up)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tp.close)
	return tp, log
}

// TestLangGraphPythonIsolation runs scenarios.mjs (the JS SDK as alice
// and bob) against the real Python server, through Envoy and nginx.
func TestLangGraphPythonIsolation(t *testing.T) {
	node := requireTool(t, "node", "Node.js")
	nginx := requireTool(t, "nginx", "nginx (Debian package nginx-light)")
	py, pyLog := pythonServer(t)
	lg := startLanggate(t, "../../examples/langgraph/langgate.yaml")
	grpcEnvoy := envoyTo(t, "front-proxy.yaml", lg, py.addr, relaxed)
	nginxURL := startNginx(t, nginx, lg.http, py.addr)
	for _, p := range []struct{ name, url, body string }{
		{"envoy", grpcEnvoy.URL("langgraph_http"), "1"},
		{"nginx", nginxURL, "0"},
	} {
		t.Run(p.name, func(t *testing.T) {
			runScenarios(t, node, "scenarios.mjs", p.url, p.name, p.body, "python", pyLog)
		})
	}
}

// runScenarios runs a node --test file against url; on failure it shows
// the events the server's adapter refused (from serverLog).
func runScenarios(t *testing.T, node, file, url, proxy, body, server string, serverLog *testproc.SyncBuffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", file)
	cmd.Env = append(os.Environ(),
		"LANGGRAPH_URL="+url,
		"TOKEN_URL="+shared.issuer.URL+"/token",
		"PROXY="+proxy,
		"PROXY_BODY="+body,
		"SERVER="+server,
	)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test %s through %s to the %s server:\n%s", filepath.Base(file), proxy, server, out)
	if err != nil {
		var refused []string
		for _, line := range strings.Split(serverLog.String(), "\n") {
			if strings.Contains(line, "langgate adapter: refused") {
				refused = append(refused, line)
			}
		}
		t.Fatalf("%s through %s to the %s server failed: %v\nevents the adapter refused:\n%s", file, proxy, server, err, strings.Join(refused, "\n"))
	}
}

// TestClientForms runs the seed's five client forms against both real
// servers through Envoy: the JS SDK (scenarios.mjs, above and in
// TestLangGraphIsolation), JS RemoteGraph and curl (clients.mjs), the
// Python SDK and Python RemoteGraph (clients.py).
func TestClientForms(t *testing.T) {
	node := requireTool(t, "node", "Node.js")
	root, err := envoyproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	python := filepath.Join(langgraphpy.Venv(root), "bin", "python")
	lg := startLanggate(t, "../../examples/langgraph/langgate.yaml")
	py, pyLog := pythonServer(t)
	for _, s := range []struct {
		name, upstream string
		log            *testproc.SyncBuffer
	}{
		{"js", shared.tap.addr, shared.jsLog},
		{"python", py.addr, pyLog},
	} {
		t.Run(s.name, func(t *testing.T) {
			e := envoyTo(t, "front-proxy.yaml", lg, s.upstream, relaxed)
			url := e.URL("langgraph_http")
			runScenarios(t, node, "clients.mjs", url, "envoy", "1", s.name, s.log)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, python, "clients.py")
			cmd.Env = append(os.Environ(), "LANGGRAPH_URL="+url, "TOKEN_URL="+shared.issuer.URL+"/token", "PYTHONDONTWRITEBYTECODE=1")
			out, err := cmd.CombinedOutput()
			t.Logf("clients.py against the %s server:\n%s", s.name, out)
			if err != nil {
				t.Errorf("clients.py against the %s server: %v", s.name, err)
			}
		})
	}
}

// TestLogicalFiltersPython: a policy whose filter is an $or (one's own, or
// anything public), which the Python server enforces through the adapter:
// bob sees alice's public thread, never her private one.
func TestLogicalFiltersPython(t *testing.T) {
	policy := seedVariant(t, "", [2]string{`      filters:
        owner: user.identity`, `      filters:
        $or: '[{"owner": user.identity}, {"public": true}]'`})
	py, _ := pythonServer(t)
	lg := startLanggate(t, policy)
	url := envoyTo(t, "front-proxy.yaml", lg, py.addr, relaxed).URL("langgraph_http")
	alice, bob := bearer(token(t, "alice")), bearer(token(t, "bob"))
	run := newProbe()
	create := func(public bool) string {
		t.Helper()
		id, _ := createThread(t, url, [][2]string{alice}, fmt.Sprintf(`{"metadata":{"public":%v,"e2e_run":%q}}`, public, run))
		return id
	}
	public, private := create(true), create(false)
	if r := send(t, h1, "GET", url+"/threads/"+public, [][2]string{bob}, nil); r.status != 200 {
		t.Errorf("bob reads alice's public thread: %d %s", r.status, r.body)
	}
	if r := send(t, h1, "GET", url+"/threads/"+private, [][2]string{bob}, nil); r.status != 404 {
		t.Errorf("bob reads alice's private thread: %d %s", r.status, r.body)
	}
	r := send(t, h1, "POST", url+"/threads/search", [][2]string{bob, jsonType}, []byte(fmt.Sprintf(`{"metadata":{"e2e_run":%q}}`, run)))
	if r.status != 200 || !strings.Contains(r.body, public) || strings.Contains(r.body, private) {
		t.Errorf("bob's search: %d %s, want alice's public thread only", r.status, r.body)
	}
}

// TestEnvoyWebSocketAndCORS: through the shipped Envoy configuration, a
// browser's CORS preflight reaches the Python server's CORS middleware
// without a token (langgate passes it, firing no event), and the streaming
// protocol's WebSocket is authorized on its handshake, then upgraded.
func TestEnvoyWebSocketAndCORS(t *testing.T) {
	root, err := envoyproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	python := filepath.Join(langgraphpy.Venv(root), "bin", "python")
	py, _ := pythonServer(t)
	lg := startLanggate(t, "../../examples/langgraph/langgate.yaml")
	url := envoyTo(t, "front-proxy.yaml", lg, py.addr, relaxed).URL("langgraph_http")

	pre := send(t, h1, "OPTIONS", url+"/threads", [][2]string{{"Origin", "https://app.example"}, {"Access-Control-Request-Method", "POST"},
		{"Access-Control-Request-Headers", "authorization,content-type"}}, nil)
	if pre.status != 200 || pre.header.Get("Access-Control-Allow-Origin") != "https://app.example" {
		t.Errorf("CORS preflight: %d %v %s", pre.status, pre.header, pre.body)
	}
	if r := send(t, h1, "OPTIONS", url+"/threads", nil, nil); r.status != 401 {
		t.Errorf("a bare OPTIONS (no preflight) without a token: %d, want 401", r.status)
	}

	alice := token(t, "alice")
	thread, _ := createThread(t, url, [][2]string{bearer(alice)}, `{}`)
	ws := "ws" + strings.TrimPrefix(url, "http") + "/threads/" + thread + "/stream/events"
	for _, c := range []struct {
		name, token, want string
	}{
		{"alice", alice, "101"},
		{"no token", "", "401"},
	} {
		args := []string{"ws_probe.py", ws}
		if c.token != "" {
			args = append(args, c.token)
		}
		out, err := exec.Command(python, args...).CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != c.want {
			t.Errorf("WebSocket handshake as %s: %q (%v), want %s", c.name, got, err, c.want)
		}
	}
}

// TestStoreNamespacePrefixPython: LangGraph's documented store pattern as
// a langgate rule (namespace_prefix: '[user.identity]'), applied by the
// adapter inside the Python server: each user's items live under their
// own identity, whatever namespace the client names, and a listing
// without a prefix shows only one's own.
func TestStoreNamespacePrefixPython(t *testing.T) {
	policy := seedVariant(t, "", [2]string{`    - on: store
      allow: value.namespace[0] == user.identity
      message: Not authorized`, `    - on: store
      namespace_prefix: '[user.identity]'`})
	py, _ := pythonServer(t)
	lg := startLanggate(t, policy)
	url := envoyTo(t, "front-proxy.yaml", lg, py.addr, relaxed).URL("langgraph_http")
	alice, bob := bearer(token(t, "alice")), bearer(token(t, "bob"))
	run := newProbe()
	put := func(who [2]string, v string) {
		t.Helper()
		r := send(t, h1, "PUT", url+"/store/items", [][2]string{who, jsonType}, []byte(fmt.Sprintf(`{"namespace":["notes",%q],"key":"k","value":{"v":%q}}`, run, v)))
		if r.status != 204 && r.status != 200 {
			t.Fatalf("put: %d %s", r.status, r.body)
		}
	}
	put(alice, "alice's")
	put(bob, "bob's")
	get := func(who [2]string) string {
		r := send(t, h1, "GET", url+"/store/items?namespace=notes."+run+"&key=k", [][2]string{who}, nil)
		return fmt.Sprint(r.status, " ", r.body)
	}
	if got := get(alice); !strings.Contains(got, `"alice's"`) || !strings.Contains(got, `"namespace":["alice","notes"`) {
		t.Errorf("alice gets notes/k: %s", got)
	}
	if got := get(bob); !strings.Contains(got, `"bob's"`) {
		t.Errorf("bob gets notes/k: %s", got)
	}
	r := send(t, h1, "POST", url+"/store/namespaces", [][2]string{alice, jsonType}, []byte(`{}`))
	if r.status != 200 || !strings.Contains(r.body, `["alice","notes",`) || strings.Contains(r.body, `"bob"`) {
		t.Errorf("alice lists namespaces: %d %s", r.status, r.body)
	}
}

// TestUserFieldsPython: extra user fields of the user mapping (user.fields)
// reach handlers as user.<name> and graph code as langgraph_auth_user[...],
// as fields returned by a LangGraph authenticate function do.
func TestUserFieldsPython(t *testing.T) {
	policy := seedVariant(t, "",
		[2]string{"    identity: claims.sub\n", "    identity: claims.sub\n    fields:\n      role: \"claims.sub == 'alice' ? 'admin' : 'member'\"\n"},
		[2]string{"    - on: \"*\"\n", "    - on: assistants.create\n      allow: user.role == 'admin'\n    - on: \"*\"\n"})
	py, _ := pythonServer(t)
	lg := startLanggate(t, policy)
	url := envoyTo(t, "front-proxy.yaml", lg, py.addr, relaxed).URL("langgraph_http")
	alice, bob := bearer(token(t, "alice")), bearer(token(t, "bob"))
	r := send(t, h1, "POST", url+"/runs/wait", [][2]string{alice, jsonType}, []byte(`{"assistant_id":"agent","input":{"messages":[{"role":"human","content":"hi"}]}}`))
	if r.status != 200 || !strings.Contains(r.body, `"role":"admin"`) {
		t.Errorf("alice's run: %d %s, want graph code to see role admin", r.status, r.body)
	}
	if r := send(t, h1, "POST", url+"/assistants", [][2]string{bob, jsonType}, []byte(`{"graph_id":"agent"}`)); r.status != 403 {
		t.Errorf("bob (member) creates an assistant: %d, want 403 from user.role", r.status)
	}
	if r := send(t, h1, "POST", url+"/assistants", [][2]string{alice, jsonType}, []byte(`{"graph_id":"agent"}`)); r.status != 200 {
		t.Errorf("alice (admin) creates an assistant: %d %s", r.status, r.body)
	}
}

// TestStudioPython: authorize.studio admits LangGraph Studio's requests
// for the users it holds for, through the real Envoy (with the shipped
// front-proxy.yaml's edge strip of x-auth-scheme removed, as docs/
// langgraph.md says to for Studio; the route still removes it before the
// upstream) to the Python server: alice from Studio sees bob's thread,
// alice without Studio's header and bob with it do not.
func TestStudioPython(t *testing.T) {
	policy := seedVariant(t, "",
		[2]string{"  routes: langgraph\n", "  routes: langgraph\n  studio: \"user.identity == 'alice'\"\n"},
		[2]string{`      filters:
        owner: user.identity`, `      filters: "user.is_studio_user ? {} : {'owner': user.identity}"`})
	py, _ := pythonServer(t)
	lg := startLanggate(t, policy)
	stripped := 0
	url := envoyTo(t, "front-proxy.yaml", lg, py.addr, func(cfg *envoyproc.Config) {
		relaxed(cfg)
		cfg.Visit(func(m map[string]any) {
			ms, ok := m["request_mutations"].([]any)
			if !ok {
				return
			}
			var kept []any
			for _, x := range ms {
				if mm, ok := x.(map[string]any); ok && mm["remove"] == "x-auth-scheme" {
					stripped++
					continue
				}
				kept = append(kept, x)
			}
			m["request_mutations"] = kept
		})
	}).URL("langgraph_http")
	if stripped != 1 {
		t.Fatalf("front-proxy.yaml's header_mutation strip of x-auth-scheme found %d times, want once", stripped)
	}
	alice, bob := bearer(token(t, "alice")), bearer(token(t, "bob"))
	studio := [2]string{"X-Auth-Scheme", "langsmith"}
	thread, _ := createThread(t, url, [][2]string{bob}, `{}`)
	for _, c := range []struct {
		name    string
		headers [][2]string
		want    int
	}{
		{"alice from Studio", [][2]string{alice, studio}, 200},
		{"alice", [][2]string{alice}, 404},
		{"carol from Studio", [][2]string{bearer(token(t, "carol")), studio}, 404},
	} {
		if r := send(t, h1, "GET", url+"/threads/"+thread, c.headers, nil); r.status != c.want {
			t.Errorf("%s reads bob's thread: %d %s, want %d", c.name, r.status, r.body, c.want)
		}
	}
}
