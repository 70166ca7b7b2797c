package decision_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/decision"
)

// The core's tests: the engine called directly, no transport in between.

func readExample(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile("../../" + path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// recorder is an Observer that keeps what it was told.
type recorder struct {
	mu sync.Mutex
	ds []*decision.Decision
}

func (r *recorder) Observe(d *decision.Decision, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ds = append(r.ds, d)
}

func (r *recorder) last(t *testing.T) *decision.Decision {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ds) == 0 {
		t.Fatal("nothing observed")
	}
	return r.ds[len(r.ds)-1]
}

func get(path, host, token string, ctx map[string]string) *decision.Request {
	h := map[string]string{":authority": host}
	if token != "" {
		h["authorization"] = "Bearer " + token
	}
	return &decision.Request{Method: "GET", Path: path, Headers: h, Context: ctx}
}

// TestSelection: the policy is chosen by the context extension, else the
// host (exact, then the longest wildcard, port and trailing dot ignored),
// else the default; a selector naming no policy denies.
func TestSelection(t *testing.T) {
	env := testengine.Start(t, testengine.Options{Policy: readExample(t, "examples/policies/rest-api.yaml")})
	tok := env.Token(t, "alice", nil)
	for _, c := range []struct {
		name, host string
		ctx        map[string]string
		policy     string
		outcome    decision.Outcome
	}{
		{"context extension wins over host", "agents.example.com", map[string]string{"policy": "billing"}, "billing", decision.Allowed},
		{"exact host", "agents.example.com", nil, "langgraph", decision.Allowed},
		{"host with port", "billing.example.com:8443", nil, "billing", decision.Allowed},
		{"fully qualified host", "billing.example.com.", nil, "billing", decision.Allowed},
		{"upper case host", "BILLING.example.com", nil, "billing", decision.Allowed},
		{"wildcard host", "eu.billing.example.com", nil, "billing", decision.Allowed},
		{"unknown host takes the default", "other.example.com", nil, "langgraph", decision.Allowed},
		{"context extension naming no policy", "agents.example.com", map[string]string{"policy": "nope"}, "", decision.Denied},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := "/threads/t1"
			if c.policy == "billing" {
				path = "/customers/alice/invoices"
			}
			d := env.Engine.Decide(context.Background(), get(path, c.host, tok, c.ctx))
			if d.Policy != c.policy || d.Outcome != c.outcome {
				t.Errorf("policy %q outcome %s (%s), want %q %s", d.Policy, d.Outcome, d.Reason, c.policy, c.outcome)
			}
		})
	}
}

// TestNoDefaultPolicy: without default_policy, a host no policy names is
// refused, never decided by some policy.
func TestNoDefaultPolicy(t *testing.T) {
	text := strings.Replace(readExample(t, "examples/policies/rest-api.yaml"), "default_policy: langgraph\n", "", 1)
	env := testengine.Start(t, testengine.Options{Policy: text})
	d := env.Engine.Decide(context.Background(), get("/threads/t1", "other.example.com", env.Token(t, "alice", nil), nil))
	if d.Outcome != decision.Denied || d.Status != 403 || !strings.Contains(d.Reason, "no default_policy") {
		t.Errorf("%s %d %q", d.Outcome, d.Status, d.Reason)
	}
}

