package config

import (
	"net"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Defaults applied when a field is left out.
const (
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway bounds the configurable leeway: more would make expiry meaningless.
	MaxLeeway = 5 * time.Minute
	// DefaultRefreshInterval is how often a key set is refetched in the background.
	DefaultRefreshInterval = 15 * time.Minute
	// RoutesLangGraph is the built-in LangGraph route table.
	RoutesLangGraph = "langgraph"
	// RoutesNone is an empty route table: every path is unmatched.
	RoutesNone = "none"
	// UnmatchedAllow allows authenticated requests whose path fires no event.
	UnmatchedAllow = "allow"
	// UnmatchedDeny refuses authenticated requests whose path fires no event.
	UnmatchedDeny = "deny"
)

// AsymmetricAlgorithms are the JWS algorithms langgate accepts at all. HMAC
// algorithms and "none" are never accepted: a public verifier key must never
// double as a signing secret.
var AsymmetricAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// validate checks what decoding cannot: required fields, enumerations, URL
// shapes, and it fills defaults.
func validate(f *File, sink *errorSink) {
	a := &f.Authenticate
	if len(a.OIDC) == 0 {
		sink.add(Pos{Line: 1}, "authenticate.oidc: at least one issuer is required")
	}
	seen := map[string]bool{}
	for i := range a.OIDC {
		validateIssuer(&a.OIDC[i], seen, sink)
	}
	if a.User.Identity.Source == "" {
		sink.add(Pos{Line: 1}, "authenticate.user.identity: a CEL expression is required (e.g. claims.sub)")
	}

	z := &f.Authorize
	switch z.Routes {
	case "":
		z.Routes = RoutesLangGraph
	case RoutesLangGraph, RoutesNone:
	default:
		sink.add(Pos{Line: 1}, "authorize.routes: unknown route table %q (want %q or %q)", z.Routes, RoutesLangGraph, RoutesNone)
	}
	switch z.Unmatched {
	case "":
		z.Unmatched = UnmatchedAllow
	case UnmatchedAllow, UnmatchedDeny:
	default:
		sink.add(Pos{Line: 1}, "authorize.unmatched: must be %q or %q, got %q", UnmatchedAllow, UnmatchedDeny, z.Unmatched)
	}
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

func validateIssuer(iss *OIDCIssuer, seen map[string]bool, sink *errorSink) {
	switch {
	case iss.Issuer == "":
		sink.add(iss.Pos, "oidc: issuer is required")
	case seen[iss.Issuer]:
		sink.add(iss.Pos, "oidc: issuer %q is listed twice", iss.Issuer)
	default:
		seen[iss.Issuer] = true
		if msg := checkURL(iss.Issuer); msg != "" {
			sink.add(iss.Pos, "oidc: issuer %s", msg)
		}
	}
	if iss.JWKSURL != "" {
		if msg := checkURL(iss.JWKSURL); msg != "" {
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
	if iss.RefreshInterval == nil {
		iss.RefreshInterval = &Duration{Duration: DefaultRefreshInterval}
	} else if iss.RefreshInterval.Duration < time.Second {
		sink.add(iss.RefreshInterval.Pos, "oidc %q: refresh_interval must be at least 1s", iss.Issuer)
	}
}

// checkURL requires an absolute https URL, or http on a loopback host (local
// development and tests): keys fetched over plain HTTP from the network could
// be swapped by anyone on the path.
func checkURL(raw string) string {
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
