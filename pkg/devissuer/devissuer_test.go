package devissuer_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/langgate/langgate/pkg/devissuer"
)

// TestClientCredentials: the token endpoint's OAuth grant, as an MCP
// client's OAuth provider uses it: the client_id is the subject, the
// RFC 8707 resource the audience; a wrong secret, another grant or two
// resources are refused with OAuth's errors.
func TestClientCredentials(t *testing.T) {
	is, err := devissuer.Start(devissuer.Options{Addr: "127.0.0.1:0", Audience: devissuer.DefaultAudience})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = is.Close() })
	post := func(form url.Values, basic string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, is.URL+devissuer.TokenPath, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if basic != "" {
			req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(basic)))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	claims := func(tok string) map[string]any {
		t.Helper()
		parts := strings.Split(tok, ".")
		b, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		_ = json.Unmarshal(b, &c)
		return c
	}
	cc := url.Values{"grant_type": {"client_credentials"}, "resource": {"http://127.0.0.1:1/mcp"}, "scope": {"openid"}}
	status, body := post(cc, "alice:"+devissuer.DefaultClientSecret)
	if status != 200 || body["token_type"] != "Bearer" || body["scope"] != "openid" {
		t.Fatalf("client_credentials: %d %v", status, body)
	}
	if c := claims(body["access_token"].(string)); c["sub"] != "alice" || c["aud"] != "http://127.0.0.1:1/mcp" || c["scope"] != "openid" {
		t.Errorf("claims %v", c)
	}
	post2 := url.Values{"grant_type": {"client_credentials"}, "client_id": {"bob"}, "client_secret": {devissuer.DefaultClientSecret}}
	if status, body := post(post2, ""); status != 200 || claims(body["access_token"].(string))["aud"] != devissuer.DefaultAudience {
		t.Errorf("client_secret_post without a resource: %d %v", status, body)
	}
	for _, c := range []struct {
		form   url.Values
		basic  string
		status int
		err    string
	}{
		{cc, "alice:wrong", 401, "invalid_client"},
		{cc, "", 401, "invalid_client"},
		{url.Values{"grant_type": {"password"}}, "alice:" + devissuer.DefaultClientSecret, 400, "unsupported_grant_type"},
		{url.Values{"grant_type": {"client_credentials"}, "resource": {"a", "b"}}, "alice:" + devissuer.DefaultClientSecret, 400, "invalid_target"},
	} {
		if status, body := post(c.form, c.basic); status != c.status || body["error"] != c.err {
			t.Errorf("%v %q: %d %v, want %d %s", c.form, c.basic, status, body, c.status, c.err)
		}
	}
	resp, err := http.Get(is.URL + devissuer.DiscoveryPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&doc)
	if doc["authorization_endpoint"] != is.URL+devissuer.AuthorizePath || doc["token_endpoint"] != is.URL+devissuer.TokenPath {
		t.Errorf("discovery %v", doc)
	}
}
