// Package testengine starts a real langgate decision engine for tests: a
// dev OIDC issuer on a random loopback port, a configuration pointed at it,
// and an engine whose keys are loaded before the test goes on.
package testengine

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/examples/langgraph"
	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/devissuer"
	"github.com/langgate/langgate/pkg/devissuer/devissuertest"
	"github.com/langgate/langgate/pkg/overload"
)

// Env is a running engine and the issuer it trusts.
type Env struct {
	Engine *decision.Engine
	Issuer *devissuertest.Issuer
	Config *config.File
}

// Options adjust Start.
type Options struct {
	// Policy is the configuration text; the LangGraph example when empty.
	// ${OIDC_ISSUER} and ${OIDC_AUDIENCE} point at the test issuer.
	Policy string
	// Now is the clock of both issuer and engine (time.Now).
	Now func() time.Time
	// Log receives the engine's logs (discarded when nil).
	Log io.Writer
	// CacheEntries bounds the verified-token cache (default when zero).
	CacheEntries int
	// Observer is told about every decision.
	Observer decision.Observer
	// Overload sheds unverified credentials at its High level.
	Overload *overload.Guard
}

// Start runs an issuer and an engine for the test's lifetime.
func Start(tb testing.TB, opts Options) *Env {
	tb.Helper()
	is, err := devissuertest.New(devissuer.Options{Now: opts.Now})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { is.Close() })
	policy := opts.Policy
	if policy == "" {
		policy = string(langgraph.Policy)
	}
	f, err := config.Parse("test.yaml", []byte(policy), func(name string) (string, bool) {
		switch name {
		case "OIDC_ISSUER":
			return is.URL, true
		case "OIDC_AUDIENCE":
			return is.Audience, true
		}
		return "", false
	})
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	if opts.Log != nil {
		log = slog.New(slog.NewTextHandler(opts.Log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	eng, err := decision.Build(f, decision.Options{Logger: log, Observer: opts.Observer, Authn: authn.Options{Now: opts.Now, CacheEntries: opts.CacheEntries, Overload: opts.Overload}})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	eng.Start(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for !eng.Ready() {
		if time.Now().After(deadline) {
			tb.Fatal("engine not ready after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return &Env{Engine: eng, Issuer: is, Config: f}
}

// PolicyWith is a policy named name that trusts the test issuer, maps
// the identity from claims.sub, routes LangGraph's API and has handlers:
// YAML list items indented by four spaces ("    - on: ...").
func PolicyWith(name, handlers string) string {
	return "name: " + name + `
authenticate:
  oidc: [{issuer: "${OIDC_ISSUER}", audiences: ["${OIDC_AUDIENCE}"]}]
  user: {identity: claims.sub}
authorize:
  routes: langgraph
  handlers:
` + handlers
}

// Token mints a one-hour token for subject with extra claims.
func (e *Env) Token(tb testing.TB, subject string, extra map[string]any) string {
	tb.Helper()
	tok, err := e.Issuer.Token(subject, time.Hour, extra)
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// Logger returns a debug-level text logger writing to w, or one that
// discards everything when w is nil.
func Logger(w io.Writer) *slog.Logger {
	if w == nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// WriteContextKey writes a JWK set of one fresh Ed25519 signing key (kid,
// EdDSA) to path, as a `context.keys` file, and returns the private key.
func WriteContextKey(tb testing.TB, path, kid string) ed25519.PrivateKey {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: priv, KeyID: kid, Algorithm: string(jose.EdDSA)}}})
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, set, 0o600); err != nil {
		tb.Fatal(err)
	}
	return priv
}

// ContextSection writes a fresh signing key of kid to a file of the test's
// and returns the configuration's `context` section signing with it, for
// the audience langgraph, and the private key.
func ContextSection(tb testing.TB, kid string) (string, ed25519.PrivateKey) {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "context-keys.json")
	priv := WriteContextKey(tb, path, kid)
	return "context:\n  keys: " + path + "\n  audience: [langgraph]\n", priv
}
