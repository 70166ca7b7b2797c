package chart

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	egv1alpha1 "github.com/envoyproxy/gateway/api/v1alpha1"
	kgwv1alpha1 "github.com/kgateway-dev/kgateway/v2/api/v1alpha1/kgateway"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1beta1 "istio.io/api/security/v1beta1"
	istiosecurityv1 "istio.io/client-go/pkg/apis/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
	"sigs.k8s.io/yaml"
)

const (
	releaseName = "lg"
	namespace   = "langgate"
	// kubeVersion is the Kubernetes version the chart is rendered for; the
	// chart requires 1.27 or later.
	kubeVersion = "v1.33.0"
	grpcPort    = 9001
	adminPort   = 9090
	// maxCheckTimeout is the most the Istio provider may wait for langgate.
	maxCheckTimeout = 100 * time.Millisecond
)

var (
	chartDir      = filepath.Join("..", "..", "charts", "langgate")
	allValues     = filepath.Join(chartDir, "ci", "all-features-values.yaml")
	examplePolicy = filepath.Join("..", "..", "examples", "langgraph", "langgate.yaml")
	publicPaths   = []string{"/ok", "/info", "/docs", "/openapi.json", "/metrics"}
)

// helmPath returns the helm binary the tests use: $HELM, else bin/helm at the
// repository root. A missing binary fails the test: `make test` installs it.
func helmPath(t *testing.T) string {
	t.Helper()
	p := os.Getenv("HELM")
	if p == "" {
		p = filepath.Join("..", "..", "bin", "helm")
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Fatalf("helm not found (%v): run `make test`, which installs bin/helm, or set HELM", err)
	}
	return abs
}

