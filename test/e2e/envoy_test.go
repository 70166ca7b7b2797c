package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/langgate/langgate/internal/envoyproc"
	"github.com/langgate/langgate/internal/testproc"
)

// modes are the two shipped ways Envoy asks langgate: ext_authz over gRPC,
// and ext_authz http_service to langgate's HTTP mode. statPrefix is the
// connection manager's, under which Envoy counts ext_authz outcomes.
var modes = []struct {
	name, file, statPrefix string
}{
	{"grpc", "front-proxy.yaml", "langgraph"},
	{"http", "front-proxy-http.yaml", "langgraph_http"},
}

const seedPolicy = "../../examples/langgraph/langgate.yaml"

// protocols are the two ways a client speaks to Envoy; proto is the
// response's Proto each must see.
var protocols = []struct {
	name   string
	client *http.Client
	proto  string
}{{"HTTP/1.1", h1, "HTTP/1.1"}, {"HTTP/2", h2, "HTTP/2.0"}}

// sendProbed sends one request as tok with a fresh probe id, fails the
// test unless the client spoke proto, and returns what of it reached the
// upstream.
func sendProbed(t *testing.T, client *http.Client, proto, method, url, tok string, body []byte) (response, []http.Header) {
	t.Helper()
	id := newProbe()
	r := send(t, client, method, url, [][2]string{bearer(tok), jsonType, probe(id)}, body)
	if r.proto != proto {
		t.Fatalf("the client spoke %s, want %s", r.proto, proto)
	}
	return r, shared.tap.received(id)
}

func bearer(tok string) [2]string { return [2]string{"Authorization", "Bearer " + tok} }

var jsonType = [2]string{"Content-Type", "application/json"}

func probe(id string) [2]string { return [2]string{probeHeader, id} }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// accessLog returns the JSON lines Envoy's access log (stdout) has written
// so far whose path contains marker.
func accessLog(t *testing.T, e *envoyproc.Envoy, marker string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(e.Stdout()))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.HasPrefix(line, []byte("{")) {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("access log line is not JSON: %s", line)
		}
		if p, _ := rec["path"].(string); strings.Contains(p, marker) {
			out = append(out, rec)
		}
	}
	return out
}

// waitAccessLog waits until Envoy has logged n lines for marker (it logs
// when a stream ends, and flushes its file every second or so).
func waitAccessLog(t *testing.T, e *envoyproc.Envoy, marker string, n int) []map[string]any {
	t.Helper()
	var recs []map[string]any
	testproc.WaitFor(t, 15*time.Second, func() bool { recs = accessLog(t, e, marker); return len(recs) >= n },
		fmt.Sprintf("the access log has no %d lines for %s", n, marker))
	return recs
}

// TestEnvoyDenials: what a refused client sees through the real Envoy —
// langgate's status, JSON body, content-type and www-authenticate — and that
// the upstream sees nothing.
func TestEnvoyDenials(t *testing.T) {
	lg := startLanggate(t, seedPolicy)
	bob := token(t, "bob")
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := envoyFor(t, m.file, lg, relaxed)
			base := e.URL("langgraph_http")
			aliceNote := mustJSON(t, map[string]any{"namespace": []string{"alice", "notes"}, "key": "k", "value": map[string]any{"text": "hi"}})
			for _, c := range []struct {
				name, method, path string
				headers            [][2]string
				body               []byte
				status             int
				detail, wwwAuth    string
			}{
				{"no token", "GET", "/threads/t1", nil, nil, 401, "Missing authentication token", `Bearer realm="langgate"`},
				{"not a JWT", "GET", "/threads/t1", [][2]string{{"Authorization", "Bearer not-a-token"}}, nil, 401, "Invalid token", `Bearer realm="langgate", error="invalid_token"`},
				{"no Bearer scheme", "GET", "/threads/t1", [][2]string{{"Authorization", bob}}, nil, 401, "Invalid token", `Bearer realm="langgate", error="invalid_token"`},
				{"bob writes into alice's namespace", "PUT", "/store/items", [][2]string{bearer(bob), jsonType}, aliceNote, 403, "Not authorized", ""},
				{"a route langgate refuses", "POST", "/internal/truncate", [][2]string{bearer(bob), jsonType}, []byte(`{"threads":true}`), 403, "", ""},
			} {
				t.Run(c.name, func(t *testing.T) {
					id := newProbe()
					for _, client := range []*http.Client{h1, h2} {
						r := send(t, client, c.method, base+c.path, append(c.headers, probe(id)), c.body)
						if r.status != c.status {
							t.Fatalf("%s: status %d, want %d; body %s", r.proto, r.status, c.status, r.body)
						}
						if ct := r.header.Get("Content-Type"); ct != "application/json" {
							t.Errorf("%s: content-type %q, want application/json", r.proto, ct)
						}
						if d := r.detail(); d == "" || (c.detail != "" && d != c.detail) {
							t.Errorf("%s: body %q, want {\"detail\": %q}", r.proto, r.body, c.detail)
						}
						if got := r.header.Values("Www-Authenticate"); c.wwwAuth == "" && len(got) > 0 || c.wwwAuth != "" && !slices.Equal(got, []string{c.wwwAuth}) {
							t.Errorf("%s: www-authenticate %q, want %q", r.proto, got, c.wwwAuth)
						}
					}
					if got := shared.tap.received(id); len(got) != 0 {
						t.Errorf("a refused request reached the upstream %d times", len(got))
					}
				})
			}
		})
	}
}

