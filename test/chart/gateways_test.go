package chart

import (
	"reflect"
	"testing"

	egv1alpha1 "github.com/envoyproxy/gateway/api/v1alpha1"
	kgwv1alpha1 "github.com/kgateway-dev/kgateway/v2/api/v1alpha1/kgateway"
	corev1 "k8s.io/api/core/v1"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"
	gwv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"
)

// grpcService returns the chart's (non-headless) Service and checks that
// port is its gRPC port, the one langgate's Check listens on.
func grpcService(t *testing.T, m manifests, name string, port int32) *corev1.Service {
	t.Helper()
	for _, s := range all[*corev1.Service](m) {
		if s.Name != name {
			continue
		}
		for _, p := range s.Spec.Ports {
			if p.Port == port && p.Name == "grpc" && p.TargetPort.String() == "grpc" {
				return s
			}
		}
		t.Fatalf("Service %s has no port %d named grpc (ports %+v)", name, port, s.Spec.Ports)
	}
	t.Fatalf("no Service named %s", name)
	return nil
}

// granted reports whether a ReferenceGrant in the Service's namespace lets
// kind (of group) in namespace from reference the Service.
func granted(m manifests, group, kind, from string, svc *corev1.Service) bool {
	for _, g := range all[*gwv1beta1.ReferenceGrant](m) {
		if g.Namespace != svc.Namespace {
			continue
		}
		var f, to bool
		for _, r := range g.Spec.From {
			f = f || string(r.Group) == group && string(r.Kind) == kind && string(r.Namespace) == from
		}
		for _, r := range g.Spec.To {
			to = to || r.Group == "" && r.Kind == "Service" && (r.Name == nil || string(*r.Name) == svc.Name)
		}
		if f && to {
			return true
		}
	}
	return false
}

