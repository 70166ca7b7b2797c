package authn_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/devissuer"
	"github.com/langgate/langgate/pkg/devissuer/devissuertest"
)

func newAuthenticator(t testing.TB, issuerURL, audience string, opts authn.Options) *authn.Authenticator {
	t.Helper()
	a, _ := compile(t, `authenticate:
  oidc:
    - issuer: `+issuerURL+`
      audiences: [`+audience+`]
      refresh_interval: 1s
  user:
    identity: claims.sub
    permissions: 'has(claims.scope) ? claims.scope.split(" ") : []'
`, opts)
	return a
}

// compile builds an authenticator from configuration text and starts its
// registry for the test's lifetime.
func compile(t testing.TB, text string, opts authn.Options) (*authn.Authenticator, *authn.Registry) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return compileIn(ctx, t, text, opts)
}

// compileIn is compile with a registry that runs until ctx ends.
func compileIn(ctx context.Context, t testing.TB, text string, opts authn.Options) (*authn.Authenticator, *authn.Registry) {
	t.Helper()
	return compileNeeds(ctx, t, text, opts, authn.Needs{Claims: true})
}

// compileNeeds is compileIn for a policy that reads what needs says.
func compileNeeds(ctx context.Context, t testing.TB, text string, opts authn.Options, needs authn.Needs) (*authn.Authenticator, *authn.Registry) {
	t.Helper()
	f, err := config.Parse("t.yaml", []byte(text), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	reg := authn.NewRegistry(opts)
	a, err := authn.New(f.Name, f.Authenticate, reg, needs)
	if err != nil {
		t.Fatal(err)
	}
	reg.Start(ctx)
	return a, reg
}

// startIssuer runs a dev issuer for the test's lifetime.
func startIssuer(t testing.TB, opts devissuer.Options) *devissuertest.Issuer {
	t.Helper()
	is, err := devissuertest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { is.Close() })
	return is
}

// reason returns an authentication error's reason ("" for success or an
// untyped error).
func reason(err error) string {
	if e, ok := authn.AsError(err); ok {
		return e.Reason
	}
	return ""
}

func ready(a *authn.Authenticator) bool {
	for _, iss := range a.Issuers() {
		if !iss.Ready() {
			return false
		}
	}
	return true
}

func waitReady(t testing.TB, a *authn.Authenticator, within time.Duration) {
	t.Helper()
	for start := time.Now(); !ready(a); time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > within {
			t.Fatalf("not ready after %s", within)
		}
	}
}

func kind(err error) authn.Kind {
	if e, ok := authn.AsError(err); ok {
		return e.Kind
	}
	return 0
}