// TestEveryOutcomeCarriesItsContext: whatever settles a request, its
// decision has an id, and the policy, path, user and events known by then
// reach the observer (metrics) and the rendered denial.
func TestEveryOutcomeCarriesItsContext(t *testing.T) {
	rec := &recorder{}
	text := readExample(t, "examples/policies/rest-api.yaml") + "explain: {reason_header: true}\n"
	env := testengine.Start(t, testengine.Options{Policy: text, Observer: rec})
	alice := env.Token(t, "alice", nil)
	unsafe := env.Token(t, "al\nice", nil)
	put := func(host, path, token, body string) *decision.Request {
		r := get(path, host, token, nil)
		r.Method, r.Body = "PUT", []byte(body)
		r.Headers["content-length"] = "" + itoa(len(body))
		r.Headers["content-type"] = "application/json"
		return r
	}
	for _, c := range []struct {
		name    string
		req     *decision.Request
		outcome decision.Outcome
		status  int
		policy  string
		path    string
		user    string
		event   string
		auth    string // www-authenticate, "" for none
	}{
		{"allowed", get("/threads/t1", "agents.example.com", alice, nil), decision.Allowed, 200, "langgraph", "/threads/t1", "alice", "threads:read", ""},
		{"public", get("/healthz", "billing.example.com", "", nil), decision.Public, 200, "billing", "/healthz", "", "", ""},
		{"bad path", get("/threads/%zz", "agents.example.com", alice, nil), decision.BadRequest, 400, "langgraph", "", "", "", ""},
		{"missing credential", get("/threads/t1", "agents.example.com", "", nil), decision.Unauthenticated, 401, "langgraph", "/threads/t1", "", "", `Bearer realm="langgate"`},
		{"bad credential", get("/threads/t1", "agents.example.com", "a.b.c", nil), decision.Unauthenticated, 401, "langgraph", "/threads/t1", "", "", `Bearer realm="langgate", error="invalid_token"`},
		{"identity not header-safe", get("/threads/t1", "agents.example.com", unsafe, nil), decision.Unauthenticated, 401, "langgraph", "/threads/t1", "", "", `Bearer realm="langgate", error="invalid_token"`},
		{"handler denies", put("agents.example.com", "/store/items", alice, `{"namespace":["bob"],"key":"k","value":{}}`), decision.Denied, 403, "langgraph", "/store/items", "alice", "store:put", ""},
		{"handler denies with its status", get("/customers/bob/invoices", "billing.example.com", alice, nil), decision.Denied, 404, "billing", "/customers/bob/invoices", "alice", "invoices:search", ""},
		{"unmatched deny", get("/admin", "billing.example.com", alice, nil), decision.Denied, 403, "billing", "/admin", "alice", "", ""},
		{"no policy", get("/threads/t1", "agents.example.com", alice, map[string]string{"policy": "x"}), decision.Denied, 403, "", "", "", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := env.Engine.Decide(context.Background(), c.req)
			if rec.last(t) != d {
				t.Fatal("the decision returned is not the one observed")
			}
			user := ""
			if d.User != nil {
				user = d.User.Identity
			}
			event := ""
			if d.Resource() != "" {
				event = d.Resource() + ":" + d.Action()
			}
			if d.ID == "" || d.Outcome != c.outcome || d.Status != c.status || d.Policy != c.policy || d.Path != c.path || user != c.user || event != c.event {
				t.Errorf("got id %q %s %d policy %q path %q user %q event %q (%s)", d.ID, d.Outcome, d.Status, d.Policy, d.Path, user, event, d.Reason)
			}
			if d.Allow() {
				if d.Body != "" || len(d.ResponseHeaders) != 0 {
					t.Errorf("an allow carries a denial: %q %v", d.Body, d.ResponseHeaders)
				}
				return
			}
			var body struct{ Detail string }
			if err := json.Unmarshal([]byte(d.Body), &body); err != nil || body.Detail == "" || body.Detail != d.Detail {
				t.Errorf("denial body %q (%v), detail %q", d.Body, err, d.Detail)
			}
			hs := map[string]string{}
			for _, h := range d.ResponseHeaders {
				hs[h.Name] = h.Value
			}
			if hs["content-type"] != "application/json" || hs["www-authenticate"] != c.auth || hs[decision.HeaderReason] == "" {
				t.Errorf("denial headers %v", hs)
			}
			if len(d.Headers) != 0 || len(d.RemoveHeaders) != 0 {
				t.Errorf("a denial sets upstream headers: %v %v", d.Headers, d.RemoveHeaders)
			}
		})
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// TestMultiEventMerge: the events of one request are authorized in order;
// their filters merge when they agree and deny when they conflict.
func TestMultiEventMerge(t *testing.T) {
	text := strings.Replace(readExample(t, "examples/langgraph/langgate.yaml"), "    - on: store\n", `    - on: threads.create_run
      filters: {assistant: value.assistant_id}
    - on: store
`, 1)
	env := testengine.Start(t, testengine.Options{Policy: text})
	alice := env.Token(t, "alice", nil)
	batch := func(body string) *decision.Decision {
		r := get("/runs/batch", "", alice, nil)
		r.Method, r.Body = "POST", []byte(body)
		r.Headers["content-length"] = itoa(len(body))
		r.Headers["content-type"] = "application/json"
		return env.Engine.Decide(context.Background(), r)
	}
	// Each run of a batch fires threads:create_run and, optionally,
	// assistants:read.
	d := batch(`[{"assistant_id":"a"},{"assistant_id":"a"}]`)
	if d.Outcome != decision.Allowed || len(d.Events) != 4 || d.Filters["assistant"] != "a" {
		t.Errorf("agreeing events: %s %d events, filters %v (%s)", d.Outcome, len(d.Events), d.Filters, d.Reason)
	}
	if len(d.Grants) != 2 || d.Grants[0].Event != "threads:create_run" || d.Grants[0].Filters["assistant"] != "a" ||
		d.Grants[1].Event != "assistants:read" || d.Grants[1].Filters["owner"] != "alice" || d.Grants[1].Filters["assistant"] != nil {
		t.Errorf("grants %+v", d.Grants)
	}
	d = batch(`[{"assistant_id":"a"},{"assistant_id":"b"}]`)
	if d.Outcome != decision.Denied || len(d.Events) != 4 || d.Handler != "threads.create_run" || !strings.Contains(d.Reason, "conflicting values") {
		t.Errorf("conflicting events: %s handler %q (%s)", d.Outcome, d.Handler, d.Reason)
	}
	// copy fires threads:read then threads:create; both take the global
	// handler, and the reason names each event.
	r := get("/threads/t1/copy", "", alice, nil)
	r.Method = "POST"
	r.Headers["content-length"] = "0"
	d = env.Engine.Decide(context.Background(), r)
	if d.Outcome != decision.Allowed || len(d.Events) != 2 || !strings.Contains(d.Reason, "threads:read: ") || !strings.Contains(d.Reason, "; threads:create: ") {
		t.Errorf("copy: %s %d events (%s)", d.Outcome, len(d.Events), d.Reason)
	}
}

// TestOptionalEvents: an event the server fires only in some cases runs
// its handler like any other; a denial leaves it out of the grants (the
// adapter refuses it if the server fires it) without denying the request,
// while a denial of the route's own event denies.
func TestOptionalEvents(t *testing.T) {
	text := strings.Replace(readExample(t, "examples/langgraph/langgate.yaml"), "    - on: store\n", `    - on: assistants.read
      allow: "'admin' in user.permissions"
    - on: store
`, 1)
	env := testengine.Start(t, testengine.Options{Policy: text})
	alice := env.Token(t, "alice", nil)
	run := get("/threads/t1/runs/wait", "", alice, nil)
	run.Method, run.Body = "POST", []byte(`{"assistant_id":"a1"}`)
	run.Headers["content-length"] = itoa(len(run.Body))
	run.Headers["content-type"] = "application/json"
	d := env.Engine.Decide(context.Background(), run)
	var granted []string
	for _, g := range d.Grants {
		granted = append(granted, g.Event)
	}
	if d.Outcome != decision.Allowed || strings.Join(granted, ",") != "threads:create_run,threads:read" || !strings.Contains(d.Reason, "(optional: not granted)") {
		t.Errorf("run: %s, grants %v (%s)", d.Outcome, granted, d.Reason)
	}
	var events string
	for _, h := range d.Headers {
		if h.Name == decision.HeaderEvents {
			events = h.Value
		}
	}
	// The run binds its assistant; the thread read binds nothing.
	if events != `{"threads:create_run":{"filters":{"owner":"alice"},"values":[{"/assistant_id":"a1"}]},"threads:read":{"filters":{"owner":"alice"}}}` {
		t.Errorf("x-langgate-events = %s", events)
	}
	d = env.Engine.Decide(context.Background(), get("/assistants/a1", "", alice, nil))
	if d.Outcome != decision.Denied || d.Status != 403 {
		t.Errorf("the route's own assistants:read: %s %d (%s)", d.Outcome, d.Status, d.Reason)
	}
	// authorize.run_assistant: required makes the run's assistant check
	// one of its own events: the denial denies the run.
	strict := testengine.Start(t, testengine.Options{Policy: strings.Replace(text, "authorize:\n", "authorize:\n  run_assistant: required\n", 1)})
	run.Headers["authorization"] = "Bearer " + strict.Token(t, "alice", nil)
	if d := strict.Engine.Decide(context.Background(), run); d.Outcome != decision.Denied || d.Handler != "assistants.read" {
		t.Errorf("run_assistant: required: %s handler %q (%s)", d.Outcome, d.Handler, d.Reason)
	}
}

// TestHolderEntryPoint: before the first configuration every request is a
// 503 denial, and a panic in the pipeline a 500 — each with a decision id,
// observed and logged like any other decision.
func TestHolderEntryPoint(t *testing.T) {
	rec := &recorder{}
	var logs strings.Builder
	var mu sync.Mutex
	h := &decision.Holder{Observer: rec, Log: testengine.Logger(&lockedWriter{w: &logs, mu: &mu})}
	d := h.Decide(context.Background(), get("/threads/t1", "", "", nil))
	if d.Allow() || d.Status != 503 || d.Outcome != decision.Error || d.ID == "" || d.Body != `{"detail":"Service unavailable"}` || rec.last(t) != d {
		t.Errorf("no engine: %+v", d)
	}

	env := testengine.Start(t, testengine.Options{Observer: rec})
	h.Store(env.Engine)
	d = h.Decide(context.Background(), nil) // a nil request panics in the pipeline
	if d.Allow() || d.Status != 500 || d.Outcome != decision.Error || d.ID == "" || d.Body != `{"detail":"Internal error"}` || rec.last(t) != d {
		t.Errorf("panic: %+v", d)
	}
	d = h.Decide(context.Background(), get("/threads/t1", "", env.Token(t, "alice", nil), nil))
	if !d.Allow() {
		t.Errorf("after a recovered panic: %s (%s)", d.Outcome, d.Reason)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "no configuration loaded") {
		t.Errorf("the 503 was not logged:\n%s", logs.String())
	}
}

type lockedWriter struct {
	w  *strings.Builder
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestExpressionPlaces: each place in the configuration compiles its
// expressions against only the variables it can bind, so naming another
// place's variable is a load error at its position, never a 401 or 403 on
// every request.
func TestExpressionPlaces(t *testing.T) {
	base := readExample(t, "examples/langgraph/langgate.yaml")
	for _, c := range []struct {
		name, from, to, want string
	}{
		{"user mapping reads the request", "identity: claims.sub", `identity: 'request.headers["x-user"]'`, "test.yaml:23:16: CEL: undeclared reference to 'request'"},
		{"user mapping reads the user", "identity: claims.sub", "identity: user.identity", "test.yaml:23:15: CEL: undeclared reference to 'user'"},
		{"user mapping reads the event", "identity: claims.sub", "identity: value.id", "test.yaml:23:15: CEL: undeclared reference to 'value'"},
		{"handler reads an unknown variable", "owner: user.identity\n      filters", "owner: session.id\n      filters", "undeclared reference to 'session'"},
	} {
		t.Run(c.name, func(t *testing.T) {
			text := strings.Replace(base, c.from, c.to, 1)
			if text == base {
				t.Fatal("replacement did not apply")
			}
			f, err := config.Parse("test.yaml", []byte(text), func(string) (string, bool) { return "https://idp.example.com", true })
			if err != nil {
				t.Fatal(err)
			}
			_, err = decision.Build(f, decision.Options{Logger: testengine.Logger(nil)})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want %q", err, c.want)
			}
		})
	}
	// The handlers' own variables, claims included, still compile.
	text := strings.Replace(base, "owner: user.identity\n      filters", `owner: 'claims.sub + request.method + resource + action + (has(context.x) ? context.x : "")'`+"\n      filters", 1)
	f, err := config.Parse("test.yaml", []byte(text), func(string) (string, bool) { return "https://idp.example.com", true })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decision.Build(f, decision.Options{Logger: testengine.Logger(nil)}); err != nil {
		t.Errorf("a handler reading its own variables: %v", err)
	}
}

// TestLangGraphHoles: routes that were allowed unfiltered, or refused
// although browsers need them, as the LangGraph table now decides them.
func TestLangGraphHoles(t *testing.T) {
	env := testengine.Start(t, testengine.Options{})
	bob := env.Token(t, "bob", nil)
	req := func(method, path, token, body string, h map[string]string) *decision.Request {
		r := get(path, "", token, nil)
		r.Method = method
		if body != "" {
			r.Body = []byte(body)
			r.Headers["content-length"] = itoa(len(body))
			r.Headers["content-type"] = "application/json"
		}
		for k, v := range h {
			r.Headers[k] = v
		}
		return r
	}
	preflight := map[string]string{"origin": "https://app.example", "access-control-request-method": "POST"}
	for _, c := range []struct {
		name    string
		req     *decision.Request
		outcome decision.Outcome
		event   string
		value   string
	}{
		{"prune is a delete of the threads named", req("POST", "/threads/prune", bob, `{"thread_ids":["t1","t2"]}`, nil), decision.Allowed, "threads:delete", `{"thread_ids":["t1","t2"]}`},
		{"thread storage is a read", req("GET", "/threads/t1/storage", bob, "", nil), decision.Allowed, "threads:read", `{"thread_id":"t1"}`},
		{"MCP without a JSON-RPC envelope is refused", req("POST", "/mcp", bob, `{}`, nil), decision.BadRequest, "", ""},
		{"MCP with a trailing slash is the same endpoint", req("POST", "/mcp/", bob, `{}`, nil), decision.BadRequest, "", ""},
		{"A2A without a JSON-RPC envelope is refused", req("POST", "/a2a/asst-1", bob, `{}`, nil), decision.BadRequest, "", ""},
		{"the A2A default agent card reads its assistant", req("GET", "/.well-known/agent-card.json?assistant_id=a1", bob, "", nil), decision.Allowed, "assistants:read", `{"assistant_id":"a1"}`},
		{"the Python debug dump is refused", req("GET", "/internal/debug/thread/t1", bob, "", nil), decision.Denied, "", ""},
		{"CORS preflight passes without a token", req("OPTIONS", "/threads", "", "", preflight), decision.Public, "", ""},
		{"OPTIONS without Origin is not a preflight", req("OPTIONS", "/threads", "", "", map[string]string{"access-control-request-method": "POST"}), decision.Unauthenticated, "", ""},
		{"UI bundles load without a token", req("GET", "/ui/agent/entrypoint.js", "", "", nil), decision.Public, "", ""},
		{"the root health check", req("GET", "/", "", "", nil), decision.Public, "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := env.Engine.Decide(context.Background(), c.req)
			event, value := "", ""
			if len(d.Events) > 0 {
				event = d.Resource() + ":" + d.Action()
				b, _ := json.Marshal(d.Events[0].Value)
				value = string(b)
			}
			if d.Outcome != c.outcome || event != c.event || value != c.value {
				t.Errorf("%s %s value %s (%s), want %s %s %s", d.Outcome, event, value, d.Reason, c.outcome, c.event, c.value)
			}
		})
	}
	// The preflight rule can be turned off.
	text := strings.Replace(readExample(t, "examples/langgraph/langgate.yaml"), "authorize:\n", "authorize:\n  cors_preflight: authenticate\n", 1)
	strict := testengine.Start(t, testengine.Options{Policy: text})
	if d := strict.Engine.Decide(context.Background(), req("OPTIONS", "/threads", "", "", preflight)); d.Outcome != decision.Unauthenticated {
		t.Errorf("cors_preflight: authenticate: %s", d.Outcome)
	}
}

