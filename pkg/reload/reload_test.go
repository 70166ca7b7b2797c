package reload_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/devissuer"
	"github.com/langgate/langgate/pkg/devissuer/devissuertest"
	"github.com/langgate/langgate/pkg/reload"
)

// policy renders the seed policy with a marker in the owner filter, so a
// decision tells which configuration made it.
func policy(marker string) string {
	return `authenticate:
  oidc: [{issuer: "${OIDC_ISSUER}", audiences: ["${OIDC_AUDIENCE}"]}]
  user: {identity: claims.sub}
authorize:
  handlers:
    - on: "*"
      filters: {owner: user.identity, config: "'` + marker + `'"}
`
}

type recorder struct {
	mu       sync.Mutex
	ok, fail int
}

func (r *recorder) Reloaded(ok bool, _ string, _ time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok {
		r.ok++
	} else {
		r.fail++
	}
}

func (r *recorder) counts() (int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ok, r.fail
}

type fixture struct {
	is       *devissuertest.Issuer
	reloader *reload.Reloader
	holder   *decision.Holder
	rec      *recorder
	token    string
}

func newFixture(t *testing.T, source reload.Source) *fixture {
	t.Helper()
	is, err := devissuertest.New(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { is.Close() })
	fx := &fixture{is: is, holder: &decision.Holder{}, rec: &recorder{}}
	fx.reloader = &reload.Reloader{
		Source: source,
		Lookup: func(k string) (string, bool) {
			switch k {
			case "OIDC_ISSUER":
				return is.URL, true
			case "OIDC_AUDIENCE":
				return is.Audience, true
			}
			return "", false
		},
		Holder:   fx.holder,
		Build:    decision.Options{Logger: slog.New(slog.DiscardHandler)},
		Recorder: fx.rec,
		Log:      slog.New(slog.DiscardHandler),
	}
	if fx.token, err = is.Token("alice", time.Hour, nil); err != nil {
		t.Fatal(err)
	}
	return fx
}

// marker returns which configuration decided a read for alice.
func (fx *fixture) marker(t *testing.T) string {
	d := fx.holder.Load().Decide(context.Background(), &decision.Request{Method: "GET", Path: "/threads/1",
		Headers: map[string]string{"authorization": "Bearer " + fx.token}})
	if !d.Allow() {
		return "DENIED: " + d.Reason
	}
	m, _ := d.Filters["config"].(string)
	return m
}

func waitReady(t *testing.T, h *decision.Holder) {
	t.Helper()
	for start := time.Now(); h.Load() == nil || !h.Load().Ready(); time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("engine not ready")
		}
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReloadUnderLoad: while decisions run concurrently, reloads swap the
// policy; every decision is made whole by one configuration or the other
// (never a failure or a mix), and the new one is in force afterwards.
func TestReloadUnderLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "langgate.yaml")
	writeFile(t, path, policy("v1"))
	fx := newFixture(t, reload.FileSource(path))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := fx.reloader.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, fx.holder)
	firstIssuer := fx.holder.Load().Issuers()[0]

	var decisions, wrong atomic.Int64
	var bad atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				m := fx.marker(t)
				decisions.Add(1)
				if !strings.HasPrefix(m, "v") {
					wrong.Add(1)
					bad.Store(m)
				}
			}
		}()
	}
	for i := 2; i <= 6; i++ {
		time.Sleep(20 * time.Millisecond)
		writeFile(t, path, policy("v"+string(rune('0'+i))))
		if err := fx.reloader.Reload(ctx); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if wrong.Load() != 0 {
		t.Fatalf("%d of %d decisions failed during reloads, e.g. %v", wrong.Load(), decisions.Load(), bad.Load())
	}
	if got := fx.marker(t); got != "v6" {
		t.Errorf("after the reloads the policy is %q, want v6", got)
	}
	// The issuer (and its keys) survived five reloads.
	if fx.holder.Load().Issuers()[0] != firstIssuer {
		t.Error("an unchanged issuer was replaced by a reload")
	}
	// So did the token cache: the token was verified by the first
	// requests only (at most one per worker racing), not once per reload.
	if st := fx.holder.Load().Registry().CacheTotals(); st.Misses > 5 || st.Hits < uint64(decisions.Load())-5 {
		t.Errorf("token cache did not survive the reloads: %+v after %d decisions", st, decisions.Load())
	}
	if ok, fail := fx.rec.counts(); ok != 6 || fail != 0 {
		t.Errorf("recorded %d successes and %d failures, want 6 and 0", ok, fail)
	}
	t.Logf("%d decisions during 5 reloads, none failed", decisions.Load())
}