// TestIssuerDownAtStart: langgate starts while the identity provider is
// unreachable, refuses tokens with 401 "unavailable" instead of hanging,
// and recovers by itself once the provider is up.
func TestIssuerDownAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	a := newAuthenticator(t, "http://"+addr, "langgate-dev", authn.Options{})

	// A token signed by a key the provider will serve later.
	key, err := devissuer.NewKey(jose.RS256, "dev-1")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := devissuer.SignWith(key, map[string]any{"iss": "http://" + addr, "sub": "alice", "aud": "langgate-dev", "exp": time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	// That the request path does not wait for a provider is
	// TestSlowProvider's; one that is down refuses the connection at once.
	_, err = a.Authenticate(context.Background(), tok)
	if kind(err) != authn.KindUnavailable {
		t.Fatalf("with the provider down: %v, want KindUnavailable", err)
	}
	if ready(a) {
		t.Error("ready without keys")
	}

	is, err := devissuertest.New(devissuer.Options{Addr: addr})
	if err != nil {
		t.Fatal(err)
	}
	defer is.Close()
	is.SetKeys(key)
	waitReady(t, a, 10*time.Second)
	u, err := a.Authenticate(context.Background(), tok)
	if err != nil || u.Identity != "alice" {
		t.Fatalf("after recovery: %v %v", u, err)
	}
}

func TestKeyRotationPickedUp(t *testing.T) {
	is, err := devissuertest.New(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer is.Close()
	a := newAuthenticator(t, is.URL, is.Audience, authn.Options{MinRefetch: time.Millisecond})
	waitReady(t, a, 5*time.Second)
	old := is.SigningKey()
	oldTok := is.MustToken(t, "alice", time.Hour, map[string]any{"jti": "old"})
	next := devissuertest.MustKey(t, jose.ES256, "dev-2")
	is.SetKeys(next, old) // rotate: new key signs, old still published
	newTok := is.MustToken(t, "bob", time.Hour, nil)
	if u, err := a.Authenticate(context.Background(), newTok); err != nil || u.Identity != "bob" {
		t.Fatalf("new key not picked up: %v", err)
	}
	if _, err := a.Authenticate(context.Background(), oldTok); err != nil {
		t.Fatalf("old key refused while still published: %v", err)
	}
	// Remove the old key; a new token from it is refused once keys refresh
	// (refresh_interval is 1s). Each try is a token never seen, so that
	// the cache cannot answer it.
	is.SetKeys(next)
	fetches := a.Issuers()[0].KeySet().Fetches()
	tries := 0
	waitFor(t, 10*time.Second, func() bool {
		tries++
		tok, err := devissuer.SignWith(old, map[string]any{"iss": is.URL, "sub": "alice", "aud": is.Audience, "exp": time.Now().Add(time.Hour).Unix(), "jti": "old-" + strconv.Itoa(tries)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Authenticate(context.Background(), tok)
		switch {
		case err == nil:
			return false // the old keys are still held
		case kind(err) != authn.KindInvalid:
			t.Fatalf("token from a removed key: %v, want invalid", err)
		}
		return true
	})
	if a.Issuers()[0].KeySet().Fetches() == fetches {
		t.Error("the removed key was refused without a refresh")
	}
}

func TestCache(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := authn.NewCache(3, 0, func() time.Time { return now })
	u := authn.NewUser("alice", "", nil, nil)
	key := func(s string) [32]byte { return sha256.Sum256([]byte(s)) }
	c.Put(key("a"), u, now.Add(time.Minute), 100)
	if _, ok := c.Get(key("a")); !ok {
		t.Fatal("miss right after put")
	}
	now = now.Add(time.Minute)
	if _, ok := c.Get(key("a")); ok {
		t.Fatal("entry outlived its exp")
	}
	for _, k := range []string{"b", "c", "d", "e"} {
		c.Put(key(k), u, now.Add(time.Hour), 100)
	}
	if st := c.Stats(); st.Entries != 3 || st.Evictions < 2 || st.Hits != 1 || st.Misses != 1 {
		t.Errorf("stats %+v", st)
	}
	small := authn.NewCache(100, 64*1024, func() time.Time { return now })
	for i := 0; i < 50; i++ {
		small.Put(key(string(rune('A'+i))), u, now.Add(time.Hour), 700)
	}
	if st := small.Stats(); st.Bytes > 64*1024 || st.Entries < 10 || st.Evictions == 0 {
		t.Errorf("byte bound: %+v", st)
	}
	// Putting a cached key again (an introspection refresh, concurrent
	// misses) keeps the byte count exact, even when the old entry expired.
	one := authn.NewCache(1, 1<<20, func() time.Time { return now })
	for i := 0; i < 50; i++ {
		one.Put(key("same"), u, now.Add(time.Duration(i%2)*time.Hour), 700)
	}
	if st := one.Stats(); st.Entries != 1 || st.Bytes <= 0 || st.Bytes > 64<<10 {
		t.Errorf("byte count drifted: %+v", st)
	}
	// One entry larger than a sixteenth of the cache is not cached at all.
	small.Put(key("huge"), u, now.Add(time.Hour), 8<<10)
	if _, ok := small.Get(key("huge")); ok {
		t.Error("a huge entry was cached")
	}
}

// FuzzAuthenticate: no input other than a genuinely signed token is ever
// accepted, and nothing panics.
func FuzzAuthenticate(f *testing.F) {
	is, err := devissuertest.New(devissuer.Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer is.Close()
	a := newAuthenticator(f, is.URL, is.Audience, authn.Options{})
	waitReady(f, a, 5*time.Second)
	good := is.MustToken(f, "alice", time.Hour, nil)
	f.Add(good)
	f.Add(good[:len(good)-2])
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Add("e30.e30.e30")
	f.Fuzz(func(t *testing.T, tok string) {
		u, err := a.Authenticate(context.Background(), tok)
		if err == nil && tok != good {
			t.Fatalf("accepted %q as %q", tok, u.Identity)
		}
		if err != nil && !errors.As(err, new(*authn.Error)) {
			t.Fatalf("untyped error %v", err)
		}
	})
}