// TestMountPrefix: a LangGraph server mounted under http.mount_prefix is
// decided under that prefix; outside it nothing fires an event.
func TestMountPrefix(t *testing.T) {
	text := strings.Replace(readExample(t, "examples/langgraph/langgate.yaml"), "  routes: langgraph\n", "  routes:\n    - {include: langgraph, mount_prefix: /api/v1}\n", 1)
	env := testengine.Start(t, testengine.Options{Policy: text})
	bob := env.Token(t, "bob", nil)
	for _, c := range []struct {
		path    string
		outcome decision.Outcome
		event   string
	}{
		{"/api/v1/threads/t1", decision.Allowed, "threads:read"},
		{"/api/v1/ok", decision.Public, ""},
		{"/api/v1", decision.Public, ""}, // the root health check
		{"/threads/t1", decision.Allowed, ""},
		{"/api/threads/t1", decision.Allowed, ""},
	} {
		d := env.Engine.Decide(context.Background(), get(c.path, "", bob, nil))
		event := ""
		if len(d.Events) > 0 {
			event = d.Resource() + ":" + d.Action()
		}
		if d.Outcome != c.outcome || event != c.event {
			t.Errorf("%s: %s %s (%s), want %s %s", c.path, d.Outcome, event, d.Reason, c.outcome, c.event)
		}
		if c.outcome == decision.Allowed && c.event == "" && len(d.Grants) != 0 {
			t.Errorf("%s outside the prefix grants %v", c.path, d.Grants)
		}
	}
	for _, bad := range []string{"api", "/api/", "/a/{x}", "/a/../b", "/a b"} {
		text := strings.Replace(readExample(t, "examples/langgraph/langgate.yaml"), "  routes: langgraph\n", "  routes:\n    - {include: langgraph, mount_prefix: \""+bad+"\"}\n", 1)
		_, err := config.Parse("test.yaml", []byte(text), func(string) (string, bool) { return "https://idp.example.com", true })
		if err == nil || !strings.Contains(err.Error(), "mount_prefix") {
			t.Errorf("mount_prefix %q: %v", bad, err)
		}
	}
}

