package authn_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/devissuer"
	"github.com/langgate/langgate/pkg/devissuer/devissuertest"
)

// clock is a settable clock shared by an issuer and an authenticator.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func introspectionYAML(is *devissuertest.Issuer, extra string) string {
	return `authenticate:
  introspection:
    url: ` + is.IntrospectionURL() + `
    client_id: ` + devissuer.DefaultClientID + `
    client_secret: ` + devissuer.DefaultClientSecret + `
` + extra + `  user:
    identity: claims.sub
    permissions: 'has(claims.scope) ? claims.scope.split(" ") : []'
`
}

// TestIntrospection: opaque tokens are resolved at a real RFC 7662 endpoint
// over HTTP with client authentication; active answers are cached no longer
// than cache_ttl and never past exp, inactive ones for negative_cache_ttl.
func TestIntrospection(t *testing.T) {
	clk := newClock()
	is := startIssuer(t, devissuer.Options{Now: clk.Now})
	a, _ := compile(t, introspectionYAML(is, "    audiences: ["+is.Audience+"]\n    cache_ttl: 1m\n    negative_cache_ttl: 10s\n"), authn.Options{Now: clk.Now})
	ctx := context.Background()

	tok, err := is.OpaqueToken("alice", 90*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	u, err := a.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if u.Identity != "alice" || !slices.Equal(u.Permissions, []string{"threads", "assistants", "store"}) || u.Claims["client_id"] != devissuer.DefaultClientID {
		t.Errorf("user %+v", u)
	}
	// Cached: no second request.
	n := is.IntrospectionRequests()
	if _, err := a.Authenticate(ctx, tok); err != nil || is.IntrospectionRequests() != n {
		t.Fatalf("second use: %v, requests %d → %d", err, n, is.IntrospectionRequests())
	}

	// A revocation is seen once cache_ttl has passed.
	is.Revoke(tok)
	clk.Advance(30 * time.Second)
	if _, err := a.Authenticate(ctx, tok); err != nil {
		t.Fatalf("within cache_ttl: %v", err)
	}
	clk.Advance(31 * time.Second)
	if _, err := a.Authenticate(ctx, tok); reason(err) != "token is not active" || kind(err) != authn.KindInvalid {
		t.Fatalf("after cache_ttl: %v", err)
	}
	// Inactive answers are cached too.
	n = is.IntrospectionRequests()
	if _, err := a.Authenticate(ctx, tok); reason(err) != "token is not active" || is.IntrospectionRequests() != n {
		t.Fatalf("negative cache: %v, requests %d → %d", err, n, is.IntrospectionRequests())
	}

	// An entry never outlives the token's exp, even within cache_ttl.
	short := is.MustOpaqueToken(t, "bob", 10*time.Second, nil)
	if _, err := a.Authenticate(ctx, short); err != nil {
		t.Fatal(err)
	}
	clk.Advance(11 * time.Second)
	if _, err := a.Authenticate(ctx, short); reason(err) != "token is not active" {
		t.Fatalf("past exp: %v", err)
	}

	for _, tc := range []struct {
		name   string
		extra  map[string]any
		reason string
	}{
		{"wrong audience", map[string]any{"aud": "other"}, "wrong audience"},
		{"empty identity", map[string]any{"sub": ""}, "user mapping failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := is.MustOpaqueToken(t, "carol", time.Hour, tc.extra)
			if _, err := a.Authenticate(ctx, tok); reason(err) != tc.reason {
				t.Errorf("got %v, want %q", err, tc.reason)
			}
		})
	}
	if _, err := a.Authenticate(ctx, "never-issued"); reason(err) != "token is not active" {
		t.Errorf("unknown token: %v", err)
	}
	st := a.Introspection().Stats()
	if st.Requests == 0 || st.Inactive < 2 || st.NegativeHits == 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestIntrospectionClientAuth: client_secret_post works too; a wrong secret
// is an outage of ours (unavailable), not the caller's fault, and is not
// cached.
func TestIntrospectionClientAuth(t *testing.T) {
	is := startIssuer(t, devissuer.Options{})
	tok := is.MustOpaqueToken(t, "alice", time.Hour, nil)
	post, _ := compile(t, introspectionYAML(is, "    auth_method: client_secret_post\n"), authn.Options{})
	if u, err := post.Authenticate(context.Background(), tok); err != nil || u.Identity != "alice" {
		t.Fatalf("client_secret_post: %v", err)
	}
	wrong, _ := compile(t, `authenticate:
  introspection: {url: `+is.IntrospectionURL()+`, client_id: langgate-dev, client_secret: wrong}
  user: {identity: claims.sub}
`, authn.Options{})
	for i := 0; i < 2; i++ {
		if _, err := wrong.Authenticate(context.Background(), tok); kind(err) != authn.KindUnavailable || reason(err) != "introspection failed" {
			t.Fatalf("wrong secret: %v", err)
		}
	}
	if st := wrong.Introspection().Stats(); st.Requests != 2 || st.Failures != 2 {
		t.Errorf("failures cached or not counted: %+v", st)
	}
}

// TestIntrospectionOutage: an endpoint that is down or hangs makes its
// tokens unavailable (401, "Unable to verify token") within the caller's
// deadline; it is not remembered once the endpoint is back; concurrent
// callers of one token share one request.
func TestIntrospectionOutage(t *testing.T) {
	is := startIssuer(t, devissuer.Options{})
	// The endpoint's own timeout (3 s) is 30 times the caller's deadline
	// (100 ms), so a call that waited for the one instead of the other is
	// told apart on a loaded machine.
	a, _ := compile(t, introspectionYAML(is, "    timeout: 3s\n"), authn.Options{})
	tok := is.MustOpaqueToken(t, "alice", time.Hour, nil)

	is.SetFailure(http.StatusBadGateway)
	if _, err := a.Authenticate(context.Background(), tok); kind(err) != authn.KindUnavailable {
		t.Fatalf("endpoint down: %v", err)
	}
	is.SetFailure(0)
	is.SetDelay(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	start := time.Now()
	_, err := a.Authenticate(ctx, tok)
	cancel()
	if kind(err) != authn.KindUnavailable || time.Since(start) > 2*time.Second {
		t.Fatalf("hanging endpoint: %v after %s (the caller's deadline is 100 ms, the endpoint's timeout 3 s)", err, time.Since(start))
	}

	is.SetDelay(200 * time.Millisecond)
	fresh := is.MustOpaqueToken(t, "bob", time.Hour, nil)
	n := is.IntrospectionRequests()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if u, err := a.Authenticate(context.Background(), fresh); err != nil || u.Identity != "bob" {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d concurrent callers failed", failed.Load())
	}
	if got := is.IntrospectionRequests() - n; got != 1 {
		t.Errorf("20 concurrent callers of one token caused %d requests, want 1", got)
	}
	// Back to normal once the hanging request (its 3 s timeout) has ended.
	is.SetDelay(0)
	waitFor(t, 10*time.Second, func() bool {
		u, err := a.Authenticate(context.Background(), tok)
		return err == nil && u.Identity == "alice"
	})
}

// TestIntrospectionAndJWTs: beside OIDC issuers, JWTs from the issuers are
// verified locally and never introspected; a JWT from an unknown issuer is
// refused without any network call unless `tokens: all`.
func TestIntrospectionAndJWTs(t *testing.T) {
	is := startIssuer(t, devissuer.Options{})
	other := startIssuer(t, devissuer.Options{})
	cfg := func(tokens string) string {
		return `authenticate:
  oidc: [{issuer: ` + is.URL + `, audiences: [` + is.Audience + `]}]
  introspection: {url: ` + is.IntrospectionURL() + `, client_id: langgate-dev, client_secret: langgate-dev-secret, tokens: ` + tokens + `}
  user: {identity: claims.sub}
`
	}
	opaque, _ := compile(t, cfg("opaque"), authn.Options{})
	all, _ := compile(t, cfg("all"), authn.Options{})
	waitReady(t, opaque, 5*time.Second)
	jwt := is.MustToken(t, "alice", time.Hour, nil)
	foreign := other.MustToken(t, "alice", time.Hour, nil)
	ot := is.MustOpaqueToken(t, "bob", time.Hour, nil)
	ctx := context.Background()

	if u, err := opaque.Authenticate(ctx, jwt); err != nil || u.Identity != "alice" {
		t.Fatal(err)
	}
	if u, err := opaque.Authenticate(ctx, ot); err != nil || u.Identity != "bob" {
		t.Fatal(err)
	}
	n := is.IntrospectionRequests()
	if _, err := opaque.Authenticate(ctx, foreign); reason(err) != "untrusted issuer" || is.IntrospectionRequests() != n {
		t.Errorf("foreign JWT with tokens: opaque: %v, requests %d → %d", err, n, is.IntrospectionRequests())
	}
	if _, err := all.Authenticate(ctx, foreign); reason(err) != "token is not active" || is.IntrospectionRequests() != n+1 {
		t.Errorf("foreign JWT with tokens: all: %v", err)
	}
	if other.JWKSRequests() != 0 {
		t.Error("the unknown issuer was contacted")
	}
}
