package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Authentication defaults and bounds.
const (
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway bounds the configurable leeway: more would make expiry meaningless.
	MaxLeeway = 5 * time.Minute
	// DefaultRefreshInterval is how often a key set is refetched in the
	// background when its response sets no Cache-Control max-age.
	DefaultRefreshInterval = 15 * time.Minute
	// DefaultMinRefreshInterval is the least refresh interval a
	// Cache-Control max-age may ask for (or refresh_interval, if shorter).
	DefaultMinRefreshInterval = time.Minute
	// DefaultMaxRefreshInterval is the longest refresh interval a
	// Cache-Control max-age may ask for (or refresh_interval, if longer):
	// it bounds how long a key the provider has withdrawn stays trusted.
	DefaultMaxRefreshInterval = time.Hour
	// DefaultMaxTokenBytes bounds a token unless the issuer says otherwise.
	DefaultMaxTokenBytes = 16 << 10
	// MaxMaxTokenBytes is the largest max_token_bytes: Envoy refuses
	// request headers above 60 KiB by default anyway.
	MaxMaxTokenBytes = 64 << 10
	// MinMaxTokenBytes is the smallest max_token_bytes.
	MinMaxTokenBytes = 256
	// DefaultAPIKeysReloadInterval is how often an API key file is re-read.
	DefaultAPIKeysReloadInterval = 10 * time.Second
	// DefaultIntrospectionCacheTTL bounds how long an active introspected
	// token is trusted without asking again: the longest a revocation at
	// the provider goes unnoticed.
	DefaultIntrospectionCacheTTL = time.Minute
	// DefaultIntrospectionNegativeTTL is how long an inactive token is
	// refused without asking again.
	DefaultIntrospectionNegativeTTL = 10 * time.Second
	// DefaultIntrospectionTimeout bounds one introspection request.
	DefaultIntrospectionTimeout = 2 * time.Second
	// MinCacheBytes is the smallest max_bytes of a token cache.
	MinCacheBytes = 64 << 10
)

// DefaultCredentials is where a credential is looked for when
// `credentials` is not given: the Authorization header, Bearer scheme.
func DefaultCredentials() []CredentialSource {
	return []CredentialSource{{Header: "authorization", Scheme: "Bearer", Type: CredentialAny}}
}

func validateAuthenticate(a *Authenticate, sink *errorSink) {
	if len(a.OIDC) == 0 && a.Introspection == nil && a.APIKeys == nil {
		sink.add(a.Pos, "authenticate.oidc: at least one issuer is required (or introspection, or api_keys)")
	}
	seen := map[string]bool{}
	needUser := false
	for i := range a.OIDC {
		iss := &a.OIDC[i]
		validateIssuer(iss, seen, sink)
		needUser = needUser || iss.User == nil
	}
	if in := a.Introspection; in != nil {
		validateIntrospection(in, sink)
		needUser = needUser || in.User == nil
	}
	if k := a.APIKeys; k != nil {
		validateAPIKeys(k, sink)
	}
	if a.User.Identity.Source == "" && needUser {
		sink.add(a.Pos, "authenticate.user.identity: a CEL expression is required (e.g. claims.sub)")
	}
	validateCredentials(a, sink)
	if m := a.MCP; m != nil {
		validateMCP(a, m, sink)
	}
	if c := a.Cache; c != nil {
		if c.MaxEntries < 0 {
			sink.add(c.Pos, "authenticate.cache.max_entries: must not be negative")
		}
		if c.MaxBytes != nil && c.MaxBytes.Bytes < MinCacheBytes {
			sink.add(c.MaxBytes.Pos, "authenticate.cache.max_bytes: at least %d bytes (64KiB)", MinCacheBytes)
		}
	}
}

