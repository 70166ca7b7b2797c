package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestPolicyExamples runs `langgate check` on every worked example of
// docs/policy.md: the docs' claims are these assertions.
func TestPolicyExamples(t *testing.T) {
	t.Setenv("OIDC_ISSUER", "https://idp.example.com")
	t.Setenv("OIDC_AUDIENCE", "api")
	const (
		seed   = "../../examples/langgraph/langgate.yaml"
		roles  = "../../examples/policies/roles.yaml"
		tenant = "../../examples/policies/multitenant.yaml"
		hide   = "../../examples/policies/hide.yaml"
		rest   = "../../examples/policies/rest-api.yaml"
	)
	tests := []struct {
		name   string
		args   []string
		exit   int
		output []string
	}{
		{"seed: create stamps owner", []string{"--config", seed, "--claims", `{"sub":"alice"}`, "POST", "/threads"}, 0,
			[]string{`x-langgate-metadata: {"owner":"alice"}`, `x-langgate-filters: {"owner":"alice"}`}},
		{"seed: other namespace refused", []string{"--config", seed, "--claims", `{"sub":"bob"}`, "PUT", "/store/items", "--body", `{"namespace":["alice"],"key":"k","value":{}}`}, 1,
			[]string{`DENY 403 {"detail":"Not authorized"}`, `handler: "store", resource handler; there is no store.put`}},
		{"roles: admin unfiltered", []string{"--config", roles, "--claims", `{"sub":"root","roles":["admin"]}`, "GET", "/threads/1"}, 0,
			[]string{`x-langgate-filters: {}`}},
		{"roles: read-only cannot write", []string{"--config", roles, "--claims", `{"sub":"ro","roles":["readonly"]}`, "POST", "/threads"}, 1,
			[]string{`DENY 403 {"detail":"Read-only users cannot change anything"}`}},
		{"roles: read-only can search, filtered", []string{"--config", roles, "--claims", `{"sub":"ro","roles":["readonly"]}`, "POST", "/threads/search", "--body", `{}`}, 0,
			[]string{`x-langgate-filters: {"owner":"ro"}`}},
		{"roles: admin writes any namespace", []string{"--config", roles, "--claims", `{"sub":"root","roles":["admin"]}`, "PUT", "/store/items", "--body", `{"namespace":["bob"],"key":"k","value":{}}`}, 0, nil},
		{"tenant: org stamped and filtered", []string{"--config", tenant, "--claims", `{"sub":"alice","org":"acme"}`, "POST", "/assistants", "--body", `{"graph_id":"agent"}`}, 0,
			[]string{`x-langgate-metadata: {"org":"acme","owner":"alice"}`, `x-langgate-filters: {"org":"acme"}`}},
		{"tenant: no org refused", []string{"--config", tenant, "--claims", `{"sub":"alice"}`, "GET", "/threads/1"}, 1,
			[]string{`{"detail":"No organization in the token"}`}},
		{"tenant: own org's store", []string{"--config", tenant, "--claims", `{"sub":"alice","org":"acme"}`, "GET", "/store/items?namespace=acme.docs&key=k"}, 0, nil},
		{"tenant: other org's store", []string{"--config", tenant, "--claims", `{"sub":"alice","org":"acme"}`, "GET", "/store/items?namespace=globex.docs&key=k"}, 1, nil},
		{"hide: 404 for another namespace", []string{"--config", hide, "--claims", `{"sub":"bob"}`, "GET", "/store/items?namespace=alice.x&key=k"}, 1,
			[]string{`DENY 404 {"detail":"Not Found"}`}},
		{"rest: customer reads own invoice", []string{"--config", rest, "--claims", `{"sub":"alice"}`, "--context", "policy=billing", "GET", "/customers/alice/invoices/7"}, 0,
			[]string{"policy:    billing (selected by context extension policy=billing)", "x-langgate-resource: invoices", "x-langgate-action: read"}},
		{"rest: another customer's invoice is not found", []string{"--config", rest, "--claims", `{"sub":"bob"}`, "--context", "policy=billing", "GET", "/customers/alice/invoices/7"}, 1,
			[]string{`DENY 404 {"detail":"Not Found"}`}},
		{"rest: billing team creates by host", []string{"--config", rest, "--claims", `{"sub":"carol","scope":"billing"}`, "--header", ":authority=billing.example.com", "POST", "/customers/acme/invoices", "--body", `{"amount":10,"currency":"EUR"}`}, 0,
			[]string{"policy:    billing (selected by host billing.example.com)", `x-langgate-metadata: {"created_by":"carol"}`}},
		{"rest: invalid amount refused", []string{"--config", rest, "--claims", `{"sub":"carol","scope":"billing"}`, "--header", ":authority=billing.example.com", "POST", "/customers/acme/invoices", "--body", `{"amount":-5,"currency":"EUR"}`}, 1, nil},
		{"rest: unlisted route refused", []string{"--config", rest, "--claims", `{"sub":"carol"}`, "--context", "policy=billing", "DELETE", "/customers/acme"}, 1,
			[]string{"authorize.unmatched is deny"}},
		{"rest: unknown policy refused", []string{"--config", rest, "--claims", `{"sub":"carol"}`, "--context", "policy=nope", "GET", "/threads/1"}, 1,
			[]string{`context extension policy="nope" names no policy`}},
		{"rest: wildcard host and path", []string{"--config", rest, "--claims", `{"sub":"dave"}`, "--header", ":authority=eu.billing.example.com:443", "GET", "/files/public/terms.pdf"}, 0,
			[]string{"route:     GET /files/{path...}"}},
		{"rest: default policy", []string{"--config", rest, "--claims", `{"sub":"alice"}`, "POST", "/threads"}, 0,
			[]string{"policy:    langgraph (selected by default policy)"}},
		{"rest: public health", []string{"--config", rest, "--claims", `{"sub":"x"}`, "--context", "policy=billing", "GET", "/healthz"}, 0,
			[]string{"ALLOW (public)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"check"}, tc.args...), &out, &errb)
			if code != tc.exit {
				t.Fatalf("exit %d, want %d\n%s%s", code, tc.exit, out.String(), errb.String())
			}
			for _, want := range tc.output {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

// TestCheckGolden pins the exact text and JSON output of `langgate check`.
func TestCheckGolden(t *testing.T) {
	t.Setenv("OIDC_ISSUER", "https://idp.example.com")
	t.Setenv("OIDC_AUDIENCE", "api")
	for _, tc := range []struct {
		golden string
		exit   int // check: exitOK on an allow, exitFail on a denial
		args   []string
	}{
		{"check-deny.txt", exitFail, []string{"--config", "../../examples/langgraph/langgate.yaml", "--claims", `{"sub":"bob"}`, "PUT", "/store/items", "--body", `{"namespace":["alice","notes"],"key":"k","value":{}}`}},
		{"check-allow.txt", exitOK, []string{"--config", "../../examples/langgraph/langgate.yaml", "--claims", `{"sub":"alice","name":"Alice"}`, "POST", "/threads/t1/copy", "--header", "x-langgate-user-id=mallory", "--header", "x-langgate-extra=1"}},
		{"check-allow.json", exitOK, []string{"--config", "../../examples/policies/rest-api.yaml", "--output", "json", "--claims", `{"sub":"carol","scope":"billing"}`, "--context", "policy=billing", "POST", "/customers/acme/invoices", "--body", `{"amount":10,"currency":"EUR"}`}},
		{"check-deny.json", exitFail, []string{"--config", "../../examples/policies/roles.yaml", "--output", "json", "--claims", `{"sub":"ro","roles":["readonly"]}`, "DELETE", "/threads/t1"}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			var out bytes.Buffer
			if code := run(context.Background(), append([]string{"check"}, tc.args...), &out, &out); code != tc.exit {
				t.Errorf("exit %d, want %d", code, tc.exit)
			}
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./cmd/langgate -update)", err)
			}
			if out.String() != string(want) {
				t.Errorf("output differs from %s:\n%s", path, out.String())
			}
		})
	}
}

func TestValidateWarnings(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "w.yaml")
	if err := os.WriteFile(cfg, []byte(`authenticate:
  oidc: [{issuer: "https://i.example", audiences: [a]}]
  user: {identity: claims.sub}
authorize:
  handlers:
    - on: threads
    - on: threads.create
    - on: "*.create"
    - on: assistants
    - on: crons
    - on: store
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"validate", "--config", cfg}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{
		cfg + `:8:7: warning: handler "*.create" can never run: a more specific handler takes every event it matches`,
		"ok (1 policies, 1 warnings)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if err := os.WriteFile(cfg, []byte(`authenticate:
  oidc: [{issuer: "https://i.example", audiences: [a]}]
  user: {identity: claims.sub}
authorize:
  handlers:
    - on: threads
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run(context.Background(), []string{"validate", "--config", cfg}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d (warnings are not errors): %s", code, errb.String())
	}
	if !strings.Contains(out.String(), cfg+": warning: no handler covers store:put: it is allowed with no filter") {
		t.Errorf("uncovered events not reported:\n%s", out.String())
	}
}

// TestValidateBodyRoutes: validate tells the operator on which routes the
// proxy must send the body, and says so when none needs it.
func TestValidateBodyRoutes(t *testing.T) {
	t.Setenv("OIDC_ISSUER", "https://idp.example.com")
	t.Setenv("OIDC_AUDIENCE", "langgraph")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"validate", "--config", "../../examples/langgraph/langgate.yaml"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := `policy "langgraph" reads the request body on 6 routes; send the body (with_request_body) there, on no other route:
  POST   /mcp
  POST   /a2a/{assistant_id}
  PUT    /store/items
  DELETE /store/items
  POST   /store/items/search
  POST   /store/namespaces
`
	if !strings.Contains(out.String(), want) {
		t.Errorf("output lacks\n%s\ngot:\n%s", want, out.String())
	}
	// docs/policy.md shows this output (indented in a list item).
	doc, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	if indented := "  " + strings.ReplaceAll(strings.TrimSuffix(want, "\n"), "\n", "\n  ") + "\n"; !strings.Contains(string(doc), indented) {
		t.Errorf("docs/policy.md does not show validate's output:\n%s", indented)
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "nobody.yaml")
	if err := os.WriteFile(cfg, []byte(`authenticate:
  oidc: [{issuer: "https://i.example", audiences: [a]}]
  user: {identity: claims.sub}
authorize:
  routes:
    - {method: GET, path: "/items/{id}", resource: items, action: read}
  handlers:
    - {on: "*", filters: {owner: user.identity}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if code := run(context.Background(), []string{"validate", "--config", cfg}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "reads no request body: the proxy need not send one\n") {
		t.Errorf("a policy reading no body is not reported:\n%s", out.String())
	}
}
