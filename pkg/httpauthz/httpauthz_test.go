package httpauthz_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/httpauthz"
)

func server(t *testing.T) (*httptest.Server, *testengine.Env) {
	t.Helper()
	return serverWith(t, testengine.Options{})
}

func serverWith(t *testing.T, opts testengine.Options) (*httptest.Server, *testengine.Env) {
	t.Helper()
	env := testengine.Start(t, opts)
	var engines decision.Holder
	engines.Store(env.Engine)
	srv := httptest.NewServer(httpauthz.Handler(&engines, nil, nil))
	t.Cleanup(srv.Close)
	return srv, env
}

type answer struct {
	status  int
	header  http.Header
	detail  string
	rawBody string
}

func do(t *testing.T, method, url string, headers map[string]string, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, header: resp.Header, rawBody: string(raw)}
	var b struct {
		Detail string `json:"detail"`
	}
	if json.Unmarshal(raw, &b) == nil {
		a.detail = b.Detail
	}
	return a
}

func TestEnvoyHTTPService(t *testing.T) {
	srv, env := server(t)
	alice := "Bearer " + env.Token(t, "alice", nil)
	bob := "Bearer " + env.Token(t, "bob", nil)
	put := `{"namespace":["alice","n"],"key":"k","value":{}}`

	a := do(t, "POST", srv.URL+"/envoy/threads", map[string]string{"Authorization": alice}, `{"metadata":{}}`)
	if a.status != 200 || a.header.Get("X-Langgate-User-Id") != "alice" || a.header.Get("X-Langgate-Metadata") != `{"owner":"alice"}` ||
		a.header.Get("X-Langgate-Action") != "create" || a.header.Get("X-Langgate-Decision-Id") == "" {
		t.Errorf("create thread: %d %v", a.status, a.header)
	}
	// The path behind the prefix, query included, is the original.
	if a := do(t, "GET", srv.URL+"/envoy/store/items?namespace=alice.n&key=k", map[string]string{"Authorization": alice}, ""); a.status != 200 {
		t.Errorf("store get: %d %s", a.status, a.rawBody)
	}
	if a := do(t, "GET", srv.URL+"/envoy/store/items?namespace=bob.n&key=k", map[string]string{"Authorization": alice}, ""); a.status != 403 || a.detail != "Not authorized" {
		t.Errorf("store get of another namespace: %d %s", a.status, a.rawBody)
	}
	if a := do(t, "PUT", srv.URL+"/envoy/store/items", map[string]string{"Authorization": alice}, put); a.status != 200 {
		t.Errorf("store put with body: %d %s", a.status, a.rawBody)
	}
	if a := do(t, "PUT", srv.URL+"/envoy/store/items", map[string]string{"Authorization": bob}, put); a.status != 403 || a.detail != "Not authorized" {
		t.Errorf("bob's put: %d %s", a.status, a.rawBody)
	}
	// Envoy without with_request_body: no body on a write, rules that need it deny.
	if a := do(t, "PUT", srv.URL+"/envoy/store/items", map[string]string{"Authorization": alice}, ""); a.status != 403 {
		t.Errorf("store put without body: %d %s", a.status, a.rawBody)
	}
	// Envoy marks a cut body.
	if a := do(t, "PUT", srv.URL+"/envoy/store/items", map[string]string{"Authorization": alice, "X-Envoy-Auth-Partial-Body": "true"}, put); a.status != 403 {
		t.Errorf("partial body: %d %s", a.status, a.rawBody)
	}
	a = do(t, "GET", srv.URL+"/envoy/threads/t1", nil, "")
	if a.status != 401 || a.detail != "Missing authentication token" || a.header.Get("Www-Authenticate") != `Bearer realm="langgate"` ||
		a.header.Get("Content-Type") != "application/json" {
		t.Errorf("no token: %d %v %s", a.status, a.header, a.rawBody)
	}
	a = do(t, "GET", srv.URL+"/envoy/threads/t1", map[string]string{"Authorization": "Bearer x.y.z"}, "")
	if a.status != 401 || a.header.Get("Www-Authenticate") != `Bearer realm="langgate", error="invalid_token"` {
		t.Errorf("bad token: %d %v", a.status, a.header)
	}
}

// TestEnvoyPathsAreNotCleaned: the original path behind /envoy is
// langgate's to normalize; no router redirect may answer instead.
func TestEnvoyPathsAreNotCleaned(t *testing.T) {
	srv, env := server(t)
	alice := "Bearer " + env.Token(t, "alice", nil)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, p := range []string{"/envoy/threads/./t1", "/envoy//threads/t1", "/envoy/threads/x/../t1"} {
		req, _ := http.NewRequest("GET", srv.URL+p, nil)
		req.Header.Set("Authorization", alice)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Langgate-Action") != "read" {
			t.Errorf("%s: %d %v", p, resp.StatusCode, resp.Header)
		}
	}
	if a := do(t, "GET", srv.URL+"/elsewhere", nil, ""); a.status != 404 {
		t.Errorf("unknown endpoint: %d", a.status)
	}
}

