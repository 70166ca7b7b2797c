package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// Defaults applied when a field is left out.
const (
	// RoutesLangGraph is the built-in LangGraph route table.
	RoutesLangGraph = "langgraph"
	// RoutesNone is an empty route table: every path is unmatched.
	RoutesNone = "none"
	// UnmatchedAllow allows authenticated requests whose path fires no event.
	UnmatchedAllow = "allow"
	// UnmatchedDeny refuses authenticated requests whose path fires no event.
	UnmatchedDeny = "deny"
	// RunAssistantOptional and RunAssistantRequired are the values of
	// authorize.run_assistant.
	RunAssistantOptional = "optional"
	RunAssistantRequired = "required"
	// CORSPreflightAllow passes a CORS preflight without a credential.
	CORSPreflightAllow = "allow"
	// CORSPreflightAuthenticate treats a preflight like any request.
	CORSPreflightAuthenticate = "authenticate"
)

// AsymmetricAlgorithms are the JWS algorithms langgate accepts at all. HMAC
// algorithms and "none" are never accepted: a public verifier key must never
// double as a signing secret.
var AsymmetricAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// validate checks what decoding cannot: required fields, enumerations, URL
// shapes, and it fills defaults and the resolved policy list.
func validate(f *File, sink *errorSink) {
	if c := f.CORS; c != nil {
		validateCORS(c, sink)
	}
	if c := f.Context; c != nil {
		validateContext(c, sink)
	}
	if len(f.Policies) == 0 {
		if f.DefaultPolicy != "" {
			sink.add(Pos{Line: 1}, "default_policy: only meaningful with policies")
		}
		if f.Authenticate == nil {
			sink.add(Pos{Line: 1}, "authenticate: required (the issuers that sign callers' tokens and how the user is built)")
			return
		}
		if f.Authorize == nil {
			f.Authorize = &Authorize{}
		}
		name := f.PolicyName
		if name == "" {
			name = DefaultPolicyName
		} else if !validName(name) {
			sink.add(Pos{Line: 1}, "name %q: letters, digits, '-', '_' and '.'", name)
		}
		f.policies = []*Policy{{Name: name, Authenticate: f.Authenticate, Authorize: f.Authorize}}
	} else {
		if f.Authorize != nil {
			sink.add(f.Authorize.Pos, "authorize: not allowed beside policies; each policy has its own")
		}
		if f.PolicyName != "" {
			sink.add(Pos{Line: 1}, "name: names the single policy; with policies, each is named by its key")
		}
		names := make([]string, 0, len(f.Policies))
		for name := range f.Policies {
			names = append(names, name)
		}
		sort.Strings(names)
		hosts := map[string]string{}
		for _, name := range names {
			p := f.Policies[name]
			if p == nil {
				sink.add(Pos{Line: 1}, "policy %q: empty", name)
				continue
			}
			p.Name = name
			if !validName(name) {
				sink.add(p.Pos, "policy %q: names are letters, digits, '-', '_' and '.'", name)
			}
			if p.Authenticate == nil {
				p.Authenticate = f.Authenticate
			}
			if p.Authenticate == nil {
				sink.add(p.Pos, "policy %q: authenticate is required (in the policy or at the top level)", name)
			}
			if p.Authorize == nil {
				p.Authorize = &Authorize{Pos: p.Pos}
			}
			for _, h := range p.Hosts {
				switch {
				case h == "" || strings.ContainsAny(h, " /:") || strings.Contains(h[min(1, len(h)):], "*") || (strings.HasPrefix(h, "*") && !strings.HasPrefix(h, "*.")):
					sink.add(p.Pos, "policy %q: host %q must be a host name or *.suffix (no port, no path)", name, h)
				case hosts[strings.ToLower(h)] != "":
					sink.add(p.Pos, "policy %q: host %q is already claimed by policy %q", name, h, hosts[strings.ToLower(h)])
				default:
					hosts[strings.ToLower(h)] = name
				}
			}
			f.policies = append(f.policies, p)
		}
		if f.DefaultPolicy != "" && f.Policies[f.DefaultPolicy] == nil {
			sink.add(Pos{Line: 1}, "default_policy: no policy named %q", f.DefaultPolicy)
		}
		validateShadows(f, names, sink)
	}
	done := map[*Authenticate]bool{}
	for _, p := range f.policies {
		if a := p.Authenticate; a != nil && !done[a] {
			done[a] = true
			validateAuthenticate(a, sink)
		}
		validateAuthorize(p.Authorize, sink)
	}
	checkSharedIssuers(f.policies, sink)
}

