package extauthz_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/go-jose/go-jose/v4"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/devissuer"
	"github.com/langgate/langgate/pkg/devissuer/devissuertest"
	"github.com/langgate/langgate/pkg/extauthz"
	"github.com/langgate/langgate/pkg/tracing"
)

// harness is a langgate gRPC server on a random loopback port, and a client
// speaking the go-control-plane types Envoy uses.
type harness struct {
	env    *testengine.Env
	client authv3.AuthorizationClient
}

func start(t testing.TB, opts testengine.Options) *harness {
	t.Helper()
	return startWith(t, opts, nil)
}

// startWith is start with a tracer.
func startWith(t testing.TB, opts testengine.Options, tracer *tracing.Tracer) *harness {
	t.Helper()
	env := testengine.Start(t, opts)
	var engines decision.Holder
	engines.Store(env.Engine)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := extauthz.NewServer(&engines, tracer)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &harness{env: env, client: authv3.NewAuthorizationClient(conn)}
}

// call describes one request as Envoy would send it.
type call struct {
	method, path string
	token        string
	headers      map[string]string
	body         string
	// noContentLength leaves content-length out even with a body.
	noContentLength bool
	rawBody         bool
}

func (h *harness) check(t *testing.T, c call) *authv3.CheckResponse {
	t.Helper()
	hdrs := map[string]string{":method": c.method, ":path": c.path, ":authority": "langgraph.test", "x-request-id": "req-1"}
	if c.token != "" {
		hdrs["authorization"] = "Bearer " + c.token
	}
	if c.body != "" && !c.noContentLength {
		hdrs["content-length"] = itoa(len(c.body))
	}
	if c.body != "" {
		hdrs["content-type"] = "application/json"
	}
	for k, v := range c.headers {
		hdrs[k] = v
	}
	httpReq := &authv3.AttributeContext_HttpRequest{Method: c.method, Path: c.path, Headers: hdrs}
	if c.rawBody {
		httpReq.RawBody = []byte(c.body)
	} else {
		httpReq.Body = c.body
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := h.client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: httpReq},
	}})
	if err != nil {
		t.Fatalf("Check RPC failed: %v", err)
	}
	return resp
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// okHeaders returns the headers of an allow, failing the test on a denial.
func okHeaders(t *testing.T, resp *authv3.CheckResponse) map[string]string {
	t.Helper()
	if resp.GetStatus().GetCode() != int32(code.Code_OK) {
		t.Fatalf("want OK, got code %d (%s), body %s, reason %v", resp.GetStatus().GetCode(), resp.GetStatus().GetMessage(),
			resp.GetDeniedResponse().GetBody(), resp.GetDynamicMetadata().GetFields()["reason"])
	}
	out := map[string]string{}
	for _, hv := range resp.GetOkResponse().GetHeaders() {
		if hv.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			t.Errorf("header %s: append_action %v, want OVERWRITE_IF_EXISTS_OR_ADD", hv.GetHeader().GetKey(), hv.GetAppendAction())
		}
		if hv.GetAppend() != nil { //nolint:staticcheck // asserts the deprecated field stays unset
			t.Errorf("header %s: deprecated append is set; Envoy rejects it together with append_action", hv.GetHeader().GetKey())
		}
		if _, dup := out[hv.GetHeader().GetKey()]; dup {
			t.Errorf("header %s set twice", hv.GetHeader().GetKey())
		}
		out[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
	}
	for _, name := range resp.GetOkResponse().GetHeadersToRemove() {
		if _, set := out[name]; set {
			t.Errorf("header %s is both set and removed (Envoy removes after setting)", name)
		}
	}
	return out
}

