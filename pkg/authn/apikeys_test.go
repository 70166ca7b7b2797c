package authn_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/config"
)

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	// Write and rename, as a Kubernetes Secret update swaps the file.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func keyEntry(hash, identity string, extra string) string {
	return fmt.Sprintf("- hash: %q\n  identity: %s\n%s", hash, identity, extra)
}

// TestAPIKeys: keys from a file and the environment map to their users; a
// key removed from the file (revoked) is refused once the file is re-read,
// without a restart; an expired key is refused; a broken file keeps the
// keys held.
func TestAPIKeys(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "keys.yaml")
	ci, ciHash, _ := authn.GenerateAPIKey()
	ops, opsHash, _ := authn.GenerateAPIKey()
	old, oldHash, _ := authn.GenerateAPIKey()
	fromEnv, envHash, _ := authn.GenerateAPIKey()
	writeFile(t, file, keyEntry(ciHash, "ci-bot", "  display_name: CI bot\n  permissions: [threads, assistants]\n  claims: {org: acme, tier: 2}\n")+
		keyEntry(opsHash, "ops", "")+
		keyEntry(oldHash, "old", "  expires: \"2020-01-01T00:00:00Z\"\n"))
	env := map[string]string{"KEYS": `[{"hash": "` + envHash + `", "identity": "bootstrap"}]`}
	a, _ := compile(t, `authenticate:
  credentials: [{header: x-api-key, type: api_key}]
  api_keys: {file: `+file+`, env: KEYS, reload_interval: 1s}
`, authn.Options{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	ctx := context.Background()
	auth := func(key string) (*authn.User, error) {
		return a.AuthenticateRequest(ctx, map[string]string{"x-api-key": key}, nil)
	}

	u, err := auth(ci)
	if err != nil {
		t.Fatal(err)
	}
	if u.Identity != "ci-bot" || u.DisplayName != "CI bot" || !slices.Equal(u.Permissions, []string{"threads", "assistants"}) ||
		u.Claims["org"] != "acme" || u.Claims["tier"] != float64(2) || u.Claims["sub"] != "ci-bot" {
		t.Errorf("user %+v", u)
	}
	if u, err := auth(fromEnv); err != nil || u.Identity != "bootstrap" {
		t.Errorf("environment key: %v %v", u, err)
	}
	if _, err := auth(old); reason(err) != "API key expired" {
		t.Errorf("expired key: %v", err)
	}
	if _, err := auth(ci + "x"); reason(err) != "unknown API key" || kind(err) != authn.KindInvalid {
		t.Errorf("wrong key: %v", err)
	}
	if _, err := auth(strings.ToUpper(ci)); reason(err) != "unknown API key" {
		t.Errorf("keys are case-sensitive: %v", err)
	}

	// Revoke ops by removing it from the file.
	if _, err := auth(ops); err != nil {
		t.Fatal(err)
	}
	writeFile(t, file, keyEntry(ciHash, "ci-bot", ""))
	waitFor(t, 5*time.Second, func() bool { _, err := auth(ops); return reason(err) == "unknown API key" })
	if _, err := auth(ci); err != nil {
		t.Errorf("a kept key stopped working: %v", err)
	}
	if _, err := auth(fromEnv); err != nil {
		t.Errorf("the environment's key was lost on reload: %v", err)
	}
	st := a.APIKeys().Stats()
	if st.Keys != 2 || st.Reloads != 1 {
		t.Errorf("stats %+v", st)
	}

	// A broken file keeps the keys held (and is counted).
	writeFile(t, file, "- hash: nope\n")
	waitFor(t, 5*time.Second, func() bool { return a.APIKeys().Stats().Failures > 0 })
	if _, err := auth(ci); err != nil {
		t.Errorf("a broken file dropped the keys: %v", err)
	}
}

// TestAPIKeyFileErrors: a key list is decoded strictly, and a problem is a
// configuration error at the api_keys section.
func TestAPIKeyFileErrors(t *testing.T) {
	_, h, _ := authn.GenerateAPIKey()
	tests := []struct{ name, content, want string }{
		{"not a list", "hash: x\n", "the key list must be a list"},
		{"bad hash", "- {hash: \"md5:abc\", identity: a}\n", `line 1: hash must be "sha256:" and 64 hex digits`},
		{"short hash", "- {hash: \"sha256:abcd\", identity: a}\n", `line 1: hash must be "sha256:" and 64 hex digits`},
		{"no identity", "- {hash: \"" + h + "\"}\n", "line 1: identity is required"},
		{"unknown field", "- hash: \"" + h + "\"\n  identity: a\n  role: admin\n", `line 3: unknown field "role"`},
		{"twice", "- {hash: \"" + h + "\", identity: a}\n- {hash: \"" + h + "\", identity: b}\n", "line 2: the same key hash is listed twice"},
		{"bad expiry", "- {hash: \"" + h + "\", identity: a, expires: tomorrow}\n", `line 1: expires "tomorrow" is not an RFC 3339 time`},
		{"empty permission", "- {hash: \"" + h + "\", identity: a, permissions: [\"\"]}\n", "line 1: a permission is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "k.yaml")
			writeFile(t, file, tc.content)
			f, err := config.Parse("c.yaml", []byte("authenticate:\n  api_keys: {file: "+file+"}\n"), func(string) (string, bool) { return "", false })
			if err != nil {
				t.Fatal(err)
			}
			_, err = authn.New("c.yaml", f.Authenticate, authn.NewRegistry(authn.Options{}), authn.Needs{Claims: true})
			want := "c.yaml:2:13: api_keys: " + file + ": " + tc.want
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got %v\nwant %s", err, want)
			}
		})
	}
	// A missing file and an unset variable are errors too.
	f, _ := config.Parse("c.yaml", []byte("authenticate:\n  api_keys: {file: /nonexistent/keys, env: NOPE}\n"), func(string) (string, bool) { return "", false })
	_, err := authn.New("c.yaml", f.Authenticate, authn.NewRegistry(authn.Options{LookupEnv: func(string) (string, bool) { return "", false }}), authn.Needs{Claims: true})
	if err == nil || !strings.Contains(err.Error(), "environment variable NOPE is not set") {
		t.Errorf("unset variable: %v", err)
	}
	_, err = authn.New("c.yaml", f.Authenticate, authn.NewRegistry(authn.Options{LookupEnv: func(string) (string, bool) { return "[]", true }}), authn.Needs{Claims: true})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/keys") {
		t.Errorf("missing file: %v", err)
	}
}

