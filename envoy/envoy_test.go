package envoy

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	mutationrulesv3 "github.com/envoyproxy/go-control-plane/envoy/config/common/mutation_rules/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	headermutationv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/header_mutation/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

const (
	// extAuthzName is the filter name, and the dynamic-metadata namespace
	// Envoy stores langgate's CheckResponse.dynamic_metadata under.
	extAuthzName = "envoy.filters.http.ext_authz"
	routerName   = "envoy.filters.http.router"
	// headerMutationName is the filter that strips client headers first.
	headerMutationName = "envoy.filters.http.header_mutation"
	// langgateAdminPort is langgate's default admin port (/healthz, /readyz).
	langgateAdminPort = 9090
	// maxCheckTimeout is the most a shipped configuration may give langgate:
	// half of Envoy's 200 ms default.
	maxCheckTimeout = 100 * time.Millisecond
	// maxBodyBytes bounds every with_request_body: langgate parses bodies of
	// at most 1 MiB (routes.MaxBodyBytes) and treats a larger one as missing.
	maxBodyBytes = 1 << 20
	// smallBodyBytes is the least any body-reading LangGraph route may buffer;
	// inputBodyBytes the least a route that carries graph input may.
	smallBodyBytes = 64 << 10
	inputBodyBytes = 1 << 20
)

// httpDecisionIDHeader is langgate's HTTP-mode answer header with the
// decision id (and the dynamic-metadata key an HTTP-mode access log reads).
const httpDecisionIDHeader = "x-langgate-decision-id"

// publicPaths are LangGraph's unauthenticated endpoints.
var publicPaths = []string{"/ok", "/info", "/docs", "/openapi.json", "/metrics"}

// langgateHeaders are the headers langgate sets on allowed requests.
var langgateHeaders = []string{
	"x-langgate-user-id", "x-langgate-user", "x-langgate-permissions",
	"x-langgate-resource", "x-langgate-action", "x-langgate-filters", "x-langgate-metadata",
	"x-langgate-events",
}

// decisionKeys are the dynamic-metadata keys langgate sets on decisions
// (docs/headers.md) that the access log must show.
var decisionKeys = []string{"decision_id", "outcome", "policy", "reason", "resource", "action", "user_id"}

// stripHeaders are client headers that must never reach a LangGraph server:
// `x-auth-scheme: langsmith` makes it skip its own authentication.
var stripHeaders = []string{"x-auth-scheme"}

// validator is implemented by every go-control-plane message
// (protoc-gen-validate); ValidateAll reports every violated rule.
type validator interface{ ValidateAll() error }

// configFiles lists the Envoy configurations shipped in this directory.
func configFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pattern := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 2 {
		t.Fatalf("expected the shipped Envoy configurations in envoy/, found %v", files)
	}
	return files
}

// parseBootstrap decodes an Envoy YAML configuration strictly: an unknown
// field, a typed config whose type is not linked in, a deprecated field or
// enum value, and any protoc-gen-validate violation, in the bootstrap or in
// any typed config nested in it, is an error.
func parseBootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	bs := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, bs); err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if err := checkTree(bs.ProtoReflect(), "bootstrap", true); err != nil {
		return nil, err
	}
	return bs, nil
}

// loadBootstrap reads and strictly parses one shipped configuration.
func loadBootstrap(t *testing.T, file string) *bootstrapv3.Bootstrap {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := parseBootstrap(data)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return bs
}