// denial asserts a denial's gRPC code, HTTP status and JSON detail.
func denial(t *testing.T, resp *authv3.CheckResponse, wantCode code.Code, wantStatus int, wantDetail string) {
	t.Helper()
	if got := code.Code(resp.GetStatus().GetCode()); got != wantCode {
		t.Fatalf("gRPC code %v, want %v (reason %v)", got, wantCode, resp.GetDynamicMetadata().GetFields()["reason"])
	}
	dr := resp.GetDeniedResponse()
	if dr == nil {
		t.Fatal("denied_response is not set")
	}
	if got := int(dr.GetStatus().GetCode()); got != wantStatus {
		t.Errorf("HTTP status %d, want %d", got, wantStatus)
	}
	var body struct {
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal([]byte(dr.GetBody()), &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", dr.GetBody(), err)
	}
	if body.Detail != wantDetail {
		t.Errorf("detail %q, want %q", body.Detail, wantDetail)
	}
	if ct := respHeader(dr.GetHeaders(), "content-type"); ct != "application/json" {
		t.Errorf("content-type %q, want application/json", ct)
	}
}

func respHeader(hs []*corev3.HeaderValueOption, name string) string {
	for _, h := range hs {
		if h.GetHeader().GetKey() == name {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}

func reason(resp *authv3.CheckResponse) string {
	return resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue()
}

func TestSeedOwnerIsolation(t *testing.T) {
	h := start(t, testengine.Options{})
	alice := h.env.Token(t, "alice", map[string]any{"name": "Alice Ålander"})

	tests := []struct {
		name, method, path, body string
		resource, action         string
	}{
		{"create thread stamps owner", "POST", "/threads", `{"metadata":{"topic":"x"}}`, "threads", "create"},
		{"search threads filtered", "POST", "/threads/search", `{"limit":10}`, "threads", "search"},
		{"read thread filtered", "GET", "/threads/6f1c", "", "threads", "read"},
		{"update thread", "PATCH", "/threads/6f1c", `{"metadata":{"a":1}}`, "threads", "update"},
		{"delete thread", "DELETE", "/threads/6f1c", "", "threads", "delete"},
		{"create run on thread", "POST", "/threads/6f1c/runs/stream", `{"assistant_id":"agent"}`, "threads", "create_run"},
		{"stateless run", "POST", "/runs/wait", `{"assistant_id":"agent"}`, "threads", "create_run"},
		{"create assistant", "POST", "/assistants", `{"graph_id":"agent"}`, "assistants", "create"},
		{"search assistants", "POST", "/assistants/search", `{}`, "assistants", "search"},
		{"create cron", "POST", "/runs/crons", `{"schedule":"* * * * *","assistant_id":"agent"}`, "crons", "create"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := okHeaders(t, h.check(t, call{method: tc.method, path: tc.path, token: alice, body: tc.body}))
			want := map[string]string{
				"x-langgate-user-id":     "alice",
				"x-langgate-filters":     `{"owner":"alice"}`,
				"x-langgate-metadata":    `{"owner":"alice"}`,
				"x-langgate-resource":    tc.resource,
				"x-langgate-action":      tc.action,
				"x-langgate-permissions": `["threads","assistants","store"]`,
				"x-langgate-user":        `{"display_name":"Alice \u00c5lander","identity":"alice","is_authenticated":true,"permissions":["threads","assistants","store"]}`,
			}
			for k, v := range want {
				if hs[k] != v {
					t.Errorf("%s = %q, want %q", k, hs[k], v)
				}
			}
			// Every granted event carries the seed's owner filter; the
			// route's own event comes first.
			var events map[string]struct{ Filters map[string]any }
			if err := json.Unmarshal([]byte(hs["x-langgate-events"]), &events); err != nil || !strings.HasPrefix(hs["x-langgate-events"], `{"`+tc.resource+":"+tc.action+`":`) {
				t.Errorf("x-langgate-events = %q (%v)", hs["x-langgate-events"], err)
			}
			for name, g := range events {
				if f := g.Filters; len(f) != 1 || f["owner"] != "alice" {
					t.Errorf("x-langgate-events: %s has filters %v", name, f)
				}
			}
			if len(hs) != len(want)+1 {
				t.Errorf("got %d headers, want %d: %v", len(hs), len(want)+1, hs)
			}
		})
	}
}

func TestSeedStoreNamespaces(t *testing.T) {
	h := start(t, testengine.Options{})
	alice := h.env.Token(t, "alice", nil)
	bob := h.env.Token(t, "bob", nil)
	ops := []struct {
		name, method, path, body string
		action                   string
	}{
		{"put", "PUT", "/store/items", `{"namespace":["alice","notes"],"key":"k","value":{"v":1}}`, "put"},
		{"get", "GET", "/store/items?namespace=alice.notes&key=k", "", "get"},
		{"delete", "DELETE", "/store/items", `{"namespace":["alice","notes"],"key":"k"}`, "delete"},
		{"search", "POST", "/store/items/search", `{"namespace_prefix":["alice"],"limit":5}`, "search"},
		{"list_namespaces", "POST", "/store/namespaces", `{"prefix":["alice"],"max_depth":2}`, "list_namespaces"},
	}
	for _, op := range ops {
		t.Run(op.name+"/owner allowed", func(t *testing.T) {
			hs := okHeaders(t, h.check(t, call{method: op.method, path: op.path, token: alice, body: op.body}))
			if hs["x-langgate-resource"] != "store" || hs["x-langgate-action"] != op.action {
				t.Errorf("event %s:%s, want store:%s", hs["x-langgate-resource"], hs["x-langgate-action"], op.action)
			}
			// The store handler replaces the global one: no owner filter.
			if hs["x-langgate-filters"] != "{}" || hs["x-langgate-metadata"] != "{}" {
				t.Errorf("filters %s metadata %s, want {} and {}", hs["x-langgate-filters"], hs["x-langgate-metadata"])
			}
		})
		t.Run(op.name+"/other user refused", func(t *testing.T) {
			resp := h.check(t, call{method: op.method, path: op.path, token: bob, body: op.body})
			denial(t, resp, code.Code_PERMISSION_DENIED, 403, "Not authorized")
			if got := resp.GetDynamicMetadata().GetFields()["handler"].GetStringValue(); got != "store" {
				t.Errorf("handler %q, want store", got)
			}
		})
	}
}

func TestUnauthenticated(t *testing.T) {
	h := start(t, testengine.Options{})
	other, err := devissuertest.New(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	good := h.env.Token(t, "alice", nil)
	forgedKey, err := devissuer.NewKey(jose.RS256, "dev-1") // same kid, different key
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	claims := func(over map[string]any) map[string]any { return h.env.Issuer.Claims("alice", time.Hour, over) }
	sign := func(over map[string]any) string {
		tok, err := h.env.Issuer.Sign(claims(over))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	forged, err := devissuer.SignWith(forgedKey, claims(nil))
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Token("alice", time.Hour, map[string]any{"aud": h.env.Issuer.Audience})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	algNone := b64(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + "."
	tests := []struct {
		name          string
		authorization string
		want          string // reason substring
		detail        string
		challenge     string
	}{
		{"no header", "", "no authorization header", "Missing authentication token", `Bearer realm="langgate"`},
		{"basic scheme", "Basic YWxpY2U6cHc=", "not Bearer", "Invalid token", `Bearer realm="langgate", error="invalid_token"`},
		{"empty bearer", "Bearer ", "empty bearer token", "Invalid token", `Bearer realm="langgate", error="invalid_token"`},
		{"garbage", "Bearer not-a-jwt", "malformed token", "Invalid token", ""},
		{"two parts", "Bearer " + parts[0] + "." + parts[1], "malformed token", "Invalid token", ""},
		{"outside b64token", "Bearer " + parts[0] + ".%%%." + parts[2], "b64token", "Invalid token", ""},
		{"bad base64 payload", "Bearer " + parts[0] + ".a." + parts[2], "malformed token", "Invalid token", ""},
		{"payload not JSON", "Bearer " + parts[0] + "." + b64("nope") + "." + parts[2], "malformed token", "Invalid token", ""},
		{"expired", "Bearer " + sign(map[string]any{"exp": now.Add(-time.Hour).Unix()}), "expired", "Invalid token", ""},
		{"missing exp", "Bearer " + sign(map[string]any{"exp": nil}), "missing exp", "Invalid token", ""},
		{"not yet valid", "Bearer " + sign(map[string]any{"nbf": now.Add(time.Hour).Unix()}), "not yet valid", "Invalid token", ""},
		{"issued in the future", "Bearer " + sign(map[string]any{"iat": now.Add(time.Hour).Unix()}), "issued in the future", "Invalid token", ""},
		{"wrong audience", "Bearer " + sign(map[string]any{"aud": "someone-else"}), "wrong audience", "Invalid token", ""},
		{"wrong issuer", "Bearer " + foreign, "untrusted issuer", "Invalid token", ""},
		{"forged signature", "Bearer " + forged, "bad signature", "Invalid token", ""},
		{"alg none", "Bearer " + algNone, "algorithm not allowed", "Invalid token", ""},
		{"HS256 with the public key", "Bearer " + hs256WithPublicKey(t, h.env.Issuer, claims(nil)), "algorithm not allowed", "Invalid token", ""},
		{"empty identity", "Bearer " + sign(map[string]any{"sub": ""}), "identity is empty", "Invalid token", ""},
		{"oversized", "Bearer " + strings.Repeat("a", 17<<10), "too large", "Invalid token", ""},
		{"unknown crit header", "Bearer " + signRaw(t, h.env.Issuer.SigningKey(), map[string]any{"kid": "dev-1", "crit": []string{"exp"}, "exp": 1}, claims(nil)), "unsupported critical header", "Invalid token", ""},
		{"alg does not fit the key", "Bearer " + signRaw(t, ecKey(t), map[string]any{"kid": "dev-1"}, claims(nil)), "algorithm does not match the key", "Invalid token", ""},
		{"key embedded in the header", "Bearer " + signRaw(t, forgedKey, map[string]any{"kid": "dev-1", "jwk": forgedKey.Public()}, claims(nil)), "bad signature", "Invalid token", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := call{method: "GET", path: "/threads/t1", headers: map[string]string{}}
			if tc.authorization != "" {
				c.headers["authorization"] = tc.authorization
			}
			resp := h.check(t, c)
			denial(t, resp, code.Code_UNAUTHENTICATED, 401, tc.detail)
			if !strings.Contains(reason(resp), tc.want) {
				t.Errorf("reason %q does not mention %q", reason(resp), tc.want)
			}
			challenge := respHeader(resp.GetDeniedResponse().GetHeaders(), "www-authenticate")
			want := tc.challenge
			if want == "" {
				want = `Bearer realm="langgate", error="invalid_token"`
			}
			if challenge != want {
				t.Errorf("www-authenticate %q, want %q", challenge, want)
			}
			if tok := strings.TrimPrefix(tc.authorization, "Bearer "); len(tok) > 8 {
				for _, s := range []string{resp.GetDeniedResponse().GetBody(), reason(resp), resp.GetStatus().GetMessage()} {
					if strings.Contains(s, tok) {
						t.Errorf("the token is echoed in %q", s)
					}
				}
			}
		})
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func signRaw(t *testing.T, key jose.JSONWebKey, header, claims map[string]any) string {
	t.Helper()
	tok, err := devissuertest.SignRaw(key, header, claims)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func ecKey(t *testing.T) jose.JSONWebKey {
	t.Helper()
	k, err := devissuer.NewKey(jose.ES256, "attacker")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// hs256WithPublicKey forges the classic algorithm-confusion token: HMAC
// signed with the issuer's public RSA key as the secret.
func hs256WithPublicKey(t *testing.T, is *devissuertest.Issuer, claims map[string]any) string {
	t.Helper()
	key := is.SigningKey()
	pub := key.Public()
	der, err := x509.MarshalPKIXPublicKey(pub.Key)
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	payload, _ := json.Marshal(claims)
	input := b64(`{"alg":"HS256","kid":"dev-1","typ":"JWT"}`) + "." + b64(string(payload))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func TestSpoofedHeaders(t *testing.T) {
	h := start(t, testengine.Options{})
	alice := h.env.Token(t, "alice", nil)
	resp := h.check(t, call{method: "GET", path: "/threads/t1", token: alice, headers: map[string]string{
		"x-langgate-user-id": "admin",
		"x-langgate-filters": "{}",
		"x-langgate-user":    `{"identity":"admin"}`,
		"x-langgate-extra":   "smuggled",
		"x-langgate-reason":  "trust me",
	}})
	hs := okHeaders(t, resp)
	if hs["x-langgate-user-id"] != "alice" || hs["x-langgate-filters"] != `{"owner":"alice"}` {
		t.Errorf("client values were not overwritten: %v", hs)
	}
	removed := resp.GetOkResponse().GetHeadersToRemove()
	slices.Sort(removed)
	if want := []string{"x-langgate-extra", "x-langgate-reason"}; !slices.Equal(removed, want) {
		t.Errorf("headers_to_remove %v, want %v", removed, want)
	}

	// On a public route nothing is set, so every client x-langgate-* goes.
	pub := h.check(t, call{method: "GET", path: "/ok", headers: map[string]string{"x-langgate-user-id": "admin", "x-langgate-filters": "{}"}})
	if got := okHeaders(t, pub); len(got) != 0 {
		t.Errorf("public route set headers %v", got)
	}
	removed = pub.GetOkResponse().GetHeadersToRemove()
	slices.Sort(removed)
	if want := []string{"x-langgate-filters", "x-langgate-user-id"}; !slices.Equal(removed, want) {
		t.Errorf("public route headers_to_remove %v, want %v", removed, want)
	}
}

func TestBodies(t *testing.T) {
	h := start(t, testengine.Options{})
	alice := h.env.Token(t, "alice", nil)
	put := `{"namespace":["alice","notes"],"key":"k","value":{}}`
	tests := []struct {
		name   string
		c      call
		allow  bool
		reason string
	}{
		{"complete body", call{body: put}, true, ""},
		{"raw_body (pack_as_bytes)", call{body: put, rawBody: true}, true, ""},
		{"no content-length", call{body: put, noContentLength: true}, true, ""},
		{"malformed JSON", call{body: `{"namespace":["alice"`}, false, "not a JSON object"},
		{"JSON array", call{body: `[1,2]`}, false, "got an array"},
		{"namespace not a list", call{body: `{"namespace":"alice","key":"k"}`}, false, "allow"},
		{"empty namespace", call{body: `{"namespace":[],"key":"k"}`}, false, "allow"},
		{"missing namespace", call{body: `{"key":"k"}`}, false, "allow"},
		{"truncated by Envoy", call{body: put[:20], headers: map[string]string{"x-envoy-auth-partial-body": "true", "content-length": "60"}}, false, "truncated"},
		{"shorter than content-length", call{body: put, headers: map[string]string{"content-length": "500"}}, false, "truncated"},
		{"not sent (no with_request_body)", call{headers: map[string]string{"content-length": "60"}}, false, "not sent"},
		// HTTP/2 needs no content-length: an empty body Envoy did not mark
		// as buffered may never have been forwarded.
		{"HTTP/2, not forwarded", call{}, false, "not sent"},
		{"bad content-length", call{body: put, headers: map[string]string{"content-length": "ten"}}, false, "truncated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.method, tc.c.path, tc.c.token = "PUT", "/store/items", alice
			resp := h.check(t, tc.c)
			if tc.allow {
				okHeaders(t, resp)
				return
			}
			denial(t, resp, code.Code_PERMISSION_DENIED, 403, "Forbidden")
			if !strings.Contains(reason(resp), tc.reason) {
				t.Errorf("reason %q does not mention %q", reason(resp), tc.reason)
			}
		})
	}
	// A rule that does not read the body is unaffected by a truncated one.
	resp := h.check(t, call{method: "POST", path: "/threads", token: alice, body: `{"metadata":`,
		headers: map[string]string{"x-envoy-auth-partial-body": "true", "content-length": "9000"}})
	if okHeaders(t, resp)["x-langgate-metadata"] != `{"owner":"alice"}` {
		t.Error("owner metadata missing on a create with a truncated body")
	}
}

func TestPathTricks(t *testing.T) {
	h := start(t, testengine.Options{})
	alice := h.env.Token(t, "alice", nil)
	tests := []struct {
		name, method, path string
		status             int    // 200 allow
		event              string // resource:action on allow
	}{
		{"dot segments", "GET", "/threads/x/../t1", 200, "threads:read"},
		{"encoded dot segments", "GET", "/threads/%2e%2e/threads/t1", 200, "threads:read"},
		{"double slashes", "POST", "//threads///search", 200, "threads:search"},
		{"trailing slash", "POST", "/threads/", 200, "threads:create"},
		{"encoded unreserved", "GET", "/%74hreads/t1", 200, "threads:read"},
		{"query ignored for matching", "GET", "/threads/t1?x=1#frag", 200, "threads:read"},
		{"climbing above root", "POST", "/../../threads", 200, "threads:create"},
		{"encoded slash", "GET", "/threads/a%2Fb", 400, ""},
		{"encoded backslash", "GET", "/threads/a%5Cb", 400, ""},
		{"bad percent-encoding", "GET", "/threads/%zz", 400, ""},
		{"NUL", "GET", "/threads/a%00", 400, ""},
		{"relative", "GET", "threads/t1", 400, ""},
		{"space", "GET", "/threads/a b", 400, ""},
		{"bad query", "GET", "/threads/t1?a=%zz", 400, ""},
		{"too long", "GET", "/threads/" + strings.Repeat("a", 9000), 400, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.check(t, call{method: tc.method, path: tc.path, token: alice})
			if tc.status != 200 {
				denial(t, resp, code.Code_INVALID_ARGUMENT, tc.status, "Invalid request path")
				return
			}
			hs := okHeaders(t, resp)
			if got := hs["x-langgate-resource"] + ":" + hs["x-langgate-action"]; got != tc.event {
				t.Errorf("event %s, want %s", got, tc.event)
			}
		})
	}
	// A public prefix must not open a private route.
	for _, p := range []string{"/ok/../store/items", "/ok/%2e%2e/store/items", "/OK", "/docs/x"} {
		resp := h.check(t, call{method: "GET", path: p})
		if code.Code(resp.GetStatus().GetCode()) != code.Code_UNAUTHENTICATED {
			t.Errorf("%s without a token: code %d, want UNAUTHENTICATED", p, resp.GetStatus().GetCode())
		}
	}
}

func TestPublicAndUnmatched(t *testing.T) {
	h := start(t, testengine.Options{})
	alice := h.env.Token(t, "alice", nil)
	for _, p := range []string{"/ok", "/info", "/docs", "/openapi.json", "/metrics", "/ok?check_db=1"} {
		okHeaders(t, h.check(t, call{method: "GET", path: p}))
	}
	// An unmapped path is authenticated, then allowed with no filter.
	denial(t, h.check(t, call{method: "GET", path: "/my/custom/route"}), code.Code_UNAUTHENTICATED, 401, "Missing authentication token")
	hs := okHeaders(t, h.check(t, call{method: "GET", path: "/my/custom/route", token: alice}))
	if hs["x-langgate-filters"] != "{}" || hs["x-langgate-user-id"] != "alice" {
		t.Errorf("unmatched allow headers %v", hs)
	}
	if _, ok := hs["x-langgate-resource"]; ok {
		t.Error("unmatched path has a resource header")
	}

	strict := start(t, testengine.Options{Policy: strings.Replace(policyText, "routes: langgraph", "routes: langgraph\n  unmatched: deny", 1)})
	tok := strict.env.Token(t, "alice", nil)
	denial(t, strict.check(t, call{method: "GET", path: "/my/custom/route", token: tok}), code.Code_PERMISSION_DENIED, 403, "Forbidden")
}

// policyText is the LangGraph example, for variations.
var policyText = func() string {
	b, err := os.ReadFile("../../examples/langgraph/langgate.yaml")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

func TestHeaderMap(t *testing.T) {
	h := start(t, testengine.Options{})
	alice := h.env.Token(t, "alice", nil)
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/threads/t1", HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: ":path", RawValue: []byte("/threads/t1")},
			{Key: "Authorization", RawValue: []byte("Bearer " + alice)},
			{Key: "x-langgate-a", RawValue: []byte("1")},
			{Key: "x-langgate-a", RawValue: []byte("2")},
		}}},
	}}}
	resp, err := h.client.Check(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	hs := okHeaders(t, resp)
	if hs["x-langgate-user-id"] != "alice" {
		t.Errorf("header_map not read: %v", hs)
	}
	if got := resp.GetOkResponse().GetHeadersToRemove(); !slices.Equal(got, []string{"x-langgate-a"}) {
		t.Errorf("headers_to_remove %v", got)
	}
}

func TestMultiEventCopy(t *testing.T) {
	h := start(t, testengine.Options{Policy: strings.Replace(policyText, "    - on: store\n", `    - on: threads.create
      allow: "'admin' in user.permissions"
      message: Only admins may create threads
    - on: store
`, 1)})
	alice := h.env.Token(t, "alice", nil)
	// copy fires threads:read then threads:create; create is refused.
	resp := h.check(t, call{method: "POST", path: "/threads/t1/copy", token: alice})
	denial(t, resp, code.Code_PERMISSION_DENIED, 403, "Only admins may create threads")
	if !strings.Contains(reason(resp), "threads:read") || !strings.Contains(reason(resp), "threads:create") {
		t.Errorf("reason %q does not trace both events", reason(resp))
	}
	admin := h.env.Token(t, "root", map[string]any{"scope": "admin"})
	hs := okHeaders(t, h.check(t, call{method: "POST", path: "/threads/t1/copy", token: admin}))
	if hs["x-langgate-action"] != "read" || hs["x-langgate-filters"] != `{"owner":"root"}` {
		t.Errorf("copy headers %v", hs)
	}
}

// BenchmarkCheckGRPC measures a whole Check over a real loopback gRPC
// connection with a cached token: what Envoy waits for, minus the network.
func BenchmarkCheckGRPC(b *testing.B) {
	h := start(b, testengine.Options{})
	env, client := h.env, h.client
	tok := env.Token(b, "alice", nil)
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/threads/t1", Headers: map[string]string{
			":method": "GET", ":path": "/threads/t1", ":authority": "lg.example", "authorization": "Bearer " + tok}},
	}}}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Check(ctx, req)
			if err != nil || resp.GetStatus().GetCode() != 0 {
				b.Errorf("check: %v %v", resp, err)
				return
			}
		}
	})
}

