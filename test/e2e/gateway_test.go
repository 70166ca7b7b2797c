package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/langgate/langgate/internal/envoyproc"
	"github.com/langgate/langgate/internal/testproc"
)

// egInfra is what Envoy Gateway translates besides the chart's objects: a
// GatewayClass it controls, a Gateway, the LangGraph HTTPRoute the chart's
// SecurityPolicy targets, and its Service. Cluster IPs stand in for the API
// server's; the test points each cluster at a process of its own.
const egInfra = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: eg}
spec: {controllerName: gateway.envoyproxy.io/gatewayclass-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: agents, namespace: langgraph}
spec:
  gatewayClassName: eg
  listeners: [{name: http, protocol: HTTP, port: 8080}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: langgraph, namespace: langgraph}
spec:
  parentRefs: [{name: agents}]
  rules: [{backendRefs: [{name: langgraph-api, port: 8000}]}]
---
apiVersion: v1
kind: Service
metadata: {name: langgraph-api, namespace: langgraph}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 8000, targetPort: 8000}]
`

// repoTool returns a tool `make test` installs into bin/ (or $env).
func repoTool(t *testing.T, name, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		p = filepath.Join("..", "..", "bin", name)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("%s not found (%v): run `make test`, which installs bin/%s, or set $%s", name, err, name, env)
	}
	return abs
}

// run runs a tool and returns its standard output; a failure carries its
// standard error.
func runTool(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// egctlMatchesGoMod: the egctl that translates is the Envoy Gateway release
// whose Go types the chart tests decode into.
func egctlMatchesGoMod(t *testing.T, egctl string) {
	t.Helper()
	out, err := exec.Command("go", "version", "-m", egctl).Output()
	if err != nil {
		t.Fatalf("go version -m %s: %v", egctl, err)
	}
	var built string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/envoyproxy/gateway" {
			built = f[2]
		}
	}
	b, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	var want string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "github.com/envoyproxy/gateway" {
			want = f[1]
		}
	}
	if built == "" || built != want {
		t.Fatalf("egctl is Envoy Gateway %q, go.mod pins %q: `make egctl` installs the pinned one", built, want)
	}
}

// translateSecurityPolicy renders the chart with values, gives Envoy
// Gateway's own translator (egctl) the chart's SecurityPolicy, its
// ReferenceGrant and langgate's Service together with egInfra, and
// returns the xDS it produces.
func translateSecurityPolicy(t *testing.T, values ...string) map[string]any {
	t.Helper()
	helm := repoTool(t, "helm", "HELM")
	egctl := repoTool(t, "egctl", "EGCTL")
	egctlMatchesGoMod(t, egctl)
	args := []string{"template", "lg", "../../charts/langgate", "--namespace", "langgate"}
	for _, v := range values {
		args = append(args, "--set", v)
	}
	rendered := runTool(t, helm, args...)
	in := []string{egInfra}
	kept := map[string]bool{}
	for _, doc := range strings.Split(string(rendered), "\n---\n") {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		kind, _ := obj["kind"].(string)
		meta, _ := obj["metadata"].(map[string]any)
		switch {
		case kind == "SecurityPolicy", kind == "ReferenceGrant":
		case kind == "Service" && !strings.HasSuffix(fmt.Sprint(meta["name"]), "-headless"):
			spec, _ := obj["spec"].(map[string]any)
			spec["clusterIP"] = "10.96.0.20"
		default:
			continue
		}
		kept[kind] = true
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, string(b))
	}
	for _, k := range []string{"SecurityPolicy", "ReferenceGrant", "Service"} {
		if !kept[k] {
			t.Fatalf("the chart rendered no %s", k)
		}
	}
	file := filepath.Join(t.TempDir(), "in.yaml")
	if err := os.WriteFile(file, []byte(strings.Join(in, "\n---\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	status := runTool(t, egctl, "x", "translate", "--from", "gateway-api", "--to", "gateway-api", "-o", "yaml", "-f", file)
	if !bytes.Contains(status, []byte("Policy has been accepted.")) {
		t.Fatalf("Envoy Gateway did not accept the SecurityPolicy:\n%s", status)
	}
	var out map[string]any
	if err := yaml.Unmarshal(runTool(t, egctl, "x", "translate", "--from", "gateway-api", "--to", "xds", "-t", "all", "-o", "yaml", "-f", file), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// egBootstrap turns Envoy Gateway's xDS for the Gateway langgraph/agents
// into a bootstrap the real Envoy loads as is: its listeners with their
// route configurations inline, its clusters with their endpoints, each
// cluster's endpoints replaced by the address addr(cluster name) gives.
// Nothing of the translation is rewritten but where the xDS comes from.
func egBootstrap(dump map[string]any, addr func(cluster string) (string, error)) (*envoyproc.Config, error) {
	gw, _ := dump["xds"].(map[string]any)["langgraph/agents"].(map[string]any)
	configs, _ := gw["configs"].([]any)
	var listeners, clusters []any
	routes, endpoints := map[string]any{}, map[string]map[string]any{}
	for _, c := range configs {
		c, _ := c.(map[string]any)
		switch c["@type"] {
		case "type.googleapis.com/envoy.admin.v3.ListenersConfigDump":
			for _, l := range list(c["dynamicListeners"]) {
				listeners = append(listeners, l.(map[string]any)["activeState"].(map[string]any)["listener"])
			}
		case "type.googleapis.com/envoy.admin.v3.RoutesConfigDump":
			for _, r := range list(c["dynamicRouteConfigs"]) {
				rc := r.(map[string]any)["routeConfig"].(map[string]any)
				delete(rc, "@type")
				routes[rc["name"].(string)] = rc
			}
		case "type.googleapis.com/envoy.admin.v3.ClustersConfigDump":
			for _, cl := range list(c["dynamicActiveClusters"]) {
				clusters = append(clusters, cl.(map[string]any)["cluster"])
			}
		case "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump":
			for _, e := range list(c["dynamicEndpointConfigs"]) {
				cla := e.(map[string]any)["endpointConfig"].(map[string]any)
				delete(cla, "@type")
				endpoints[cla["clusterName"].(string)] = cla
			}
		}
	}
	if len(listeners) == 0 || len(clusters) == 0 {
		return nil, errors.New("no listeners or clusters in the translation")
	}
	for _, l := range listeners {
		delete(l.(map[string]any), "@type")
		visitMaps(l, func(m map[string]any) {
			rds, ok := m["rds"].(map[string]any)
			if !ok {
				return
			}
			rc := routes[fmt.Sprint(rds["routeConfigName"])]
			if rc == nil {
				return
			}
			delete(m, "rds")
			m["routeConfig"] = rc
		})
	}
	for _, cl := range clusters {
		cl := cl.(map[string]any)
		delete(cl, "@type")
		name := cl["name"].(string)
		if cl["type"] != "EDS" {
			continue
		}
		cla := endpoints[name]
		if cla == nil {
			return nil, fmt.Errorf("cluster %s has no endpoints", name)
		}
		a, err := addr(name)
		if err != nil {
			return nil, err
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, err
		}
		p, _ := strconv.Atoi(port)
		visitMaps(cla, func(m map[string]any) {
			if sa, ok := m["socketAddress"].(map[string]any); ok {
				sa["address"], sa["portValue"] = host, p
			}
		})
		delete(cl, "edsClusterConfig")
		cl["type"] = "STATIC"
		cl["loadAssignment"] = cla
	}
	b, err := yaml.Marshal(map[string]any{"static_resources": map[string]any{"listeners": listeners, "clusters": clusters}})
	if err != nil {
		return nil, err
	}
	return envoyproc.ParseConfig(b)
}

func list(v any) []any { l, _ := v.([]any); return l }

func visitMaps(v any, fn func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		fn(x)
		for _, c := range x {
			visitMaps(c, fn)
		}
	case []any:
		for _, c := range x {
			visitMaps(c, fn)
		}
	}
}

// TestEnvoyGatewaySecurityPolicyThroughEnvoy: the chart's SecurityPolicy,
// translated by Envoy Gateway's own egctl and loaded into the real Envoy,
// puts langgate in front of the LangGraph server: the context extension
// selects langgate's policy (a name langgate does not have is refused),
// denials come back as langgate made them, an allow reaches LangGraph
// with langgate's identity and never the client's forged one, and bodies
// reach langgate.
func TestEnvoyGatewaySecurityPolicyThroughEnvoy(t *testing.T) {
	lg := startLanggate(t, seedPolicy)
	alice, bob := token(t, "alice"), token(t, "bob")
	for _, c := range []struct {
		name, policy string
	}{{"policy selected by the context extension", "langgraph"}, {"a policy langgate does not have", "billing"}} {
		t.Run(c.name, func(t *testing.T) {
			dump := translateSecurityPolicy(t, "envoyGateway.enabled=true", "envoyGateway.namespace=langgraph",
				"envoyGateway.targetRefs[0].group=gateway.networking.k8s.io", "envoyGateway.targetRefs[0].kind=HTTPRoute",
				"envoyGateway.targetRefs[0].name=langgraph", "envoyGateway.policy="+c.policy,
				// Not the 50 ms of production: this Envoy shares two cores with -race test binaries.
				"envoyGateway.timeout=2s")
			cfg, err := egBootstrap(dump, func(cluster string) (string, error) {
				switch {
				case strings.HasPrefix(cluster, "securitypolicy/langgraph/"):
					return lg.grpc, nil
				case strings.HasPrefix(cluster, "httproute/langgraph/langgraph/"):
					return shared.tap.addr, nil
				}
				return "", fmt.Errorf("a cluster the test does not know: %s", cluster)
			})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Loopback()
			e := envoyproc.StartT(t, cfg, envoyproc.Options{})
			base := e.URL("langgraph/agents/http")

			if c.policy != "langgraph" {
				r := send(t, h1, "POST", base+"/threads/search", [][2]string{bearer(alice), jsonType}, []byte(`{}`))
				if r.status != 403 {
					t.Fatalf("status %d %s, want 403: langgate refuses a policy it does not have", r.status, r.body)
				}
				// The refusal is langgate's, for the context extension.
				testproc.WaitFor(t, 5*time.Second, func() bool {
					return strings.Contains(lg.log.String(), `policy=\"billing\" names no policy`)
				}, "langgate's log does not show the context extension policy=billing")
				return
			}
			if r := send(t, h1, "POST", base+"/threads/search", [][2]string{jsonType}, []byte(`{}`)); r.status != 401 || r.detail() != "Missing authentication token" {
				t.Errorf("no token: %d %s", r.status, r.body)
			}
			aliceNote := mustJSON(t, map[string]any{"namespace": []string{"alice", "notes"}, "key": "k", "value": map[string]any{"text": "hi"}})
			if r := send(t, h1, "PUT", base+"/store/items", [][2]string{bearer(bob), jsonType}, aliceNote); r.status != 403 {
				t.Errorf("bob writes into alice's namespace (a rule on the body): %d %s", r.status, r.body)
			}
			id := newProbe()
			r := send(t, h1, "POST", base+"/threads", [][2]string{bearer(alice), jsonType, probe(id), {"X-Langgate-User-Id", "bob"}}, []byte(`{"metadata":{}}`))
			if r.status != 200 {
				t.Fatalf("alice creates a thread: %d %s", r.status, r.body)
			}
			got := shared.tap.received(id)
			if len(got) != 1 {
				t.Fatalf("LangGraph received the request %d times", len(got))
			}
			if ids := got[0].Values("X-Langgate-User-Id"); len(ids) != 1 || ids[0] != "alice" {
				t.Errorf("LangGraph got x-langgate-user-id %q, want langgate's alice only", ids)
			}
		})
	}
}