// checkTree walks a message: it runs ValidateAll where asked (at the root and
// on every unpacked Any, since a message's ValidateAll covers its ordinary
// fields but not the contents of an Any), unpacks every Any through the
// global type registry, and rejects deprecated fields and enum values.
func checkTree(m protoreflect.Message, at string, validate bool) error {
	var errs []error
	if v, ok := m.Interface().(validator); ok && validate {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", at, err))
		}
	}
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: typed config %q: %w", at, a.GetTypeUrl(), err)
		}
		name := inner.ProtoReflect().Descriptor().FullName()
		return errors.Join(append(errs, checkTree(inner.ProtoReflect(), fmt.Sprintf("%s<%s>", at, name), true))...)
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		path := at + "." + string(fd.Name())
		if fd.Options().(*descriptorpb.FieldOptions).GetDeprecated() {
			errs = append(errs, fmt.Errorf("%s: deprecated field", path))
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					errs = append(errs, checkTree(mv.Message(), fmt.Sprintf("%s[%s]", path, k), false))
					return true
				})
			}
		case fd.IsList():
			if fd.Message() != nil {
				for i := range v.List().Len() {
					errs = append(errs, checkTree(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", path, i), false))
				}
			}
		case fd.Message() != nil:
			errs = append(errs, checkTree(v.Message(), path, false))
		case fd.Enum() != nil:
			if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil &&
				ev.Options().(*descriptorpb.EnumValueOptions).GetDeprecated() {
				errs = append(errs, fmt.Errorf("%s: deprecated value %s", path, ev.Name()))
			}
		}
		return true
	})
	return errors.Join(errs...)
}

// site is one HTTP connection manager of a bootstrap, with the filter chain
// it sits in and its ext_authz filter.
type site struct {
	name     string
	tls      *tlsv3.DownstreamTlsContext // nil on a plaintext chain
	hcm      *hcmv3.HttpConnectionManager
	extAuthz *extauthzv3.ExtAuthz
}

// sites finds every HTTP connection manager of the static listeners.
func sites(bs *bootstrapv3.Bootstrap) ([]site, error) {
	var out []site
	for _, l := range bs.GetStaticResources().GetListeners() {
		for i, fc := range l.GetFilterChains() {
			var tls *tlsv3.DownstreamTlsContext
			if ts := fc.GetTransportSocket(); ts != nil {
				tls = &tlsv3.DownstreamTlsContext{}
				if err := ts.GetTypedConfig().UnmarshalTo(tls); err != nil {
					return nil, fmt.Errorf("listener %s: transport socket: %w", l.GetName(), err)
				}
			}
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if !f.GetTypedConfig().MessageIs(hcm) {
					continue
				}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					return nil, err
				}
				s := site{name: fmt.Sprintf("%s/chain%d", l.GetName(), i), tls: tls, hcm: hcm}
				for _, hf := range hcm.GetHttpFilters() {
					ea := &extauthzv3.ExtAuthz{}
					if hf.GetTypedConfig().MessageIs(ea) {
						if err := hf.GetTypedConfig().UnmarshalTo(ea); err != nil {
							return nil, err
						}
						s.extAuthz = ea
					}
				}
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// securityProblems lists every way a bootstrap departs from what langgate
// relies on; an empty list means it is safe to ship.
func securityProblems(bs *bootstrapv3.Bootstrap) []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, fmt.Sprintf(format, args...)) }
	ss, err := sites(bs)
	if err != nil {
		return []string{err.Error()}
	}
	if len(ss) == 0 {
		add("no HTTP connection manager")
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range bs.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	for _, s := range ss {
		p = append(p, filterChainProblems(s)...)
		p = append(p, hcmProblems(s)...)
		if s.extAuthz == nil {
			continue
		}
		p = append(p, extAuthzProblems(s, clusters)...)
		p = append(p, routeProblems(s, clusters)...)
	}
	return p
}

