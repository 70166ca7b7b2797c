package upstream_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/langgate/langgate/pkg/authctx"
	"github.com/langgate/langgate/pkg/upstream"
	langgatev1 "github.com/langgate/langgate/proto/langgate/v1"
)

// signer returns a langgate signer with a fresh key of kid and its JWKS.
func signer(t *testing.T, kid string) (*authctx.Signer, []byte) {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k, KeyID: kid, Algorithm: "EdDSA"}}})
	keys, err := authctx.ParseKeys(set)
	if err != nil {
		t.Fatal(err)
	}
	return authctx.NewSigner(keys, authctx.Options{Issuer: "langgate", Audience: []string{"billing"}, TTL: time.Minute}), keys.JWKS()
}

func contextFor(t *testing.T, s *authctx.Signer, method, path string) string {
	t.Helper()
	jws, err := s.Sign(&langgatev1.AuthContext{Jti: "d", User: &langgatev1.User{Identity: "alice"},
		Events: []*langgatev1.Event{{Resource: "invoices", Action: "read"}}, Request: &langgatev1.RequestBinding{Method: method, Path: path}})
	if err != nil {
		t.Fatal(err)
	}
	return jws
}

// TestMiddleware: the net/http middleware against langgate's JWKS served
// over HTTP: a context for this request passes and reaches the handler;
// another path, none, or a forged one is a 401; after a key rotation the
// unknown kid makes it fetch the keys again.
func TestMiddleware(t *testing.T) {
	s1, jwks1 := signer(t, "k1")
	s2, jwks2 := signer(t, "k2")
	var served atomic.Value
	served.Store(jwks1)
	var fetches atomic.Int32
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		_, _ = w.Write(served.Load().([]byte))
	}))
	t.Cleanup(keys.Close)
	v := &upstream.Verifier{Source: &upstream.Remote{URL: keys.URL, MinRefresh: time.Nanosecond}, Audience: "billing"}
	app := httptest.NewServer(v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := upstream.FromContext(r.Context())
		if !ok || upstream.Event(c, "invoices", "read") == nil {
			http.Error(w, "no context", 500)
			return
		}
		_, _ = w.Write([]byte(c.GetUser().GetIdentity()))
	})))
	t.Cleanup(app.Close)
	call := func(path, token string) int {
		req, _ := http.NewRequest("GET", app.URL+path, nil)
		if token != "" {
			req.Header.Set(upstream.Header, token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := call("/invoices/1", contextFor(t, s1, "GET", "/invoices/1")); got != 200 {
		t.Errorf("a valid context: %d", got)
	}
	if got := call("/invoices/./1", contextFor(t, s1, "GET", "/invoices/1")); got != 200 {
		t.Errorf("a valid context, dot segment in the path: %d", got)
	}
	if got := call("/invoices/2", contextFor(t, s1, "GET", "/invoices/1")); got != 401 {
		t.Errorf("a context for another path: %d", got)
	}
	if got := call("/invoices/1", ""); got != 401 {
		t.Errorf("no context: %d", got)
	}
	forged, _ := signer(t, "k1")
	if got := call("/invoices/1", contextFor(t, forged, "GET", "/invoices/1")); got != 401 {
		t.Errorf("a context signed by another key under a known kid: %d", got)
	}
	served.Store(jwks2)
	before := fetches.Load()
	if got := call("/invoices/1", contextFor(t, s2, "GET", "/invoices/1")); got != 200 || fetches.Load() == before {
		t.Errorf("after a rotation: %d, %d fetches", got, fetches.Load()-before)
	}
}

func TestUnaryInterceptor(t *testing.T) {
	s, jwks := signer(t, "k1")
	keys, err := upstream.ParseKeys(jwks)
	if err != nil {
		t.Fatal(err)
	}
	v := &upstream.Verifier{Source: upstream.Static{K: keys}, Audience: "billing"}
	info := &grpc.UnaryServerInfo{FullMethod: "/billing.v1.Invoices/Get"}
	handler := func(ctx context.Context, _ any) (any, error) {
		c, _ := upstream.FromContext(ctx)
		return c.GetUser().GetIdentity(), nil
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(upstream.Header, contextFor(t, s, "POST", "/billing.v1.Invoices/Get")))
	if got, err := v.UnaryInterceptor()(ctx, nil, info, handler); err != nil || got != "alice" {
		t.Errorf("valid: %v %v", got, err)
	}
	other := metadata.NewIncomingContext(context.Background(), metadata.Pairs(upstream.Header, contextFor(t, s, "POST", "/billing.v1.Invoices/Delete")))
	if _, err := v.UnaryInterceptor()(other, nil, info, handler); status.Code(err) != codes.Unauthenticated {
		t.Errorf("another method: %v", err)
	}
	if _, err := v.UnaryInterceptor()(context.Background(), nil, info, handler); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no metadata: %v", err)
	}
}

func TestMatches(t *testing.T) {
	doc := map[string]any{"owner": "alice", "tags": []any{"a", "b"}, "public": true}
	for _, c := range []struct {
		filter string
		want   bool
	}{
		{`{}`, true},
		{`{"owner": "alice"}`, true},
		{`{"owner": "bob"}`, false},
		{`{"owner": {"$eq": "alice"}}`, true},
		{`{"tags": {"$contains": "a"}}`, true},
		{`{"tags": {"$contains": ["a", "b"]}}`, true},
		{`{"tags": {"$contains": ["a", "c"]}}`, false},
		{`{"owner": {"$contains": "a"}}`, false},
		{`{"$or": [{"owner": "bob"}, {"public": true}]}`, true},
		{`{"$or": [{"owner": "bob"}, {"public": false}]}`, false},
		{`{"$and": [{"owner": "alice"}, {"public": true}]}`, true},
		{`{"$and": [{"owner": "alice"}, {"public": false}]}`, false},
		{`{"missing": "x"}`, false},
		{`{"owner": {"$in": ["alice"]}}`, false},
		{`{"$not": {"owner": "bob"}}`, false},
	} {
		var f map[string]any
		if err := json.Unmarshal([]byte(c.filter), &f); err != nil {
			t.Fatal(err)
		}
		if got := upstream.Matches(doc, f); got != c.want {
			t.Errorf("%s: %v, want %v", c.filter, got, c.want)
		}
	}
}

// TestMiddlewareBindsQueryAndBody: the middleware refuses a context
// replayed onto another query (or the same one in another order) or
// another body, accepts the query in another encoding, and hands the
// handler the body it checked.
func TestMiddlewareBindsQueryAndBody(t *testing.T) {
	s, jwks := signer(t, "k1")
	keys, err := upstream.ParseKeys(jwks)
	if err != nil {
		t.Fatal(err)
	}
	v := &upstream.Verifier{Source: upstream.Static{K: keys}, Audience: "billing"}
	var got string
	h := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
	}))
	sign := func(query, body string) string {
		t.Helper()
		sum := sha256.Sum256([]byte(body))
		jws, err := s.Sign(&langgatev1.AuthContext{Jti: "d", User: &langgatev1.User{Identity: "bob"},
			Events:  []*langgatev1.Event{{Resource: "docs", Action: "put"}},
			Request: &langgatev1.RequestBinding{Method: "PUT", Path: "/docs", Query: query, BodySha256: hex.EncodeToString(sum[:])}})
		if err != nil {
			t.Fatal(err)
		}
		return jws
	}
	ctx := sign("folder=bob&tag=a%20b", `{"folder":"bob"}`)
	for _, c := range []struct {
		query, body string
		status      int
	}{
		{"folder=bob&tag=a+b", `{"folder":"bob"}`, 200},
		{"f%6Flder=%62ob&tag=a%20b", `{"folder":"bob"}`, 200},
		{"folder=alice&tag=a+b", `{"folder":"bob"}`, 401},
		{"tag=a+b&folder=bob", `{"folder":"bob"}`, 401},
		{"folder=bob&tag=a+b&folder=alice", `{"folder":"bob"}`, 401},
		{"folder=bob&tag=a+b", `{"folder":"alice"}`, 401},
		{"folder=bob&tag=a+b", ``, 401},
	} {
		got = ""
		req := httptest.NewRequest("PUT", "/docs?"+c.query, strings.NewReader(c.body))
		req.Header.Set(upstream.Header, ctx)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != c.status || (c.status == 200 && got != c.body) {
			t.Errorf("?%s %s: %d %s (the handler read %q), want %d", c.query, c.body, w.Code, w.Body.String(), got, c.status)
		}
	}
}