func validateCredentials(a *Authenticate, sink *errorSink) {
	if a.Credentials == nil {
		a.Credentials = DefaultCredentials()
		return
	}
	if len(a.Credentials) == 0 {
		sink.add(a.Pos, "authenticate.credentials: empty; leave it out for the Authorization header")
	}
	hasTokens := len(a.OIDC) > 0 || a.Introspection != nil
	seen := map[string]bool{}
	for i := range a.Credentials {
		c := &a.Credentials[i]
		set := 0
		for _, s := range []string{c.Header, c.Cookie, c.Query} {
			if s != "" {
				set++
			}
		}
		if set != 1 {
			sink.add(c.Pos, "credentials: give exactly one of header, cookie and query")
			continue
		}
		c.Header = strings.ToLower(c.Header)
		where := c.Describe()
		switch {
		case c.Header != "" && (!isToken(c.Header) || c.Header == "cookie" || c.Header == "host"):
			sink.add(c.Pos, "credentials: header %q is not a usable header name (use cookie: for cookies)", c.Header)
		case c.Cookie != "" && !isToken(c.Cookie):
			sink.add(c.Pos, "credentials: cookie name %q is not a valid cookie name", c.Cookie)
		case c.Query != "" && strings.ContainsAny(c.Query, "&=#?% "):
			sink.add(c.Pos, "credentials: query parameter name %q is not valid", c.Query)
		}
		if c.Scheme != "" && (c.Header == "" || !isToken(c.Scheme)) {
			sink.add(c.Pos, "credentials: %s: scheme applies only to a header and is one word (Bearer)", where)
		}
		if c.Query != "" && !c.InsecureAllowQuery {
			sink.add(c.Pos, "credentials: %s: a credential in the URL leaks into access logs, browser history and Referer headers; set insecure_allow_query: true to accept it anyway", where)
		}
		if c.InsecureAllowQuery && c.Query == "" {
			sink.add(c.Pos, "credentials: %s: insecure_allow_query applies only to query", where)
		}
		switch c.Type {
		case "":
			c.Type = CredentialAny
		case CredentialAny:
		case CredentialToken:
			if !hasTokens {
				sink.add(c.Pos, "credentials: %s: type token needs oidc or introspection", where)
			}
		case CredentialAPIKey:
			if a.APIKeys == nil {
				sink.add(c.Pos, "credentials: %s: type api_key needs api_keys", where)
			}
		default:
			sink.add(c.Pos, "credentials: %s: type must be %q, %q or %q, got %q", where, CredentialAny, CredentialToken, CredentialAPIKey, c.Type)
		}
		key := where + "\x00" + strings.ToLower(c.Scheme)
		if seen[key] {
			sink.add(c.Pos, "credentials: %s is listed twice", where)
		}
		seen[key] = true
	}
}