// filterChainProblems checks the order of the HTTP filters.
func filterChainProblems(s site) []string {
	var p []string
	var names []string
	count := 0
	for _, hf := range s.hcm.GetHttpFilters() {
		names = append(names, hf.GetName())
		if hf.GetDisabled() && hf.GetName() == headerMutationName {
			p = append(p, fmt.Sprintf("%s: the header_mutation filter is disabled by default", s.name))
		}
		if hf.GetTypedConfig().MessageIs(&extauthzv3.ExtAuthz{}) {
			count++
			if hf.GetName() != extAuthzName {
				p = append(p, fmt.Sprintf("%s: ext_authz filter named %q, want %q (the access log reads its metadata namespace)", s.name, hf.GetName(), extAuthzName))
			}
			if hf.GetDisabled() {
				p = append(p, fmt.Sprintf("%s: ext_authz filter disabled by default", s.name))
			}
		}
	}
	if count != 1 {
		p = append(p, fmt.Sprintf("%s: %d ext_authz filters, want exactly 1", s.name, count))
	}
	// The header filter first, so that no client-sent x-langgate-* header
	// survives on any route; only the router may follow ext_authz: any other
	// filter could clear the route cache or rewrite the request after
	// langgate decided.
	if want := []string{headerMutationName, extAuthzName, routerName}; !slices.Equal(names, want) {
		p = append(p, fmt.Sprintf("%s: http filters %v, want %v", s.name, names, want))
	}
	p = append(p, headerMutationProblems(s)...)
	return p
}

// headerMutationProblems checks that the filter in front of ext_authz
// drops every client header under langgate's prefix, and x-auth-scheme.
func headerMutationProblems(s site) []string {
	var hm *headermutationv3.HeaderMutation
	for _, hf := range s.hcm.GetHttpFilters() {
		m := &headermutationv3.HeaderMutation{}
		if hf.GetTypedConfig().MessageIs(m) {
			if err := hf.GetTypedConfig().UnmarshalTo(m); err != nil {
				return []string{fmt.Sprintf("%s: header_mutation: %v", s.name, err)}
			}
			hm = m
		}
	}
	if hm == nil {
		return []string{s.name + ": no header_mutation filter strips client-sent x-langgate-* headers"}
	}
	var prefix bool
	var removed []string
	for _, m := range hm.GetMutations().GetRequestMutations() {
		if km := m.GetRemoveOnMatch().GetKeyMatcher(); km != nil && km.GetPrefix() == "x-langgate-" && !km.GetIgnoreCase() {
			prefix = true
		}
		if r := m.GetRemove(); r != "" {
			removed = append(removed, r)
		}
	}
	var p []string
	if !prefix {
		p = append(p, s.name+": header_mutation does not remove_on_match the prefix x-langgate- (client-sent headers would reach the upstream on public routes)")
	}
	for _, h := range stripHeaders {
		if !slices.Contains(removed, h) {
			p = append(p, fmt.Sprintf("%s: header_mutation does not remove client-sent %s", s.name, h))
		}
	}
	return p
}

// hcmProblems checks path normalization, header hygiene and the access log.
func hcmProblems(s site) []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, s.name+": "+fmt.Sprintf(format, args...)) }
	h := s.hcm
	if !h.GetNormalizePath().GetValue() {
		add("normalize_path must be true")
	}
	if !h.GetMergeSlashes() {
		add("merge_slashes must be true")
	}
	switch h.GetPathWithEscapedSlashesAction() {
	case hcmv3.HttpConnectionManager_REJECT_REQUEST, hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT:
	default:
		add("path_with_escaped_slashes_action %v lets %%2F through", h.GetPathWithEscapedSlashesAction())
	}
	if a := h.GetCommonHttpProtocolOptions().GetHeadersWithUnderscoresAction(); a.String() == "ALLOW" {
		add("headers_with_underscores_action ALLOW lets x_langgate_* through")
	}
	if !h.GetUseRemoteAddress().GetValue() {
		add("use_remote_address must be true on a front proxy")
	}
	switch h.GetForwardClientCertDetails() {
	case hcmv3.HttpConnectionManager_SANITIZE, hcmv3.HttpConnectionManager_SANITIZE_SET:
	default:
		add("forward_client_cert_details %v trusts a client-sent x-forwarded-client-cert", h.GetForwardClientCertDetails())
	}
	if h.GetRouteConfig() == nil {
		add("no static route_config")
	}
	var formats []string
	for _, al := range h.GetAccessLog() {
		sl := &streamv3.StdoutAccessLog{}
		if al.GetTypedConfig().MessageIs(sl) {
			if err := al.GetTypedConfig().UnmarshalTo(sl); err != nil {
				add("access log: %v", err)
				continue
			}
			if js := sl.GetLogFormat().GetJsonFormat(); js != nil {
				for _, v := range js.GetFields() {
					formats = append(formats, v.GetStringValue())
				}
			}
		}
	}
	if !slices.Contains(formats, "%REQ(X-REQUEST-ID)%") {
		add("access log lacks x-request-id")
	}
	keys := decisionKeys
	if s.extAuthz.GetHttpService() != nil {
		// An HTTP service returns no dynamic metadata; the decision id comes
		// from its answer header (dynamic_metadata_from_headers).
		keys = []string{httpDecisionIDHeader}
	}
	for _, k := range keys {
		want := fmt.Sprintf("%%DYNAMIC_METADATA(%s:%s)%%", extAuthzName, k)
		if !slices.Contains(formats, want) {
			add("access log lacks %s", want)
		}
	}
	return p
}

