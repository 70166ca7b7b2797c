package authn

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/pkg/config"
)

func TestFreshness(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		headers map[string]string
		want    time.Duration
		ok      bool
	}{
		{"nothing", nil, 0, false},
		{"max-age", map[string]string{"Cache-Control": "public, max-age=300"}, 5 * time.Minute, true},
		{"quoted max-age", map[string]string{"Cache-Control": `max-age="60"`}, time.Minute, true},
		{"age subtracted", map[string]string{"Cache-Control": "max-age=300", "Age": "100"}, 200 * time.Second, true},
		{"older than max-age", map[string]string{"Cache-Control": "max-age=300", "Age": "900"}, 0, true},
		{"no-cache", map[string]string{"Cache-Control": "max-age=300, no-cache"}, 0, true},
		{"no-store", map[string]string{"Cache-Control": "no-store"}, 0, true},
		{"invalid max-age", map[string]string{"Cache-Control": "max-age=-5"}, 0, true},
		{"huge max-age capped at a year", map[string]string{"Cache-Control": "max-age=99999999999"}, 365 * 24 * time.Hour, true},
		{"other directives only", map[string]string{"Cache-Control": "public, must-revalidate"}, 0, false},
		{"expires with date", map[string]string{"Expires": now.Add(time.Hour).Format(http.TimeFormat), "Date": now.Format(http.TimeFormat)}, time.Hour, true},
		{"expires against now", map[string]string{"Expires": now.Add(30 * time.Minute).Format(http.TimeFormat)}, 30 * time.Minute, true},
		{"invalid expires", map[string]string{"Expires": "0"}, 0, true},
		{"max-age wins over expires", map[string]string{"Cache-Control": "max-age=60", "Expires": now.Add(time.Hour).Format(http.TimeFormat)}, time.Minute, true},
	}
	for _, tc := range tests {
		h := http.Header{}
		for k, v := range tc.headers {
			h.Set(k, v)
		}
		got, ok := freshness(h, now)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %s %v, want %s %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestParseJWKS(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	big, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	doc := func(keys ...jose.JSONWebKey) []byte {
		b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// A published private key is reduced to its public half; a small RSA
	// key and an HMAC secret are dropped.
	keys, err := parseJWKS(doc(jose.JSONWebKey{Key: small.Public(), KeyID: "small"}, jose.JSONWebKey{Key: big, KeyID: "private"}, jose.JSONWebKey{Key: []byte("secret"), KeyID: "hmac"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0].KeyID != "private" || !keys[0].IsPublic() {
		t.Errorf("kept %+v", keys)
	}
	for _, bad := range [][]byte{[]byte(`{"keys":[]}`), doc(jose.JSONWebKey{Key: small.Public(), KeyID: "small"}), []byte(`[]`)} {
		if _, err := parseJWKS(bad); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestCookieValue(t *testing.T) {
	tests := []struct {
		header, want string
		found, err   bool
	}{
		{"", "", false, false},
		{"a=1; s=tok", "tok", true, false},
		{"s=tok; s=tok", "tok", true, false},
		{"s=tok; s=other", "", true, true},
		{`s="tok"`, "tok", true, false},
		{"sx=1; xs=2", "", false, false},
		{"a=1,s=tok", "tok", true, false},
		{"s=", "", true, false},
	}
	for _, tc := range tests {
		got, found, err := cookieValue(tc.header, "s")
		if got != tc.want || found != tc.found || (err != nil) != tc.err {
			t.Errorf("cookieValue(%q) = %q %v %v", tc.header, got, found, err)
		}
	}
}

// TestPolicyDocExamples: the YAML of docs/policy.md's authenticate section
// is what langgate accepts: the configuration parses and the key list
// decodes.
func TestPolicyDocExamples(t *testing.T) {
	data, err := os.ReadFile("../../docs/policy.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	start, end := strings.Index(doc, "## `authenticate`"), strings.Index(doc, "## `authorize`")
	if start < 0 || end < start {
		t.Fatal("no authenticate section")
	}
	var blocks []string
	for rest := doc[start:end]; ; {
		i := strings.Index(rest, "```yaml\n")
		if i < 0 {
			break
		}
		rest = rest[i+8:]
		j := strings.Index(rest, "```")
		blocks = append(blocks, rest[:j])
		rest = rest[j+3:]
	}
	if len(blocks) != 4 {
		t.Fatalf("%d YAML blocks, want the configuration, the key list, the MCP resource and the user fields", len(blocks))
	}
	f, err := config.Parse("policy.md", []byte(blocks[0]), func(string) (string, bool) { return "secret", true })
	if err != nil {
		t.Fatalf("the configuration example: %v", err)
	}
	if a := f.Authenticate; len(a.Credentials) != 3 || len(a.OIDC) != 2 || a.Introspection == nil || a.APIKeys == nil || a.OIDC[1].User == nil {
		t.Errorf("the example lost fields: %+v", a)
	}
	if set, err := parseAPIKeys([]byte(blocks[1])); err != nil || len(set) != 1 {
		t.Errorf("the key list example: %v", err)
	}
	// The MCP resource fragment, with an issuer that lists the resource.
	mcp := "authenticate:\n  oidc: [{issuer: https://idp.example.com, audiences: [https://agents.example.com/mcp]}]\n  user: {identity: claims.sub}\n" + blocks[2]
	if f, err := config.Parse("policy.md", []byte(mcp), func(string) (string, bool) { return "", false }); err != nil ||
		f.Authenticate.MCP == nil || f.Authenticate.MCP.Resource != "https://agents.example.com/mcp" || len(f.Authenticate.MCP.AuthorizationServers) != 1 {
		t.Errorf("the MCP resource example: %v", err)
	}
	// The user fields fragment, in an authenticate section of its own.
	text := "authenticate:\n  oidc: [{issuer: https://idp.example.com, audiences: [x]}]\n" + blocks[3]
	f, err = config.Parse("policy.md", []byte(text), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("the user fields example: %v", err)
	}
	a, err := New(f.Name, f.Authenticate, NewRegistry(Options{}), Needs{Claims: true})
	if err != nil {
		t.Fatalf("the user fields example: %v", err)
	}
	u, err := a.FromClaims(map[string]any{"iss": "https://idp.example.com", "sub": "alice", "org": "acme"})
	if err != nil || u.Fields["role"] != "member" || u.Fields["org"] != "acme" {
		t.Errorf("the user fields example: %v %v", u, err)
	}
}