// runHelm runs helm with its home directories in a temporary directory, so
// that no kube config, repository cache or plugin of the developer's leaks
// in. A non-zero exit is an error carrying helm's standard error.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	home := t.TempDir()
	cmd := exec.CommandContext(ctx, helmPath(t), args...)
	cmd.Env = append(os.Environ(),
		"KUBECONFIG="+filepath.Join(home, "kubeconfig"),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// template runs `helm template` on a chart directory.
func template(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	base := []string{"template", releaseName, dir, "--namespace", namespace, "--kube-version", kubeVersion}
	return runHelm(t, append(base, args...)...)
}

// manifests is the decoded output of `helm template`, in order.
type manifests []metav1.Object

// render templates the chart and strictly decodes every manifest.
func render(t *testing.T, args ...string) manifests {
	t.Helper()
	out, err := template(t, chartDir, args...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeAll(out)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// decodeAll splits a YAML stream and decodes each non-empty document.
func decodeAll(stream string) (manifests, error) {
	var out manifests
	r := k8syaml.NewYAMLReader(bufio.NewReader(strings.NewReader(stream)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			return nil, err
		}
		if len(probe) == 0 {
			continue // only comments
		}
		obj, err := decode(doc)
		if err != nil {
			return nil, err
		}
		out = append(out, obj)
	}
}

// newObject maps each apiVersion and kind the chart may render to its Go type.
func newObject(apiVersion, kind string) metav1.Object {
	switch apiVersion + " " + kind {
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}
	case "v1 Service":
		return &corev1.Service{}
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	case "monitoring.coreos.com/v1 ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	case "security.istio.io/v1 AuthorizationPolicy":
		return &istiosecurityv1.AuthorizationPolicy{}
	case "gateway.envoyproxy.io/v1alpha1 SecurityPolicy":
		return &egv1alpha1.SecurityPolicy{}
	case "gateway.kgateway.dev/v1alpha1 GatewayExtension":
		return &kgwv1alpha1.GatewayExtension{}
	case "gateway.kgateway.dev/v1alpha1 TrafficPolicy":
		return &kgwv1alpha1.TrafficPolicy{}
	case "gateway.networking.k8s.io/v1beta1 ReferenceGrant":
		return &gwv1beta1.ReferenceGrant{}
	}
	return nil
}

// decode decodes one manifest strictly: unknown and duplicate fields are
// errors. istio.io/api's JSON decoding ignores unknown fields, so an Istio
// spec is decoded a second time with protojson, which does not.
func decode(doc []byte) (metav1.Object, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	obj := newObject(tm.APIVersion, tm.Kind)
	if obj == nil {
		return nil, fmt.Errorf("the chart rendered %s %s, which this test does not know", tm.APIVersion, tm.Kind)
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if ap, ok := obj.(*istiosecurityv1.AuthorizationPolicy); ok {
		js, err := yaml.YAMLToJSONStrict(doc)
		if err != nil {
			return nil, err
		}
		var raw struct {
			Spec json.RawMessage `json:"spec"`
		}
		if err := json.Unmarshal(js, &raw); err != nil {
			return nil, err
		}
		if err := protojson.Unmarshal(raw.Spec, &ap.Spec); err != nil {
			return nil, fmt.Errorf("AuthorizationPolicy spec: %w", err)
		}
	}
	return obj, nil
}

// all returns the rendered objects of type T.
func all[T metav1.Object](m manifests) []T {
	var out []T
	for _, o := range m {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// one returns the only rendered object of type T, failing otherwise.
func one[T metav1.Object](t *testing.T, m manifests) T {
	t.Helper()
	l := all[T](m)
	if len(l) != 1 {
		t.Fatalf("want exactly one %T, got %d", *new(T), len(l))
	}
	return l[0]
}

// kinds lists the Go types rendered, for comparing what a values file turns on.
func kinds(m manifests) []string {
	var out []string
	for _, o := range m {
		out = append(out, strings.TrimPrefix(fmt.Sprintf("%T", o), "*"))
	}
	sort.Strings(out)
	return out
}

// inTargetNamespace reports whether o lives in the namespace of what it
// protects (a mesh or gateway policy) rather than in the release's.
func inTargetNamespace(o metav1.Object) bool {
	switch o.(type) {
	case *istiosecurityv1.AuthorizationPolicy, *egv1alpha1.SecurityPolicy, *kgwv1alpha1.GatewayExtension, *kgwv1alpha1.TrafficPolicy:
		return true
	}
	return false
}

// metadataProblems checks names, namespaces and the standard labels.
func metadataProblems(m manifests) []string {
	var p []string
	for _, o := range m {
		at := fmt.Sprintf("%T %s", o, o.GetName())
		if o.GetName() == "" {
			p = append(p, at+": no name")
		}
		if !inTargetNamespace(o) && o.GetNamespace() != namespace {
			p = append(p, fmt.Sprintf("%s: namespace %q, want the release namespace %q", at, o.GetNamespace(), namespace))
		}
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "helm.sh/chart"} {
			if o.GetLabels()[k] == "" {
				p = append(p, at+": missing label "+k)
			}
		}
	}
	return p
}

// podSecurityProblems lists every way the pod departs from a restricted,
// non-root, read-only pod.
func podSecurityProblems(d *appsv1.Deployment) []string {
	var p []string
	spec := d.Spec.Template.Spec
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		p = append(p, "pod: runAsNonRoot must be true")
	}
	if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		p = append(p, "pod: runAsUser must be a non-zero uid")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		p = append(p, "pod: seccompProfile must be RuntimeDefault")
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		p = append(p, "pod: must not share host namespaces")
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		p = append(p, "pod: automountServiceAccountToken must be false")
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		at := "container " + c.Name + ": "
		sc := c.SecurityContext
		if sc == nil {
			p = append(p, at+"no securityContext")
			continue
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			p = append(p, at+"allowPrivilegeEscalation must be false")
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			p = append(p, at+"readOnlyRootFilesystem must be true")
		}
		if sc.Privileged != nil && *sc.Privileged {
			p = append(p, at+"must not be privileged")
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			p = append(p, at+"capabilities must drop ALL and add none")
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			p = append(p, at+"needs cpu and memory requests and a memory limit")
		}
	}
	return p
}

// containerPort resolves a named or numbered port of a container.
func containerPort(c corev1.Container, port intstr.IntOrString) int32 {
	for _, cp := range c.Ports {
		if (port.Type == intstr.String && cp.Name == port.StrVal) || (port.Type == intstr.Int && cp.ContainerPort == port.IntVal) {
			return cp.ContainerPort
		}
	}
	return 0
}

// probeProblems checks liveness on /healthz and readiness on /readyz, both on
// langgate's admin port.
func probeProblems(c corev1.Container) []string {
	var p []string
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			p = append(p, pr.name+": want an httpGet probe")
			continue
		}
		if pr.probe.HTTPGet.Path != pr.path {
			p = append(p, fmt.Sprintf("%s: path %q, want %q", pr.name, pr.probe.HTTPGet.Path, pr.path))
		}
		if got := containerPort(c, pr.probe.HTTPGet.Port); got != adminPort {
			p = append(p, fmt.Sprintf("%s: port %v resolves to %d, want the admin port %d", pr.name, pr.probe.HTTPGet.Port.String(), got, adminPort))
		}
	}
	return p
}