func validateIssuer(iss *OIDCIssuer, seen map[string]bool, sink *errorSink) {
	switch {
	case iss.Issuer == "":
		sink.add(iss.Pos, "oidc: issuer is required")
	case seen[iss.Issuer]:
		sink.add(iss.Pos, "oidc: issuer %q is listed twice", iss.Issuer)
	default:
		seen[iss.Issuer] = true
		if msg := CheckURL(iss.Issuer); msg != "" {
			sink.add(iss.Pos, "oidc: issuer %s", msg)
		}
	}
	if iss.JWKSURL != "" {
		if msg := CheckURL(iss.JWKSURL); msg != "" {
			sink.add(iss.Pos, "oidc: jwks_url %s", msg)
		}
	}
	if len(iss.Audiences) == 0 {
		sink.add(iss.Pos, "oidc %q: audiences is required (the token's aud must name this API)", iss.Issuer)
	}
	for _, aud := range iss.Audiences {
		if aud == "" {
			sink.add(iss.Pos, "oidc %q: an audience is empty", iss.Issuer)
		}
	}
	if len(iss.Algorithms) == 0 {
		iss.Algorithms = append([]string(nil), AsymmetricAlgorithms...)
	}
	for _, alg := range iss.Algorithms {
		if !slices.Contains(AsymmetricAlgorithms, alg) {
			sink.add(iss.Pos, "oidc %q: algorithm %q is not allowed (allowed: %s)", iss.Issuer, alg, strings.Join(AsymmetricAlgorithms, ", "))
		}
	}
	if iss.Leeway == nil {
		iss.Leeway = &Duration{Duration: DefaultLeeway}
	} else if iss.Leeway.Duration > MaxLeeway {
		sink.add(iss.Leeway.Pos, "oidc %q: leeway %s is larger than the maximum %s", iss.Issuer, iss.Leeway.Duration, MaxLeeway)
	}
	validateRefresh(iss, sink)
	if iss.Typ != "" && !isToken(strings.ReplaceAll(iss.Typ, "/", "")) {
		sink.add(iss.Pos, "oidc %q: typ %q is not a media type such as at+jwt", iss.Issuer, iss.Typ)
	}
	checkNames(iss.RequiredClaims, fmt.Sprintf("oidc %q: required_claims", iss.Issuer), iss.Pos, sink)
	for _, p := range iss.AZP {
		if p == "" {
			sink.add(iss.Pos, "oidc %q: an azp is empty", iss.Issuer)
		}
	}
	if m := iss.MaxTokenBytes; m != nil && (m.Bytes < MinMaxTokenBytes || m.Bytes > MaxMaxTokenBytes) {
		sink.add(m.Pos, "oidc %q: max_token_bytes must be between %d and %d", iss.Issuer, MinMaxTokenBytes, MaxMaxTokenBytes)
	}
	if iss.User != nil && iss.User.Identity.Source == "" {
		sink.add(iss.Pos, "oidc %q: user.identity: a CEL expression is required when the issuer has its own user mapping", iss.Issuer)
	}
}

// validateRefresh fills and checks the key refresh schedule: the plain
// interval, the bounds on what Cache-Control may ask for, and the unknown-kid
// refetch interval.
func validateRefresh(iss *OIDCIssuer, sink *errorSink) {
	if iss.RefreshInterval == nil {
		iss.RefreshInterval = &Duration{Duration: DefaultRefreshInterval}
	} else if iss.RefreshInterval.Duration < time.Second {
		sink.add(iss.RefreshInterval.Pos, "oidc %q: refresh_interval must be at least 1s", iss.Issuer)
		return
	}
	every := iss.RefreshInterval.Duration
	if iss.MinRefreshInterval == nil {
		iss.MinRefreshInterval = &Duration{Duration: min(DefaultMinRefreshInterval, every)}
	} else if iss.MinRefreshInterval.Duration < time.Second {
		sink.add(iss.MinRefreshInterval.Pos, "oidc %q: min_refresh_interval must be at least 1s", iss.Issuer)
	}
	if iss.MaxRefreshInterval == nil {
		iss.MaxRefreshInterval = &Duration{Duration: max(DefaultMaxRefreshInterval, every)}
	}
	lo, hi := iss.MinRefreshInterval, iss.MaxRefreshInterval
	switch {
	case lo.Duration > every:
		sink.add(lo.Pos, "oidc %q: min_refresh_interval %s is longer than refresh_interval %s", iss.Issuer, lo.Duration, every)
	case hi.Duration < every:
		sink.add(hi.Pos, "oidc %q: max_refresh_interval %s is shorter than refresh_interval %s", iss.Issuer, hi.Duration, every)
	}
	if r := iss.UnknownKidRefetchInterval; r != nil && r.Duration < time.Second {
		sink.add(r.Pos, "oidc %q: unknown_kid_refetch_interval must be at least 1s", iss.Issuer)
	}
}

