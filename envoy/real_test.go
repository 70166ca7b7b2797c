package envoy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"sigs.k8s.io/yaml"

	"github.com/langgate/langgate/internal/envoyproc"
	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/internal/testproc"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/routes"
)

// shippedTLSDir is where front-proxy-mtls.yaml reads its certificates.
const shippedTLSDir = "/etc/envoy/tls/"

// withTestCerts points a shipped configuration's certificate paths at dir.
func withTestCerts(t *testing.T, file, dir string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.ReplaceAll(b, []byte(shippedTLSDir), []byte(dir+"/"))
}

// TestEnvoyLoadsEveryConfig runs `envoy --mode validate` on every shipped
// file: the real Envoy builds each listener, filter and cluster. The mTLS
// file is loaded with test certificates in place of /etc/envoy/tls/.
func TestEnvoyLoadsEveryConfig(t *testing.T) {
	bin := envoyproc.BinaryT(t)
	pki := newPKI(t)
	for _, f := range configFiles(t) {
		t.Run(f, func(t *testing.T) {
			path := f
			if b := withTestCerts(t, f, pki.dir); !bytes.Equal(b, mustRead(t, f)) {
				path = filepath.Join(t.TempDir(), f)
				if err := os.WriteFile(path, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := envoyproc.Validate(bin, path); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func mustRead(t *testing.T, file string) []byte {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// snippet is one fenced YAML block of the documentation that configures
// Envoy.
type snippet struct {
	at   string // file:line of the fence
	text string
}

// docSnippets finds the Envoy configuration in the documentation: every
// ```yaml block that names an Envoy type or an Envoy socket address.
func docSnippets(t *testing.T) []snippet {
	t.Helper()
	files, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md")
	var out []snippet
	for _, f := range files {
		b := mustRead(t, f)
		sc := bufio.NewScanner(bytes.NewReader(b))
		var cur *snippet
		var lines []string
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			switch {
			case cur == nil && strings.TrimSpace(line) == "```yaml":
				cur, lines = &snippet{at: fmt.Sprintf("%s:%d", strings.TrimPrefix(f, "../"), n)}, nil
			case cur != nil && strings.TrimSpace(line) == "```":
				cur.text = strings.Join(lines, "\n") + "\n"
				if strings.Contains(cur.text, "type.googleapis.com/envoy.") || strings.HasPrefix(strings.TrimSpace(cur.text), "socket_address:") {
					out = append(out, *cur)
				}
				cur = nil
			case cur != nil:
				lines = append(lines, line)
			}
		}
	}
	return out
}

// snippetBootstrap turns a documentation snippet into a bootstrap Envoy can
// load: a whole bootstrap as it is; an HTTP filter inside a listener in
// front of the clusters the shipped files name; a socket address as the
// endpoint of a cluster.
func snippetBootstrap(s snippet) ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal([]byte(s.text), &doc); err != nil {
		return nil, err
	}
	cluster := func(name string, addr any, h2 bool) map[string]any {
		c := map[string]any{
			"name": name, "type": "STRICT_DNS", "connect_timeout": "1s",
			"load_assignment": map[string]any{"cluster_name": name, "endpoints": []any{map[string]any{"lb_endpoints": []any{
				map[string]any{"endpoint": map[string]any{"address": addr}}}}}},
		}
		if h2 {
			c["typed_extension_protocol_options"] = map[string]any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
				"@type":                "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				"explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}}}}
		}
		return c
	}
	loopback := func(port int) any {
		return map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": port}}
	}
	clusters := []any{cluster("langgate", loopback(9001), true), cluster("langgate_http", loopback(9002), false), cluster("langgraph", loopback(2024), false)}
	var filters []any
	var tracing any
	switch d := doc.(type) {
	case map[string]any:
		if d["static_resources"] != nil {
			return []byte(s.text), nil
		}
		if tr := d["tracing"]; tr != nil && len(d) == 1 {
			// The connection manager's tracing block, exporting to an
			// otlp cluster.
			tracing = tr
			clusters = append(clusters, cluster("otlp", loopback(4317), true))
			break
		}
		if sa := d["socket_address"]; sa != nil {
			clusters = append(clusters, cluster("snippet", d, true))
			break
		}
		return nil, fmt.Errorf("an Envoy snippet of unknown shape (keys %v): teach snippetBootstrap", mapKeys(d))
	case []any:
		for _, item := range d {
			m, _ := item.(map[string]any)
			if name, _ := m["name"].(string); !strings.HasPrefix(name, "envoy.filters.http.") {
				return nil, fmt.Errorf("a list that is not of HTTP filters (%v): teach snippetBootstrap", item)
			}
			filters = append(filters, m)
		}
	default:
		return nil, fmt.Errorf("an Envoy snippet of unknown shape (%T)", doc)
	}
	filters = append(filters, map[string]any{"name": routerName, "typed_config": map[string]any{
		"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}})
	hcm := map[string]any{
		"@type":        "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"stat_prefix":  "snippet",
		"http_filters": filters,
		"route_config": map[string]any{"virtual_hosts": []any{map[string]any{
			"name": "all", "domains": []any{"*"},
			"routes": []any{map[string]any{"match": map[string]any{"prefix": "/"}, "route": map[string]any{"cluster": "langgraph"}}},
		}}},
	}
	if tracing != nil {
		hcm["tracing"] = tracing
	}
	bs := map[string]any{"static_resources": map[string]any{
		"listeners": []any{map[string]any{
			"name": "snippet", "address": loopback(0),
			"filter_chains": []any{map[string]any{"filters": []any{map[string]any{
				"name":         "envoy.filters.network.http_connection_manager",
				"typed_config": hcm,
			}}}},
		}},
		"clusters": clusters,
	}}
	return json.Marshal(bs)
}

func mapKeys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestDocSnippetsLoad loads every Envoy snippet of the documentation into
// the real Envoy (inside a minimal bootstrap when it is a fragment), and
// parses it strictly with go-control-plane's types, which also refuses
// deprecated fields (Envoy only warns about them).
func TestDocSnippetsLoad(t *testing.T) {
	bin := envoyproc.BinaryT(t)
	snips := docSnippets(t)
	if len(snips) < 2 {
		t.Fatalf("found %d Envoy snippets in docs/ and README.md, expected at least the http_service filter and the headless address", len(snips))
	}
	for _, s := range snips {
		t.Run(s.at, func(t *testing.T) {
			bs, err := snippetBootstrap(s)
			if err != nil {
				t.Fatalf("%s: %v", s.at, err)
			}
			if _, err := parseBootstrap(bs); err != nil {
				t.Errorf("%s: %v", s.at, err)
			}
			path := filepath.Join(t.TempDir(), "snippet.yaml")
			if err := os.WriteFile(path, bs, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := envoyproc.Validate(bin, path); err != nil {
				t.Errorf("%s: %v", s.at, err)
			}
		})
	}
}

// recorder stands where langgate stands and allows everything, remembering
// what Envoy asked: over gRPC (Check) or over HTTP (the /envoy endpoint).
type recorder struct {
	authv3.UnimplementedAuthorizationServer
	mu     sync.Mutex
	checks []check
}

// check is what one check carried.
type check struct {
	method, path string
	context      map[string]string
	body         int
	partial      string
	certificate  string
}

func (r *recorder) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	h := req.GetAttributes().GetRequest().GetHttp()
	c := check{
		method: h.GetMethod(), path: h.GetPath(), context: req.GetAttributes().GetContextExtensions(),
		body: len(h.GetRawBody()) + len(h.GetBody()), partial: h.GetHeaders()["x-envoy-auth-partial-body"],
		certificate: req.GetAttributes().GetSource().GetCertificate(),
	}
	r.add(c)
	return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code.Code_OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}}, nil
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path == "/readyz" {
		w.WriteHeader(http.StatusOK)
		return
	}
	n, _ := io.Copy(io.Discard, req.Body)
	r.add(check{method: req.Method, path: req.RequestURI, body: int(n), partial: req.Header.Get("x-envoy-auth-partial-body")})
	w.WriteHeader(http.StatusOK)
}

func (r *recorder) add(c check) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.checks = append(r.checks, c)
}

// take returns the checks since the last call.
func (r *recorder) take() []check {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.checks
	r.checks = nil
	return c
}

// serveHTTP serves h on a random loopback port for the test's lifetime.
func serveHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestRoutesThroughEnvoy sends LangGraph requests through each shipped
// file, run by the real Envoy, and records what its ext_authz filter does
// with each: whether langgate is asked, with which context extensions, and
// how much of the body it gets. langgate's place is taken by a recorder
// that allows everything (the question here is what Envoy sends, not what
// langgate decides); the upstream is a server that answers 200. Envoy
// buffers a body exactly on the routes where the seed policy's rules read
// one (Policy.BodyRoutes), and nowhere else limits a body's size.
func TestRoutesThroughEnvoy(t *testing.T) {
	type want int
	const (
		public  want = iota // no check
		checked             // checked with policy langgraph; no body is buffered or sent, any size passes
		small               // checked, a body of smallBodyBytes reaches langgate whole, one byte more is 413
		input               // checked, a body of inputBodyBytes reaches langgate whole, one byte more is 413
	)
	type request struct {
		method, target string
		want           want
	}
	cases := []request{
		{"GET", "/ok?check_db=1", public},
		// Public means exactly LangGraph's public paths, read-only.
		{"POST", "/ok", checked},
		{"DELETE", "/info", checked},
		{"GET", "/ok/", checked},
		{"GET", "/okay", checked},
		{"GET", "/info/x", checked},
		{"GET", "/openapiXjson", checked},
		{"GET", "/docs/oauth2-redirect", checked},
		// Envoy normalizes before it routes: these are /threads/x, not /ok.
		{"GET", "/ok/../threads/x", checked},
		{"GET", "/ok/./../threads/x", checked},
		// Reads.
		{"GET", "/threads/t1", checked},
		{"GET", "/threads/t1/state", checked},
		{"GET", "/assistants/a1/graph", checked},
		{"GET", "/store/items?namespace=u1.notes&key=k", checked},
		{"GET", "/runs/crons/c1", checked},
		// The routes whose decision reads the body under the seed policy.
		{"PUT", "/store/items", input},
		{"DELETE", "/store/items", small},
		{"POST", "/store/items/search", small},
		{"POST", "/store/namespaces", small},
		// LangGraph routes with a body no rule of the seed policy reads:
		// graph input, state and metadata of any size pass unbuffered.
		{"POST", "/store/items", checked},
		{"POST", "/threads", checked},
		{"POST", "/threads/search", checked},
		{"POST", "/threads/count", checked},
		{"PATCH", "/threads/t1", checked},
		{"POST", "/threads/t1/state", checked},
		{"POST", "/threads/t1/copy", checked},
		{"POST", "/threads/t1/commands", checked},
		{"POST", "/threads/t1/stream/events", checked},
		{"POST", "/threads/t1/history", checked},
		{"POST", "/threads/t1/runs", checked},
		{"POST", "/threads/t1/runs/stream", checked},
		{"POST", "/threads/t1/runs/wait", checked},
		{"POST", "/threads/t1/runs/crons", checked},
		{"POST", "/threads/t1/runs/r1/cancel", checked},
		{"POST", "/runs", checked},
		{"POST", "/runs/stream", checked},
		{"POST", "/runs/wait", checked},
		{"POST", "/runs/batch", checked},
		{"POST", "/runs/crons", checked},
		{"POST", "/runs/crons/search", checked},
		{"POST", "/runs/cancel", checked},
		{"POST", "/assistants", checked},
		{"POST", "/assistants/search", checked},
		{"POST", "/assistants/count", checked},
		{"PATCH", "/assistants/a1", checked},
		{"POST", "/assistants/a1/versions", checked},
		// MCP and A2A: JSON-RPC, whose method is in the body.
		{"POST", "/mcp", input},
		{"POST", "/mcp/", input},
		{"POST", "/a2a/6ba7b821-9dad-11d1-80b4-00c04fd430c8", input},
		{"POST", "/a2a/x/", input},
		// Anything else is still checked.
		{"GET", "/mcp", checked},
		{"DELETE", "/mcp", checked},
		{"GET", "/a2a/x", checked},
		{"POST", "/a2a/x/y", checked},
		{"GET", "/", checked},
	}
	// The table above must say what the seed policy needs: a body exactly
	// on its body routes.
	seed := seedBodyRoutes(t)
	for _, c := range cases {
		if c.want == public {
			continue
		}
		if got, want := seed(c.method, c.target), c.want == small || c.want == input; got != want {
			t.Errorf("%s %s: the seed policy reads its body: %v; the case expects a body: %v", c.method, c.target, got, want)
		}
	}
	for _, p := range publicPaths {
		cases = append(cases, request{"GET", p, public}, request{"HEAD", p, public})
	}
	pki := newPKI(t)
	for _, f := range configFiles(t) {
		t.Run(f, func(t *testing.T) {
			rec := &recorder{}
			upstream := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				_, _ = io.WriteString(w, "upstream")
			}))
			health := serveHTTP(t, rec)
			cfg, err := envoyproc.ParseConfig(withTestCerts(t, f, pki.dir))
			if err != nil {
				t.Fatal(err)
			}
			cfg.Loopback()
			// The check timeout is not what this test is about, and it runs
			// beside -race builds on a loaded two-core machine.
			if cfg.SetCheckTimeout(5*time.Second) == 0 {
				t.Fatal("no ext_authz service timeout to set")
			}
			grpcMode := cfg.Cluster("langgate") != nil
			if grpcMode {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				gs := grpc.NewServer()
				authv3.RegisterAuthorizationServer(gs, rec)
				go func() { _ = gs.Serve(ln) }()
				t.Cleanup(gs.Stop)
				if err := cfg.SetEndpoint("langgate", ln.Addr().String(), testproc.Port(t, health)); err != nil {
					t.Fatal(err)
				}
			} else {
				if err := cfg.SetEndpoint("langgate_http", health, testproc.Port(t, health)); err != nil {
					t.Fatal(err)
				}
			}
			if err := cfg.SetEndpoint("langgraph", upstream, 0); err != nil {
				t.Fatal(err)
			}
			e := envoyproc.StartT(t, cfg, envoyproc.Options{})
			var listener string
			for _, l := range []string{"langgraph_http", "langgraph_https"} {
				if a := e.Listener(l); a != "" {
					listener = l
				}
			}
			if listener == "" {
				t.Fatal("no langgraph listener")
			}
			base, client := e.URL(listener), &http.Client{Timeout: 30 * time.Second}
			mtls := listener == "langgraph_https"
			if mtls {
				base = "https://" + e.Listener(listener)
				client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}, MinVersion: tls.VersionTLS12}}
			}
			send := func(method, target string, body int) (int, []check) {
				t.Helper()
				var rd io.Reader
				if body > 0 {
					rd = bytes.NewReader(bytes.Repeat([]byte("a"), body))
				}
				req, err := http.NewRequest(method, base+target, rd)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", method, target, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode, rec.take()
			}
			for _, c := range cases {
				name := c.method + " " + c.target
				limit := map[want]int{small: smallBodyBytes, input: inputBodyBytes}[c.want]
				body := limit
				if c.want == checked {
					body = smallBodyBytes
				}
				status, checks := send(c.method, c.target, body)
				if c.want == public {
					if status != 200 || len(checks) != 0 {
						t.Errorf("%s: status %d, %d checks; want 200 from the upstream and no check", name, status, len(checks))
					}
					continue
				}
				if status != 200 || len(checks) != 1 {
					t.Errorf("%s: status %d, %d checks; want 200 after one check", name, status, len(checks))
					continue
				}
				ck := checks[0]
				if grpcMode && ck.context["policy"] != "langgraph" {
					t.Errorf("%s: context_extensions %v, want policy=langgraph", name, ck.context)
				}
				if !grpcMode && !strings.HasPrefix(ck.path, "/envoy/") {
					t.Errorf("%s: the HTTP check went to %s, want /envoy/<path>", name, ck.path)
				}
				if mtls && !strings.Contains(ck.certificate, "BEGIN%20CERTIFICATE") && !strings.Contains(ck.certificate, "BEGIN CERTIFICATE") {
					t.Errorf("%s: the check carries no client certificate (include_peer_certificate)", name)
				}
				if c.want == checked {
					// No body is buffered: langgate gets none, and a body
					// larger than any buffer limit reaches the upstream.
					if ck.body != 0 {
						t.Errorf("%s: langgate got %d body bytes, want none (no rule reads it)", name, ck.body)
					}
					if status, checks := send(c.method, c.target, 2*maxBodyBytes); status != 200 || len(checks) != 1 || checks[0].body != 0 {
						t.Errorf("%s with a %d-byte body: status %d, %d checks; want 200 after one check without the body", name, 2*maxBodyBytes, status, len(checks))
					}
					continue
				}
				if ck.body != body || ck.partial == "true" {
					t.Errorf("%s: langgate got %d body bytes (partial=%q), want the whole %d", name, ck.body, ck.partial, body)
				}
				// A route that buffers bounds it: one byte over its limit
				// is refused by Envoy itself (the client speaks HTTP/1.1).
				if status, checks := send(c.method, c.target, limit+1); status != http.StatusRequestEntityTooLarge || len(checks) != 0 {
					t.Errorf("%s with a %d-byte body: status %d, %d checks; want 413 and no check", name, limit+1, status, len(checks))
				}
			}
		})
	}
}

// seedBodyRoutes reports, for a request, whether the seed policy
// (examples/langgraph/langgate.yaml) reads its body: whether the route
// langgate matches it to is one of the policy's BodyRoutes.
func seedBodyRoutes(t *testing.T) func(method, target string) bool {
	t.Helper()
	text, err := os.ReadFile("../examples/langgraph/langgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse("langgate.yaml", text, func(string) (string, bool) { return "https://idp.example.com", true })
	if err != nil {
		t.Fatal(err)
	}
	eng, err := decision.Build(f, decision.Options{Logger: testengine.Logger(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if len(eng.Policies()) != 1 {
		t.Fatalf("the seed example has %d policies, want 1", len(eng.Policies()))
	}
	p := eng.Policies()[0]
	body := p.BodyRoutes()
	if len(body) == 0 {
		t.Fatal("the seed policy reads no body: the test of body routes would test nothing")
	}
	return func(method, target string) bool {
		tg, err := routes.Normalize(target)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		r, _ := p.Table.Match(method, tg.Segments)
		return r != nil && slices.Contains(body, r)
	}
}