// extAuthzProblems checks the ext_authz filter and langgate's cluster.
func extAuthzProblems(s site, clusters map[string]*clusterv3.Cluster) []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, s.name+": "+fmt.Sprintf(format, args...)) }
	ea := s.extAuthz
	if ea.GetFailureModeAllow() {
		add("failure_mode_allow must be false (fail closed)")
	}
	if ea.GetTransportApiVersion().String() != "V3" {
		add("transport_api_version %v, want V3", ea.GetTransportApiVersion())
	}
	if code := ea.GetStatusOnError().GetCode(); code != 0 && code < 400 {
		add("status_on_error %d is not an error status", code)
	}
	if ea.GetFilterEnabled() != nil || ea.GetFilterEnabledMetadata() != nil || ea.GetShadowMode() {
		add("filter_enabled / shadow_mode would let some requests through unchecked")
	}
	if ea.GetClearRouteCache() {
		add("clear_route_cache must be false: the route, with its per-route settings, is picked once")
	}
	if want := s.tls.GetRequireClientCertificate().GetValue(); ea.GetIncludePeerCertificate() != want {
		add("include_peer_certificate=%v on a chain where mTLS=%v", ea.GetIncludePeerCertificate(), want)
	}
	p = append(p, bodyProblems(s.name+": with_request_body", ea.GetWithRequestBody(), smallBodyBytes)...)
	if ea.GetGrpcService() != nil && !ea.GetWithRequestBody().GetPackAsBytes() {
		add("with_request_body.pack_as_bytes must be true (the filter-level value applies to every route)")
	}
	if !ea.GetValidateMutations() {
		add("validate_mutations must be true")
	}
	p = append(p, mutationRuleProblems(s.name, ea.GetDecoderHeaderMutationRules())...)

	var name string
	switch {
	case ea.GetGrpcService() != nil:
		g := ea.GetGrpcService()
		if d := g.GetTimeout().AsDuration(); g.GetTimeout() == nil || d <= 0 || d > maxCheckTimeout {
			add("grpc_service.timeout %v, want set and at most %v", d, maxCheckTimeout)
		}
		name = g.GetEnvoyGrpc().GetClusterName()
	case ea.GetHttpService() != nil:
		h := ea.GetHttpService()
		if d := h.GetServerUri().GetTimeout().AsDuration(); h.GetServerUri().GetTimeout() == nil || d <= 0 || d > maxCheckTimeout {
			add("http_service.server_uri.timeout %v, want set and at most %v", d, maxCheckTimeout)
		}
		name = h.GetServerUri().GetCluster()
		p = append(p, httpServiceProblems(s.name, ea)...)
	default:
		add("ext_authz must use grpc_service or http_service")
		return p
	}
	c := clusters[name]
	if c == nil {
		add("ext_authz cluster %q does not exist", name)
		return p
	}
	opts := &upstreamhttpv3.HttpProtocolOptions{}
	if ea.GetGrpcService() != nil {
		if a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; a == nil || a.UnmarshalTo(opts) != nil ||
			opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			add("cluster %s must speak HTTP/2 (gRPC)", name)
		}
	}
	hc := c.GetHealthChecks()
	if len(hc) == 0 || hc[0].GetHttpHealthCheck().GetPath() != "/readyz" {
		add("cluster %s must be health-checked on /readyz", name)
	}
	for _, le := range c.GetLoadAssignment().GetEndpoints() {
		for _, ep := range le.GetLbEndpoints() {
			if got := ep.GetEndpoint().GetHealthCheckConfig().GetPortValue(); got != langgateAdminPort {
				add("cluster %s endpoint health-checked on port %d, want langgate's admin port %d", name, got, langgateAdminPort)
			}
		}
	}
	return p
}