// TestEnvoyGatewaySecurityPolicy: the SecurityPolicy decodes strictly into
// Envoy Gateway's own type, sends the targeted route's requests to
// langgate's gRPC port with the body, fails closed, selects the policy, and
// may reach across namespaces because a ReferenceGrant allows exactly that.
func TestEnvoyGatewaySecurityPolicy(t *testing.T) {
	m := render(t, "--values", allValues)
	sp := one[*egv1alpha1.SecurityPolicy](t, m)
	if sp.Namespace != "langgraph" {
		t.Errorf("namespace %q, want the routes' (langgraph)", sp.Namespace)
	}
	if want := []gwv1.LocalPolicyTargetReferenceWithSectionName{{LocalPolicyTargetReference: gwv1.LocalPolicyTargetReference{
		Group: "gateway.networking.k8s.io", Kind: "HTTPRoute", Name: "langgraph"}}}; !reflect.DeepEqual(sp.Spec.TargetRefs, want) {
		t.Errorf("targetRefs %+v, want %+v", sp.Spec.TargetRefs, want)
	}
	ea := sp.Spec.ExtAuth
	if ea == nil || ea.GRPC == nil || ea.HTTP != nil {
		t.Fatalf("extAuth %+v, want the gRPC service only", ea)
	}
	if len(ea.GRPC.BackendRefs) != 1 {
		t.Fatalf("backendRefs %+v, want one", ea.GRPC.BackendRefs)
	}
	ref := ea.GRPC.BackendRefs[0].BackendObjectReference
	if ref.Kind != nil && *ref.Kind != "Service" || ref.Port == nil || ref.Namespace == nil {
		t.Fatalf("backendRef %+v, want a Service with a namespace and a port", ref)
	}
	svc := grpcService(t, m, string(ref.Name), *ref.Port)
	if string(*ref.Namespace) != svc.Namespace {
		t.Errorf("backendRef namespace %s, want the Service's %s", *ref.Namespace, svc.Namespace)
	}
	if !granted(m, "gateway.envoyproxy.io", "SecurityPolicy", sp.Namespace, svc) {
		t.Error("no ReferenceGrant lets the SecurityPolicy reach langgate's Service in another namespace")
	}
	if ea.FailOpen == nil || *ea.FailOpen {
		t.Error("failOpen must be set to false")
	}
	if ea.StatusOnError == nil || *ea.StatusOnError != 503 {
		t.Errorf("statusOnError %v, want 503", ea.StatusOnError)
	}
	if ea.BodyToExtAuth == nil || ea.BodyToExtAuth.MaxRequestBytes != 1<<20 {
		t.Errorf("bodyToExtAuth %+v, want 1 MiB", ea.BodyToExtAuth)
	}
	if ea.Timeout == nil || *ea.Timeout != "100ms" {
		t.Errorf("timeout %v, want 100ms", ea.Timeout)
	}
	if len(ea.ContextExtensions) != 1 || ea.ContextExtensions[0].Name != "policy" || ea.ContextExtensions[0].Type != egv1alpha1.ContextExtensionValueTypeValue ||
		ea.ContextExtensions[0].Value == nil || *ea.ContextExtensions[0].Value != "langgraph" {
		t.Errorf("contextExtensions %+v, want policy=langgraph", ea.ContextExtensions)
	}
	if ea.HeadersToExtAuth != nil {
		t.Error("headersToExtAuth narrows the headers langgate sees (credentials in other headers, traceparent)")
	}

	// In the release namespace, no grant is needed and none is rendered.
	m = render(t, "--set", "envoyGateway.enabled=true", "--set", "envoyGateway.targetRefs[0].group=gateway.networking.k8s.io",
		"--set", "envoyGateway.targetRefs[0].kind=Gateway", "--set", "envoyGateway.targetRefs[0].name=agents")
	if sp := one[*egv1alpha1.SecurityPolicy](t, m); sp.Namespace != namespace || sp.Spec.ExtAuth.ContextExtensions != nil {
		t.Errorf("namespace %s, context extensions %+v", sp.Namespace, sp.Spec.ExtAuth.ContextExtensions)
	}
	if gs := all[*gwv1beta1.ReferenceGrant](m); len(gs) != 0 {
		t.Errorf("%d ReferenceGrants for a policy in langgate's own namespace", len(gs))
	}
}

