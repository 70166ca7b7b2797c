package config

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Credential types: what a credential location may carry.
const (
	// CredentialAny: an API key when one matches, else a token (the default).
	CredentialAny = "any"
	// CredentialToken: a JWT verified against `oidc`, or an opaque token
	// sent to `introspection`.
	CredentialToken = "token"
	// CredentialAPIKey: an API key from `api_keys`, nothing else.
	CredentialAPIKey = "api_key"
)

// Introspection token selections.
const (
	// IntrospectOpaque sends only tokens that are not JWTs to the endpoint
	// (the default): a JWT from an unknown issuer is refused without any
	// network call.
	IntrospectOpaque = "opaque"
	// IntrospectAll also sends JWTs that no configured issuer verifies.
	IntrospectAll = "all"
)

// Introspection client authentication methods (RFC 7591 names).
const (
	// ClientSecretBasic sends the client id and secret in HTTP Basic auth.
	ClientSecretBasic = "client_secret_basic"
	// ClientSecretPost sends them as form parameters.
	ClientSecretPost = "client_secret_post"
)

// CredentialSource is one place a request may carry its credential. Exactly
// one of Header, Cookie and Query is set.
type CredentialSource struct {
	Pos Pos `yaml:"-"`

	// Header is a request header name (matched lower-case).
	Header string `yaml:"header"`
	// Scheme, with Header, is the auth scheme that must prefix the value
	// ("Bearer"), compared case-insensitively; empty takes the whole value.
	Scheme string `yaml:"scheme"`
	// Cookie is a cookie name.
	Cookie string `yaml:"cookie"`
	// Query is a query parameter name; it requires InsecureAllowQuery.
	Query string `yaml:"query"`
	// InsecureAllowQuery acknowledges that a credential in the URL ends up
	// in access logs, browser history and Referer headers.
	InsecureAllowQuery bool `yaml:"insecure_allow_query"`
	// Type is what the location carries: any (default), token or api_key.
	Type string `yaml:"type"`
}

// Describe names the location for messages: "authorization header",
// "session cookie", "access_token query parameter".
func (c CredentialSource) Describe() string {
	switch {
	case c.Cookie != "":
		return c.Cookie + " cookie"
	case c.Query != "":
		return c.Query + " query parameter"
	default:
		return c.Header + " header"
	}
}

// APIKeys says where the API key list is read from: a file (re-read while
// running, for a mounted Kubernetes Secret) and/or an environment variable
// (read when the configuration loads).
type APIKeys struct {
	Pos Pos `yaml:"-"`

	// File is a YAML or JSON list of keys (see docs/policy.md).
	File string `yaml:"file"`
	// Env names an environment variable holding the same format.
	Env string `yaml:"env"`
	// ReloadInterval is how often File is checked for changes.
	ReloadInterval *Duration `yaml:"reload_interval"`
}

// Introspection is an OAuth 2.0 token introspection endpoint (RFC 7662)
// for opaque tokens.
type Introspection struct {
	Pos Pos `yaml:"-"`

	// URL is the introspection endpoint.
	URL string `yaml:"url"`
	// ClientID and ClientSecret authenticate langgate to the endpoint.
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// AuthMethod is client_secret_basic (default) or client_secret_post.
	AuthMethod string `yaml:"auth_method"`
	// Issuer, when set, must equal the response's `iss`.
	Issuer string `yaml:"issuer"`
	// Audiences, when set, must include one of the response's `aud`.
	Audiences []string `yaml:"audiences"`
	// RequiredClaims must be present in the response.
	RequiredClaims []string `yaml:"required_claims"`
	// Tokens selects what is introspected: opaque (default) or all.
	Tokens string `yaml:"tokens"`
	// CacheTTL bounds how long an active token is trusted without asking
	// again (never past its exp); 0 disables caching.
	CacheTTL *Duration `yaml:"cache_ttl"`
	// NegativeCacheTTL is how long an inactive token is refused without
	// asking again; 0 disables it.
	NegativeCacheTTL *Duration `yaml:"negative_cache_ttl"`
	// Timeout bounds one introspection request.
	Timeout *Duration `yaml:"timeout"`
	// User, when set, replaces the section's user mapping for introspected
	// tokens.
	User *UserMapping `yaml:"user"`
}

// TokenCache bounds the verified-token cache of an authentication section.
type TokenCache struct {
	Pos Pos `yaml:"-"`

	// MaxEntries bounds the number of cached users.
	MaxEntries int `yaml:"max_entries"`
	// MaxBytes bounds their approximate memory.
	MaxBytes *ByteSize `yaml:"max_bytes"`
}

// ByteSize is a size in bytes, written as an integer or with a binary unit
// suffix ("16KiB", "64MiB", "1GiB").
type ByteSize struct {
	Bytes int64
	Pos   Pos
}

// UnmarshalYAML parses an integer or a number with a KiB/MiB/GiB suffix.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return posErrorf(n, "expected a size such as 16384 or 16KiB, got %s", kindName(n))
	}
	v, ok := parseByteSize(n.Value)
	if !ok {
		return posErrorf(n, "invalid size %q (use bytes, or a KiB, MiB or GiB suffix: 16KiB)", n.Value)
	}
	b.Bytes, b.Pos = v, Pos{Line: n.Line, Column: n.Column}
	return nil
}

func parseByteSize(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 || v > (1<<40)/mult {
		return 0, false
	}
	return v * mult, true
}