// TestBadReloadKeepsOld: a configuration that fails to parse, validate or
// compile is rejected, counted, and the last good one keeps serving.
func TestBadReloadKeepsOld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "langgate.yaml")
	writeFile(t, path, policy("good"))
	fx := newFixture(t, reload.FileSource(path))
	ctx := context.Background()
	if err := fx.reloader.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, fx.holder)
	for _, bad := range []string{
		"authenticate: [", // YAML
		strings.Replace(policy("x"), "on:", "onn:", 1),                      // unknown field
		strings.Replace(policy("x"), "user.identity", "user.identity +", 1), // CEL
		strings.Replace(policy("x"), "${OIDC_AUDIENCE}", "${MISSING}", 1),   // environment
	} {
		writeFile(t, path, bad)
		err := fx.reloader.Reload(ctx)
		var list config.ErrorList
		if !errors.As(err, &list) {
			t.Errorf("reload of %q: %v, want configuration errors", bad[:min(30, len(bad))], err)
		}
		if got := fx.marker(t); got != "good" {
			t.Errorf("after a bad reload the policy is %q, want the last good one", got)
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := fx.reloader.Reload(ctx); err == nil {
		t.Error("a missing file reloaded")
	}
	if ok, fail := fx.rec.counts(); ok != 1 || fail != 5 {
		t.Errorf("recorded %d successes and %d failures, want 1 and 5", ok, fail)
	}
	writeFile(t, path, policy("good"))
	if err := fx.reloader.Reload(ctx); !errors.Is(err, reload.ErrUnchanged) {
		t.Errorf("same content: %v, want ErrUnchanged", err)
	}
	// A rejected content is not rebuilt (and logged, and counted) again
	// every watch interval; SIGHUP (ReloadNow) retries it.
	writeFile(t, path, "authenticate: [")
	_ = fx.reloader.Reload(ctx)
	_, before := fx.rec.counts()
	if err := fx.reloader.Reload(ctx); !errors.Is(err, reload.ErrUnchanged) {
		t.Errorf("the same rejected content: %v, want ErrUnchanged", err)
	}
	if _, after := fx.rec.counts(); after != before {
		t.Errorf("a rejected content was counted again (%d -> %d)", before, after)
	}
	if err := fx.reloader.ReloadNow(ctx); err == nil || errors.Is(err, reload.ErrUnchanged) {
		t.Errorf("ReloadNow of a rejected content: %v, want its errors", err)
	}
	if got := fx.marker(t); got != "good" {
		t.Errorf("policy %q after the rejections", got)
	}
}

// TestFailedBuildStartsNothing: a configuration that adds an issuer and
// fails to compile never contacts that issuer; the same issuer in a good
// configuration is discovered once it is committed.
func TestFailedBuildStartsNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "langgate.yaml")
	writeFile(t, path, policy("good"))
	fx := newFixture(t, reload.FileSource(path))
	other := devissuertest.Start(t, devissuer.Options{})
	ctx := context.Background()
	if err := fx.reloader.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, fx.holder)
	withOther := func(marker string) string {
		return strings.Replace(policy(marker), `oidc: [{issuer: "${OIDC_ISSUER}", audiences: ["${OIDC_AUDIENCE}"]}]`,
			`oidc: [{issuer: "${OIDC_ISSUER}", audiences: ["${OIDC_AUDIENCE}"]}, {issuer: "`+other.URL+`", audiences: [x]}]`, 1)
	}
	bad := strings.Replace(withOther("x"), "user.identity", "user.identity +", 1)
	if bad == withOther("x") || !strings.Contains(bad, other.URL) {
		t.Fatal("the test configuration did not change")
	}
	writeFile(t, path, bad)
	if err := fx.reloader.Reload(ctx); err == nil {
		t.Fatal("the bad configuration loaded")
	}
	// Proving an absence takes a wait: a started discovery loop asks at
	// once, so 300 ms is ample.
	time.Sleep(300 * time.Millisecond)
	if n := other.DiscoveryRequests(); n != 0 {
		t.Errorf("a configuration that failed to build contacted its new issuer %d times", n)
	}
	writeFile(t, path, withOther("good2"))
	if err := fx.reloader.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if n := other.DiscoveryRequests(); n == 0 || !fx.holder.Load().Ready() {
		t.Errorf("the committed configuration's new issuer: %d discovery requests, ready %v", n, fx.holder.Load().Ready())
	}
	if got := fx.marker(t); got != "good2" {
		t.Errorf("policy %q after the good reload", got)
	}
}

