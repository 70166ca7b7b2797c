package config

import (
	"strings"
	"testing"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

const good = `authenticate:
  oidc:
    - issuer: ${ISS}
      audiences: ["${AUD:-langgraph}"]
      leeway: 10s
  user:
    identity: claims.sub
authorize:
  handlers:
    - on: "*"
      filters: {owner: user.identity, tags: {$contains: "'x'"}}
      metadata: {owner: user.identity}
    - on: store
      allow: value.namespace[0] == user.identity
      message: Not authorized
`

func TestParseGood(t *testing.T) {
	f, err := Parse("p.yaml", []byte(good), env(map[string]string{"ISS": "https://idp.example.com"}))
	if err != nil {
		t.Fatal(err)
	}
	iss := f.Authenticate.OIDC[0]
	if iss.Issuer != "https://idp.example.com" || iss.Audiences[0] != "langgraph" {
		t.Errorf("env expansion: issuer %q audiences %v", iss.Issuer, iss.Audiences)
	}
	if iss.Leeway.String() != "10s" || iss.RefreshInterval.Duration != DefaultRefreshInterval {
		t.Errorf("durations: leeway %v refresh %v", iss.Leeway, iss.RefreshInterval)
	}
	if len(iss.Algorithms) != len(AsymmetricAlgorithms) {
		t.Errorf("default algorithms %v", iss.Algorithms)
	}
	if iss.Pos.Line != 3 {
		t.Errorf("issuer position %+v, want line 3", iss.Pos)
	}
	if f.Authorize.Routes.Table != RoutesLangGraph || f.Authorize.Unmatched != UnmatchedAllow {
		t.Errorf("defaults: routes %q unmatched %q", f.Authorize.Routes.Table, f.Authorize.Unmatched)
	}
	h := f.Authorize.Handlers[0]
	if h.Pos.Line != 10 || len(h.Filters.Entries) != 2 || h.Filters.Entries[1].Op != "$contains" {
		t.Errorf("handler: %+v", h)
	}
	store := f.Authorize.Handlers[1]
	if store.Allow.Pos != (Pos{Line: 14, Column: 14}) {
		t.Errorf("allow position %+v", store.Allow.Pos)
	}
	// CEL reports 1-based lines and 0-based columns within the expression.
	if got := store.Allow.At(1, 6); got != (Pos{Line: 14, Column: 20}) {
		t.Errorf("At(1,6) = %+v", got)
	}
}

func TestParseErrors(t *testing.T) {
	vars := env(map[string]string{"ISS": "https://idp.example.com", "EMPTY": ""})
	base := func(s string) string { return strings.Replace(good, "    - on: store\n", s+"    - on: store\n", 1) }
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown top-level field", good + "authorise: {}\n", []string{`p.yaml:16:1: unknown field "authorise" (known fields: authenticate, authorize, context, cors, default_policy, explain, name, policies)`}},
		{"unknown nested field", strings.Replace(good, "leeway: 10s", "leway: 10s", 1),
			[]string{`p.yaml:5:7: unknown field "leway" (known fields: algorithms, audiences, azp, issuer, jwks_url, leeway, max_refresh_interval, max_token_bytes, min_refresh_interval, refresh_interval, required_claims, typ, unknown_kid_refetch_interval, user)`}},
		{"unset variable", strings.Replace(good, "${ISS}", "${NOPE}", 1),
			[]string{"p.yaml:3:15: environment variable NOPE is not set (use ${NOPE:-default} for a default)"}},
		{"empty variable", strings.Replace(good, "${ISS}", "${EMPTY}", 1), []string{"p.yaml:3:15: environment variable EMPTY is empty"}},
		{"unterminated reference", strings.Replace(good, "${ISS}", "${ISS", 1), []string{"p.yaml:3:15: unterminated ${ in value"}},
		{"plain http issuer", strings.Replace(good, "${ISS}", "http://idp.example.com", 1),
			[]string{`p.yaml:3:7: oidc: issuer must use https (plain http is accepted only on a loopback host), got "http://idp.example.com"`}},
		{"no audiences", strings.Replace(good, `      audiences: ["${AUD:-langgraph}"]`+"\n", "", 1),
			[]string{`p.yaml:3:7: oidc "https://idp.example.com": audiences is required (the token's aud must name this API)`}},
		{"symmetric algorithm", strings.Replace(good, "leeway: 10s", "algorithms: [RS256, HS256]", 1),
			[]string{`p.yaml:3:7: oidc "https://idp.example.com": algorithm "HS256" is not allowed (allowed: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)`}},
		{"bad duration", strings.Replace(good, "leeway: 10s", "leeway: soon", 1),
			[]string{`p.yaml:5:15: invalid duration "soon" (use Go syntax such as 30s or 5m)`}},
		{"leeway too large", strings.Replace(good, "leeway: 10s", "leeway: 1h", 1),
			[]string{`p.yaml:5:15: oidc "https://idp.example.com": leeway 1h0m0s is larger than the maximum 5m0s`}},
		{"no identity", strings.Replace(good, "    identity: claims.sub\n", "    display_name: claims.name\n", 1),
			[]string{"p.yaml:2:3: authenticate.user.identity: a CEL expression is required (e.g. claims.sub)"}},
		{"expression is a list", strings.Replace(good, "identity: claims.sub", "identity: [a]", 1),
			[]string{"p.yaml:7:15: expected a CEL expression (a string), got a list"}},
		{"filters not a mapping", base("    - on: threads\n      filters: [owner]\n"),
			[]string{"p.yaml:14:16: expected a mapping of key to CEL expression (or one CEL expression producing a map), got a list"}},
		{"two operators", base("    - on: threads\n      filters: {a: {$eq: x, $contains: y}}\n"),
			[]string{`p.yaml:14:20: key "a": an operator mapping has exactly one operator, e.g. {$contains: expr}`}},
		{"bad status", base("    - on: threads\n      allow: 'false'\n      status: 200\n"),
			[]string{`p.yaml:13:7: handler "threads": status must be an HTTP error status (400-599), got 200`}},
		{"message without allow", base("    - on: threads\n      message: nope\n"),
			[]string{`p.yaml:13:7: handler "threads": message and status apply only with allow`}},
		{"missing on", base("    - allow: 'true'\n"), []string{"p.yaml:13:7: handler: `on` is required (\"*\", \"threads\", \"threads.create\", \"*.create\", ...)"}},
		{"unknown routes", strings.Replace(good, "authorize:\n", "authorize:\n  routes: openapi\n", 1),
			[]string{`p.yaml:9:11: authorize.routes: unknown route table "openapi" (want "langgraph", "none" or a list of routes)`}},
		{"bad YAML", "authenticate: [\n", []string{"p.yaml:1: did not find expected node content"}},
		{"duplicate key", good + "authorize: {}\n", []string{`p.yaml:16: mapping key "authorize" already defined at line 8`}},
		{"empty", "", []string{"p.yaml:1: configuration is empty"}},
		{"several errors at once", strings.Replace(strings.Replace(good, "leeway: 10s", "leway: 10s", 1), "${ISS}", "${NOPE}", 1),
			[]string{"p.yaml:3:15: environment variable NOPE is not set (use ${NOPE:-default} for a default)", `p.yaml:5:7: unknown field "leway"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(tc.yaml), vars)
			if err == nil {
				t.Fatal("want an error")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%s", len(lines), len(tc.want), err)
			}
			for i, want := range tc.want {
				if !strings.HasPrefix(lines[i], want) {
					t.Errorf("error %d:\n got %s\nwant %s", i, lines[i], want)
				}
			}
		})
	}
}

const multi = `authenticate:
  oidc: [{issuer: "https://idp.example.com", audiences: [api]}]
  user: {identity: claims.sub}
default_policy: lg
explain: {reason_header: true}
policies:
  lg:
    hosts: [lg.example.com]
    authorize:
      routes: langgraph
  billing:
    hosts: ["*.billing.example.com"]
    authenticate:
      oidc: [{issuer: "https://other.example.com", audiences: [billing]}]
      user: {identity: claims.email}
    authorize:
      unmatched: deny
      routes:
        - {method: GET, path: "/invoices/{invoice_id}", resource: invoices, action: read}
        - methods: [PUT, PATCH]
          path: "/invoices/{invoice_id}"
          resource: invoices
          action: update
          value: {invoice_id: path.invoice_id, amount: body.amount, tags: query.tags.dotted}
        - {method: GET, path: /health, public: true}
        - {include: langgraph}
`

func TestParseMultiPolicy(t *testing.T) {
	f, err := Parse("m.yaml", []byte(multi), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	ps := f.PolicyList()
	if len(ps) != 2 || ps[0].Name != "billing" || ps[1].Name != "lg" {
		t.Fatalf("policies %+v", ps)
	}
	if ps[1].Authenticate != f.Authenticate || ps[0].Authenticate.User.Identity.Source != "claims.email" {
		t.Error("authenticate not inherited / overridden")
	}
	rl := ps[0].Authorize.Routes.List
	if len(rl) != 4 || rl[0].Pos.Line != 19 || rl[1].Methods[1] != "PATCH" || rl[1].Value["tags"] != "query.tags.dotted" || rl[3].Include != "langgraph" {
		t.Errorf("routes %+v", rl)
	}
	if ps[0].Pos.Line != 12 || !f.Explain.ReasonHeader {
		t.Errorf("policy pos %+v, explain %+v", ps[0].Pos, f.Explain)
	}
	if ps[0].Authorize.Unmatched != UnmatchedDeny || ps[1].Authorize.Routes.Table != RoutesLangGraph {
		t.Error("authorize fields")
	}
}

func TestParseMultiPolicyErrors(t *testing.T) {
	tests := []struct{ edit, want string }{
		{strings.Replace(multi, "default_policy: lg", "default_policy: nope", 1), `m.yaml:1: default_policy: no policy named "nope"`},
		{strings.Replace(multi, "hosts: [lg.example.com]", "hosts: [\"*.billing.example.com\"]", 1), `m.yaml:8:5: policy "lg": host "*.billing.example.com" is already claimed by policy "billing"`},
		{strings.Replace(multi, "hosts: [lg.example.com]", "hosts: [\"lg.example.com:443\"]", 1), `m.yaml:8:5: policy "lg": host "lg.example.com:443" must be a host name or *.suffix`},
		{strings.Replace(multi, "resource: invoices, action: read}", "resource: invoices}", 1), `m.yaml:19:11: route /invoices/{invoice_id}: resource and action are required`},
		{strings.Replace(multi, "{method: GET, path: \"/invoices", "{method: FETCH, path: \"/invoices", 1), `m.yaml:19:11: route /invoices/{invoice_id}: method "FETCH" is not one of`},
		{strings.Replace(multi, "amount: body.amount", "amount: header.amount", 1), `m.yaml:20:11: route /invoices/{invoice_id}: value.amount: unknown source "header"`},
		{strings.Replace(multi, "{include: langgraph}", "{include: openapi}", 1), `m.yaml:26:11: routes: unknown table "openapi" to include`},
		{strings.Replace(multi, "{method: GET, path: /health, public: true}", "{method: GET, path: /health, public: true, resource: x}", 1), `m.yaml:25:11: route /health: a public route fires no event`},
		{strings.Replace(multi, "      unmatched: deny\n", "      unmatched: deny\n      routez: []\n", 1), `m.yaml:18:7: unknown field "routez"`},
		{strings.Replace(multi, "action: update\n", "action: update\n          verb: x\n", 1), `m.yaml:24:11: unknown field "verb"`},
		{multi + "authorize: {}\n", "m.yaml:27:12: authorize: not allowed beside policies"},
		{multi + "  next:\n    shadow_of: next\n", `m.yaml:28:5: policy "next": shadow_of names itself`},
		{multi + "  next:\n    shadow_of: nope\n", `m.yaml:28:5: policy "next": shadow_of: no policy named "nope"`},
		{multi + "  next:\n    shadow_of: lg\n  after:\n    shadow_of: next\n", `m.yaml:30:5: policy "after": shadow_of: "next" is itself a shadow (of "lg")`},
		{multi + "  a2:\n    shadow_of: lg\n  a1:\n    shadow_of: lg\n", `m.yaml:28:5: policy "a2": policy "lg" already has a shadow ("a1")`},
		{multi + "  next:\n    shadow_of: lg\n    hosts: [x.example.com]\n", `m.yaml:28:5: policy "next": a shadow policy has no hosts`},
		{strings.Replace(multi, "default_policy: lg", "default_policy: next", 1) + "  next:\n    shadow_of: lg\n", `m.yaml:1: default_policy: "next" is a shadow policy`},
	}
	for _, tc := range tests {
		_, err := Parse("m.yaml", []byte(tc.edit), env(nil))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("error:\n got %v\nwant %s", err, tc.want)
		}
	}
}

func TestExpandString(t *testing.T) {
	vars := env(map[string]string{"A": "1", "B": "two"})
	for in, want := range map[string]string{
		"${A}":          "1",
		"x${A}y${B}z":   "x1ytwoz",
		"${C:-dflt}":    "dflt",
		"$${A}":         "${A}",
		"$A":            "$A",
		"${C:-}":        "",
		"cost: $5 ${B}": "cost: $5 two",
	} {
		got, msg := expandString(in, vars)
		if msg != "" || got != want {
			t.Errorf("expandString(%q) = %q, %q; want %q", in, got, msg, want)
		}
	}
	for _, bad := range []string{"${1A}", "${}", "${A-B}", "${A"} {
		if _, msg := expandString(bad, vars); msg == "" {
			t.Errorf("expandString(%q) accepted", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("authenticate: {oidc: [{issuer: x}]}"))
	f.Add([]byte("a: &x [*x]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fl, err := Parse("fuzz.yaml", data, env(map[string]string{"ISS": "https://i.example"}))
		if err != nil {
			return
		}
		for _, p := range fl.PolicyList() {
			a := p.Authenticate
			if len(a.OIDC) == 0 && a.Introspection == nil && a.APIKeys == nil {
				t.Fatalf("accepted a configuration with nothing to authenticate with")
			}
			for _, iss := range a.OIDC {
				if a.User.Identity.Source == "" && (iss.User == nil || iss.User.Identity.Source == "") {
					t.Fatalf("accepted an issuer without an identity mapping")
				}
			}
			if len(a.Credentials) == 0 {
				t.Fatalf("accepted a configuration with no credential location")
			}
		}
	})
}
