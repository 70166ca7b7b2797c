package decision_test

import (
	"context"
	"strings"
	"testing"

	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/decision"
)

// FuzzDecide drives the whole pipeline with arbitrary methods, paths,
// bodies and headers. Invariants: it never panics; without a credential
// nothing but a public route is allowed; with a valid one, an allowed
// request always carries the caller's identity and never a client's
// x-langgate-* value.
func FuzzDecide(f *testing.F) {
	env := testengine.Start(f, testengine.Options{})
	alice := env.Token(f, "alice", nil)
	for _, seed := range []struct{ method, path, body, hdr string }{
		{"GET", "/threads/1", "", ""},
		{"PUT", "/store/items", `{"namespace":["alice"],"key":"k","value":{}}`, ""},
		{"POST", "/runs/batch", `[{"assistant_id":"a"},{}]`, ""},
		{"HEAD", "/ok/../threads/1", "", "x-langgate-user-id"},
		{"POST", "/threads/%2e%2e/store/items", "{", "x-auth-scheme"},
	} {
		f.Add(seed.method, seed.path, seed.body, seed.hdr, false)
		f.Add(seed.method, seed.path, seed.body, seed.hdr, true)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, method, path, body, hdr string, withToken bool) {
		h := map[string]string{}
		if hdr != "" {
			h[strings.ToLower(hdr)] = "smuggled"
		}
		if withToken {
			h["authorization"] = "Bearer " + alice
		}
		d := env.Engine.Decide(ctx, &decision.Request{Method: method, Path: path, Headers: h, Body: []byte(body)})
		switch {
		case d.Outcome == decision.Public:
			for _, hd := range d.Headers {
				t.Fatalf("public route set %s", hd.Name)
			}
		case d.Allow() && !withToken:
			t.Fatalf("%s %q allowed without a credential: %s", method, path, d.Reason)
		case d.Allow():
			identity := 0
			for _, hd := range d.Headers {
				if hd.Value == "smuggled" {
					t.Fatalf("client value survived in %s", hd.Name)
				}
				if hd.Name == decision.HeaderUserID {
					identity++
					if hd.Value != "alice" {
						t.Fatalf("identity %q", hd.Value)
					}
				}
			}
			if identity != 1 {
				t.Fatalf("%s %q allowed with %d identity headers, want 1: %s", method, path, identity, d.Reason)
			}
		case d.Status < 400 || d.Status > 599 || d.Body == "":
			t.Fatalf("denial without a status or body: %+v", d)
		}
		if d.Allow() && strings.HasPrefix(strings.ToLower(hdr), decision.HeaderPrefix) {
			removed := false
			for _, r := range d.RemoveHeaders {
				removed = removed || r == strings.ToLower(hdr)
			}
			set := false
			for _, hd := range d.Headers {
				set = set || hd.Name == strings.ToLower(hdr)
			}
			if !removed && !set {
				t.Fatalf("client header %q neither removed nor overwritten", hdr)
			}
		}
	})
}