// ptrString prints an optional string.
func ptrString(p *string) string {
	if p == nil {
		return "<unset>"
	}
	return *p
}

// selects reports whether a label selector selects the given labels.
func selects(t *testing.T, sel *metav1.LabelSelector, l map[string]string) bool {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	return !s.Empty() && s.Matches(labels.Set(l))
}

// langgateContainer returns the langgate container of the Deployment.
func langgateContainer(t *testing.T, d *appsv1.Deployment) corev1.Container {
	t.Helper()
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == "langgate" {
			return c
		}
	}
	t.Fatal("no langgate container")
	return corev1.Container{}
}

// checkWorkload runs the checks every rendering must pass.
func checkWorkload(t *testing.T, m manifests) {
	t.Helper()
	for _, problem := range metadataProblems(m) {
		t.Error(problem)
	}
	d := one[*appsv1.Deployment](t, m)
	for _, problem := range podSecurityProblems(d) {
		t.Error(problem)
	}
	c := langgateContainer(t, d)
	for _, problem := range probeProblems(c) {
		t.Error(problem)
	}
	podLabels := d.Spec.Template.Labels
	if !selects(t, d.Spec.Selector, podLabels) {
		t.Errorf("the Deployment's selector %v does not select its pods %v", d.Spec.Selector, podLabels)
	}
	for _, tsc := range d.Spec.Template.Spec.TopologySpreadConstraints {
		if tsc.LabelSelector == nil || !selects(t, tsc.LabelSelector, podLabels) {
			t.Errorf("topology spread on %s does not select langgate's pods", tsc.TopologyKey)
		}
	}
	if len(d.Spec.Template.Spec.TopologySpreadConstraints) == 0 {
		t.Error("no topology spread constraints")
	}

	// serve --config points into a mounted volume holding the policy key.
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"serve ", fmt.Sprintf("--grpc-addr :%d", grpcPort), fmt.Sprintf("--admin-addr :%d", adminPort)} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("args %q lack --config FILE", args)
	}
	cfgDir, cfgFile := filepath.Split(c.Args[i+1])
	var cfgVolume string
	for _, vm := range c.VolumeMounts {
		if filepath.Clean(vm.MountPath) == filepath.Clean(cfgDir) {
			cfgVolume = vm.Name
			if !vm.ReadOnly {
				t.Error("the config volume must be mounted read-only")
			}
			if vm.SubPath != "" {
				t.Error("the config volume must not use subPath (updates would not reach the pod)")
			}
		}
	}
	var found bool
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == cfgVolume && v.ConfigMap != nil {
			found = slices.ContainsFunc(v.ConfigMap.Items, func(k corev1.KeyToPath) bool { return k.Path == cfgFile })
		}
	}
	if !found {
		t.Errorf("--config %s is not a file of a mounted ConfigMap", c.Args[i+1])
	}

	// Services: gRPC with appProtocol grpc, ports that resolve, selectors that select.
	services := all[*corev1.Service](m)
	if len(services) == 0 {
		t.Fatal("no Service")
	}
	for _, s := range services {
		if !selects(t, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}, podLabels) {
			t.Errorf("Service %s does not select langgate's pods", s.Name)
		}
		byName := map[string]corev1.ServicePort{}
		for _, sp := range s.Spec.Ports {
			byName[sp.Name] = sp
			if containerPort(c, sp.TargetPort) != sp.Port {
				t.Errorf("Service %s port %s targets %s, which is not container port %d", s.Name, sp.Name, sp.TargetPort.String(), sp.Port)
			}
		}
		if g := byName["grpc"]; g.Port != grpcPort || g.AppProtocol == nil || *g.AppProtocol != "grpc" {
			t.Errorf("Service %s: want port grpc %d with appProtocol grpc, got port %d appProtocol %v", s.Name, grpcPort, g.Port, ptrString(g.AppProtocol))
		}
		if a := byName["admin"]; a.Port != adminPort {
			t.Errorf("Service %s: want port admin %d, got %+v", s.Name, adminPort, a)
		}
	}
	for _, pdb := range all[*policyv1.PodDisruptionBudget](m) {
		if !selects(t, pdb.Spec.Selector, podLabels) {
			t.Errorf("PodDisruptionBudget %s does not select langgate's pods", pdb.Name)
		}
	}
}