// forged are the headers a malicious client adds: every header langgate
// owns (one of them twice), one more under its prefix, and LangGraph's
// switch that skips its own authentication.
var forged = [][2]string{
	{"X-Langgate-User-Id", "alice"},
	{"X-Langgate-User-Id", "admin"},
	{"X-Langgate-User", `{"identity":"alice","display_name":"alice","is_authenticated":true,"permissions":["admin"]}`},
	{"X-Langgate-Permissions", `["admin"]`},
	{"X-Langgate-Resource", "store"},
	{"X-Langgate-Action", "put"},
	{"X-Langgate-Filters", "{}"},
	{"X-Langgate-Metadata", `{"owner":"alice"}`},
	{"X-Langgate-Events", `{"store:put":{}}`},
	{"X-Langgate-Context", "eyJhbGciOiJub25lIn0.e30."},
	{"X-Langgate-Anything", "smuggled"},
	{"X-Auth-Scheme", "langsmith"},
}

// TestEnvoyHeaderHygiene: whatever a client sends under x-langgate-* or as
// x-auth-scheme, the upstream receives langgate's headers exactly once each
// and nothing else of the kind — on checked routes and on public ones.
func TestEnvoyHeaderHygiene(t *testing.T) {
	lg := startLanggate(t, seedPolicy)
	bob := token(t, "bob")
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := envoyFor(t, m.file, lg, relaxed)
			base := e.URL("langgraph_http")
			for _, client := range []*http.Client{h1, h2} {
				id := newProbe()
				r := send(t, client, "POST", base+"/threads/search", append([][2]string{bearer(bob), jsonType, probe(id)}, forged...), []byte(`{"limit":1}`))
				if r.status != 200 {
					t.Fatalf("bob's search: %d %s", r.status, r.body)
				}
				got := shared.tap.received(id)
				if len(got) != 1 {
					t.Fatalf("the upstream received the request %d times, want once", len(got))
				}
				want := map[string]string{
					"X-Langgate-User-Id":     "bob",
					"X-Langgate-Permissions": `["threads","assistants","store"]`, // the dev issuer's scope
					"X-Langgate-Resource":    "threads",
					"X-Langgate-Action":      "search",
					"X-Langgate-Filters":     `{"owner":"bob"}`,
					"X-Langgate-Metadata":    `{"owner":"bob"}`,
					"X-Langgate-Events":      `{"threads:search":{"filters":{"owner":"bob"}}}`,
				}
				checkLanggateHeaders(t, r.proto, got[0], want)
				if u := got[0].Values("X-Langgate-User"); len(u) != 1 || !strings.Contains(u[0], `"identity":"bob"`) {
					t.Errorf("%s: x-langgate-user %q, want bob's, once", r.proto, u)
				}

				// A public route: langgate is not asked, Envoy strips them.
				id = newProbe()
				if r := send(t, client, "GET", base+"/ok", append([][2]string{probe(id)}, forged...), nil); r.status != 200 {
					t.Fatalf("GET /ok: %d %s", r.status, r.body)
				}
				got = shared.tap.received(id)
				if len(got) != 1 {
					t.Fatalf("GET /ok reached the upstream %d times", len(got))
				}
				checkLanggateHeaders(t, r.proto+" public route", got[0], nil)
			}
		})
	}
}