func TestHashAPIKey(t *testing.T) {
	// The documented shell equivalent: printf %s "$KEY" | sha256sum.
	sum := sha256.Sum256([]byte("lg_example"))
	if got, want := authn.HashAPIKey("lg_example"), "sha256:"+hex.EncodeToString(sum[:]); got != want {
		t.Errorf("HashAPIKey = %s, want %s", got, want)
	}
	k1, h1, err := authn.GenerateAPIKey()
	k2, _, _ := authn.GenerateAPIKey()
	if err != nil || k1 == k2 || !strings.HasPrefix(k1, "lg_") || len(k1) != 46 || authn.HashAPIKey(k1) != h1 {
		t.Errorf("GenerateAPIKey: %q %q %v", k1, h1, err)
	}
}

// TestAPIKeyNoRawKeyToCompare: the property that makes API keys timing
// safe is structural. The store holds only SHA-256 digests (a file with a
// raw key in place of a hash is refused, TestAPIKeyFileErrors), and a
// presented key is hashed before the one lookup by digest, so a near miss
// and a far miss run the same code on the same 32 bytes. No timing test on
// a shared two-core machine can see the tens of nanoseconds an early-exit
// comparison of a 46-character key would add to a 0.15 µs check (the old
// timing test's ±50 % band could not); BenchmarkAPIKeyRefusal shows the
// two costs side by side instead. What this test checks: a key one
// character off the real one, and one that is the real key's own hash
// text, are refused like any other wrong key, and the real key passes.
func TestAPIKeyNoRawKeyToCompare(t *testing.T) {
	real, hash, err := authn.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "k.yaml")
	writeFile(t, file, keyEntry(hash, "u1", ""))
	a, _ := compile(t, "authenticate:\n  credentials: [{header: x-api-key, type: api_key}]\n  api_keys: {file: "+file+"}\n", authn.Options{})
	ctx := context.Background()
	if u, err := a.Authenticate(ctx, real); err != nil || u.Identity != "u1" {
		t.Fatalf("the real key: %v", err)
	}
	near := real[:len(real)-1] + string(rune(real[len(real)-1])^1)
	for _, k := range []string{near, hash, strings.TrimPrefix(hash, "sha256:"), "lg_" + strings.Repeat("Z", len(real)-3)} {
		if _, err := a.Authenticate(ctx, k); err == nil {
			t.Errorf("%q accepted", k)
		}
	}
}

// BenchmarkAPIKeyRefusal: refusing a near miss (one character off a real
// key) and a far miss (nothing in common) among 1,000 keys; the two should
// cost the same (the key is hashed before anything is compared).
func BenchmarkAPIKeyRefusal(b *testing.B) {
	var entries strings.Builder
	var real string
	for i := 0; i < 1000; i++ {
		k, h, err := authn.GenerateAPIKey()
		if err != nil {
			b.Fatal(err)
		}
		if i == 500 {
			real = k
		}
		entries.WriteString(keyEntry(h, fmt.Sprintf("u%d", i), ""))
	}
	file := filepath.Join(b.TempDir(), "k.yaml")
	writeFile(b, file, entries.String())
	a, _ := compile(b, "authenticate:\n  credentials: [{header: x-api-key, type: api_key}]\n  api_keys: {file: "+file+"}\n", authn.Options{})
	ctx := context.Background()
	for name, key := range map[string]string{
		"near": real[:len(real)-1] + string(rune(real[len(real)-1])^1),
		"far":  "lg_" + strings.Repeat("Z", len(real)-3),
	} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := a.Authenticate(ctx, key); err == nil {
					b.Fatal("wrong key accepted")
				}
			}
		})
	}
}
