package authn_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/devissuer"
	"github.com/langgate/langgate/pkg/devissuer/devissuertest"
)

// TestSeveralIssuers: each issuer has its own audiences, algorithms, token
// rules and (optionally) user mapping; the verifier is chosen by exact `iss`;
// a token from an unknown issuer is refused without contacting anyone.
func TestSeveralIssuers(t *testing.T) {
	corp := startIssuer(t, devissuer.Options{Algorithm: jose.ES256, Audience: "api"})
	partner := startIssuer(t, devissuer.Options{Algorithm: jose.EdDSA, Audience: "partner-api"})
	stranger := startIssuer(t, devissuer.Options{Audience: "api"})
	a, _ := compile(t, `authenticate:
  oidc:
    - issuer: `+corp.URL+`
      audiences: [api]
      algorithms: [ES256]
    - issuer: `+partner.URL+`
      audiences: [partner-api]
      algorithms: [EdDSA]
      required_claims: [email]
      azp: [partner-portal]
      user:
        identity: '"partner:" + claims.email'
        permissions: '["read"]'
  user:
    identity: claims.sub
    permissions: 'claims.scope.split(" ")'
`, authn.Options{})
	waitReady(t, a, 5*time.Second)
	ctx := context.Background()
	mint := func(is *devissuertest.Issuer, extra map[string]any) string {
		tok, err := is.Token("u1", time.Hour, extra)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tests := []struct {
		name     string
		token    string
		identity string
		perms    string
		reason   string
	}{
		{"corp token, section mapping", mint(corp, nil), "u1", "threads assistants store", ""},
		{"partner token, its own mapping", mint(partner, map[string]any{"email": "p@x.example", "azp": "partner-portal"}), "partner:p@x.example", "read", ""},
		{"partner token without a required claim", mint(partner, map[string]any{"azp": "partner-portal"}), "", "", "missing required claim"},
		{"partner token for another party", mint(partner, map[string]any{"email": "p@x.example", "azp": "cli"}), "", "", "wrong authorized party"},
		{"partner token without azp", mint(partner, map[string]any{"email": "p@x.example"}), "", "", "wrong authorized party"},
		{"corp's audience is not the partner's", mint(corp, map[string]any{"aud": "partner-api"}), "", "", "wrong audience"},
		{"partner token claiming to be corp's", mint(partner, map[string]any{"iss": corp.URL, "aud": "api"}), "", "", "algorithm not allowed"},
		{"stranger", mint(stranger, nil), "", "", "untrusted issuer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := a.Authenticate(ctx, tc.token)
			if tc.reason != "" {
				if err == nil || reason(err) != tc.reason {
					t.Fatalf("got %v, want %q", err, tc.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.Identity != tc.identity || strings.Join(u.Permissions, " ") != tc.perms {
				t.Errorf("user %q %v", u.Identity, u.Permissions)
			}
		})
	}
	if stranger.JWKSRequests() != 0 {
		t.Error("the unknown issuer was contacted")
	}

	// langgate check --claims picks the mapping by iss too.
	u, err := a.FromClaims(map[string]any{"iss": partner.URL, "email": "q@x.example"})
	if err != nil || u.Identity != "partner:q@x.example" {
		t.Errorf("FromClaims: %v %v", u, err)
	}
}

// TestRegistryAcrossReloads: a rebuilt configuration takes over the issuers
// and API key stores whose key settings did not change and the cache of a
// section whose meaning did not change (moving it in the file is not a
// change); a changed section gets a new cache. Building starts nothing,
// and the handover stops only what the new registry did not take over.
func TestRegistryAcrossReloads(t *testing.T) {
	is := startIssuer(t, devissuer.Options{})
	opts := authn.Options{Logger: slog.New(slog.DiscardHandler), LookupEnv: func(string) (string, bool) { return "[]", true }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	build := func(text string, reg *authn.Registry) *authn.Authenticator {
		t.Helper()
		f, err := config.Parse("r.yaml", []byte(text), func(string) (string, bool) { return "[]", true })
		if err != nil {
			t.Fatal(err)
		}
		a, err := authn.New(f.Name, f.Authenticate, reg, authn.Needs{Claims: true})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	base := issuerYAML(is, "      leeway: 10s\n")
	reg := authn.NewRegistry(opts)
	before := runtime.NumGoroutine()
	first := build(base+"  api_keys: {env: KEYS}\n", reg)
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("building started %d goroutines before Start", after-before)
	}
	reg.Start(ctx)
	waitReady(t, first, 5*time.Second)

	next := reg.Next(opts)
	moved := build("# a comment moves everything down\n\n"+base+"  api_keys: {env: KEYS}\n", next)
	if moved.Issuers()[0] != first.Issuers()[0] || moved.Cache() != first.Cache() || moved.APIKeys() != first.APIKeys() {
		t.Error("an unchanged section got new issuers, caches or key stores")
	}
	next = reg.Next(opts)
	changed := build(strings.Replace(base, "leeway: 10s", "leeway: 20s", 1), next)
	if changed.Issuers()[0] != first.Issuers()[0] {
		t.Error("a leeway change replaced the issuer's key set")
	}
	if changed.Cache() == first.Cache() {
		t.Error("a changed section kept the old section's verified tokens")
	}
	rekeyed := build(issuerYAML(is, "      unknown_kid_refetch_interval: 30s\n"), reg.Next(opts))
	if rekeyed.Issuers()[0] == first.Issuers()[0] {
		t.Error("a key setting change kept the old key set")
	}
	if rekeyed.Issuers()[0].Ready() {
		t.Error("an issuer of a build never started has keys")
	}
	next.Start(ctx)
	reg.Handover(next)
	if len(next.Caches()) != 1 || next.Caches()[0] != changed.Cache() {
		t.Errorf("caches after the handover: %d", len(next.Caches()))
	}
	if !changed.Issuers()[0].Ready() {
		t.Error("the handover stopped an issuer the new registry took over")
	}
}

// TestUserFields: the user mapping's extra fields are computed from the
// claims, carried in the user's JSON and its CEL view; names the user
// object or the adapters already use are refused at load.
func TestUserFields(t *testing.T) {
	const head = "authenticate:\n  oidc: [{issuer: https://idp.example.com, audiences: [x]}]\n  user:\n    identity: claims.sub\n    fields:\n"
	a, _ := compile(t, head+"      org: claims.org\n      admin: \"'admins' in claims.groups\"\n", authn.Options{})
	u, err := a.FromClaims(map[string]any{"iss": "https://idp.example.com", "sub": "alice", "org": "acme", "groups": []any{"admins"}})
	if err != nil {
		t.Fatal(err)
	}
	if u.Fields["org"] != "acme" || u.Fields["admin"] != true || u.Attributes()["org"] != "acme" {
		t.Errorf("fields %v, attributes %v", u.Fields, u.Attributes())
	}
	user, _, err := u.HeaderJSON(func(v any) (string, error) { b, err := json.Marshal(v); return string(b), err })
	if err != nil || !strings.Contains(user, `"org":"acme"`) || !strings.Contains(user, `"identity":"alice"`) {
		t.Errorf("x-langgate-user %s (%v)", user, err)
	}
	for _, bad := range []string{"identity", "permissions", "langgate_filters"} {
		f, err := config.Parse("t.yaml", []byte(head+"      "+bad+": claims.sub\n"), func(string) (string, bool) { return "", false })
		if err == nil {
			_, err = authn.New(f.Name, f.Authenticate, authn.NewRegistry(authn.Options{}), authn.Needs{Claims: true})
		}
		if err == nil || !strings.Contains(err.Error(), "the name is taken") {
			t.Errorf("field %q: %v", bad, err)
		}
	}
}