func TestOwnedHeadersAlwaysAnswered(t *testing.T) {
	srv, env := server(t)
	alice := "Bearer " + env.Token(t, "alice", nil)
	for _, path := range []string{"/envoy/ok", "/envoy/custom/route", "/envoy/threads/t1"} {
		a := do(t, "GET", srv.URL+path, map[string]string{"Authorization": alice, "X-Langgate-User-Id": "admin"}, "")
		if a.status != 200 {
			t.Fatalf("%s: %d", path, a.status)
		}
		for _, h := range []string{"X-Langgate-User-Id", "X-Langgate-User", "X-Langgate-Permissions", "X-Langgate-Resource", "X-Langgate-Action", "X-Langgate-Filters", "X-Langgate-Metadata"} {
			if _, ok := a.header[h]; !ok {
				t.Errorf("%s: %s missing (a proxy copying it would keep the client's)", path, h)
			}
		}
		if a.header.Get("X-Langgate-User-Id") == "admin" {
			t.Errorf("%s: client value echoed", path)
		}
	}
}

// TestEnvoyRemovesForeignHeaders: at the Envoy endpoint an allow names the
// client's x-langgate-* headers langgate does not set, and x-auth-scheme,
// in x-envoy-auth-headers-to-remove; the headers it sets are overwritten,
// not removed. Other endpoints never send it (their proxies ignore it).
func TestEnvoyRemovesForeignHeaders(t *testing.T) {
	srv, env := server(t)
	alice := "Bearer " + env.Token(t, "alice", nil)
	h := map[string]string{"Authorization": alice, "X-Langgate-User-Id": "admin", "X-Langgate-Extra": "1", "X-Langgate-Zz": "2", "X-Auth-Scheme": "langsmith"}
	a := do(t, "GET", srv.URL+"/envoy/threads/t1", h, "")
	if a.status != 200 {
		t.Fatalf("%d %s", a.status, a.rawBody)
	}
	if got, want := a.header.Get(httpauthz.EnvoyRemoveHeader), "x-auth-scheme,x-langgate-extra,x-langgate-zz"; got != want {
		t.Errorf("%s: %q, want %q", httpauthz.EnvoyRemoveHeader, got, want)
	}
	if a := do(t, "GET", srv.URL+"/envoy/threads/t1", map[string]string{"Authorization": alice}, ""); a.header.Get(httpauthz.EnvoyRemoveHeader) != "" {
		t.Errorf("nothing to remove, yet %s: %q", httpauthz.EnvoyRemoveHeader, a.header.Get(httpauthz.EnvoyRemoveHeader))
	}
	if a := do(t, "GET", srv.URL+"/envoy/threads/t1", map[string]string{"X-Langgate-Extra": "1"}, ""); a.status != 401 || a.header.Get(httpauthz.EnvoyRemoveHeader) != "" {
		t.Errorf("a denial: %d, %s: %q", a.status, httpauthz.EnvoyRemoveHeader, a.header.Get(httpauthz.EnvoyRemoveHeader))
	}
	h["X-Forwarded-Method"], h["X-Forwarded-Uri"] = "GET", "/threads/t1"
	if a := do(t, "GET", srv.URL+"/traefik", h, ""); a.status != 200 || a.header.Get(httpauthz.EnvoyRemoveHeader) != "" {
		t.Errorf("traefik: %d, %s: %q", a.status, httpauthz.EnvoyRemoveHeader, a.header.Get(httpauthz.EnvoyRemoveHeader))
	}
}