// httpServiceProblems checks what an HTTP-mode filter must send langgate
// and copy from its answers.
func httpServiceProblems(at string, ea *extauthzv3.ExtAuthz) []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, at+": "+fmt.Sprintf(format, args...)) }
	h := ea.GetHttpService()
	if h.GetPathPrefix() != "/envoy" {
		add("http_service.path_prefix %q, want /envoy (langgate's Envoy endpoint)", h.GetPathPrefix())
	}
	matches := func(l []*matcherv3.StringMatcher, name string) bool {
		for _, m := range l {
			switch {
			case m.GetExact() != "" && m.GetExact() == name,
				m.GetPrefix() != "" && strings.HasPrefix(name, m.GetPrefix()):
				return true
			}
		}
		return false
	}
	allowed := ea.GetAllowedHeaders().GetPatterns()
	for _, hd := range append([]string{"authorization", "x-langgate-user-id", "x-langgate-anything"}, stripHeaders...) {
		if !matches(allowed, hd) {
			add("allowed_headers does not send langgate %s (it must see client-sent x-langgate-* and %v to have them removed)", hd, stripHeaders)
		}
	}
	resp := h.GetAuthorizationResponse()
	for _, hd := range langgateHeaders {
		if !matches(resp.GetAllowedUpstreamHeaders().GetPatterns(), hd) {
			add("authorization_response.allowed_upstream_headers does not copy %s", hd)
		}
	}
	if len(resp.GetAllowedUpstreamHeadersToAppend().GetPatterns()) > 0 {
		add("allowed_upstream_headers_to_append would keep a client's copy beside langgate's")
	}
	if !matches(resp.GetDynamicMetadataFromHeaders().GetPatterns(), httpDecisionIDHeader) {
		add("authorization_response.dynamic_metadata_from_headers lacks %s (the access log's decision id)", httpDecisionIDHeader)
	}
	return p
}

// bodyProblems checks one BufferSettings: buffering on, bounded, no partial
// bodies.
func bodyProblems(at string, b *extauthzv3.BufferSettings, least uint32) []string {
	switch {
	case b == nil:
		return []string{at + ": unset, langgate gets no body"}
	case b.GetAllowPartialMessage():
		return []string{at + ": allow_partial_message must be false (a cut body is refused with 413, not sent)"}
	case b.GetMaxRequestBytes() < least || b.GetMaxRequestBytes() > maxBodyBytes:
		return []string{fmt.Sprintf("%s: max_request_bytes %d outside [%d, %d]", at, b.GetMaxRequestBytes(), least, maxBodyBytes)}
	}
	return nil
}