// TestCORSOnDenials: with a cors section, a denial for a request from an
// allowed origin carries the headers a browser needs to show it to the
// app; other origins, and configurations without the section, get none.
func TestCORSOnDenials(t *testing.T) {
	text := readExample(t, "examples/langgraph/langgate.yaml") + "cors:\n  allow_origins: [\"https://app.example\"]\n  allow_credentials: true\n"
	env := testengine.Start(t, testengine.Options{Policy: text})
	for _, c := range []struct {
		origin, want string
	}{
		{"https://app.example", "https://app.example"},
		{"https://evil.example", ""},
		{"", ""},
	} {
		r := get("/threads/t1", "", "", nil)
		if c.origin != "" {
			r.Headers["origin"] = c.origin
		}
		d := env.Engine.Decide(context.Background(), r)
		hs := map[string]string{}
		for _, h := range d.ResponseHeaders {
			hs[h.Name] = h.Value
		}
		if d.Status != 401 || hs["access-control-allow-origin"] != c.want {
			t.Errorf("origin %q: %d %v", c.origin, d.Status, hs)
		}
		if c.want != "" && (hs["access-control-allow-credentials"] != "true" || hs["vary"] != "Origin" || !strings.Contains(hs["access-control-expose-headers"], "www-authenticate")) {
			t.Errorf("origin %q: %v", c.origin, hs)
		}
	}
	for _, bad := range []string{"cors: {allow_origins: []}\n", "cors: {allow_origins: [\"app.example\"]}\n", "cors: {allow_origins: [\"https://a.example/path\"]}\n", "cors: {allow_origins: [\"*\"], allow_credentials: true}\n"} {
		_, err := config.Parse("test.yaml", []byte(readExample(t, "examples/langgraph/langgate.yaml")+bad), func(string) (string, bool) { return "https://idp.example.com", true })
		if err == nil || !strings.Contains(err.Error(), "cors") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestStudio: authorize.studio admits LangGraph Studio's requests
// (x-auth-scheme: langsmith) for the users it holds for: handlers see
// user.is_studio_user, and the upstream a user of kind StudioUser. Anyone
// else's Studio header changes nothing; without the rule it is ignored.
func TestStudio(t *testing.T) {
	text := strings.Replace(readExample(t, "examples/langgraph/langgate.yaml"), "  routes: langgraph\n", "  routes: langgraph\n  studio: \"user.identity == 'alice'\"\n", 1)
	text = strings.Replace(text, `      filters:
        owner: user.identity`, `      filters: "user.is_studio_user ? {} : {'owner': user.identity}"`, 1)
	env := testengine.Start(t, testengine.Options{Policy: text})
	alice, bob := env.Token(t, "alice", nil), env.Token(t, "bob", nil)
	for _, c := range []struct {
		name, token, scheme string
		studio              bool
		filters             string
	}{
		{"alice from Studio", alice, "langsmith", true, "map[]"},
		{"alice without Studio's header", alice, "", false, "map[owner:alice]"},
		{"bob from Studio", bob, "langsmith", false, "map[owner:bob]"},
	} {
		r := get("/threads/t1", "", c.token, nil)
		if c.scheme != "" {
			r.Headers["x-auth-scheme"] = c.scheme
		}
		d := env.Engine.Decide(context.Background(), r)
		var user string
		for _, h := range d.Headers {
			if h.Name == decision.HeaderUser {
				user = h.Value
			}
		}
		if !d.Allow() || d.Studio != c.studio || fmt.Sprint(d.Filters) != c.filters || strings.Contains(user, `"kind":"StudioUser"`) != c.studio {
			t.Errorf("%s: %s studio=%v filters %v user %s (%s)", c.name, d.Outcome, d.Studio, d.Filters, user, d.Reason)
		}
		if !slices.Contains(d.RemoveHeaders, "x-auth-scheme") && c.scheme != "" {
			t.Errorf("%s: x-auth-scheme is not removed: %v", c.name, d.RemoveHeaders)
		}
	}
	// Without the rule, Studio's header is only removed.
	plain := testengine.Start(t, testengine.Options{})
	r := get("/threads/t1", "", plain.Token(t, "alice", nil), nil)
	r.Headers["x-auth-scheme"] = "langsmith"
	if d := plain.Engine.Decide(context.Background(), r); d.Studio || d.Filters["owner"] != "alice" {
		t.Errorf("no studio rule: studio=%v filters %v", d.Studio, d.Filters)
	}
}

// TestSignedContext: with a context section, an allow carries
// x-langgate-context: a JWS, verifiable with the published keys, binding
// the user, the granted events, the policy, the decision and the request
// (method, normalized path, body hash); POST /threads grants its create
// and the optional update and read. Denials and public routes carry
// none, nor does a configuration without the section.
func TestSignedContext(t *testing.T) {
	section, priv := testengine.ContextSection(t, "k1")
	text := readExample(t, "examples/langgraph/langgate.yaml") + section
	env := testengine.Start(t, testengine.Options{Policy: text})
	alice := env.Token(t, "alice", nil)
	header := func(d *decision.Decision) string {
		for _, h := range d.Headers {
			if h.Name == decision.HeaderContext {
				return h.Value
			}
		}
		return ""
	}
	body := `{"metadata":{"topic":"x"}}`
	r := get("/threads/./search/../../threads", "", alice, nil)
	r.Method, r.Body = "POST", []byte(body)
	r.Headers["content-length"] = itoa(len(body))
	r.Headers["content-type"] = "application/json"
	d := env.Engine.Decide(context.Background(), r)
	jws := header(d)
	if !d.Allow() || jws == "" {
		t.Fatalf("%s, context %q (%s)", d.Outcome, jws, d.Reason)
	}
	obj, err := jose.ParseSignedCompact(jws, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := obj.Verify(priv.Public())
	if err != nil || obj.Signatures[0].Protected.KeyID != "k1" {
		t.Fatalf("signature: %v (kid %q)", err, obj.Signatures[0].Protected.KeyID)
	}
	var c struct {
		Iss, Jti, Policy string
		Aud              []string
		Iat, Exp         float64
		User             struct{ Identity string }
		Events           []struct {
			Resource, Action  string
			Filters, Metadata map[string]any
		}
		Request struct {
			Method, Path string
			BodySha256   string `json:"body_sha256"`
		}
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(body))
	if c.Iss != "langgate" || c.Jti != d.ID || c.Policy != "langgraph" || c.User.Identity != "alice" || c.Exp-c.Iat != 60 ||
		len(c.Events) != 3 || c.Events[0].Resource != "threads" || c.Events[0].Action != "create" ||
		c.Events[0].Filters["owner"] != "alice" || c.Events[0].Metadata["owner"] != "alice" ||
		c.Request.Method != "POST" || c.Request.Path != "/threads" || c.Request.BodySha256 != hex.EncodeToString(sum[:]) {
		t.Errorf("context %s", payload)
	}
	if env.Engine.ContextKeys() == nil || !strings.Contains(string(env.Engine.ContextKeys().JWKS()), `"kid":"k1"`) {
		t.Error("the engine does not publish its key")
	}
	if d := env.Engine.Decide(context.Background(), get("/threads/t1", "", "", nil)); header(d) != "" {
		t.Error("a denial carries a context")
	}
	if d := env.Engine.Decide(context.Background(), get("/ok", "", "", nil)); header(d) != "" {
		t.Error("a public route carries a context")
	}
	plain := testengine.Start(t, testengine.Options{})
	if d := plain.Engine.Decide(context.Background(), get("/threads/t1", "", plain.Token(t, "alice", nil), nil)); header(d) != "" || plain.Engine.ContextKeys() != nil {
		t.Error("a configuration without a context section signs")
	}
	// A key file that is not a key set is a configuration error.
	bad := filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(bad, []byte("{}"), 0o600); err != nil {
		t.Fatal(err)
	}
	text = readExample(t, "examples/langgraph/langgate.yaml") + "context:\n  keys: " + bad + "\n  audience: [langgraph]\n"
	f, err := config.Parse("test.yaml", []byte(text), func(string) (string, bool) { return "https://idp.example.com", true })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decision.Build(f, decision.Options{Logger: testengine.Logger(nil)}); err == nil || !strings.Contains(err.Error(), "context.keys") {
		t.Errorf("a bad key file: %v", err)
	}
}