func validateIntrospection(in *Introspection, sink *errorSink) {
	if in.URL == "" {
		sink.add(in.Pos, "introspection: url is required")
	} else if msg := CheckURL(in.URL); msg != "" {
		sink.add(in.Pos, "introspection: url %s", msg)
	}
	if in.ClientID == "" || in.ClientSecret == "" {
		sink.add(in.Pos, "introspection: client_id and client_secret are required (RFC 7662 §2.1: the endpoint authenticates its callers); use ${ENV} for the secret")
	}
	choice(sink, in.Pos, "introspection: auth_method", &in.AuthMethod, ClientSecretBasic, ClientSecretPost)
	choice(sink, in.Pos, "introspection: tokens", &in.Tokens, IntrospectOpaque, IntrospectAll)
	for _, aud := range in.Audiences {
		if aud == "" {
			sink.add(in.Pos, "introspection: an audience is empty")
		}
	}
	checkNames(in.RequiredClaims, "introspection: required_claims", in.Pos, sink)
	fill := func(d **Duration, def time.Duration, name string, atLeast time.Duration) {
		if *d == nil {
			*d = &Duration{Duration: def}
		} else if (*d).Duration < atLeast {
			sink.add((*d).Pos, "introspection: %s must be at least %s", name, atLeast)
		}
	}
	fill(&in.CacheTTL, DefaultIntrospectionCacheTTL, "cache_ttl", 0)
	fill(&in.NegativeCacheTTL, DefaultIntrospectionNegativeTTL, "negative_cache_ttl", 0)
	fill(&in.Timeout, DefaultIntrospectionTimeout, "timeout", 10*time.Millisecond)
	if in.Timeout.Duration > 30*time.Second {
		sink.add(in.Timeout.Pos, "introspection: timeout must be at most 30s")
	}
	if in.User != nil && in.User.Identity.Source == "" {
		sink.add(in.Pos, "introspection: user.identity: a CEL expression is required when introspection has its own user mapping")
	}
}

func validateAPIKeys(k *APIKeys, sink *errorSink) {
	if k.File == "" && k.Env == "" {
		sink.add(k.Pos, "api_keys: give file, env or both")
	}
	if k.Env != "" && !validEnvName(k.Env) {
		sink.add(k.Pos, "api_keys: env %q is not an environment variable name", k.Env)
	}
	if k.ReloadInterval == nil {
		k.ReloadInterval = &Duration{Duration: DefaultAPIKeysReloadInterval}
	} else if k.ReloadInterval.Duration < time.Second {
		sink.add(k.ReloadInterval.Pos, "api_keys: reload_interval must be at least 1s")
	}
}

// checkSharedIssuers refuses one issuer listed in several authentication
// sections with different key settings: every policy that trusts an issuer
// shares its one key set and fetcher.
func checkSharedIssuers(policies []*Policy, sink *errorSink) {
	first := map[string]*OIDCIssuer{}
	done := map[*Authenticate]bool{}
	for _, p := range policies {
		if p.Authenticate == nil || done[p.Authenticate] {
			continue
		}
		done[p.Authenticate] = true
		for i := range p.Authenticate.OIDC {
			ic := &p.Authenticate.OIDC[i]
			prev, ok := first[ic.Issuer]
			if !ok {
				first[ic.Issuer] = ic
				continue
			}
			if KeySourceOf(*prev) != KeySourceOf(*ic) {
				sink.add(ic.Pos, "oidc %q: jwks_url, refresh_interval, min_refresh_interval, max_refresh_interval and unknown_kid_refetch_interval must be the same wherever the issuer is listed (see line %d)", ic.Issuer, prev.Pos.Line)
			}
		}
	}
}

// KeySource is what decides where an issuer's keys come from and when they
// are fetched; issuers with equal key sources share one key set.
type KeySource struct {
	Issuer, JWKSURL                 string
	Refresh, MinRefresh, MaxRefresh time.Duration
	// UnknownKidRefetch is zero when the configuration leaves it to the
	// registry's default.
	UnknownKidRefetch time.Duration
}