// TestPolicySelection: Envoy's per-route context_extensions select the
// policy, then the :authority host, then the default; an unknown selector
// is a denial, never a fallback.
func TestPolicySelection(t *testing.T) {
	text, err := os.ReadFile("../../examples/policies/rest-api.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, testengine.Options{Policy: string(text)})
	alice := h.env.Token(t, "alice", nil)
	check := func(ctxExt map[string]string, authority, method, path string) *authv3.CheckResponse {
		t.Helper()
		resp, err := h.client.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			ContextExtensions: ctxExt,
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: method, Path: path,
				Headers: map[string]string{":authority": authority, "authorization": "Bearer " + alice}}},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	policyOf := func(resp *authv3.CheckResponse) string {
		return resp.GetDynamicMetadata().GetFields()["policy"].GetStringValue()
	}
	// By context extension, whatever the host.
	resp := check(map[string]string{"policy": "billing"}, "agents.example.com", "GET", "/customers/alice/invoices/1")
	if hs := okHeaders(t, resp); hs["x-langgate-resource"] != "invoices" || policyOf(resp) != "billing" {
		t.Errorf("context extension: %v %s", hs, policyOf(resp))
	}
	// By host, port ignored, wildcard suffix.
	resp = check(nil, "eu.billing.example.com:8443", "GET", "/customers/alice/invoices")
	if hs := okHeaders(t, resp); hs["x-langgate-action"] != "search" || policyOf(resp) != "billing" {
		t.Errorf("wildcard host: %v", hs)
	}
	resp = check(nil, "agents.example.com", "POST", "/threads")
	if okHeaders(t, resp)["x-langgate-metadata"] != `{"owner":"alice"}` || policyOf(resp) != "langgraph" {
		t.Errorf("exact host: %v", resp)
	}
	// Default.
	if resp = check(nil, "unknown.example.org", "POST", "/threads"); policyOf(resp) != "langgraph" {
		t.Errorf("default policy: %v", resp)
	}
	// Unknown selector: denied, no fallback.
	resp = check(map[string]string{"policy": "billing-v2"}, "billing.example.com", "GET", "/healthz")
	denial(t, resp, code.Code_PERMISSION_DENIED, 403, "Forbidden")
	if !strings.Contains(reason(resp), `policy="billing-v2" names no policy`) {
		t.Errorf("reason %q", reason(resp))
	}
	// The billing policy denies what it does not list.
	denial(t, check(map[string]string{"policy": "billing"}, "", "GET", "/threads/1"), code.Code_PERMISSION_DENIED, 403, "Forbidden")
}