func TestNginx(t *testing.T) {
	srv, env := server(t)
	alice := "Bearer " + env.Token(t, "alice", nil)
	h := func(method, uri string) map[string]string {
		return map[string]string{"Authorization": alice, "X-Original-Method": method, "X-Original-URI": uri}
	}
	if a := do(t, "GET", srv.URL+"/nginx", h("GET", "/threads/t1?x=1"), ""); a.status != 200 || a.header.Get("X-Langgate-Action") != "read" {
		t.Errorf("read: %d %v", a.status, a.header)
	}
	if a := do(t, "GET", srv.URL+"/nginx", h("POST", "/threads"), ""); a.status != 200 || a.header.Get("X-Langgate-Metadata") != `{"owner":"alice"}` {
		t.Errorf("create (rule does not read the body): %d %v", a.status, a.header)
	}
	// auth_request never carries the body: a rule that reads it fails closed,
	// even if a client-controlled body or content-length is present.
	hdr := h("PUT", "/store/items")
	hdr["Content-Length"] = "50"
	if a := do(t, "GET", srv.URL+"/nginx", hdr, `{"namespace":["alice"],"key":"k","value":{}}`); a.status != 403 {
		t.Errorf("body rule through nginx: %d %s", a.status, a.rawBody)
	}
	if a := do(t, "GET", srv.URL+"/nginx", map[string]string{"Authorization": alice}, ""); a.status != 403 {
		t.Errorf("missing X-Original-*: %d", a.status)
	}
	// Traefik's headers mean nothing on the nginx endpoint.
	if a := do(t, "GET", srv.URL+"/nginx", map[string]string{"Authorization": alice, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/ok"}, ""); a.status != 403 {
		t.Errorf("traefik headers on nginx endpoint: %d", a.status)
	}
}

func TestTraefik(t *testing.T) {
	srv, env := server(t)
	alice := "Bearer " + env.Token(t, "alice", nil)
	put := `{"namespace":["alice","n"],"key":"k","value":{}}`
	h := map[string]string{"Authorization": alice, "X-Forwarded-Method": "PUT", "X-Forwarded-Uri": "/store/items", "X-Forwarded-Host": "lg.example"}
	if a := do(t, "POST", srv.URL+"/traefik", h, put); a.status != 200 {
		t.Errorf("forwardBody put: %d %s", a.status, a.rawBody)
	}
	if a := do(t, "GET", srv.URL+"/traefik", h, ""); a.status != 403 {
		t.Errorf("put without forwardBody: %d %s", a.status, a.rawBody)
	}
	if a := do(t, "GET", srv.URL+"/traefik", map[string]string{"Authorization": alice, "X-Original-Method": "GET", "X-Original-URI": "/ok"}, ""); a.status != 403 {
		t.Errorf("nginx headers on traefik endpoint: %d", a.status)
	}
}

// TestNginxHostPolicy: behind nginx the client's host arrives in
// X-Original-Host (the subrequest's own Host is the auth upstream's).
func TestNginxHostPolicy(t *testing.T) {
	text, err := os.ReadFile("../../examples/policies/rest-api.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv, env := serverWith(t, testengine.Options{Policy: string(text)})
	alice := "Bearer " + env.Token(t, "alice", nil)
	h := map[string]string{"Authorization": alice, "X-Original-Method": "GET", "X-Original-URI": "/customers/alice/invoices"}
	if a := do(t, "GET", srv.URL+"/nginx", h, ""); a.status != 200 || a.header.Get("X-Langgate-Resource") != "" {
		t.Errorf("no X-Original-Host: the default (langgraph) policy should decide: %d %v", a.status, a.header)
	}
	h["X-Original-Host"] = "billing.example.com."
	if a := do(t, "GET", srv.URL+"/nginx", h, ""); a.status != 200 || a.header.Get("X-Langgate-Resource") != "invoices" {
		t.Errorf("billing host (with a trailing dot): %d %v", a.status, a.header)
	}
}

// TestMCPResourceMetadataPath: a check that answered 200 would be an
// allow to every HTTP-mode proxy, so the metadata path, which langgate
// answers itself on the gRPC port, is a 404 here (the admin port serves
// it); the 401 on the MCP endpoint still names the metadata.
func TestMCPResourceMetadataPath(t *testing.T) {
	srv, _ := serverWith(t, testengine.Options{Policy: `name: p
authenticate:
  oidc: [{issuer: "${OIDC_ISSUER}", audiences: ["${OIDC_AUDIENCE}", "https://agents.example.com/mcp"]}]
  user: {identity: claims.sub}
  mcp: {resource: "https://agents.example.com/mcp"}
authorize:
  routes: langgraph
  handlers:
    - {on: "*", filters: {owner: user.identity}}
`})
	a := do(t, "GET", srv.URL+"/envoy/.well-known/oauth-protected-resource/mcp", nil, "")
	if a.status != 404 || a.header.Get("X-Langgate-User-Id") != "" {
		t.Errorf("metadata path in HTTP mode: %d %v %s", a.status, a.header, a.rawBody)
	}
	a = do(t, "POST", srv.URL+"/envoy/mcp", nil, `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if want := `Bearer realm="langgate", resource_metadata="https://agents.example.com/.well-known/oauth-protected-resource/mcp"`; a.status != 401 || a.header.Get("Www-Authenticate") != want {
		t.Errorf("MCP without a token: %d %q", a.status, a.header.Get("Www-Authenticate"))
	}
}