// mutationRuleProblems checks that langgate may mutate its own headers and
// nothing else, by running the configured rule on sample header names the
// way Envoy does (a full match of the lower-case name).
func mutationRuleProblems(at string, r *mutationrulesv3.HeaderMutationRules) []string {
	if r == nil {
		return []string{at + ": decoder_header_mutation_rules unset: langgate could rewrite any header"}
	}
	var p []string
	if !r.GetDisallowAll().GetValue() || !r.GetDisallowIsError().GetValue() {
		p = append(p, at+": decoder_header_mutation_rules needs disallow_all and disallow_is_error")
	}
	re, err := regexp.Compile("^(?:" + r.GetAllowExpression().GetRegex() + ")$")
	if err != nil || r.GetAllowExpression() == nil {
		return append(p, fmt.Sprintf("%s: allow_expression: %v", at, err))
	}
	for _, h := range append(slices.Clone(langgateHeaders), stripHeaders...) {
		if !re.MatchString(h) {
			p = append(p, fmt.Sprintf("%s: allow_expression refuses langgate's own %s", at, h))
		}
	}
	for _, h := range []string{"authorization", "host", "cookie", "x-envoy-original-path", "x-forwarded-for", "x-langgate", "x-langgatex-user"} {
		if re.MatchString(h) {
			p = append(p, fmt.Sprintf("%s: allow_expression lets langgate mutate %s", at, h))
		}
	}
	return p
}

// authz is what the ext_authz filter does for one route.
type authz struct {
	public  bool                       // the check is skipped
	context map[string]string          // context_extensions sent to langgate
	body    *extauthzv3.BufferSettings // nil: no body is sent
}

// perRoute unpacks the ext_authz per-route config of a route or virtual host.
func perRoute(cfg map[string]*anypb.Any) (*extauthzv3.ExtAuthzPerRoute, error) {
	a := cfg[extAuthzName]
	if a == nil {
		return nil, nil
	}
	pr := &extauthzv3.ExtAuthzPerRoute{}
	if err := a.UnmarshalTo(pr); err != nil {
		return nil, err
	}
	return pr, nil
}

// resolve computes the ext_authz behaviour of a route the way Envoy does:
// `disabled` and the body settings come from the most specific per-route
// config, context extensions are merged with the more specific winning.
func resolve(ea *extauthzv3.ExtAuthz, vh *routev3.VirtualHost, r *routev3.Route) (authz, error) {
	var levels []*extauthzv3.ExtAuthzPerRoute
	for _, cfg := range []map[string]*anypb.Any{vh.GetTypedPerFilterConfig(), r.GetTypedPerFilterConfig()} {
		pr, err := perRoute(cfg)
		if err != nil {
			return authz{}, err
		}
		if pr != nil {
			levels = append(levels, pr)
		}
	}
	a := authz{context: map[string]string{}, body: ea.GetWithRequestBody()}
	if len(levels) == 0 {
		return a, nil
	}
	for _, pr := range levels {
		maps.Copy(a.context, pr.GetCheckSettings().GetContextExtensions())
	}
	most := levels[len(levels)-1]
	a.public = most.GetDisabled()
	cs := most.GetCheckSettings()
	switch {
	case cs.GetDisableRequestBodyBuffering():
		a.body = nil
	case cs.GetWithRequestBody() != nil:
		a.body = cs.GetWithRequestBody()
	}
	return a, nil
}