// validateShadows checks the shadow_of links: each names another policy
// that is not a shadow itself, a policy has at most one shadow, and a
// shadow is never selected (no hosts, not the default policy).
func validateShadows(f *File, names []string, sink *errorSink) {
	shadowed := map[string]string{}
	for _, name := range names {
		p := f.Policies[name]
		if p == nil || p.ShadowOf == "" {
			continue
		}
		target := f.Policies[p.ShadowOf]
		switch {
		case p.ShadowOf == name:
			sink.add(p.Pos, "policy %q: shadow_of names itself", name)
			continue
		case target == nil:
			sink.add(p.Pos, "policy %q: shadow_of: no policy named %q", name, p.ShadowOf)
			continue
		case target.ShadowOf != "":
			sink.add(p.Pos, "policy %q: shadow_of: %q is itself a shadow (of %q); shadow the policy that decides", name, p.ShadowOf, target.ShadowOf)
		case shadowed[p.ShadowOf] != "":
			sink.add(p.Pos, "policy %q: policy %q already has a shadow (%q); one shadow per policy", name, p.ShadowOf, shadowed[p.ShadowOf])
		default:
			shadowed[p.ShadowOf] = name
		}
		if len(p.Hosts) > 0 {
			sink.add(p.Pos, "policy %q: a shadow policy has no hosts: it decides the requests of %q, never its own", name, p.ShadowOf)
		}
		if f.DefaultPolicy == name {
			sink.add(Pos{Line: 1}, "default_policy: %q is a shadow policy, which is never enforced", name)
		}
	}
}

// DefaultContextTTL is a signed context's lifetime unless configured.
const DefaultContextTTL = 60 * time.Second

func validateContext(c *SignedContext, sink *errorSink) {
	if c.Keys == "" {
		sink.add(c.Pos, "context.keys: the JWK set file of signing keys is required")
	}
	if len(c.Audience) == 0 {
		sink.add(c.Pos, "context.audience: at least one audience (the upstreams that verify the context)")
	}
	for _, a := range c.Audience {
		if a == "" {
			sink.add(c.Pos, "context.audience: an empty audience")
		}
	}
	if c.Issuer == "" {
		c.Issuer = "langgate"
	}
	if c.TTL == nil {
		c.TTL = &Duration{Duration: DefaultContextTTL}
	} else if c.TTL.Duration < time.Second || c.TTL.Duration > time.Hour {
		sink.add(c.Pos, "context.ttl: must be between 1s and 1h, got %s", c.TTL.Duration)
	}
}

// choice checks a setting that takes one of two values, def when it is left
// out; what names it in the error ("authorize.unmatched:").
func choice(sink *errorSink, pos Pos, what string, v *string, def, other string) {
	switch *v {
	case "":
		*v = def
	case def, other:
	default:
		sink.add(pos, "%s must be %q or %q, got %q", what, def, other, *v)
	}
}