// TestLint runs `helm lint --strict` on the defaults and on every ci/*-values.yaml.
func TestLint(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no ci/*-values.yaml (%v)", err)
	}
	runs := [][]string{nil} // the defaults
	for _, f := range files {
		runs = append(runs, []string{"--values", f})
	}
	for _, args := range runs {
		out, err := runHelm(t, append([]string{"lint", "--strict", "--kube-version", kubeVersion, chartDir}, args...)...)
		if err != nil {
			t.Errorf("%v\n%s", err, out)
		}
	}
}

// TestDefaults renders the chart with its default values.
func TestDefaults(t *testing.T) {
	m := render(t)
	want := []string{
		"v1.ConfigMap", "v1.Deployment", "v1.PodDisruptionBudget", "v1.Service", "v1.Service", "v1.ServiceAccount",
	}
	if got := kinds(m); !reflect.DeepEqual(got, want) {
		t.Errorf("rendered %v, want %v", got, want)
	}
	checkWorkload(t, m)
	d := one[*appsv1.Deployment](t, m)
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Errorf("replicas %v, want at least 2 without autoscaling", d.Spec.Replicas)
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Error("a rollout must never take a ready pod away before its replacement is ready")
	}
	if d.Spec.Template.Annotations["checksum/config"] == "" {
		t.Error("no checksum/config annotation: a policy change would not roll out")
	}
	c := langgateContainer(t, d)
	if c.Image != "ghcr.io/langgate/langgate:0.1.0" {
		t.Errorf("image %q, want the chart's appVersion tag", c.Image)
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "OTEL_") {
			t.Errorf("tracing is on by default: %s=%s", e.Name, e.Value)
		}
	}

	// The default policy is the repository's LangGraph example.
	cm := one[*corev1.ConfigMap](t, m)
	var fromChart, fromExample any
	if err := yaml.Unmarshal([]byte(cm.Data["langgate.yaml"]), &fromChart); err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(example, &fromExample); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromChart, fromExample) {
		t.Errorf("the chart's default policy differs from %s:\nchart:   %v\nexample: %v", examplePolicy, fromChart, fromExample)
	}

	var headless int
	for _, s := range all[*corev1.Service](m) {
		if s.Spec.ClusterIP == corev1.ClusterIPNone {
			headless++
		}
	}
	if headless != 1 {
		t.Errorf("%d headless Services, want 1 (per-pod balancing for Envoy)", headless)
	}
}

// TestAllFeatures renders ci/all-features-values.yaml, where every optional
// resource is on.
func TestAllFeatures(t *testing.T) {
	m := render(t, "--values", allValues)
	want := []string{
		"kgateway.GatewayExtension", "kgateway.TrafficPolicy",
		"v1.AuthorizationPolicy", "v1.ConfigMap", "v1.Deployment", "v1.NetworkPolicy", "v1.PodDisruptionBudget",
		"v1.Service", "v1.Service", "v1.ServiceAccount", "v1.ServiceMonitor",
		"v1alpha1.SecurityPolicy", "v1beta1.ReferenceGrant", "v2.HorizontalPodAutoscaler",
	}
	if got := kinds(m); !reflect.DeepEqual(got, want) {
		t.Errorf("rendered %v, want %v", got, want)
	}
	checkWorkload(t, m)
	d := one[*appsv1.Deployment](t, m)
	c := langgateContainer(t, d)
	podLabels := d.Spec.Template.Labels

	if d.Spec.Replicas != nil {
		t.Error("with an HPA the Deployment must not set replicas (every upgrade would reset them)")
	}
	hpa := one[*autoscalingv2.HorizontalPodAutoscaler](t, m)
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != d.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("HPA targets %+v, want Deployment %s", ref, d.Name)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != 3 || hpa.Spec.MaxReplicas != 12 || len(hpa.Spec.Metrics) != 2 {
		t.Errorf("HPA %+v does not follow the values", hpa.Spec)
	}
	if c.Image != "ghcr.io/langgate/langgate@sha256:"+strings.Repeat("0", 64) {
		t.Errorf("image %q, want the digest", c.Image)
	}

	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["OIDC_ISSUER"] != "https://idp.example.com/realms/main" || env["OIDC_AUDIENCE"] != "langgraph" || env["TENANT"] != "acme" {
		t.Errorf("env %v lacks the issuer, audience or extra variables", env)
	}
	for k, want := range map[string]string{
		"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4317",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1",
		"OTEL_SERVICE_NAME": "langgate",
	} {
		if env[k] != want {
			t.Errorf("tracing: %s=%q, want %q", k, env[k], want)
		}
	}
	if !slices.Contains(c.Args, "--trace-identity") {
		t.Errorf("args %v lack --trace-identity (tracing.identity)", c.Args)
	}

	// API keys come from the existing Secret, read-only, where the values say.
	var keysMounted bool
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == "/etc/langgate/api-keys" {
			keysMounted = vm.ReadOnly
			for _, v := range d.Spec.Template.Spec.Volumes {
				if v.Name == vm.Name && (v.Secret == nil || v.Secret.SecretName != "langgate-api-keys") {
					t.Errorf("volume %s is not the Secret langgate-api-keys", v.Name)
				}
			}
		}
	}
	if !keysMounted {
		t.Error("the API key Secret is not mounted read-only at /etc/langgate/api-keys")
	}

	// The ServiceMonitor scrapes the admin port of exactly one Service.
	sm := one[*monitoringv1.ServiceMonitor](t, m)
	var scraped []string
	for _, s := range all[*corev1.Service](m) {
		if selects(t, &sm.Spec.Selector, s.Labels) {
			scraped = append(scraped, s.Name)
		}
	}
	if len(scraped) != 1 {
		t.Errorf("the ServiceMonitor selects Services %v, want exactly one (else every pod is scraped twice)", scraped)
	}
	if len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != "admin" || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor endpoints %+v, want admin /metrics", sm.Spec.Endpoints)
	}
	if sm.Labels["release"] != "prometheus" {
		t.Error("serviceMonitor.labels not applied")
	}

	// The NetworkPolicy guards langgate's pods, on ports they really have.
	np := one[*networkingv1.NetworkPolicy](t, m)
	if !selects(t, &np.Spec.PodSelector, podLabels) {
		t.Error("the NetworkPolicy does not select langgate's pods")
	}
	var ingressPorts []int32
	for _, r := range np.Spec.Ingress {
		if len(r.From) == 0 {
			t.Error("an ingress rule is open to every source although the values restrict it")
		}
		for _, p := range r.Ports {
			ingressPorts = append(ingressPorts, containerPort(c, *p.Port))
		}
	}
	slices.Sort(ingressPorts)
	if !reflect.DeepEqual(ingressPorts, []int32{grpcPort, adminPort}) {
		t.Errorf("ingress ports resolve to %v, want [%d %d]", ingressPorts, grpcPort, adminPort)
	}
	if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) || len(np.Spec.Egress) < 2 ||
		np.Spec.Egress[0].Ports[0].Port.IntValue() != 53 {
		t.Error("restricted egress must keep DNS open and add the given rules")
	}

	// The CUSTOM AuthorizationPolicy protects the LangGraph workload, not langgate.
	ap := one[*istiosecurityv1.AuthorizationPolicy](t, m)
	spec := &ap.Spec
	if spec.GetAction() != securityv1beta1.AuthorizationPolicy_CUSTOM {
		t.Errorf("action %v, want CUSTOM", spec.GetAction())
	}
	if spec.GetProvider().GetName() != "langgate" {
		t.Errorf("provider %q, want langgate", spec.GetProvider().GetName())
	}
	if ap.Namespace != "langgraph" {
		t.Errorf("namespace %q, want the protected workload's (langgraph)", ap.Namespace)
	}
	if ml := spec.GetSelector().GetMatchLabels(); len(ml) == 0 || labels.SelectorFromSet(ml).Matches(labels.Set(podLabels)) {
		t.Errorf("selector %v must select the protected workload and never langgate itself", ml)
	}
	checkCustomRules(t, spec)
}

// checkCustomRules sends sample requests through the policy's rules the way
// Istio matches them: only GET and HEAD on the exact public paths skip langgate.
func checkCustomRules(t *testing.T, spec *securityv1beta1.AuthorizationPolicy) {
	t.Helper()
	type request struct {
		method, target string
		checked        bool
	}
	cases := []request{
		{"POST", "/threads", true},
		{"GET", "/threads/t1", true},
		{"PUT", "/store/items", true},
		{"GET", "/", true},
		{"GET", "/ok/", true},
		{"GET", "/okay", true},
		{"GET", "/docs/x", true},
		{"POST", "/ok", true},
		{"DELETE", "/metrics", true},
	}
	for _, p := range publicPaths {
		cases = append(cases, request{"GET", p, false}, request{"HEAD", p + "?x=1", false})
	}
	for _, c := range cases {
		got, err := istioTriggers(spec, c.method, c.target)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.checked {
			t.Errorf("%s %s: sent to langgate=%v, want %v", c.method, c.target, got, c.checked)
		}
	}
}

// istioTriggers reports whether an AuthorizationPolicy's rules match a
// request (for CUSTOM: whether the provider is asked). It implements the
// operation fields the chart uses and fails on any other.
func istioTriggers(spec *securityv1beta1.AuthorizationPolicy, method, target string) (bool, error) {
	path, _, _ := strings.Cut(target, "?")
	match := func(patterns []string, v string) bool {
		return slices.ContainsFunc(patterns, func(p string) bool {
			switch {
			case p == "*":
				return true
			case strings.HasSuffix(p, "*"):
				return strings.HasPrefix(v, strings.TrimSuffix(p, "*"))
			case strings.HasPrefix(p, "*"):
				return strings.HasSuffix(v, strings.TrimPrefix(p, "*"))
			}
			return p == v
		})
	}
	for _, r := range spec.GetRules() {
		if len(r.GetFrom()) > 0 || len(r.GetWhen()) > 0 {
			return false, errors.New("rule with from/when: not understood by this test")
		}
		if len(r.GetTo()) == 0 {
			return true, nil
		}
		for _, to := range r.GetTo() {
			op := to.GetOperation()
			if len(op.GetHosts())+len(op.GetNotHosts())+len(op.GetPorts())+len(op.GetNotPorts()) > 0 {
				return false, errors.New("operation with hosts/ports: not understood by this test")
			}
			if (len(op.GetPaths()) == 0 || match(op.GetPaths(), path)) &&
				(len(op.GetNotPaths()) == 0 || !match(op.GetNotPaths(), path)) &&
				(len(op.GetMethods()) == 0 || slices.Contains(op.GetMethods(), method)) &&
				(len(op.GetNotMethods()) == 0 || !slices.Contains(op.GetNotMethods(), method)) {
				return true, nil
			}
		}
	}
	return false, nil
}

// renderNotes renders NOTES.txt and the MeshConfig block it prints. helm
// template does not print NOTES.txt, so a copy of the chart gets one more
// template that includes the same named templates into a ConfigMap.
func renderNotes(t *testing.T, args ...string) (notes, meshConfig string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "langgate")
	if err := os.CopyFS(dir, os.DirFS(chartDir)); err != nil {
		t.Fatal(err)
	}
	probe := `apiVersion: v1
kind: ConfigMap
metadata:
  name: notes-probe
data:
  notes: {{ include "langgate.notes" . | toJson }}
  meshConfig: {{ include "langgate.istioMeshConfig" . | toJson }}
`
	if err := os.WriteFile(filepath.Join(dir, "templates", "notes-probe.yaml"), []byte(probe), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "templates", "NOTES.txt")); err != nil || !strings.Contains(string(b), `include "langgate.notes"`) {
		t.Fatalf("NOTES.txt must render the named template langgate.notes (%v)", err)
	}
	out, err := template(t, dir, append(args, "--show-only", "templates/notes-probe.yaml")...)
	if err != nil {
		t.Fatal(err)
	}
	var cm corev1.ConfigMap
	if err := yaml.UnmarshalStrict([]byte(out), &cm); err != nil {
		t.Fatal(err)
	}
	return cm.Data["notes"], cm.Data["meshConfig"]
}

// decodeMeshConfig decodes the `meshConfig:` block NOTES.txt prints into
// Istio's MeshConfig type, strictly.
func decodeMeshConfig(t *testing.T, block string) *meshv1alpha1.MeshConfig {
	t.Helper()
	js, err := yaml.YAMLToJSONStrict([]byte(block))
	if err != nil {
		t.Fatal(err)
	}
	var wrapper struct {
		MeshConfig json.RawMessage `json:"meshConfig"`
	}
	if err := json.Unmarshal(js, &wrapper); err != nil {
		t.Fatal(err)
	}
	mc := &meshv1alpha1.MeshConfig{}
	if err := protojson.Unmarshal(wrapper.MeshConfig, mc); err != nil {
		t.Fatalf("MeshConfig: %v\n%s", err, block)
	}
	return mc
}

// TestIstioMeshConfig decodes the extension provider NOTES.txt tells users to
// add into Istio's MeshConfig type and checks it against the rendered chart.
func TestIstioMeshConfig(t *testing.T) {
	m := render(t, "--values", allValues)
	notes, block := renderNotes(t, "--values", allValues)
	mc := decodeMeshConfig(t, block)
	if len(mc.GetExtensionProviders()) != 1 {
		t.Fatalf("want one extension provider, got %d", len(mc.GetExtensionProviders()))
	}
	ep := mc.GetExtensionProviders()[0]
	ap := one[*istiosecurityv1.AuthorizationPolicy](t, m)
	if ep.GetName() != ap.Spec.GetProvider().GetName() {
		t.Errorf("provider %q, AuthorizationPolicy asks for %q", ep.GetName(), ap.Spec.GetProvider().GetName())
	}
	g := ep.GetEnvoyExtAuthzGrpc()
	if g == nil {
		t.Fatal("want an envoyExtAuthzGrpc provider")
	}
	var svc *corev1.Service
	for _, s := range all[*corev1.Service](m) {
		if fmt.Sprintf("%s.%s.svc.cluster.local", s.Name, s.Namespace) == g.GetService() {
			svc = s
		}
	}
	if svc == nil || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Errorf("provider service %q is not the chart's (non-headless) Service", g.GetService())
	}
	if g.GetPort() != grpcPort {
		t.Errorf("provider port %d, want %d", g.GetPort(), grpcPort)
	}
	if d := g.GetTimeout().AsDuration(); g.GetTimeout() == nil || d <= 0 || d > maxCheckTimeout {
		t.Errorf("provider timeout %v, want set and at most %v (Istio's default is 600s)", d, maxCheckTimeout)
	}
	if g.GetFailOpen() {
		t.Error("failOpen must be false")
	}
	if g.GetStatusOnError() != "503" {
		t.Errorf("statusOnError %q, want 503", g.GetStatusOnError())
	}
	body := g.GetIncludeRequestBodyInCheck()
	if body == nil || body.GetAllowPartialMessage() || !body.GetPackAsBytes() || body.GetMaxRequestBytes() < 64<<10 || body.GetMaxRequestBytes() > 1<<20 {
		t.Errorf("includeRequestBodyInCheck %v: want whole bodies as bytes, 64 KiB to 1 MiB (the most langgate parses)", body)
	}
	// Helm prints large numbers as floats unless told otherwise.
	if !strings.Contains(block, "maxRequestBytes: 1048576\n") {
		t.Errorf("maxRequestBytes is not printed as an integer:\n%s", block)
	}

	// NOTES.txt prints that very block, and no warning when the issuer is set.
	for _, line := range strings.Split(strings.TrimSpace(block), "\n") {
		if !strings.Contains(notes, line) {
			t.Errorf("NOTES.txt lacks the MeshConfig line %q", line)
		}
	}
	if strings.Contains(notes, "WARNING") {
		t.Errorf("NOTES.txt warns although oidc.issuer is set:\n%s", notes)
	}
}

// TestNotesWithDefaults checks the next steps printed after a default install.
func TestNotesWithDefaults(t *testing.T) {
	notes, _ := renderNotes(t)
	for _, want := range []string{
		"kubectl -n langgate rollout status deployment/lg-langgate",
		"WARNING: the policy reads ${OIDC_ISSUER} but oidc.issuer is empty",
		"lg-langgate-headless.langgate.svc.cluster.local port 9001",
		"istio.authorizationPolicy.enabled=true",
		"docs/deploy.md",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("NOTES.txt lacks %q:\n%s", want, notes)
		}
	}
	if strings.Contains(notes, "meshConfig:") {
		t.Error("NOTES.txt prints the Istio provider although Istio is off")
	}
}

// TestExistingConfigMap uses the user's ConfigMap instead of the chart's.
func TestExistingConfigMap(t *testing.T) {
	m := render(t, "--set", "config.existingConfigMap=my-policy", "--set", "config.key=policy.yaml")
	if n := len(all[*corev1.ConfigMap](m)); n != 0 {
		t.Errorf("rendered %d ConfigMaps, want none", n)
	}
	checkWorkload(t, m)
	d := one[*appsv1.Deployment](t, m)
	var uses bool
	for _, v := range d.Spec.Template.Spec.Volumes {
		uses = uses || (v.ConfigMap != nil && v.ConfigMap.Name == "my-policy")
	}
	if !uses {
		t.Error("the Deployment does not mount ConfigMap my-policy")
	}
	if _, ok := d.Spec.Template.Annotations["checksum/config"]; ok {
		t.Error("checksum/config of a ConfigMap the chart does not render")
	}
}

// TestPolicyChangeRollsOut: a new policy changes the pod template, so a
// `helm upgrade` rolls it out behind readiness checks.
func TestPolicyChangeRollsOut(t *testing.T) {
	checksum := func(args ...string) string {
		d := one[*appsv1.Deployment](t, render(t, args...))
		return d.Spec.Template.Annotations["checksum/config"]
	}
	a, b := checksum(), checksum("--set", "config.policy=authorize: {routes: langgraph}")
	if a == "" || a == b {
		t.Errorf("checksum/config %q vs %q: want a change with the policy", a, b)
	}
	if again := checksum(); again != a {
		t.Errorf("checksum/config is not stable: %q vs %q", a, again)
	}
}

// TestSecurityChecksCatchWeakenedPods proves podSecurityProblems can fail: a
// values override that weakens the pod is reported.
func TestSecurityChecksCatchWeakenedPods(t *testing.T) {
	m := render(t,
		"--set", "securityContext.readOnlyRootFilesystem=false",
		"--set", "securityContext.allowPrivilegeEscalation=true",
		"--set", "podSecurityContext.runAsNonRoot=false",
		"--set", "serviceAccount.automountServiceAccountToken=true",
		"--set", "livenessProbe.httpGet.port=grpc",
	)
	d := one[*appsv1.Deployment](t, m)
	got := strings.Join(append(podSecurityProblems(d), probeProblems(langgateContainer(t, d))...), "\n")
	for _, want := range []string{"readOnlyRootFilesystem", "allowPrivilegeEscalation", "runAsNonRoot", "automountServiceAccountToken", "liveness: port grpc"} {
		if !strings.Contains(got, want) {
			t.Errorf("no complaint about %s in:\n%s", want, got)
		}
	}
}

// TestRejectedValues: the schema and the templates refuse bad values with a
// message naming the value.
func TestRejectedValues(t *testing.T) {
	cases := []struct {
		set, want string
	}{
		{"bogus=1", "additional properties 'bogus' not allowed"},
		{"replicaCount=0", "/replicaCount"},
		{"grpcPort=70000", "/grpcPort"},
		{"image.digest=latest", "/image/digest"},
		{"istio.extensionProvider.timeout=50ms", "/istio/extensionProvider/timeout"},
		{"istio.extensionProvider.maxRequestBytes=2097152", "/istio/extensionProvider/maxRequestBytes"},
		{"istio.authorizationPolicy.publicPaths[0]=ok", "/istio/authorizationPolicy/publicPaths/0"},
		{"istio.authorizationPolicy.enabled=true", "needs selector.matchLabels or targetRefs"},
		{"config.policy=", "config.policy is required"},
		{"envoyGateway.enabled=true", "envoyGateway.targetRefs is required"},
		{"kgateway.enabled=true", "kgateway.targetRefs is required"},
		{"envoyGateway.timeout=0.05s", "/envoyGateway/timeout"},
		{"kgateway.maxRequestBytes=2097152", "/kgateway/maxRequestBytes"},
		{"envoyGateway.statusOnError=200", "/envoyGateway/statusOnError"},
	}
	for _, c := range cases {
		t.Run(c.set, func(t *testing.T) {
			_, err := template(t, chartDir, "--set", c.set)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("want an error containing %q, got %v", c.want, err)
			}
		})
	}
}

// TestReadmeDocumentsEveryValue: every value the schema declares has a
// default in values.yaml and a row in the chart's README.
func TestReadmeDocumentsEveryValue(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	rawSchema, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(rawSchema, &schema); err != nil {
		t.Fatal(err)
	}
	rawValues, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.UnmarshalStrict(rawValues, &values); err != nil {
		t.Fatal(err)
	}
	var leaves []string
	var walk func(node map[string]any, prefix string, vals map[string]any)
	walk = func(node map[string]any, prefix string, vals map[string]any) {
		props, _ := node["properties"].(map[string]any)
		for k, sub := range props {
			if prefix == "" && k == "global" {
				continue
			}
			key := prefix + k
			v, ok := vals[k]
			if !ok {
				t.Errorf("%s is in values.schema.json but has no default in values.yaml", key)
				continue
			}
			subNode := sub.(map[string]any)
			if _, nested := subNode["properties"]; nested {
				walk(subNode, key+".", v.(map[string]any))
				continue
			}
			leaves = append(leaves, key)
		}
	}
	walk(schema, "", values)
	if len(leaves) < 40 {
		t.Fatalf("found only %d values in the schema", len(leaves))
	}
	for _, k := range leaves {
		if !bytes.Contains(readme, []byte("`"+k+"`")) {
			t.Errorf("README.md does not document `%s`", k)
		}
	}
}
