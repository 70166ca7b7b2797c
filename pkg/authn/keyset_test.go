package authn_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/devissuer"
	"github.com/langgate/langgate/pkg/devissuer/devissuertest"
)

func issuerYAML(is *devissuertest.Issuer, extra string) string {
	return "authenticate:\n  oidc:\n    - issuer: " + is.URL + "\n      audiences: [" + is.Audience + "]\n" + extra + "  user: {identity: claims.sub}\n"
}

func forge(t testing.TB, is *devissuertest.Issuer, kid string, n int) string {
	t.Helper()
	k, err := devissuer.NewKey(jose.ES256, kid)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := devissuer.SignWith(k, map[string]any{"iss": is.URL, "sub": "mallory", "aud": is.Audience, "exp": time.Now().Add(time.Hour).Unix(), "n": n})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestUnknownKidFlood: 1,000 forged tokens, each naming a kid of its own,
// sent concurrently by 50 clients, cost the identity provider one refetch
// (at most one per unknown_kid_refetch_interval); the same forged kid again is answered from
// the negative cache; genuine tokens keep passing throughout. The clock
// stands still during the flood, so however long a loaded machine takes
// over it, the interval does not pass.
func TestUnknownKidFlood(t *testing.T) {
	is := startIssuer(t, devissuer.Options{})
	clk := newClock()
	a, _ := compile(t, issuerYAML(is, "      unknown_kid_refetch_interval: 2s\n"), authn.Options{Now: clk.Now})
	waitReady(t, a, 5*time.Second)

	forged := make([]string, 1000)
	for i := range forged {
		forged[i] = forge(t, is, "forged-"+strconv.Itoa(i), i)
	}
	clk.Advance(2100 * time.Millisecond) // the initial fetch no longer counts against the interval
	before := is.JWKSRequests()
	var wg sync.WaitGroup
	var accepted, misclassified atomic.Int64
	work := make(chan string)
	for w := 0; w < 50; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for tok := range work {
				_, err := a.Authenticate(context.Background(), tok)
				switch {
				case err == nil:
					accepted.Add(1)
				case kind(err) != authn.KindInvalid:
					misclassified.Add(1)
				}
			}
		}()
	}
	start := time.Now()
	for i, tok := range forged {
		work <- tok
		if i%100 == 0 {
			good := is.MustToken(t, "alice", time.Hour, map[string]any{"jti": strconv.Itoa(i)})
			if _, err := a.Authenticate(context.Background(), good); err != nil {
				t.Errorf("genuine token refused during the flood: %v", err)
			}
		}
	}
	close(work)
	wg.Wait()
	if accepted.Load() != 0 || misclassified.Load() != 0 {
		t.Fatalf("accepted %d forged tokens, %d not classified invalid", accepted.Load(), misclassified.Load())
	}
	fetches := is.JWKSRequests() - before
	if fetches != 1 {
		t.Errorf("1,000 unknown-kid tokens caused %d JWKS fetches within one refetch interval, want 1", fetches)
	}
	t.Logf("1,000 forged tokens in %s: %d JWKS fetches", time.Since(start), fetches)

	// The first forged kid was looked for by the one fetch: it is now
	// refused from the negative cache, without waiting for anything.
	ks := a.Issuers()[0].KeySet()
	hits := ks.Stats().NegativeHits
	for i := 0; i < 100; i++ {
		if _, err := a.Authenticate(context.Background(), forged[0]); kind(err) != authn.KindInvalid {
			t.Fatal(err)
		}
	}
	st := ks.Stats()
	if st.NegativeHits == hits && st.RateLimited == 0 {
		t.Errorf("neither negative cache nor rate limit stopped a repeated unknown kid: %+v", st)
	}
	if got := is.JWKSRequests() - before; got > 2 {
		t.Errorf("repeats caused fetches: %d", got)
	}
}

