package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/langgate/langgate/examples/langgraph"
	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/internal/testproc"
	"github.com/langgate/langgate/pkg/admin"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/devissuer"
	"github.com/langgate/langgate/pkg/devissuer/devissuertest"
)

func get(t *testing.T, url string) (int, admin.Status) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st admin.Status
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return resp.StatusCode, st
}

// TestReadinessTransitions: no configuration → issuer down (not ready) →
// issuer up (ready) → shutting down (not ready); liveness stays up.
func TestReadinessTransitions(t *testing.T) {
	var engines decision.Holder
	var state admin.State
	srv := httptest.NewServer(admin.Handler(&engines, &state, admin.Options{Gatherer: prometheus.NewRegistry()}))
	defer srv.Close()

	if code, st := get(t, srv.URL+"/readyz"); code != 503 || st.NotReadyCause != "no configuration loaded" {
		t.Errorf("no config: %d %+v", code, st)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // the identity provider is down
	f, err := config.Parse("t.yaml", []byte(`authenticate:
  oidc: [{issuer: "http://`+addr+`", audiences: [langgate-dev]}]
  user: {identity: claims.sub}
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	eng, err := decision.Build(f, decision.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	eng.Start(ctx)
	engines.Store(eng)
	if code, st := get(t, srv.URL+"/readyz"); code != 503 || !strings.HasPrefix(st.NotReadyCause, "issuer has no keys yet") || !st.ConfigLoaded {
		t.Errorf("issuer down: %d %+v", code, st)
	}
	if code, _ := get(t, srv.URL+"/healthz"); code != 200 {
		t.Errorf("liveness while not ready: %d", code)
	}
	is, err := devissuertest.New(devissuer.Options{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer is.Close()
	// Keys, but the check ports not open yet: not ready.
	testproc.WaitFor(t, 10*time.Second, func() bool { return engines.Load().Ready() }, "the issuer never got keys")
	if code, st := get(t, srv.URL+"/readyz"); code != 503 || st.NotReadyCause != "the check ports are not open yet" {
		t.Errorf("ports not open: %d %+v", code, st)
	}
	state.Open()
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		code, st := get(t, srv.URL+"/readyz")
		if code == 200 && st.Ready && len(st.Issuers) == 1 && st.Issuers[0].Ready {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("not ready after the issuer came up: %d %+v", code, st)
		}
	}
	state.Drain()
	if code, st := get(t, srv.URL+"/readyz"); code != 503 || !st.Draining {
		t.Errorf("draining: %d %+v", code, st)
	}
	if code, _ := get(t, srv.URL+"/metrics"); code != 200 {
		t.Errorf("/metrics: %d", code)
	}
	if code, _ := get(t, srv.URL+"/debug/pprof/"); code != 404 {
		t.Errorf("pprof served without the flag: %d", code)
	}
}

// TestJWKS: the signed context's public keys are served on the admin port
// when the configuration signs one, cacheable; 404 otherwise.
func TestJWKS(t *testing.T) {
	var engines decision.Holder
	srv := httptest.NewServer(admin.Handler(&engines, &admin.State{}, admin.Options{}))
	t.Cleanup(srv.Close)
	get := func() (int, http.Header, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + admin.JWKSPath)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	if code, _, _ := get(); code != 404 {
		t.Errorf("no configuration: %d", code)
	}
	section, _ := testengine.ContextSection(t, "k1")
	env := testengine.Start(t, testengine.Options{Policy: string(langgraph.Policy) + section})
	engines.Store(env.Engine)
	code, header, body := get()
	if code != 200 || header.Get("Cache-Control") != "public, max-age=300" || !strings.Contains(body, `"kid":"k1"`) || strings.Contains(body, `"d":`) {
		t.Errorf("JWKS: %d %v %s", code, header, body)
	}
}

// TestResourceMetadata: the admin port serves the MCP endpoint's protected
// resource metadata as the check port does, for proxies whose HTTP-mode
// check cannot answer with a document; 404 for any other path.
func TestResourceMetadata(t *testing.T) {
	var engines decision.Holder
	srv := httptest.NewServer(admin.Handler(&engines, &admin.State{}, admin.Options{}))
	t.Cleanup(srv.Close)
	env := testengine.Start(t, testengine.Options{Policy: `name: p
authenticate:
  oidc: [{issuer: "${OIDC_ISSUER}", audiences: ["https://agents.example.com/mcp"]}]
  user: {identity: claims.sub}
  mcp: {resource: "https://agents.example.com/mcp"}
authorize:
  routes: langgraph
  handlers: [{on: "*", filters: {owner: user.identity}}]
`})
	engines.Store(env.Engine)
	for path, want := range map[string]int{
		"/.well-known/oauth-protected-resource/mcp": 200, "/.well-known/oauth-protected-resource": 200,
		"/.well-known/oauth-protected-resource/other": 404,
	} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || want == 200 && (!strings.Contains(string(b), `"resource":"https://agents.example.com/mcp"`) ||
			resp.Header.Get("Content-Type") != "application/json") {
			t.Errorf("GET %s: %d %v %s", path, resp.StatusCode, resp.Header, b)
		}
	}
}