// TestReasonHeader: with explain.reason_header, a denial tells the client
// why in x-langgate-reason, and never echoes the credential.
func TestReasonHeader(t *testing.T) {
	h := start(t, testengine.Options{Policy: policyText + "explain: {reason_header: true}\n"})
	bob := h.env.Token(t, "bob", nil)
	resp := h.check(t, call{method: "PUT", path: "/store/items", token: bob, body: `{"namespace":["alice"],"key":"k","value":{}}`})
	got := respHeader(resp.GetDeniedResponse().GetHeaders(), "x-langgate-reason")
	if !strings.Contains(got, `handler "store": allow "value.namespace[0] == user.identity" is false`) {
		t.Errorf("x-langgate-reason %q", got)
	}
	resp = h.check(t, call{method: "GET", path: "/threads/1", token: bob + "x"})
	got = respHeader(resp.GetDeniedResponse().GetHeaders(), "x-langgate-reason")
	if got == "" || strings.Contains(got, bob[:20]) {
		t.Errorf("x-langgate-reason on a bad token %q", got)
	}
	if ok := okHeaders(t, h.check(t, call{method: "GET", path: "/threads/1", token: bob})); ok["x-langgate-reason"] != "" {
		t.Error("reason header on an allow")
	}
}

// TestMessageLimit: a CheckRequest up to extauthz.MaxRecvBytes is decided
// (a body at langgate's 1 MiB limit and its headers); a larger one is
// refused by gRPC before it is decoded, which Envoy turns into its
// status_on_error.
func TestMessageLimit(t *testing.T) {
	h := start(t, testengine.Options{})
	tok := h.env.Token(t, "alice", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := func(body, header int) *authv3.CheckRequest {
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/threads/t1", RawBody: make([]byte, body), Headers: map[string]string{
				":authority": "langgraph.test", "authorization": "Bearer " + tok, "x-pad": strings.Repeat("p", header),
			}},
		}}}
	}
	resp, err := h.client.Check(ctx, req(1<<20, 512<<10))
	if err != nil {
		t.Fatalf("a 1.5 MiB request was refused: %v", err)
	}
	okHeaders(t, resp)
	_, err = h.client.Check(ctx, req(1<<20, extauthz.MaxRecvBytes))
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a request over MaxRecvBytes: %v, want ResourceExhausted", err)
	}
}