// routeProblems checks that every route is either explicitly public (and
// strips langgate's headers) or checked with a policy, that a catch-all
// route makes unknown paths protected, and that every cluster exists.
func routeProblems(s site, clusters map[string]*clusterv3.Cluster) []string {
	var p []string
	add := func(format string, args ...any) { p = append(p, s.name+": "+fmt.Sprintf(format, args...)) }
	for _, h := range stripHeaders {
		if !slices.Contains(s.hcm.GetRouteConfig().GetRequestHeadersToRemove(), h) {
			add("route_config does not remove client-sent %s", h)
		}
	}
	if len(s.hcm.GetRouteConfig().GetVirtualHosts()) == 0 {
		add("route_config has no virtual host: nothing would be checked")
	}
	for _, vh := range s.hcm.GetRouteConfig().GetVirtualHosts() {
		routes := vh.GetRoutes()
		if len(routes) == 0 {
			add("virtual host %s has no routes", vh.GetName())
			continue
		}
		last := routes[len(routes)-1].GetMatch()
		if last.GetPrefix() != "/" || len(last.GetHeaders()) > 0 {
			add("virtual host %s: the last route must be the catch-all prefix /", vh.GetName())
		}
		for i, r := range routes {
			at := fmt.Sprintf("virtual host %s route %d", vh.GetName(), i)
			if c := r.GetRoute().GetCluster(); clusters[c] == nil {
				add("%s: cluster %q does not exist", at, c)
			}
			a, err := resolve(s.extAuthz, vh, r)
			if err != nil {
				add("%s: %v", at, err)
				continue
			}
			if a.public {
				if i == len(routes)-1 {
					add("%s: the catch-all route is public", at)
				}
				continue
			}
			if s.extAuthz.GetGrpcService() != nil && a.context["policy"] == "" {
				add("%s: no context extension `policy`", at)
			}
			if a.body != nil {
				p = append(p, bodyProblems(s.name+": "+at+": with_request_body", a.body, smallBodyBytes)...)
				if i == len(routes)-1 {
					// Envoy buffers before anything is authenticated, and
					// answers 413 for a body over the limit: only the routes
					// whose rules read a body (langgate validate) may.
					add("%s: the catch-all route buffers request bodies (set disable_request_body_buffering on the virtual host)", at)
				}
			}
		}
	}
	return p
}

// TestConfigsParseStrictly proves each shipped file is a valid Bootstrap.
func TestConfigsParseStrictly(t *testing.T) {
	for _, f := range configFiles(t) {
		t.Run(f, func(t *testing.T) {
			bs := loadBootstrap(t, f)
			if len(bs.GetStaticResources().GetListeners()) == 0 {
				t.Fatal("no listeners")
			}
		})
	}
}

// TestConfigsAreSecure runs every security check on each shipped file.
func TestConfigsAreSecure(t *testing.T) {
	for _, f := range configFiles(t) {
		t.Run(f, func(t *testing.T) {
			for _, problem := range securityProblems(loadBootstrap(t, f)) {
				t.Error(problem)
			}
		})
	}
}

// TestMTLSSendsPeerCertificate pins that the mTLS variant requires client
// certificates and forwards them; securityProblems ties the two together.
func TestMTLSSendsPeerCertificate(t *testing.T) {
	ss, err := sites(loadBootstrap(t, "front-proxy-mtls.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		if !s.tls.GetRequireClientCertificate().GetValue() || !s.extAuthz.GetIncludePeerCertificate() {
			t.Errorf("%s: require_client_certificate=%v include_peer_certificate=%v, want both", s.name,
				s.tls.GetRequireClientCertificate().GetValue(), s.extAuthz.GetIncludePeerCertificate())
		}
	}
}

