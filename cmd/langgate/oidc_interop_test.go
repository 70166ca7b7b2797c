package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/oauth2-proxy/mockoidc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/langgate/langgate/internal/testproc"
)

// TestExampleWithAnotherOIDCProvider runs `langgate serve --config
// examples/langgraph/langgate.yaml` against an OIDC provider that is not
// langgate's own (oauth2-proxy's mockoidc), with OIDC_ISSUER/OIDC_AUDIENCE
// from the environment and tokens obtained through the provider's real
// authorization-code flow, and checks the seed's decisions over gRPC.
func TestExampleWithAnotherOIDCProvider(t *testing.T) {
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = m.Shutdown() }()
	// mockoidc computes its key id lazily and unsynchronized; compute it
	// now, before its JWKS handler and its token signing run concurrently
	// (a data race in the library, not in langgate).
	if _, err := m.Keypair.KeyID(); err != nil {
		t.Fatal(err)
	}
	cfg := m.Config()
	t.Setenv("OIDC_ISSUER", cfg.Issuer)
	t.Setenv("OIDC_AUDIENCE", cfg.ClientID)

	grpcAddr := testproc.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", "../../examples/langgraph/langgate.yaml",
			"--grpc-addr", grpcAddr, "--admin-addr", testproc.FreeAddr(t)}, io.Discard, io.Discard)
	}()
	defer func() {
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d", code)
		}
	}()

	alice := codeFlowToken(t, m, "alice")
	bob := codeFlowToken(t, m, "bob")

	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	check := func(method, path, token, body string) *authv3.CheckResponse {
		t.Helper()
		h := map[string]string{"authorization": "Bearer " + token, "content-type": "application/json"}
		for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
			resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
				Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path, Headers: h, Body: body}}}})
			// Until discovery has run the keys are unavailable: wait for it.
			unavailable := err == nil && strings.Contains(resp.GetDeniedResponse().GetBody(), "Unable to verify token")
			if err == nil && !unavailable {
				return resp
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("Check: %v %v", resp, err)
			}
		}
	}
	header := func(resp *authv3.CheckResponse, name string) string {
		for _, h := range resp.GetOkResponse().GetHeaders() {
			if h.GetHeader().GetKey() == name {
				return h.GetHeader().GetValue()
			}
		}
		return ""
	}

	resp := check("POST", "/threads", alice, `{}`)
	if resp.GetStatus().GetCode() != 0 || header(resp, "x-langgate-metadata") != `{"owner":"alice"}` || header(resp, "x-langgate-filters") != `{"owner":"alice"}` {
		t.Errorf("alice creates a thread: %v", resp)
	}
	put := `{"namespace":["alice","notes"],"key":"k","value":{}}`
	if resp := check("PUT", "/store/items", alice, put); resp.GetStatus().GetCode() != 0 {
		t.Errorf("alice puts into her namespace: %v", resp)
	}
	if resp := check("PUT", "/store/items", bob, put); resp.GetStatus().GetCode() != 7 || resp.GetDeniedResponse().GetBody() != `{"detail":"Not authorized"}` {
		t.Errorf("bob puts into alice's namespace: %v", resp)
	}
	if resp := check("GET", "/threads/t1", "not.a.token", ""); resp.GetStatus().GetCode() != 16 {
		t.Errorf("bad token: %v", resp)
	}
}

// codeFlowToken logs subject in through the provider's authorization-code
// flow and returns the access token from its token endpoint.
func codeFlowToken(t *testing.T, m *mockoidc.MockOIDC, subject string) string {
	t.Helper()
	m.QueueUser(&mockoidc.MockUser{Subject: subject, Email: subject + "@example.com"})
	cfg := m.Config()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"client_id": {cfg.ClientID}, "response_type": {"code"}, "scope": {"openid email"},
		"redirect_uri": {"http://127.0.0.1/callback"}, "state": {"s"}}
	resp, err := noRedirect.Get(m.AuthorizationEndpoint() + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = http.PostForm(m.TokenEndpoint(), url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")},
		"client_id": {cfg.ClientID}, "client_secret": {cfg.ClientSecret}, "redirect_uri": {"http://127.0.0.1/callback"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("token endpoint: %d %v", resp.StatusCode, err)
	}
	return tr.AccessToken
}
