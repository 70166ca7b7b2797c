package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/langgate/langgate/internal/envoyproc"
	"github.com/langgate/langgate/internal/langgraphpy"
	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/internal/testproc"
)

// mcpSeed is the seed policy with its MCP endpoint as an OAuth protected
// resource (authenticate.mcp): the resource is the front proxy's /mcp,
// listed as an audience of the issuer.
func mcpSeed(t *testing.T, extra string) string {
	t.Helper()
	return seedVariant(t, extra,
		[2]string{`        - "${OIDC_AUDIENCE}"`, `        - "${OIDC_AUDIENCE}"` + "\n" + `        - "${MCP_RESOURCE}"`},
		[2]string{"  user:\n    identity: claims.sub", "  mcp:\n    resource: \"${MCP_RESOURCE}\"\n  user:\n    identity: claims.sub"})
}

// TestDifferentialAgents is TestDifferential for MCP and A2A: the real
// Python server with LangGraph's own custom auth (the seed's) against the
// same server behind Envoy, langgate and the adapter, driven by the
// official MCP Python SDK (initialize, tools/list, tools/call) and by A2A
// JSON-RPC calls, as alice, bob and carol (test/conformance/agents.py).
// Which tools each user sees, which calls succeed, and which threads each
// can reach afterwards must be the same. Then, against langgate only, the
// SDK's OAuth discovery: a 401 naming the protected resource metadata,
// the metadata (served by langgate through Envoy), the dev issuer's
// metadata and a client_credentials token for the resource (RFC 8707),
// with which the same client lists its tools.
//
// Both with the unsigned headers and with the signed context: the
// server's inner calls are checked against the grants of the outer
// request, which is what the context was verified for.
func TestDifferentialAgents(t *testing.T) {
	t.Run("headers", func(t *testing.T) { agentsDifferential(t, false) })
	t.Run("signed", func(t *testing.T) { agentsDifferential(t, true) })
}

func agentsDifferential(t *testing.T, signed bool) {
	fixtures(t)
	root, err := envoyproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	venv := langgraphpy.Venv(root)
	port := testproc.Port(t, testproc.FreeAddr(t))
	resource := fmt.Sprintf("http://127.0.0.1:%d/mcp", port)

	ref, refLog := seedServer(t, venv)
	var py *tap
	var pyLog *testproc.SyncBuffer
	var lg *langgate
	if signed {
		section, _ := testengine.ContextSection(t, "ctx-1")
		lg = startLanggateWith(t, mcpSeed(t, section), []string{"MCP_RESOURCE=" + resource})
		py, pyLog = pythonServerWith(t, []string{"LANGGATE_CONTEXT_JWKS=http://" + lg.admin + "/.well-known/jwks.json"})
	} else {
		lg = startLanggateWith(t, mcpSeed(t, ""), []string{"MCP_RESOURCE=" + resource})
		py, pyLog = pythonServer(t)
	}
	e := envoyTo(t, "front-proxy.yaml", lg, py.addr, func(cfg *envoyproc.Config) {
		relaxed(cfg)
		if err := cfg.SetListenerPort("langgraph_http", port); err != nil {
			t.Fatal(err)
		}
	})
	if got := e.URL("langgraph_http") + "/mcp"; got != resource {
		t.Fatalf("Envoy serves %s, the resource is %s", got, resource)
	}

	// Tokens for both: the seed's audience (the reference checks it) and
	// the MCP resource (langgate requires it on /mcp).
	tokens := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol"} {
		tok, err := shared.issuer.Token(u, time.Hour, map[string]any{"aud": []any{shared.issuer.Audience, resource}})
		if err != nil {
			t.Fatal(err)
		}
		tokens[u] = tok
	}
	tj, _ := json.Marshal(tokens)

	runOracle(t, venv, "agents.py", "MCP or A2A", oracleRun{ref.URL, refLog}, oracleRun{e.URL("langgraph_http"), pyLog},
		"TOKENS="+string(tj), "MCP_RESOURCE="+resource, "ISSUER="+shared.issuer.URL)
}