// TestWatchConfigMapSwap: Kubernetes updates a mounted ConfigMap by
// swapping a ..data symlink; Watch sees it. SIGHUP reloads too.
func TestWatchConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	mustDir := func(name, text string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, name, "langgate.yaml"), text)
	}
	mustDir("..2026_11_27_1", policy("cm1"))
	if err := os.Symlink("..2026_11_27_1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/langgate.yaml", filepath.Join(dir, "langgate.yaml")); err != nil {
		t.Fatal(err)
	}
	fx := newFixture(t, reload.FileSource(filepath.Join(dir, "langgate.yaml")))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := fx.reloader.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	waitReady(t, fx.holder)
	hup := make(chan os.Signal, 1)
	first := make(chan struct{})
	go func() { fx.reloader.Watch(ctx, 20*time.Millisecond, hup); close(first) }()

	// The kubelet's atomic swap: a new timestamped dir, a new ..data link
	// renamed over the old one.
	mustDir("..2026_11_27_2", policy("cm2"))
	if err := os.Symlink("..2026_11_27_2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return fx.marker(t) == "cm2" }, "the ConfigMap swap was not picked up")

	// SIGHUP with a watcher that would not poll for an hour. The first
	// watcher (20 ms) has returned before the file changes, so only the
	// SIGHUP can load it: nothing else reads the file.
	cancel()
	<-first
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	writeFile(t, filepath.Join(dir, "..2026_11_27_2", "langgate.yaml"), policy("hup"))
	go fx.reloader.Watch(ctx2, time.Hour, hup)
	// Without the signal, the change stays unseen.
	time.Sleep(100 * time.Millisecond)
	if got := fx.marker(t); got != "cm2" {
		t.Fatalf("the configuration changed to %q with no watcher polling and no SIGHUP", got)
	}
	hup <- syscall.SIGHUP
	eventually(t, func() bool { return fx.marker(t) == "hup" }, "SIGHUP did not reload")
}

func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 5*time.Second {
			t.Fatal(msg)
		}
	}
}

// TestKeyFileRotationReloads: the signed context's key file is part of the
// configuration's content: a rotated key file (a Secret update) reloads
// like an edited configuration, and an unchanged one does not.
func TestKeyFileRotationReloads(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.json")
	writeKey := func(kid string) { testengine.WriteContextKey(t, keys, kid) }
	writeKey("k1")
	path := filepath.Join(dir, "langgate.yaml")
	writeFile(t, path, policy("good")+"context:\n  keys: "+keys+"\n  audience: [langgraph]\n")
	fx := newFixture(t, reload.FileSource(path))
	ctx := context.Background()
	if err := fx.reloader.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fx.reloader.Reload(ctx); !errors.Is(err, reload.ErrUnchanged) {
		t.Errorf("nothing changed: %v, want ErrUnchanged", err)
	}
	writeKey("k2")
	if err := fx.reloader.Reload(ctx); err != nil {
		t.Fatalf("a rotated key file: %v", err)
	}
	if jwks := string(fx.holder.Load().ContextKeys().JWKS()); !strings.Contains(jwks, `"kid":"k2"`) {
		t.Errorf("after the rotation the keys are %s", jwks)
	}
}
