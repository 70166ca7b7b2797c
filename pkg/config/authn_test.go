package config

import (
	"strings"
	"testing"
	"time"
)

const fullAuthn = `authenticate:
  credentials:
    - {header: Authorization, scheme: Bearer}
    - {header: x-api-key, type: api_key}
    - {cookie: session, type: token}
    - {query: access_token, insecure_allow_query: true}
  oidc:
    - issuer: https://idp.example.com
      audiences: [api]
      typ: at+jwt
      required_claims: [sub, scope]
      azp: [web]
      max_token_bytes: 8KiB
      refresh_interval: 10m
      unknown_kid_refetch_interval: 30s
      user:
        identity: claims.client_id
    - issuer: https://other.example.com
      audiences: [api]
      refresh_interval: 2h
  introspection:
    url: https://idp.example.com/introspect
    client_id: langgate
    client_secret: ${SECRET}
    audiences: [api]
  api_keys:
    file: /etc/langgate/api-keys.yaml
    env: LANGGATE_API_KEYS
  cache: {max_entries: 1000, max_bytes: 16MiB}
  user:
    identity: claims.sub
`

func TestParseAuthn(t *testing.T) {
	f, err := Parse("a.yaml", []byte(fullAuthn), env(map[string]string{"SECRET": "s3cret"}))
	if err != nil {
		t.Fatal(err)
	}
	a := f.Authenticate
	if len(a.Credentials) != 4 || a.Credentials[0].Header != "authorization" || a.Credentials[0].Type != CredentialAny ||
		a.Credentials[1].Type != CredentialAPIKey || a.Credentials[3].Describe() != "access_token query parameter" || a.Credentials[2].Pos.Line != 5 {
		t.Errorf("credentials %+v", a.Credentials)
	}
	first, second := a.OIDC[0], a.OIDC[1]
	if first.MaxTokenBytes.Bytes != 8192 || first.Typ != "at+jwt" || first.User.Identity.Source != "claims.client_id" || len(first.RequiredClaims) != 2 || first.AZP[0] != "web" {
		t.Errorf("issuer fields %+v", first)
	}
	// Refresh bounds default around refresh_interval.
	if first.MinRefreshInterval.Duration != time.Minute || first.MaxRefreshInterval.Duration != time.Hour || first.UnknownKidRefetchInterval.Duration != 30*time.Second {
		t.Errorf("first refresh bounds %v %v", first.MinRefreshInterval, first.MaxRefreshInterval)
	}
	if second.MinRefreshInterval.Duration != time.Minute || second.MaxRefreshInterval.Duration != 2*time.Hour || second.UnknownKidRefetchInterval != nil {
		t.Errorf("second refresh bounds %v %v", second.MinRefreshInterval, second.MaxRefreshInterval)
	}
	in := a.Introspection
	if in.ClientSecret != "s3cret" || in.AuthMethod != ClientSecretBasic || in.Tokens != IntrospectOpaque ||
		in.CacheTTL.Duration != DefaultIntrospectionCacheTTL || in.NegativeCacheTTL.Duration != DefaultIntrospectionNegativeTTL || in.Timeout.Duration != DefaultIntrospectionTimeout {
		t.Errorf("introspection %+v", in)
	}
	if a.APIKeys.ReloadInterval.Duration != DefaultAPIKeysReloadInterval || a.APIKeys.Env != "LANGGATE_API_KEYS" {
		t.Errorf("api keys %+v", a.APIKeys)
	}
	if a.Cache.MaxEntries != 1000 || a.Cache.MaxBytes.Bytes != 16<<20 {
		t.Errorf("cache %+v", a.Cache)
	}
}

