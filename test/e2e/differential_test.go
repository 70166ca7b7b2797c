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
	ref, refLog := seedServer(t, venv)
	py, pyLog := pythonServer(t)
	lg := startLanggate(t, "../../examples/langgraph/langgate.yaml")
	e := envoyTo(t, "front-proxy.yaml", lg, py.addr, relaxed)
	runOracle(t, venv, "differential.py", "the python server", oracleRun{ref.URL, refLog}, oracleRun{e.URL("langgraph_http"), pyLog}, "SERVER=python")
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
	runOracle(t, langgraphpy.Venv(root), "differential.py", "the js server", oracleRun{ref.URL, refLog}, oracleRun{e.URL("langgraph_http"), shared.jsLog}, "SERVER=js")
}

// seedServer runs the real Python server with the seed's own custom auth
// (test/conformance/seed_auth.py, verifying the shared issuer's tokens),
// for the test's lifetime, and returns it with its log.
func seedServer(t *testing.T, venv string) (*langgraphpy.Server, *testproc.SyncBuffer) {
	t.Helper()
	log := &testproc.SyncBuffer{}
	srv, err := langgraphpy.Start(langgraphpy.Options{
		Config: "../conformance/langgraph.seed.json", Venv: venv, Stderr: log, Timeout: 90 * time.Second,
		Env: []string{"SEED_OIDC_ISSUER=" + shared.issuer.URL, "SEED_OIDC_AUDIENCE=" + shared.issuer.Audience},
	})
	if err != nil {
		t.Fatalf("the seed's server: %v\n%s", err, log.String())
	}
	t.Cleanup(srv.Stop)
	return srv, log
}

// oracleRun is one side of the comparison: a server's URL and its log.
type oracleRun struct {
	url string
	log *testproc.SyncBuffer
}

// runOracle runs a corpus of test/conformance (differential.py,
// agents.py) against LangGraph's own auth (ref) and langgate (lg), with
// env added to its environment, and fails the test, with both servers'
// logs, when they disagree; what names the comparison in the message.
func runOracle(t *testing.T, venv, script, what string, ref, lg oracleRun, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(venv, "bin", "python"), filepath.Join("../conformance", script))
	cmd.Env = append(append(os.Environ(),
		"REFERENCE_URL="+ref.url,
		"LANGGATE_URL="+lg.url,
		"TOKEN_URL="+shared.issuer.URL+"/token",
		"PYTHONDONTWRITEBYTECODE=1",
	), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("%s (%s):\n%s", script, what, out)
	if err != nil {
		t.Errorf("LangGraph's seed auth and langgate disagree on %s: %v\nthe seed server's log:\n%s\nthe langgate server's log:\n%s",
			what, err, tail(ref.log.String(), 6000), tail(lg.log.String(), 6000))
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
