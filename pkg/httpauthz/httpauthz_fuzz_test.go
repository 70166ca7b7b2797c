package httpauthz_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/httpauthz"
)

// FuzzHTTPMode: whatever a proxy sends to the HTTP mode — any method,
// request target, header and body — the answer is a decision, never a
// panic or a 500; an allow carries a decision id and every header langgate
// owns; and the only identity an allow ever names is the one of the one
// valid token in the seeds (alice), never one taken from the request.
func FuzzHTTPMode(f *testing.F) {
	env := testengine.Start(f, testengine.Options{})
	var engines decision.Holder
	engines.Store(env.Engine)
	h := httpauthz.Handler(&engines, nil, nil)
	alice := "Bearer " + env.Token(f, "alice", nil)
	f.Add("GET", "/envoy/threads/t1", "Authorization", alice, "")
	f.Add("PUT", "/envoy/store/items", "Authorization", alice, `{"namespace":["alice"],"key":"k","value":{}}`)
	f.Add("GET", "/nginx", "X-Original-URI", "/threads/t1", "")
	f.Add("POST", "/traefik", "X-Forwarded-Uri", "/threads/search?limit=1", `{}`)
	f.Add("GET", "/envoy/ok", "X-Langgate-User-Id", "mallory", "")
	f.Add("GET", "/envoy/%2e%2e/threads", "Authorization", "Bearer x.y.z", "")
	f.Fuzz(func(t *testing.T, method, target, name, value, body string) {
		if target == "" || strings.ContainsAny(target, " \r\n") || !validToken(method) || !validToken(name) || strings.ContainsAny(value, "\r\n\x00") {
			return // net/http refuses these before any handler runs
		}
		r := &http.Request{Method: method, RequestURI: target, Host: "langgraph.test", Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}
		r.Header.Add(name, value)
		if name != "Authorization" {
			r.Header.Set("Authorization", alice)
		}
		if method != "" {
			r.Header.Set("X-Original-Method", method)
			r.Header.Set("X-Forwarded-Method", method)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		res := w.Result()
		switch {
		case res.StatusCode >= 500:
			t.Fatalf("%s %q: status %d, body %s", method, target, res.StatusCode, w.Body.String())
		case res.StatusCode == http.StatusOK:
			if res.Header.Get("X-Langgate-Decision-Id") == "" {
				t.Fatalf("an allow without a decision id")
			}
			if id, ok := res.Header["X-Langgate-User-Id"]; !ok || len(id) != 1 || id[0] != "" && id[0] != "alice" {
				t.Fatalf("%s %q allowed as %q", method, target, id)
			}
		}
	})
}

// validToken reports whether s is an HTTP token (a method or header name
// net/http would accept).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