func TestParseAuthnDefaults(t *testing.T) {
	f, err := Parse("d.yaml", []byte("authenticate:\n  oidc: [{issuer: https://i.example, audiences: [a], refresh_interval: 1s}]\n  user: {identity: claims.sub}\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	a := f.Authenticate
	if len(a.Credentials) != 1 || a.Credentials[0] != DefaultCredentials()[0] {
		t.Errorf("credentials %+v", a.Credentials)
	}
	iss := a.OIDC[0]
	if iss.MinRefreshInterval.Duration != time.Second || iss.MaxRefreshInterval.Duration != time.Hour {
		t.Errorf("bounds %v %v: min follows a short refresh_interval", iss.MinRefreshInterval, iss.MaxRefreshInterval)
	}
	// API keys alone need no user mapping: each key names its user.
	if _, err := Parse("k.yaml", []byte("authenticate:\n  api_keys: {env: KEYS}\n"), env(nil)); err != nil {
		t.Errorf("api keys only: %v", err)
	}
	// Every issuer with its own mapping: the section needs none.
	if _, err := Parse("o.yaml", []byte("authenticate:\n  oidc: [{issuer: https://i.example, audiences: [a], user: {identity: claims.sub}}]\n"), env(nil)); err != nil {
		t.Errorf("per-issuer user only: %v", err)
	}
}

func TestParseAuthnErrors(t *testing.T) {
	vars := env(map[string]string{"SECRET": "s3cret"})
	edit := func(old, new string) string {
		if !strings.Contains(fullAuthn, old) {
			t.Fatalf("fixture has no %q", old)
		}
		return strings.Replace(fullAuthn, old, new, 1)
	}
	tests := []struct {
		name, yaml, want string
	}{
		{"query without opt-in", edit("{query: access_token, insecure_allow_query: true}", "{query: access_token}"),
			`a.yaml:6:7: credentials: access_token query parameter: a credential in the URL leaks into access logs`},
		{"opt-in without query", edit("{cookie: session, type: token}", "{cookie: session, insecure_allow_query: true}"),
			`a.yaml:5:7: credentials: session cookie: insecure_allow_query applies only to query`},
		{"two locations in one", edit("{cookie: session, type: token}", "{cookie: session, header: x-token}"),
			`a.yaml:5:7: credentials: give exactly one of header, cookie and query`},
		{"scheme on a cookie", edit("{cookie: session, type: token}", "{cookie: session, scheme: Bearer}"),
			`a.yaml:5:7: credentials: session cookie: scheme applies only to a header`},
		{"bad type", edit("{cookie: session, type: token}", "{cookie: session, type: jwt}"),
			`a.yaml:5:7: credentials: session cookie: type must be "any", "token" or "api_key", got "jwt"`},
		{"cookie header", edit("{header: x-api-key, type: api_key}", "{header: Cookie}"),
			`a.yaml:4:7: credentials: header "cookie" is not a usable header name (use cookie: for cookies)`},
		{"listed twice", edit("{header: x-api-key, type: api_key}", "{header: authorization, scheme: bearer}"),
			`a.yaml:4:7: credentials: authorization header is listed twice`},
		{"api_key type without keys", edit("  api_keys:\n    file: /etc/langgate/api-keys.yaml\n    env: LANGGATE_API_KEYS\n", ""),
			`a.yaml:4:7: credentials: x-api-key header: type api_key needs api_keys`},
		{"unknown credential field", edit("{cookie: session, type: token}", "{cookie: session, kind: token}"),
			`a.yaml:5:25: unknown field "kind" (known fields: cookie, header, insecure_allow_query, query, scheme, type)`},
		{"max_token_bytes too large", edit("max_token_bytes: 8KiB", "max_token_bytes: 1MiB"),
			`a.yaml:13:24: oidc "https://idp.example.com": max_token_bytes must be between 256 and 65536`},
		{"bad size", edit("max_token_bytes: 8KiB", "max_token_bytes: 8kb"),
			`a.yaml:13:24: invalid size "8kb" (use bytes, or a KiB, MiB or GiB suffix: 16KiB)`},
		{"min above refresh", edit("refresh_interval: 10m", "refresh_interval: 10m\n      min_refresh_interval: 20m"),
			`a.yaml:15:29: oidc "https://idp.example.com": min_refresh_interval 20m0s is longer than refresh_interval 10m0s`},
		{"max below refresh", edit("refresh_interval: 10m", "refresh_interval: 10m\n      max_refresh_interval: 5m"),
			`a.yaml:15:29: oidc "https://idp.example.com": max_refresh_interval 5m0s is shorter than refresh_interval 10m0s`},
		{"refetch too often", edit("unknown_kid_refetch_interval: 30s", "unknown_kid_refetch_interval: 10ms"),
			`a.yaml:15:37: oidc "https://idp.example.com": unknown_kid_refetch_interval must be at least 1s`},
		{"bad typ", edit("typ: at+jwt", "typ: at jwt"), `a.yaml:8:7: oidc "https://idp.example.com": typ "at jwt" is not a media type`},
		{"duplicate required claim", edit("required_claims: [sub, scope]", "required_claims: [sub, sub]"),
			`a.yaml:8:7: oidc "https://idp.example.com": required_claims: "sub" is listed twice`},
		{"issuer user without identity", edit("identity: claims.client_id", "display_name: claims.client_id"),
			`a.yaml:8:7: oidc "https://idp.example.com": user.identity: a CEL expression is required when the issuer has its own user mapping`},
		{"introspection without secret", edit("    client_secret: ${SECRET}\n", ""),
			`a.yaml:22:5: introspection: client_id and client_secret are required`},
		{"introspection over http", edit("url: https://idp.example.com/introspect", "url: http://idp.example.com/introspect"),
			`a.yaml:22:5: introspection: url must use https`},
		{"introspection auth method", edit("client_id: langgate", "client_id: langgate\n    auth_method: private_key_jwt"),
			`a.yaml:22:5: introspection: auth_method must be "client_secret_basic" or "client_secret_post", got "private_key_jwt"`},
		{"introspection tokens", edit("client_id: langgate", "client_id: langgate\n    tokens: jwt"),
			`a.yaml:22:5: introspection: tokens must be "opaque" or "all", got "jwt"`},
		{"api keys without source", edit("    file: /etc/langgate/api-keys.yaml\n    env: LANGGATE_API_KEYS\n", "    reload_interval: 5s\n"),
			`a.yaml:27:5: api_keys: give file, env or both`},
		{"api keys bad env", edit("env: LANGGATE_API_KEYS", "env: 1KEYS"), `a.yaml:27:5: api_keys: env "1KEYS" is not an environment variable name`},
		{"small cache", edit("max_bytes: 16MiB", "max_bytes: 1KiB"), `a.yaml:29:41: authenticate.cache.max_bytes: at least 65536 bytes`},
		{"nothing to authenticate with", "authenticate:\n  user: {identity: claims.sub}\n",
			`a.yaml:2:3: authenticate.oidc: at least one issuer is required (or introspection, or api_keys)`},
		{"section user needed", strings.Replace(fullAuthn, "  user:\n    identity: claims.sub\n", "", 1),
			`a.yaml:2:3: authenticate.user.identity: a CEL expression is required`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("a.yaml", []byte(tc.yaml), vars)
			if err == nil {
				t.Fatal("want an error")
			}
			if first := strings.Split(err.Error(), "\n")[0]; !strings.HasPrefix(first, tc.want) {
				t.Errorf("error:\n got %s\nwant %s", err, tc.want)
			}
		})
	}
}

// TestSharedIssuerKeySettings: an issuer listed in two sections must fetch
// its keys the same way in both, since they share one key set.
func TestSharedIssuerKeySettings(t *testing.T) {
	cfg := `authenticate:
  oidc: [{issuer: "https://idp.example.com", audiences: [api]}]
  user: {identity: claims.sub}
policies:
  a: {}
  b:
    authenticate:
      oidc: [{issuer: "https://idp.example.com", audiences: [other], unknown_kid_refetch_interval: 1m}]
      user: {identity: claims.sub}
`
	_, err := Parse("s.yaml", []byte(cfg), env(nil))
	want := `s.yaml:8:14: oidc "https://idp.example.com": jwks_url, refresh_interval, min_refresh_interval, max_refresh_interval and unknown_kid_refetch_interval must be the same wherever the issuer is listed (see line 2)`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
	// Audiences, typ and the user mapping are per section.
	ok := strings.Replace(cfg, ", unknown_kid_refetch_interval: 1m", ", typ: at+jwt", 1)
	if _, err := Parse("s.yaml", []byte(ok), env(nil)); err != nil {
		t.Errorf("per-section settings refused: %v", err)
	}
}

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "16384": 16384, "16KiB": 16384, "16 KiB": 16384, "64MiB": 64 << 20, "1GiB": 1 << 30, "512B": 512} {
		if got, ok := parseByteSize(in); !ok || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "-1", "1.5KiB", "16kb", "KiB", "99999999999GiB"} {
		if _, ok := parseByteSize(bad); ok {
			t.Errorf("parseByteSize(%q) accepted", bad)
		}
	}
}
