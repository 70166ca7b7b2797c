package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/langgate/langgate/internal/envoyproc"
	"github.com/langgate/langgate/internal/langgraphjs"
	"github.com/langgate/langgate/internal/langgraphpy"
	"github.com/langgate/langgate/internal/testproc"
)

// TestDifferential runs LangGraph's own custom auth as the oracle: the
// real Python server once with the seed's auth (test/conformance/
// seed_auth.py, verifying the same OIDC tokens itself) and once with
// langgate in front (the real Envoy, examples/langgraph/langgate.yaml) and
// the adapter inside, and one scenario corpus against both
// (test/conformance/differential.py). Every observation must be equal, or
// listed with its reason in test/conformance/differences.json.
func TestDifferential(t *testing.T) {
	fixtures(t)
	root, err := envoyproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	venv := langgraphpy.Venv(root)
	refLog := &testproc.SyncBuffer{}
	ref, err := langgraphpy.Start(langgraphpy.Options{
		Config: "../conformance/langgraph.seed.json", Venv: venv, Stderr: refLog, Timeout: 90 * time.Second,
		Env: []string{"SEED_OIDC_ISSUER=" + shared.issuer.URL, "SEED_OIDC_AUDIENCE=" + shared.issuer.Audience},
	})
	if err != nil {
		t.Fatalf("the seed's server: %v\n%s", err, refLog.String())
	}
	t.Cleanup(ref.Stop)
	py, pyLog := pythonServer(t)
	lg := startLanggate(t, "../../examples/langgraph/langgate.yaml")
	e := envoyTo(t, "front-proxy.yaml", lg, py.addr, relaxed)
	differential(t, venv, "python", ref.URL, e.URL("langgraph_http"), refLog, pyLog)
}

// TestDifferentialJS is TestDifferential on the real JS server: the seed's
// auth in JS (test/conformance/seed_auth.mjs) against langgate and auth.mjs.
func TestDifferentialJS(t *testing.T) {
	fixtures(t)
	root, err := envoyproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	refLog := &testproc.SyncBuffer{}
	ref, err := langgraphjs.Start(langgraphjs.Options{
		Dir: ".", Config: "../conformance/langgraph.seed.js.json", Stderr: refLog, Timeout: 90 * time.Second,
		Env: []string{"SEED_OIDC_ISSUER=" + shared.issuer.URL, "SEED_OIDC_AUDIENCE=" + shared.issuer.Audience},
	})
	if err != nil {
		t.Fatalf("the seed's JS server: %v\n%s", err, refLog.String())
	}
	t.Cleanup(ref.Stop)
	lg := startLanggate(t, "../../examples/langgraph/langgate.yaml")
	e := envoyFor(t, "front-proxy.yaml", lg, relaxed)
	differential(t, langgraphpy.Venv(root), "js", ref.URL, e.URL("langgraph_http"), refLog, shared.jsLog)
}

// differential runs differential.py against the reference and langgate URLs.
func differential(t *testing.T, venv, server, refURL, lgURL string, refLog, lgLog *testproc.SyncBuffer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(venv, "bin", "python"), "../conformance/differential.py")
	cmd.Env = append(os.Environ(),
		"REFERENCE_URL="+refURL,
		"LANGGATE_URL="+lgURL,
		"TOKEN_URL="+shared.issuer.URL+"/token",
		"SERVER="+server,
		"PYTHONDONTWRITEBYTECODE=1",
	)
	out, err := cmd.CombinedOutput()
	t.Logf("differential.py (%s server):\n%s", server, out)
	if err != nil {
		t.Errorf("LangGraph's seed auth and langgate disagree on the %s server: %v\nthe seed server's log:\n%s\nthe langgate server's log:\n%s",
			server, err, tail(refLog.String(), 4000), tail(lgLog.String(), 4000))
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