// KeySourceOf returns an issuer's key source.
func KeySourceOf(c OIDCIssuer) KeySource {
	d := func(d *Duration) time.Duration {
		if d == nil {
			return 0
		}
		return d.Duration
	}
	return KeySource{Issuer: c.Issuer, JWKSURL: c.JWKSURL, Refresh: d(c.RefreshInterval), MinRefresh: d(c.MinRefreshInterval),
		MaxRefresh: d(c.MaxRefreshInterval), UnknownKidRefetch: d(c.UnknownKidRefetchInterval)}
}

// checkNames checks a list of claim names: non-empty, no duplicates.
func checkNames(names []string, what string, pos Pos, sink *errorSink) {
	seen := map[string]bool{}
	for _, n := range names {
		switch {
		case n == "":
			sink.add(pos, "%s: a claim name is empty", what)
		case seen[n]:
			sink.add(pos, "%s: %q is listed twice", what, n)
		}
		seen[n] = true
	}
}

// isToken reports whether s is an RFC 9110 token (header names, auth
// schemes, cookie names).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// validateMCP checks an MCP protected resource: a canonical URL that
// tokens can be issued for (an OIDC issuer lists it as an audience, or
// introspection decides), and metadata URLs that are URLs.
func validateMCP(a *Authenticate, m *MCPResource, sink *errorSink) {
	if err := checkResourceURL(m.Resource); err != nil {
		sink.add(m.Pos, "authenticate.mcp.resource: %v", err)
		return
	}
	listed := a.Introspection != nil
	for _, iss := range a.OIDC {
		listed = listed || slices.Contains(iss.Audiences, m.Resource)
	}
	if !listed {
		sink.add(m.Pos, "authenticate.mcp.resource: no authenticate.oidc issuer lists %q in its audiences, so every token issued for it would be refused (add it to the issuer's audiences)", m.Resource)
	}
	if m.AuthorizationServers != nil && len(m.AuthorizationServers) == 0 {
		sink.add(m.Pos, "authenticate.mcp.authorization_servers: empty; leave it out for the OIDC issuers that list the resource")
	}
	for _, as := range m.AuthorizationServers {
		if u, err := url.Parse(as); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			sink.add(m.Pos, "authenticate.mcp.authorization_servers: %q is not an http(s) URL", as)
		}
	}
	if d := m.ResourceDocumentation; d != "" {
		if u, err := url.Parse(d); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			sink.add(m.Pos, "authenticate.mcp.resource_documentation: %q is not an http(s) URL", d)
		}
	}
	for _, sc := range m.ScopesSupported {
		if sc == "" || strings.ContainsAny(sc, " \t\"") {
			sink.add(m.Pos, "authenticate.mcp.scopes_supported: %q is not a scope token", sc)
		}
	}
}

// checkResourceURL checks an MCP resource's canonical URL (RFC 8707
// section 2, the MCP specification's canonical server URI): an absolute
// https URL (http on a loopback host), lower-case scheme and host, a
// path, no query or fragment, no trailing slash.
func checkResourceURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.Opaque != "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	loopback := host == "localhost" || ip != nil && ip.IsLoopback()
	switch {
	case u.Scheme != "https" && !(u.Scheme == "http" && loopback):
		return fmt.Errorf("%q: an MCP resource is served over https (http only on a loopback host)", raw)
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("%q: a resource has no query or fragment", raw)
	case u.User != nil:
		return fmt.Errorf("%q: a resource has no user information", raw)
	case raw != strings.ToLower(u.Scheme)+"://"+strings.ToLower(u.Host)+u.EscapedPath():
		return fmt.Errorf("%q is not canonical: write it as %q", raw, strings.ToLower(u.Scheme)+"://"+strings.ToLower(u.Host)+u.EscapedPath())
	case u.Path == "" || u.Path == "/" || strings.HasSuffix(u.Path, "/"):
		return fmt.Errorf("%q: name the endpoint's path (e.g. /mcp), without a trailing slash", raw)
	}
	return nil
}
