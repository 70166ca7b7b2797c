package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLimitsThroughEnvoy: each limit a client can push through the shipped
// Envoy has a clear answer, from Envoy or from langgate, and never an
// allow it should not be.
func TestLimitsThroughEnvoy(t *testing.T) {
	lg := startLanggate(t, seedPolicy)
	e := envoyFor(t, "front-proxy.yaml", lg, relaxed)
	base := e.URL("langgraph_http")
	alice := token(t, "alice")
	padded := func(n int) string { return strings.Repeat("a", n) }
	nested := func(depth int) []byte {
		return []byte(`{"namespace":["alice"],"key":"k","value":{"v":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}}`)
	}
	cookies := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("c%d=%s", i, padded(20))
		}
		return strings.Join(parts, "; ")
	}
	for _, c := range []struct {
		name         string
		method, path string
		headers      [][2]string
		body         []byte
		status       int
		detail       string // "" to skip
		reached      bool   // whether the upstream must get it
	}{
		{"a token at langgate's 16 KiB limit, padded", "GET", "/threads/t1", [][2]string{{"Authorization", "Bearer " + padded(16<<10)}}, nil, 401, "Invalid token", false},
		{"a token over the limit", "GET", "/threads/t1", [][2]string{{"Authorization", "Bearer " + padded(16<<10+1)}}, nil, 401, "Invalid token", false},
		{"a valid token with 12 KiB of other headers", "GET", "/threads/00000000-0000-4000-8000-000000000001",
			[][2]string{bearer(alice), {"X-Padding", padded(12 << 10)}}, nil, 404, "", true},
		{"headers over Envoy's 60 KiB", "GET", "/threads/t1", [][2]string{bearer(alice), {"X-Padding", padded(61 << 10)}}, nil, 431, "", false},
		{"300 cookies beside a valid token", "GET", "/threads/00000000-0000-4000-8000-000000000001",
			[][2]string{bearer(alice), {"Cookie", cookies(300)}}, nil, 404, "", true},
		{"a JSON body nested 1,000 deep on a route whose rule reads it", "PUT", "/store/items", [][2]string{bearer(alice), jsonType}, nested(1000), 204, "", true},
		{"a JSON body nested 100,000 deep", "PUT", "/store/items", [][2]string{bearer(alice), jsonType}, nested(100000), 403, "", false},
		{"a body over the route's 1 MiB", "PUT", "/store/items", [][2]string{bearer(alice), jsonType},
			[]byte(`{"namespace":["alice"],"key":"k","value":"` + padded(1<<20) + `"}`), 413, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := newProbe()
			r := send(t, h1, c.method, base+c.path, append(c.headers, probe(id)), c.body)
			if r.status != c.status {
				t.Fatalf("status %d, want %d; body %.300s", r.status, c.status, r.body)
			}
			if c.detail != "" && r.detail() != c.detail {
				t.Errorf("detail %q, want %q", r.detail(), c.detail)
			}
			if got := len(shared.tap.received(id)) > 0; got != c.reached {
				t.Errorf("reached the upstream: %v, want %v", got, c.reached)
			}
		})
	}

	// 50 KiB of other headers: Envoy (60 KiB) and langgate take them, and
	// the LangGraph JS server refuses them (Node accepts 16 KiB of headers,
	// langgate's included): a 431, or a connection it closes mid-answer.
	t.Run("a valid token with 50 KiB of other headers", func(t *testing.T) {
		id := newProbe()
		req, err := http.NewRequest("GET", base+"/threads/00000000-0000-4000-8000-000000000001", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+alice)
		req.Header.Set("X-Padding", padded(50<<10))
		req.Header.Set(probeHeader, id)
		resp, err := h1.Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("status %d: the upstream took 50 KiB of headers", resp.StatusCode)
			}
			t.Logf("status %d, body read: %v", resp.StatusCode, err)
		} else {
			t.Logf("request: %v", err)
		}
		if len(shared.tap.received(id)) != 1 {
			t.Error("langgate did not allow it on to the upstream")
		}
	})
}

// TestManyConcurrentChecks: 5,000 requests at once through Envoy (over
// HTTP/2, one connection, so Envoy multiplexes them onto its connections
// to langgate) are each answered by langgate, none by Envoy's circuit
// breakers or a reset stream; over gRPC and in HTTP mode.
func TestManyConcurrentChecks(t *testing.T) {
	lg := startLanggate(t, seedPolicy)
	eachMode(t, func(t *testing.T, m faultMode) { manyConcurrentChecks(t, lg, m) })
}

func manyConcurrentChecks(t *testing.T, lg *langgate, m faultMode) {
	e := envoyFor(t, m.file, lg, relaxed)
	base := e.URL("langgraph_http")
	const n = 5000
	errs := make(chan string, n)
	start := make(chan struct{})
	client := &http.Client{Timeout: 60 * time.Second, Transport: h2.Transport}
	for i := 0; i < n; i++ {
		go func() {
			<-start
			r, err := client.Post(base+"/threads/search", "application/json", strings.NewReader(`{}`))
			if err != nil {
				errs <- err.Error()
				return
			}
			r.Body.Close()
			if r.StatusCode != 401 {
				errs <- fmt.Sprintf("status %d", r.StatusCode)
				return
			}
			errs <- ""
		}()
	}
	close(start)
	bad := map[string]int{}
	for i := 0; i < n; i++ {
		if e := <-errs; e != "" {
			bad[e]++
		}
	}
	if len(bad) > 0 {
		t.Errorf("of %d concurrent requests without a token: %v", n, bad)
	}
}
