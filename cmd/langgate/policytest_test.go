package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestShippedPolicyTests: every example policy has tests next to it, and
// they pass (this is how `make test` runs them).
func TestShippedPolicyTests(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"test", "--coverage", "../../examples"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	policies, err := filepath.Glob("../../examples/policies/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	policies = append(policies, "../../examples/langgraph/langgate.yaml")
	n := 0
	for _, p := range policies {
		if strings.HasSuffix(p, "_test.yaml") {
			continue
		}
		n++
		if _, err := os.Stat(strings.TrimSuffix(p, ".yaml") + "_test.yaml"); err != nil {
			t.Errorf("%s has no policy tests: %v", p, err)
		}
	}
	if n < 5 || !strings.Contains(stdout.String(), " 0 failed (") || !strings.Contains(stdout.String(), "coverage ") {
		t.Fatalf("%d policies; output:\n%s", n, stdout.String())
	}
}

// TestPolicyTestFailure: a wrong expectation fails with a readable diff,
// its file and line, and exit 1; a malformed test file is an error.
func TestPolicyTestFailure(t *testing.T) {
	dir := t.TempDir()
	cfg, err := os.ReadFile("../../examples/langgraph/langgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	wrong := write("wrong_test.yaml", `config: p.yaml
env: {OIDC_ISSUER: https://idp.example.com, OIDC_AUDIENCE: a}
tests:
  - name: right
    request: {method: GET, path: /threads/t1}
    claims: {sub: alice}
    expect: {outcome: allowed}
  - name: wrong owner
    request: {method: GET, path: /threads/t1}
    claims: {sub: alice}
    expect: {outcome: allowed, filters: {owner: bob}, status: 200}
`)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"test", wrong}, &stdout, &stderr); code != exitFail {
		t.Fatalf("exit %d, want %d\n%s%s", code, exitFail, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"FAIL " + wrong + ":8 wrong owner",
		`filters: want {"owner":"bob"}, got {"owner":"alice"}`,
		"1 passed, 1 failed (1 files)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FAIL "+wrong+":4") {
		t.Errorf("the passing test was reported:\n%s", out)
	}
	// A shadow rule's verdict is testable.
	shadowCfg := strings.Replace(string(cfg), "    - on: store\n", "    - on: threads.delete\n      allow: 'false'\n      shadow: true\n    - on: store\n", 1)
	if shadowCfg == string(cfg) {
		t.Fatal("the seed policy changed: no store handler to put the shadow before")
	}
	write("shadow.yaml", shadowCfg)
	shadow := write("shadow_test.yaml", `config: shadow.yaml
env: {OIDC_ISSUER: https://idp.example.com, OIDC_AUDIENCE: a}
tests:
  - name: would deny, allowed
    request: {method: DELETE, path: /threads/t1}
    claims: {sub: alice}
    expect: {outcome: allowed, handler: "*", would_deny: true}
  - name: reads are not shadowed
    request: {method: GET, path: /threads/t1}
    claims: {sub: alice}
    expect: {outcome: allowed, would_deny: true}
`)
	stdout.Reset()
	if code := run(context.Background(), []string{"test", shadow}, &stdout, &stderr); code != exitFail ||
		!strings.Contains(stdout.String(), "would_deny (shadow): want true, got false") || !strings.Contains(stdout.String(), "1 passed, 1 failed") {
		t.Errorf("shadow tests: exit %d\n%s", code, stdout.String())
	}
	for name, text := range map[string]string{
		"unknown field":  "config: p.yaml\ntests:\n  - name: x\n    request: {method: GET, path: /}\n    expect: {outcom: allowed}\n",
		"no expectation": "config: p.yaml\ntests:\n  - name: x\n    request: {method: GET, path: /}\n    expect: {}\n",
		"no config":      "tests:\n  - name: x\n    request: {method: GET, path: /}\n    expect: {status: 200}\n",
	} {
		p := write(strings.ReplaceAll(name, " ", "_")+"_test.yaml", text)
		stdout.Reset()
		stderr.Reset()
		if code := run(context.Background(), []string{"test", p}, &stdout, &stderr); code != exitFail || !strings.Contains(stderr.String(), p) {
			t.Errorf("%s: exit %d, stderr %q: want exit 1 naming the file", name, code, stderr.String())
		}
	}
}