func validateCORS(c *CORS, sink *errorSink) {
	if len(c.AllowOrigins) == 0 {
		sink.add(c.Pos, "cors.allow_origins: at least one origin (https://app.example.com) or \"*\"")
	}
	for _, o := range c.AllowOrigins {
		if o == "*" {
			if c.AllowCredentials {
				sink.add(c.Pos, "cors: allow_credentials cannot go with the origin \"*\" (browsers refuse it)")
			}
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Path != "" || u.RawQuery != "" || u.User != nil {
			sink.add(c.Pos, "cors.allow_origins: %q is not an origin (scheme://host[:port], nothing after)", o)
		}
	}
}

func validName(s string) bool {
	for _, c := range s {
		if !(c == '-' || c == '_' || c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return s != ""
}

func validateAuthorize(z *Authorize, sink *errorSink) {
	switch {
	case z.Routes.List != nil:
		for i := range z.Routes.List {
			validateRoute(&z.Routes.List[i], sink)
		}
	case z.Routes.Table == "":
		z.Routes.Table = RoutesLangGraph
	case z.Routes.Table == RoutesLangGraph, z.Routes.Table == RoutesNone:
	default:
		sink.add(z.Routes.Pos, "authorize.routes: unknown route table %q (want %q, %q or a list of routes)", z.Routes.Table, RoutesLangGraph, RoutesNone)
	}
	choice(sink, z.Pos, "authorize.unmatched:", &z.Unmatched, UnmatchedAllow, UnmatchedDeny)
	choice(sink, z.Pos, "authorize.run_assistant:", &z.RunAssistant, RunAssistantOptional, RunAssistantRequired)
	choice(sink, z.Pos, "authorize.cors_preflight:", &z.CORSPreflight, CORSPreflightAllow, CORSPreflightAuthenticate)
	for i := range z.Handlers {
		h := &z.Handlers[i]
		if h.On == "" {
			sink.add(h.Pos, "handler: `on` is required (\"*\", \"threads\", \"threads.create\", \"*.create\", ...)")
		}
		if h.Status != 0 && (h.Status < 400 || h.Status > 599) {
			sink.add(h.Pos, "handler %q: status must be an HTTP error status (400-599), got %d", h.On, h.Status)
		}
		if h.Allow.IsZero() && (h.Message != "" || h.Status != 0) {
			sink.add(h.Pos, "handler %q: message and status apply only with allow", h.On)
		}
	}
}

// httpMethods are the methods a route may name.
var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

func validateRoute(r *RouteEntry, sink *errorSink) {
	if r.Include != "" {
		if r.Include != RoutesLangGraph {
			sink.add(r.Pos, "routes: unknown table %q to include (want %q)", r.Include, RoutesLangGraph)
		}
		if r.Method != "" || r.Methods != nil || r.Path != "" || r.Resource != "" || r.Action != "" || r.Public || r.Value != nil || r.RepeatedQuery != "" {
			sink.add(r.Pos, "routes: an include entry has no other fields than mount_prefix")
		}
		if p := r.MountPrefix; p != "" && !validMountPrefix(p) {
			sink.add(r.Pos, "routes: mount_prefix %q must be a path such as /api: a leading /, no trailing /, literal segments only (letters, digits, '-', '_', '.', '~')", p)
		}
		return
	}
	if r.MountPrefix != "" {
		sink.add(r.Pos, "route %s: mount_prefix applies only to an include entry", r.Path)
	}
	if r.Method != "" {
		if r.Methods != nil {
			sink.add(r.Pos, "route %s: give method or methods, not both", r.Path)
		}
		r.Methods = []string{r.Method}
	}
	if len(r.Methods) == 0 {
		sink.add(r.Pos, "route %s: method (or methods) is required", r.Path)
	}
	for _, m := range r.Methods {
		if !slices.Contains(httpMethods, m) {
			sink.add(r.Pos, "route %s: method %q is not one of %s", r.Path, m, strings.Join(httpMethods, ", "))
		}
	}
	if !strings.HasPrefix(r.Path, "/") {
		sink.add(r.Pos, "route: path %q must start with /", r.Path)
	}
	switch {
	case r.Public && (r.Resource != "" || r.Action != "" || r.Value != nil):
		sink.add(r.Pos, "route %s: a public route fires no event (no resource, action or value)", r.Path)
	case !r.Public && (!validName(r.Resource) || !validName(r.Action) || strings.ContainsAny(r.Resource+r.Action, ".*")):
		sink.add(r.Pos, "route %s: resource and action are required (letters, digits, '-', '_'), got %q and %q", r.Path, r.Resource, r.Action)
	}
	switch r.RepeatedQuery {
	case "", RepeatedQueryRefuse, RepeatedQueryFirst, RepeatedQueryLast:
	default:
		sink.add(r.Pos, "route %s: repeated_query %q is not one of refuse, first, last", r.Path, r.RepeatedQuery)
	}
	for field, src := range r.Value {
		if _, err := ParseValueSource(src); err != nil {
			sink.add(r.Pos, "route %s: value.%s: %v", r.Path, field, err)
		}
	}
}

// validMountPrefix accepts "/seg" or "/seg/seg...", each segment literal
// unreserved characters, never "." or "..".
func validMountPrefix(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") {
		return false
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for _, c := range seg {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_.~", c)) {
				return false
			}
		}
	}
	return true
}

// Value source kinds: where a route's value field is read from.
const (
	SourcePath  = "path"
	SourceQuery = "query"
	SourceBody  = "body"
)

// ValueSource is one parsed entry of a route's `value`: path.NAME,
// query.NAME, query.NAME.dotted (the parameter split on ".") or body.NAME.
type ValueSource struct {
	Kind   string // SourcePath, SourceQuery or SourceBody
	Key    string
	Dotted bool
}

// ParseValueSource reads a value source; its error says what is wrong.
func ParseValueSource(src string) (ValueSource, error) {
	kind, key, ok := strings.Cut(src, ".")
	if !ok || key == "" {
		return ValueSource{}, fmt.Errorf("source %s must be path.NAME, query.NAME, query.NAME.dotted or body.NAME", quote(src))
	}
	vs := ValueSource{Kind: kind, Key: key}
	switch kind {
	case SourcePath, SourceBody:
	case SourceQuery:
		if k, dotted := strings.CutSuffix(key, ".dotted"); dotted {
			vs.Key, vs.Dotted = k, true
		}
	default:
		return ValueSource{}, fmt.Errorf("unknown source %s (path, query or body)", quote(kind))
	}
	return vs, nil
}

// CheckURL requires an absolute https URL, or http on a loopback host (local
// development and tests): keys fetched over plain HTTP from the network could
// be swapped by anyone on the path. It returns what is wrong, or "".
func CheckURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "must be an absolute URL, got " + quote(raw)
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return ""
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return ""
		}
		return "must use https (plain http is accepted only on a loopback host), got " + quote(raw)
	default:
		return "must be an https URL, got " + quote(raw)
	}
}

func quote(s string) string { return "\"" + s + "\"" }