// checkLanggateHeaders: h has exactly the x-langgate-* headers of want,
// one value each, equal to want's (the user JSON only once), and no
// x-auth-scheme.
func checkLanggateHeaders(t *testing.T, at string, h http.Header, want map[string]string) {
	t.Helper()
	for name, vs := range h {
		lower := strings.ToLower(name)
		switch {
		case lower == "x-auth-scheme":
			t.Errorf("%s: the upstream received the client's x-auth-scheme %q", at, vs)
		case !strings.HasPrefix(lower, "x-langgate-"):
		case name == "X-Langgate-User" && want != nil:
			if len(vs) != 1 {
				t.Errorf("%s: x-langgate-user %d times", at, len(vs))
			}
		case name == "X-Langgate-Decision-Id" && want != nil:
			// HTTP mode copies the answer's decision id (it is langgate's).
		case name == "X-Langgate-Context" && want[name] == "" && slices.Equal(vs, []string{""}):
			// HTTP mode answers every header it owns, empty when it has no
			// value (no context section): the client's copy is overwritten
			// with nothing.
		default:
			w, ok := want[name]
			if !ok {
				t.Errorf("%s: the upstream received %s %q, which langgate did not set", at, name, vs)
			} else if !slices.Equal(vs, []string{w}) {
				t.Errorf("%s: the upstream received %s %q, want exactly [%q]", at, name, vs, w)
			}
		}
	}
	for name := range want {
		if h.Get(name) == "" {
			t.Errorf("%s: the upstream did not receive %s", at, name)
		}
	}
}

// storeBodyRoute patches the PUT /store/items route's body settings.
func storeBodyRoute(t *testing.T, maxBytes int, partial bool) func(*envoyproc.Config) {
	return func(cfg *envoyproc.Config) {
		n := 0
		cfg.Visit(func(m map[string]any) {
			match, _ := m["match"].(map[string]any)
			headers, _ := match["headers"].([]any)
			if match["path"] != "/store/items" || len(headers) != 1 || fmt.Sprint(headers[0]) != "map[name::method string_match:map[exact:PUT]]" {
				return
			}
			tpf, _ := m["typed_per_filter_config"].(map[string]any)
			ea, _ := tpf["envoy.filters.http.ext_authz"].(map[string]any)
			cs, _ := ea["check_settings"].(map[string]any)
			wb, _ := cs["with_request_body"].(map[string]any)
			if wb == nil {
				return
			}
			wb["max_request_bytes"], wb["allow_partial_message"] = maxBytes, partial
			n++
		})
		if n != 1 {
			t.Fatalf("found %d PUT /store/items routes with body settings, want 1", n)
		}
	}
}

// TestEnvoyRequestBodies: the store rule reads the namespace from the body,
// which Envoy buffers and sends (with_request_body) — over HTTP/1.1 and
// HTTP/2, in both modes. A body over the route's limit is refused by Envoy
// (413); with allow_partial_message the cut body arrives marked
// x-envoy-auth-partial-body and langgate refuses it (never treats it as
// complete).
func TestEnvoyRequestBodies(t *testing.T) {
	lg := startLanggate(t, seedPolicy)
	alice, bob := token(t, "alice"), token(t, "bob")
	run := newProbe()
	item := func(ns, pad string) []byte {
		return mustJSON(t, map[string]any{"namespace": []string{ns, run}, "key": "k", "value": map[string]any{"pad": pad}})
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := envoyFor(t, m.file, lg, relaxed)
			partial := envoyFor(t, m.file, lg, func(c *envoyproc.Config) { relaxed(c); storeBodyRoute(t, 1024, true)(c) })
			for _, c := range protocols {
				t.Run(c.name, func(t *testing.T) {
					put := func(base, tok string, body []byte) (response, []http.Header) {
						return sendProbed(t, c.client, c.proto, "PUT", base+"/store/items", tok, body)
					}
					base := e.URL("langgraph_http")
					if r, up := put(base, alice, item("alice", "")); r.status != 204 && r.status != 200 || len(up) != 1 {
						t.Errorf("alice's put: %d %s, reached the upstream %d times", r.status, r.body, len(up))
					}
					if r, up := put(base, bob, item("alice", "")); r.status != 403 || r.detail() != "Not authorized" || len(up) != 0 {
						t.Errorf("bob's put into alice's namespace: %d %s, reached the upstream %d times", r.status, r.body, len(up))
					}
					// 1 MiB is the route's limit (and langgate's). Over HTTP/1.1
					// one byte more is Envoy's 413. Over HTTP/2, Envoy 1.40 sends
					// langgate the first 1 MiB marked x-envoy-auth-partial-body
					// even with allow_partial_message: false, and langgate
					// refuses it (403): either way it never reaches the upstream.
					big := item("alice", strings.Repeat("x", 1<<20))
					r, up := put(base, alice, big)
					if len(up) != 0 || r.status != 413 && (c.proto == "HTTP/1.1" || r.status != 403) {
						t.Errorf("a body over 1 MiB: %d %s, reached the upstream %d times; want 413 (or, over HTTP/2, langgate's 403)", r.status, r.body, len(up))
					}
					t.Logf("%s, a body over 1 MiB: %d %s", c.proto, r.status, r.body)
					// A 1 KiB limit that passes cut bodies on.
					pbase := partial.URL("langgraph_http")
					if r, up := put(pbase, alice, item("alice", "")); r.status != 204 && r.status != 200 || len(up) != 1 {
						t.Errorf("a body under the partial limit: %d %s, reached the upstream %d times", r.status, r.body, len(up))
					}
					if r, up := put(pbase, alice, item("alice", strings.Repeat("x", 2048))); r.status != 403 || len(up) != 0 {
						t.Errorf("a body cut at 1 KiB: %d %s, reached the upstream %d times; want 403 (a cut body is never complete)", r.status, r.body, len(up))
					}
				})
			}
		})
	}
}