// TestNegativeKidCache: a kid a fresh fetch did not find is refused without
// another fetch until the refetch interval has passed; then one fetch may
// find it (the key was published late).
func TestNegativeKidCache(t *testing.T) {
	is := startIssuer(t, devissuer.Options{})
	clk := newClock()
	a, _ := compile(t, issuerYAML(is, "      unknown_kid_refetch_interval: 1s\n"), authn.Options{Now: clk.Now})
	waitReady(t, a, 5*time.Second)
	late := devissuertest.MustKey(t, jose.ES256, "late")
	tok, err := devissuer.SignWith(late, map[string]any{"iss": is.URL, "sub": "bob", "aud": is.Audience, "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(1100 * time.Millisecond) // past the rate limit of the initial fetch

	before := is.JWKSRequests()
	if _, err := a.Authenticate(context.Background(), tok); reason(err) != "unknown signing key" {
		t.Fatalf("got %v", err)
	}
	if is.JWKSRequests()-before != 1 {
		t.Fatalf("an unknown kid did not cause exactly one fetch")
	}
	is.SetKeys(is.SigningKey(), late) // published now
	ks := a.Issuers()[0].KeySet()
	if _, err := a.Authenticate(context.Background(), tok); reason(err) != "unknown signing key" || ks.Stats().NegativeHits != 1 {
		t.Fatalf("within the interval: %v, stats %+v", err, ks.Stats())
	}
	clk.Advance(1100 * time.Millisecond)
	if u, err := a.Authenticate(context.Background(), tok); err != nil || u.Identity != "bob" {
		t.Fatalf("after the interval the late key was not fetched: %v", err)
	}
}

// TestRefreshHonoursCacheControl: the background refresh follows the JWKS
// response's Cache-Control max-age, bounded by min_refresh_interval and
// max_refresh_interval; without one it uses refresh_interval.
func TestRefreshHonoursCacheControl(t *testing.T) {
	tests := []struct {
		cacheControl string
		want         time.Duration
	}{
		{"", time.Hour}, // refresh_interval
		{"public, max-age=600", 10 * time.Minute}, // within bounds
		{"max-age=1", 2 * time.Second},            // raised to min_refresh_interval
		{"max-age=86400", 2 * time.Hour},          // cut to max_refresh_interval
		{"no-store", 2 * time.Second},
		{"max-age=soon", 2 * time.Second}, // invalid: stale
	}
	for _, tc := range tests {
		t.Run(tc.cacheControl, func(t *testing.T) {
			is := startIssuer(t, devissuer.Options{})
			is.SetJWKSCacheControl(tc.cacheControl)
			a, _ := compile(t, issuerYAML(is, "      refresh_interval: 1h\n      min_refresh_interval: 2s\n      max_refresh_interval: 2h\n"), authn.Options{})
			waitReady(t, a, 5*time.Second)
			if got := a.Issuers()[0].NextRefresh(); got != tc.want {
				t.Errorf("next refresh in %s, want %s", got, tc.want)
			}
		})
	}
	// And the schedule is followed: max-age=1 with a 1s floor refetches
	// about every second although refresh_interval is an hour.
	is := startIssuer(t, devissuer.Options{})
	is.SetJWKSCacheControl("max-age=1")
	a, _ := compile(t, issuerYAML(is, "      refresh_interval: 1h\n      min_refresh_interval: 1s\n"), authn.Options{})
	waitReady(t, a, 5*time.Second)
	waitFor(t, 5*time.Second, func() bool { return is.JWKSRequests() >= 3 })
}

// TestProviderDownMidRun: keys already fetched keep verifying while the
// provider fails every refresh; the outage is retried, counted, and over
// when the provider is back (a key rotated in meanwhile is then picked up).
func TestProviderDownMidRun(t *testing.T) {
	is := startIssuer(t, devissuer.Options{})
	a, _ := compile(t, issuerYAML(is, "      refresh_interval: 1s\n"), authn.Options{MinRefetch: time.Second})
	waitReady(t, a, 5*time.Second)
	ks := a.Issuers()[0].KeySet()

	is.SetFailure(http.StatusServiceUnavailable)
	waitFor(t, 10*time.Second, func() bool { return ks.Stats().Failures >= 2 })
	for i := 0; i < 5; i++ {
		tok := is.MustToken(t, "alice", time.Hour, map[string]any{"jti": strconv.Itoa(i)}) // uncached
		if _, err := a.Authenticate(context.Background(), tok); err != nil {
			t.Fatalf("known key refused during the outage: %v", err)
		}
	}
	if !a.Issuers()[0].Ready() {
		t.Error("not ready during the outage although keys are held")
	}
	if _, err := a.Authenticate(context.Background(), forge(t, is, "new", 0)); kind(err) != authn.KindInvalid {
		t.Errorf("unknown kid during the outage: %v", err)
	}

	next := devissuertest.MustKey(t, jose.EdDSA, "dev-2")
	is.SetKeys(next)
	is.SetFailure(0)
	tok := is.MustToken(t, "bob", time.Hour, nil)
	waitFor(t, 10*time.Second, func() bool { _, err := a.Authenticate(context.Background(), tok); return err == nil })
}

// TestSlowProvider: a provider that never answers costs a request no more
// than its own deadline, known keys keep working without waiting for it,
// the HTTP client's timeout ends every fetch, and nothing is left running
// once the registries stop.
//
// The request-path properties are shown with a patient HTTP client, one
// without a timeout, against a provider that hangs for a minute: a request
// that waited on a fetch would hang for that minute, so "it returned within
// 10 s" tells waiting from not waiting on any machine, however loaded, where
// a bound of a few hundred milliseconds would race the scheduler.
func TestSlowProvider(t *testing.T) {
	is := startIssuer(t, devissuer.Options{})
	other := startIssuer(t, devissuer.Options{})
	patient := &http.Client{Transport: &http.Transport{}}
	short := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{}}
	baseline := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	returns := func(what string, f func()) {
		t.Helper()
		done := make(chan struct{})
		start := time.Now()
		go func() { defer close(done); f() }()
		select {
		case <-done:
			t.Logf("%s: returned after %s", what, time.Since(start))
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: waited on the hanging provider", what)
		}
	}

	a, _ := compileIn(ctx, t, issuerYAML(is, "      refresh_interval: 1s\n"), authn.Options{HTTPClient: patient, MinRefetch: time.Second})
	waitReady(t, a, 5*time.Second)
	known := is.MustToken(t, "alice", time.Hour, map[string]any{"jti": "k"})
	// The same provider through a client with a timeout, for the fetches.
	c, _ := compileIn(ctx, t, issuerYAML(is, "      refresh_interval: 1s\n"), authn.Options{HTTPClient: short, MinRefetch: time.Second})
	waitReady(t, c, 5*time.Second)

	is.SetDelay(time.Minute)
	n := is.JWKSRequests()
	waitFor(t, 10*time.Second, func() bool { return is.JWKSRequests() >= n+2 }) // both refreshes are now hanging
	var err error
	returns("an unknown kid with a 100 ms deadline", func() {
		reqCtx, done := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer done()
		_, err = a.Authenticate(reqCtx, forge(t, is, "unknown", 0))
	})
	if err == nil {
		t.Fatal("forged token accepted")
	}
	returns("a known key, no deadline", func() { _, err = a.Authenticate(context.Background(), known) })
	if err != nil {
		t.Fatalf("known key refused while the provider hangs: %v", err)
	}
	// The client's timeout ends each fetch, and the next one starts.
	waitFor(t, 20*time.Second, func() bool { return c.Issuers()[0].KeySet().Stats().Failures >= 2 })

	// Slow at start: not ready, and refused at once, for as long as it
	// lasts; the client's timeout ends each discovery attempt.
	other.SetDelay(time.Minute)
	b, _ := compileIn(ctx, t, issuerYAML(other, ""), authn.Options{HTTPClient: short})
	tok := other.MustToken(t, "carol", time.Hour, nil)
	waitFor(t, 20*time.Second, func() bool { return other.DiscoveryRequests() >= 2 })
	returns("a token of a provider slow at start", func() { _, err = b.Authenticate(context.Background(), tok) })
	if kind(err) != authn.KindUnavailable {
		t.Errorf("slow provider at start: %v, want KindUnavailable", err)
	}
	if ready(b) {
		t.Error("ready without keys")
	}

	// Stop the registries: the goroutines go back to what they were.
	cancel()
	waitFor(t, 10*time.Second, func() bool {
		patient.CloseIdleConnections()
		short.CloseIdleConnections()
		return runtime.NumGoroutine() <= baseline
	})
}

// TestEmptyKeySetKeepsKeys: a provider that briefly serves an empty key set
// (or garbage) does not erase the keys held.
func TestEmptyKeySetKeepsKeys(t *testing.T) {
	key := devissuertest.MustKey(t, jose.RS256, "k1")
	var body atomic.Value
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.Public()}})
	body.Store(set)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body.Load().([]byte)) }))
	t.Cleanup(srv.Close)
	iss := "https://idp.example.com"
	a, _ := compile(t, "authenticate:\n  oidc: [{issuer: "+iss+", jwks_url: "+srv.URL+", audiences: [x], refresh_interval: 1s}]\n  user: {identity: claims.sub}\n", authn.Options{})
	waitReady(t, a, 5*time.Second)
	ks := a.Issuers()[0].KeySet()
	for _, bad := range []string{`{"keys":[]}`, `{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`, `not json`} {
		body.Store([]byte(bad))
		failures := ks.Stats().Failures
		waitFor(t, 5*time.Second, func() bool { return ks.Stats().Failures > failures })
		tok, err := devissuer.SignWith(key, map[string]any{"iss": iss, "sub": "alice", "aud": "x", "exp": time.Now().Add(time.Hour).Unix(), "b": bad})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.Authenticate(context.Background(), tok); err != nil {
			t.Errorf("after serving %s: %v", bad, err)
		}
	}
}

// TestHandoverStopsIssuers: a reload that drops an issuer stops its
// refresh loop (no more fetches).
func TestHandoverStopsIssuers(t *testing.T) {
	is := startIssuer(t, devissuer.Options{})
	a, reg := compile(t, issuerYAML(is, "      refresh_interval: 1s\n"), authn.Options{})
	waitReady(t, a, 5*time.Second)
	// It refreshes while it is in use: the test below can see a stop.
	live := is.JWKSRequests()
	waitFor(t, 10*time.Second, func() bool { return is.JWKSRequests() > live })
	reg.Handover(reg.Next(authn.Options{}))
	n := is.JWKSRequests()
	// Three refresh intervals; one fetch may have been in flight at the
	// handover.
	time.Sleep(3 * time.Second)
	if got := is.JWKSRequests(); got > n+1 {
		t.Errorf("a retired issuer kept fetching: %d → %d in 3 refresh intervals", n, got)
	}
}