// TestKgatewayExtension: the GatewayExtension and TrafficPolicy decode
// strictly into kgateway's own types; the policy attaches the extension
// (same name, same namespace) to the targets, with the body and the policy
// selector; the extension is langgate's gRPC port, failing closed.
func TestKgatewayExtension(t *testing.T) {
	m := render(t, "--values", allValues)
	ext := one[*kgwv1alpha1.GatewayExtension](t, m)
	tp := one[*kgwv1alpha1.TrafficPolicy](t, m)
	ea := ext.Spec.ExtAuth
	// (spec.type is deprecated and ignored in kgateway v2.2: the provider
	// is the one field set.)
	if ea == nil || ea.GrpcService == nil || ea.HttpService != nil || ext.Spec.ExtProc != nil || ext.Spec.RateLimit != nil || ext.Spec.JWT != nil || ext.Spec.OAuth2 != nil {
		t.Fatalf("GatewayExtension spec %+v, want an ExtAuth provider over gRPC and nothing else", ext.Spec)
	}
	ref := ea.GrpcService.BackendRef.BackendObjectReference
	if ref.Port == nil || ref.Namespace == nil {
		t.Fatalf("backendRef %+v, want a namespace and a port", ref)
	}
	svc := grpcService(t, m, string(ref.Name), *ref.Port)
	if string(*ref.Namespace) != svc.Namespace {
		t.Errorf("backendRef namespace %s, want the Service's %s", *ref.Namespace, svc.Namespace)
	}
	if ext.Namespace != svc.Namespace && !granted(m, "gateway.kgateway.dev", "GatewayExtension", ext.Namespace, svc) {
		t.Error("no ReferenceGrant lets the GatewayExtension reach langgate's Service")
	}
	if ea.FailOpen || ea.StatusOnError != 503 {
		t.Errorf("failOpen %v statusOnError %d, want false and 503", ea.FailOpen, ea.StatusOnError)
	}
	if rt := ea.GrpcService.RequestTimeout; rt == nil || rt.Milliseconds() != 100 {
		t.Errorf("requestTimeout %v, want 100ms", rt)
	}
	pa := tp.Spec.ExtAuth
	if tp.Namespace != ext.Namespace || pa == nil || pa.ExtensionRef == nil || string(pa.ExtensionRef.Name) != ext.Name ||
		pa.ExtensionRef.Namespace != nil && string(*pa.ExtensionRef.Namespace) != ext.Namespace {
		t.Fatalf("TrafficPolicy %s/%s extAuth %+v does not attach GatewayExtension %s/%s", tp.Namespace, tp.Name, pa, ext.Namespace, ext.Name)
	}
	if pa.Disable != nil {
		t.Error("the TrafficPolicy disables ext auth")
	}
	if pa.WithRequestBody == nil || pa.WithRequestBody.MaxRequestBytes != 1<<20 || pa.WithRequestBody.AllowPartialMessage {
		t.Errorf("withRequestBody %+v, want whole bodies up to 1 MiB", pa.WithRequestBody)
	}
	if !reflect.DeepEqual(pa.ContextExtensions, map[string]string{"policy": "langgraph"}) {
		t.Errorf("contextExtensions %v, want policy=langgraph", pa.ContextExtensions)
	}
	if len(tp.Spec.TargetRefs) != 1 || tp.Spec.TargetRefs[0].Kind != "Gateway" || tp.Spec.TargetRefs[0].Name != "agents" {
		t.Errorf("targetRefs %+v, want the Gateway agents", tp.Spec.TargetRefs)
	}
}

// TestNoBodyWhenZero: maxRequestBytes 0 sends no body with the check, on
// each gateway, for a policy whose rules read none (langgate validate), so
// that no route answers 413; the defaults send one.
func TestNoBodyWhenZero(t *testing.T) {
	zero := []string{"--values", allValues, "--set", "envoyGateway.maxRequestBytes=0", "--set", "kgateway.maxRequestBytes=0",
		"--set", "istio.extensionProvider.maxRequestBytes=0"}
	m := render(t, zero...)
	if ea := one[*egv1alpha1.SecurityPolicy](t, m).Spec.ExtAuth; ea == nil || ea.GRPC == nil || ea.BodyToExtAuth != nil {
		t.Errorf("Envoy Gateway extAuth %+v, want gRPC without bodyToExtAuth", ea)
	}
	if pa := one[*kgwv1alpha1.TrafficPolicy](t, m).Spec.ExtAuth; pa == nil || pa.ExtensionRef == nil || pa.WithRequestBody != nil {
		t.Errorf("kgateway extAuth %+v, want the extension without withRequestBody", pa)
	}
	_, block := renderNotes(t, zero...)
	mc := decodeMeshConfig(t, block)
	if len(mc.GetExtensionProviders()) != 1 {
		t.Fatalf("want one extension provider:\n%s", block)
	}
	g := mc.GetExtensionProviders()[0].GetEnvoyExtAuthzGrpc()
	if g == nil || g.GetIncludeRequestBodyInCheck() != nil {
		t.Errorf("Istio provider %v, want no includeRequestBodyInCheck", g)
	}
	if g.GetTimeout() == nil || g.GetFailOpen() {
		t.Errorf("Istio provider %v lost its other settings", g)
	}
	// The defaults do send the body (the seed policy reads the store's).
	m = render(t, "--values", allValues)
	if one[*egv1alpha1.SecurityPolicy](t, m).Spec.ExtAuth.BodyToExtAuth == nil || one[*kgwv1alpha1.TrafficPolicy](t, m).Spec.ExtAuth.WithRequestBody == nil {
		t.Error("the defaults send no body")
	}
}
