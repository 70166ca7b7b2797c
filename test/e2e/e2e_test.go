// Package e2e runs langgate end to end against real peers: the LangGraph JS
// API server (@langchain/langgraph-api) with the upstream adapter from
// examples/langgraph/upstream, driven by the real @langchain/langgraph-sdk
// client as users alice and bob, through two proxies: a real nginx
// (auth_request → langgate's HTTP mode, examples/nginx/langgate.conf) and
// the Envoy stand-in (internal/envoystandin → langgate's gRPC Check, since
// no Envoy binary can be installed here). `make test` installs the Node
// dependencies (npm ci) and nginx first; without them this test fails.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/langgate/langgate/internal/envoystandin"
	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/extauthz"
	"github.com/langgate/langgate/pkg/httpauthz"
)

func TestLangGraphIsolation(t *testing.T) {
	node := requireTool(t, "node", "Node.js")
	nginx := requireTool(t, "nginx", "nginx (Debian package nginx-light)")
	if _, err := os.Stat("node_modules/@langchain/langgraph-api"); err != nil {
		t.Fatal("test/e2e/node_modules is missing: run `make e2e-deps` (make test does)")
	}

	env := testengine.Start(t, testengine.Options{})
	var engines decision.Holder
	engines.Store(env.Engine)

	grpcLn := listen(t)
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, extauthz.New(&engines, nil))
	go func() { _ = gs.Serve(grpcLn) }()
	t.Cleanup(gs.Stop)

	httpLn := listen(t)
	hs := &http.Server{Handler: httpauthz.Handler(&engines, nil), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(httpLn) }()
	t.Cleanup(func() { hs.Close() })

	lgURL := startLangGraph(t, node)

	conn, err := grpc.NewClient(grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	upstream, _ := url.Parse(lgURL)
	standin := envoystandin.New(envoystandin.Config{
		Upstream: upstream,
		Client:   authv3.NewAuthorizationClient(conn),
		// As envoy/front-proxy.yaml: raw body up to 1 MiB, larger refused.
		WithRequestBody: true, MaxRequestBytes: 1 << 20, PackAsBytes: true,
		ContextExtensions: map[string]string{"policy": "langgraph"},
		Timeout:           2 * time.Second, // generous: CI machines are slow, not the decision
	})
	envoyLn := listen(t)
	es := &http.Server{Handler: standin, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = es.Serve(envoyLn) }()
	t.Cleanup(func() { es.Close() })

	nginxURL := startNginx(t, nginx, httpLn.Addr().String(), upstream.Host)

	for _, p := range []struct{ name, url, body string }{
		{"envoy", "http://" + envoyLn.Addr().String(), "1"},
		{"nginx", nginxURL, "0"},
	} {
		t.Run(p.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "scenarios.mjs")
			cmd.Env = append(os.Environ(),
				"LANGGRAPH_URL="+p.url,
				"TOKEN_URL="+env.Issuer.URL+"/token",
				"PROXY="+p.name,
				"PROXY_BODY="+p.body,
			)
			out, err := cmd.CombinedOutput()
			t.Logf("node --test scenarios.mjs through %s:\n%s", p.name, out)
			if err != nil {
				t.Fatalf("scenarios through %s failed: %v", p.name, err)
			}
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

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func freePort(t *testing.T) int {
	t.Helper()
	ln := listen(t)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startLangGraph runs test/e2e/server.mjs (the real LangGraph JS API server
// with the upstream adapter) and waits for its READY line.
func startLangGraph(t *testing.T, node string) string {
	t.Helper()
	cmd := exec.Command(node, "server.mjs")
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", freePort(t)))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- strings.TrimSpace(u)
			}
		}
	}()
	select {
	case u := <-ready:
		return u
	case <-time.After(90 * time.Second):
		t.Fatalf("LangGraph server not ready after 90s; stderr:\n%s", stderr.String())
	}
	return ""
}

// startNginx runs Debian's nginx with examples/nginx/langgate.conf, its
// three addresses pointed at this test's servers.
func startNginx(t *testing.T, nginx, authz, langgraph string) string {
	t.Helper()
	snippet, err := os.ReadFile("../../examples/nginx/langgate.conf")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
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
// its own unit tests (adapter.test.mjs; the end-to-end test runs it inside
// the real server too), the Python one with py_compile (PyPI is
// unreachable here, so it cannot run).
func TestAdapters(t *testing.T) {
	node := requireTool(t, "node", "Node.js")
	python := requireTool(t, "python3", "Python 3")
	if _, err := os.Stat("node_modules/@langchain/langgraph-sdk"); err != nil {
		t.Fatal("test/e2e/node_modules is missing: run `make e2e-deps` (make test does)")
	}
	out, err := exec.Command(node, "--test", "--test-reporter=spec", "adapter.test.mjs").CombinedOutput()
	t.Logf("node --test adapter.test.mjs:\n%s", out)
	if err != nil {
		t.Errorf("adapter.test.mjs: %v", err)
	}
	cmd := exec.Command(python, "-c", "import sys, py_compile; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)",
		"../../examples/langgraph/upstream/auth.py", filepath.Join(t.TempDir(), "auth.pyc"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("auth.py: %v\n%s", err, out)
	}
}