// TestChecksCatchMistakes mutates a shipped file the way a careless edit
// would and expects the parser or securityProblems to object: the checks
// above can fail.
func TestChecksCatchMistakes(t *testing.T) {
	orig, err := os.ReadFile("front-proxy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	catchAll := "              - match: { prefix: / }\n                route: { cluster: langgraph, timeout: 0s }\n"
	cases := []struct {
		name, old, new, want string
	}{
		{"unknown field", "failure_mode_allow: false", "failure_mode_allowed: false", "unknown field"},
		{"unknown typed config", "ext_authz.v3.ExtAuthz\n", "ext_authz.v3.ExtAuthzz\n", "ExtAuthzz"},
		{"validation rule", "cluster_name: langgate", "cluster_name: \"\"", "ClusterName"},
		{"deprecated field", "connect_timeout: 1s\n", "connect_timeout: 1s\n    http2_protocol_options: {}\n", "http2_protocol_options: deprecated field"},
		{"fail open", "failure_mode_allow: false", "failure_mode_allow: true", "failure_mode_allow"},
		{"v2 transport", "transport_api_version: V3", "transport_api_version: AUTO", "transport_api_version"},
		{"slow timeout", "timeout: 0.05s", "timeout: 0.25s", "timeout"},
		{"partial body", "allow_partial_message: false", "allow_partial_message: true", "allow_partial_message"},
		{"huge body", "max_request_bytes: 65536", "max_request_bytes: 8388608", "max_request_bytes"},
		{"string body", "pack_as_bytes: true", "pack_as_bytes: false", "pack_as_bytes"},
		{"route cache", "clear_route_cache: false", "clear_route_cache: true", "clear_route_cache"},
		{"wide mutations", `regex: "x-langgate-[a-z0-9-]+|x-auth-scheme"`, `regex: "x-.*"`, "lets langgate mutate x-forwarded-for"},
		{"narrow mutations", `regex: "x-langgate-[a-z0-9-]+|x-auth-scheme"`, `regex: "x-langgate-[a-z0-9-]+"`, "refuses langgate's own x-auth-scheme"},
		{"input body over langgate's limit", "max_request_bytes: 1048576", "max_request_bytes: 2097152", "max_request_bytes 2097152 outside"},
		{"no normalization", "normalize_path: true", "normalize_path: false", "normalize_path"},
		{"underscores", "headers_with_underscores_action: REJECT_REQUEST", "headers_with_underscores_action: ALLOW", "underscores"},
		{"no decision id in log", "ext_authz:decision_id)%", "ext_authz:decision)%", "lacks %DYNAMIC_METADATA(envoy.filters.http.ext_authz:decision_id)%"},
		{"no policy", "                    context_extensions:\n                      policy: langgraph\n                    # No body", "                    context_extensions:\n                      tenant: a\n                    # No body", "no context extension `policy`"},
		{"bodies buffered everywhere", "                    disable_request_body_buffering: true\n", "", "the catch-all route buffers request bodies"},
		{"public catch-all", catchAll, catchAll + "                typed_per_filter_config:\n                  envoy.filters.http.ext_authz:\n                    \"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute\n                    disabled: true\n", "catch-all route is public"},
		{"x-auth-scheme forwarded", "request_headers_to_remove: [x-auth-scheme]", "request_headers_to_remove: []", "does not remove client-sent x-auth-scheme"},
		{"header filter keeps x-langgate-*", "key_matcher: { prefix: x-langgate- }", "key_matcher: { exact: x-langgate-user-id }", "does not remove_on_match the prefix x-langgate-"},
		{"header filter keeps x-auth-scheme", "                - remove: x-auth-scheme\n", "", "header_mutation does not remove client-sent x-auth-scheme"},
		{"no header filter", "          - name: envoy.filters.http.header_mutation\n", "          - name: envoy.filters.http.header_mutation\n            disabled: true\n", "header_mutation filter is disabled"},
		{"health on traffic port", "port_value: 9090", "port_value: 9001", "admin port"},
		{"filter after ext_authz", "          - name: envoy.filters.http.router\n", "          - name: envoy.filters.http.cors\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n          - name: envoy.filters.http.router\n", "http filters"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(string(orig), c.old) {
				t.Fatalf("front-proxy.yaml no longer contains %q: update this case", c.old)
			}
			mutated := strings.Replace(string(orig), c.old, c.new, 1)
			var got string
			bs, err := parseBootstrap([]byte(mutated))
			if err != nil {
				got = err.Error()
			} else {
				got = strings.Join(securityProblems(bs), "\n")
			}
			if !strings.Contains(got, c.want) {
				t.Errorf("want a complaint containing %q, got:\n%s", c.want, got)
			}
		})
	}
}