// multiPolicy serves the seed policy by default and a read-only one that
// Envoy selects per virtual host with the context extension policy.
const multiPolicy = `
authenticate:
  oidc:
    - issuer: "${OIDC_ISSUER}"
      audiences: ["${OIDC_AUDIENCE}"]
  user:
    identity: claims.sub
default_policy: langgraph
policies:
  langgraph:
    authorize:
      routes: langgraph
      handlers:
        - on: "*"
          metadata: {owner: user.identity}
          filters: {owner: user.identity}
  readonly:
    authorize:
      routes: langgraph
      handlers:
        - on: "*"
          allow: "action in ['read', 'search']"
          message: This host is read-only
          filters: {owner: user.identity}
`

// TestEnvoyPolicySelection: Envoy's per-route (here per virtual host)
// check_settings.context_extensions pick langgate's policy, and the access
// log shows which.
func TestEnvoyPolicySelection(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(cfgFile, []byte(multiPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	lg := startLanggate(t, cfgFile)
	alice := token(t, "alice")
	e := envoyFor(t, "front-proxy.yaml", lg, func(cfg *envoyproc.Config) {
		relaxed(cfg)
		n := 0
		cfg.Visit(func(m map[string]any) {
			vhs, ok := m["virtual_hosts"].([]any)
			if !ok {
				return
			}
			m["virtual_hosts"] = append(vhs, map[string]any{
				"name": "readonly", "domains": []any{"readonly.example", "readonly.example:*"},
				"typed_per_filter_config": map[string]any{"envoy.filters.http.ext_authz": map[string]any{
					"@type":          "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute",
					"check_settings": map[string]any{"context_extensions": map[string]any{"policy": "readonly"}},
				}},
				"routes": []any{map[string]any{"match": map[string]any{"prefix": "/"}, "route": map[string]any{"cluster": "langgraph"}}},
			})
			n++
		})
		if n != 1 {
			t.Fatalf("%d route configs, want 1", n)
		}
	})
	base := e.URL("langgraph_http")
	marker := newProbe()
	r := send(t, h1, "POST", base+"/threads?m="+marker, [][2]string{bearer(alice), jsonType}, []byte(`{"metadata":{"via":"default"}}`))
	if r.status != 200 {
		t.Fatalf("POST /threads on the default host: %d %s", r.status, r.body)
	}
	var thread struct {
		ID       string         `json:"thread_id"`
		Metadata map[string]any `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(r.body), &thread); err != nil || thread.Metadata["owner"] != "alice" {
		t.Fatalf("thread %s (%v): want owner alice", r.body, err)
	}
	ro := [2]string{"Host", "readonly.example"}
	r = send(t, h1, "POST", base+"/threads?m="+marker, [][2]string{bearer(alice), jsonType, ro}, []byte(`{}`))
	if r.status != 403 || r.detail() != "This host is read-only" {
		t.Errorf("POST /threads on readonly.example: %d %s, want 403 from policy readonly", r.status, r.body)
	}
	if r := send(t, h1, "GET", base+"/threads/"+thread.ID+"?m="+marker, [][2]string{bearer(alice), ro}, nil); r.status != 200 {
		t.Errorf("GET alice's thread on readonly.example: %d %s", r.status, r.body)
	}
	var policies []string
	for _, rec := range waitAccessLog(t, e, marker, 3) {
		policies = append(policies, fmt.Sprint(rec["authz_policy"]))
	}
	if !slices.Equal(policies, []string{"langgraph", "readonly", "readonly"}) {
		t.Errorf("access log authz_policy %v, want [langgraph readonly readonly]", policies)
	}
}

// TestEnvoyFailsClosed: with langgate paused (slower than the shipped 50 ms
// timeout) or stopped, every checked request is refused with the
// configured 503 and never reaches the upstream, while the public routes
// (ext_authz disabled) keep answering; langgate restarted on its address,
// traffic recovers without touching Envoy.
func TestEnvoyFailsClosed(t *testing.T) {
	alice := token(t, "alice")
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			lg := startLanggate(t, seedPolicy)
			e := envoyFor(t, m.file, lg, nil) // the shipped timeout, 50 ms
			base := e.URL("langgraph_http")
			search := func(marker string) (response, int) {
				id := newProbe()
				r := send(t, h1, "POST", base+"/threads/search?m="+marker, [][2]string{bearer(alice), jsonType, probe(id)}, []byte(`{"limit":1}`))
				return r, len(shared.tap.received(id))
			}
			public := func() {
				t.Helper()
				if r := send(t, h1, "GET", base+"/ok", nil, nil); r.status != 200 {
					t.Errorf("GET /ok (ext_authz disabled) while langgate is down: %d %s", r.status, r.body)
				}
			}
			refused := func(what, marker string, n int) {
				t.Helper()
				for range n {
					start := time.Now()
					r, up := search(marker)
					if r.status != 503 || up != 0 {
						t.Fatalf("%s: %d %s, reached the upstream %d times; want 503, never", what, r.status, r.body, up)
					}
					if d := time.Since(start); d > 2*time.Second {
						t.Errorf("%s: refused after %v; the check timeout is 50 ms", what, d)
					}
				}
				for _, rec := range waitAccessLog(t, e, marker, n) {
					if rec["response_flags"] != "UAEX" || rec["response_code_details"] != "ext_authz_error" {
						t.Errorf("%s: access log flags %v details %v, want UAEX ext_authz_error", what, rec["response_flags"], rec["response_code_details"])
					}
				}
			}
			// The shipped 50 ms is tight beside a loaded test machine: a
			// working langgate is waited for, not assumed on the first try.
			ok := func(what string) time.Duration {
				t.Helper()
				start := time.Now()
				testproc.WaitFor(t, 20*time.Second, func() bool { r, up := search("ok"); return r.status == 200 && up == 1 }, what+": no 200 within 20s")
				return time.Since(start)
			}
			ok("before")

			lg.pause()
			refused("langgate paused", "paused-"+m.name, 3)
			public()
			lg.signal(syscall.SIGCONT)
			ok("langgate resumed")

			lg.kill()
			refused("langgate stopped", "stopped-"+m.name, 3)
			public()

			lg.start()
			took := ok("langgate restarted")
			t.Logf("%s: traffic recovered %v after langgate was ready again (Envoy untouched)", m.name, took)
		})
	}
}

// TestEnvoyStreamsUnbuffered: a run's event stream (SSE) passes through
// Envoy as the graph produces it, in both modes.
func TestEnvoyStreamsUnbuffered(t *testing.T) {
	lg := startLanggate(t, seedPolicy)
	alice := token(t, "alice")
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			e := envoyFor(t, m.file, lg, relaxed)
			base := e.URL("langgraph_http")
			r := send(t, h1, "POST", base+"/threads", [][2]string{bearer(alice), jsonType}, []byte(`{}`))
			var thread struct {
				ID string `json:"thread_id"`
			}
			if err := json.Unmarshal([]byte(r.body), &thread); r.status != 200 || err != nil {
				t.Fatalf("POST /threads: %d %s", r.status, r.body)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			body := `{"assistant_id":"slow","input":{},"stream_mode":["updates"]}`
			req, err := http.NewRequestWithContext(ctx, "POST", base+"/threads/"+thread.ID+"/runs/stream", strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+alice)
			req.Header.Set("Content-Type", "application/json")
			resp, err := h1.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
				t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var updates []time.Time
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if strings.TrimSpace(sc.Text()) == "event: updates" {
					updates = append(updates, time.Now())
				}
			}
			if err := sc.Err(); err != nil {
				t.Fatal(err)
			}
			if len(updates) != 3 {
				t.Fatalf("%d update events, want 3 (one per step)", len(updates))
			}
			// The steps are 300 ms apart: a buffered stream would deliver
			// all three at the end, together.
			if spread := updates[2].Sub(updates[0]); spread < 400*time.Millisecond {
				t.Errorf("the three updates arrived within %v of each other: the stream was buffered", spread)
			}
		})
	}
}

// TestEnvoyStatsAgree: after a known sequence of requests, Envoy's own
// ext_authz statistics and langgate's decision metrics tell the same story.
func TestEnvoyStatsAgree(t *testing.T) {
	alice, bob := token(t, "alice"), token(t, "bob")
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			lg := startLanggate(t, seedPolicy)
			e := envoyFor(t, m.file, lg, relaxed)
			base := e.URL("langgraph_http")
			do := func(n, status int, method, path string, headers [][2]string, body []byte) {
				t.Helper()
				for range n {
					if r := send(t, h1, method, base+path, headers, body); r.status != status {
						t.Fatalf("%s %s: %d %s, want %d", method, path, r.status, r.body, status)
					}
				}
			}
			aliceNote := mustJSON(t, map[string]any{"namespace": []string{"alice", "n"}, "key": "k", "value": map[string]any{}})
			do(3, 200, "POST", "/threads/search", [][2]string{bearer(alice), jsonType}, []byte(`{"limit":1}`))
			do(2, 401, "GET", "/threads/t1", nil, nil)
			do(2, 403, "PUT", "/store/items", [][2]string{bearer(bob), jsonType}, aliceNote)
			do(4, 200, "GET", "/ok", nil, nil) // public: not checked, not counted
			got := lg.decisions()
			if got["allowed"] != 3 || got["unauthenticated"] != 2 || got["denied"] != 2 || len(got) != 3 {
				t.Errorf("langgate_decisions_total by outcome %v, want allowed 3, unauthenticated 2, denied 2", got)
			}
			lg.kill()
			do(2, 503, "POST", "/threads/search", [][2]string{bearer(alice), jsonType}, []byte(`{"limit":1}`))

			prefix := "http." + m.statPrefix + ".ext_authz."
			st, err := e.Stats(`^http\.` + m.statPrefix + `\.ext_authz\.`)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]uint64{prefix + "ok": 3, prefix + "denied": 4, prefix + "error": 2}
			for k, v := range want {
				if st[k] != v {
					t.Errorf("envoy %s = %d, want %d", k, st[k], v)
				}
			}
			if st[prefix+"failure_mode_allowed"] != 0 {
				t.Errorf("envoy let %d requests through on failure", st[prefix+"failure_mode_allowed"])
			}
			t.Logf("envoy: %v; langgate: %v", st, got)
		})
	}
}

// TestEnvoyCORSDenials: with langgate's cors section, a browser app on an
// allowed origin can read a denial through both shipped Envoy modes
// (gRPC: the denied response's headers; HTTP: allowed_client_headers).
func TestEnvoyCORSDenials(t *testing.T) {
	lg := startLanggate(t, seedVariant(t, "cors:\n  allow_origins: [\"https://app.example\"]\n"))
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			url := envoyFor(t, m.file, lg, relaxed).URL("langgraph_http")
			r := send(t, h1, "POST", url+"/threads/search", [][2]string{{"Origin", "https://app.example"}, jsonType}, []byte(`{}`))
			if r.status != 401 || r.header.Get("Access-Control-Allow-Origin") != "https://app.example" || r.header.Get("Vary") == "" {
				t.Errorf("a denial for an allowed origin: %d %v", r.status, r.header)
			}
			r = send(t, h1, "POST", url+"/threads/search", [][2]string{{"Origin", "https://evil.example"}, jsonType}, []byte(`{}`))
			if r.status != 401 || r.header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("a denial for another origin: %d %v", r.status, r.header)
			}
		})
	}
}
