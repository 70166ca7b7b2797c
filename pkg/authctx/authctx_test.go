package authctx_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/pkg/authctx"
	langgatev1 "github.com/langgate/langgate/proto/langgate/v1"
)

func edKey(t testing.TB, kid string) jose.JSONWebKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"}
}

func keySet(t testing.TB, keys ...jose.JSONWebKey) []byte {
	t.Helper()
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseKeys(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ed := edKey(t, "a")
	for _, c := range []struct {
		name string
		set  []byte
		want string
	}{
		{"not JSON", []byte("{"), "not a JWK set"},
		{"empty", keySet(t), "holds no key"},
		{"no kid", keySet(t, jose.JSONWebKey{Key: ed.Key, Algorithm: "EdDSA"}), "a kid is required"},
		{"a kid twice", keySet(t, ed, edKey(t, "a")), "used twice"},
		{"Ed25519 with ES256", keySet(t, jose.JSONWebKey{Key: ed.Key, KeyID: "x", Algorithm: "ES256"}), "signs EdDSA"},
		{"P-384", keySet(t, jose.JSONWebKey{Key: ec384, KeyID: "x", Algorithm: "ES384"}), "P-256 with alg ES256"},
		{"RSA", keySet(t, jose.JSONWebKey{Key: rsaKey, KeyID: "x", Algorithm: "RS256"}), "Ed25519 (EdDSA) or P-256 (ES256)"},
		{"a public key only", keySet(t, ed.Public()), "a private"},
		{"an encryption key", keySet(t, jose.JSONWebKey{Key: ed.Key, KeyID: "x", Algorithm: "EdDSA", Use: "enc"}), "want sig"},
	} {
		if _, err := authctx.ParseKeys(c.set); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	keys, err := authctx.ParseKeys(keySet(t, ed, jose.JSONWebKey{Key: ec, KeyID: "b", Algorithm: "ES256"}))
	if err != nil {
		t.Fatal(err)
	}
	var pub jose.JSONWebKeySet
	if err := json.Unmarshal(keys.JWKS(), &pub); err != nil || len(pub.Keys) != 2 || !pub.Keys[0].IsPublic() || !pub.Keys[1].IsPublic() || keys.SigningKeyID() != "a" {
		t.Errorf("JWKS %s (%v), signing %q", keys.JWKS(), err, keys.SigningKeyID())
	}
	if strings.Contains(string(keys.JWKS()), `"d":`) {
		t.Error("the published set holds a private part")
	}
}

// verify checks a JWS against the published keys and decodes its payload.
func verify(t *testing.T, keys *authctx.Keys, jws string) map[string]any {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(keys.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	obj, err := jose.ParseSignedCompact(jws, []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	kid := obj.Signatures[0].Protected.KeyID
	if ks := set.Key(kid); len(ks) == 1 {
		payload, err := obj.Verify(ks[0].Key)
		if err != nil {
			t.Fatalf("signature: %v", err)
		}
		var m map[string]any
		if err := json.Unmarshal(payload, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	t.Fatalf("kid %q is not published", kid)
	return nil
}

func TestSign(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	ed := edKey(t, "new")
	keys, err := authctx.ParseKeys(keySet(t, ed, edKey(t, "old")))
	if err != nil {
		t.Fatal(err)
	}
	s := authctx.NewSigner(keys, authctx.Options{Issuer: "langgate", Audience: []string{"langgraph"}, TTL: time.Minute, Now: clock})
	ctx := func(jti string) *langgatev1.AuthContext {
		return &langgatev1.AuthContext{Jti: jti, Policy: "p", User: &langgatev1.User{Identity: "alice"},
			Request: &langgatev1.RequestBinding{Method: "GET", Path: "/threads/t1"},
			Events:  []*langgatev1.Event{{Resource: "threads", Action: "read"}}}
	}
	first, err := s.Sign(ctx("d-1"))
	if err != nil {
		t.Fatal(err)
	}
	m := verify(t, keys, first)
	if m["iss"] != "langgate" || m["jti"] != "d-1" || m["iat"] != float64(1_800_000_000) || m["exp"] != float64(1_800_000_060) {
		t.Errorf("payload %v", m)
	}
	if aud, _ := m["aud"].([]any); len(aud) != 1 || aud[0] != "langgraph" {
		t.Errorf("aud %v", m["aud"])
	}
	hdr, _ := json.Marshal(m)
	if !strings.Contains(string(hdr), `"path":"/threads/t1"`) {
		t.Errorf("payload lacks the request binding: %s", hdr)
	}
	// The same context within half its lifetime: the same signature.
	now = now.Add(29 * time.Second)
	sign := func(c *langgatev1.AuthContext) string {
		t.Helper()
		tok, err := s.Sign(c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if again := sign(ctx("d-2")); again != first {
		t.Error("an identical context was signed again within half its lifetime")
	}
	// Another request, or past half the lifetime: a new one.
	other := ctx("d-3")
	other.Request.Path = "/threads/t2"
	if o := sign(other); o == first {
		t.Error("a context for another path reused a signature")
	}
	now = now.Add(2 * time.Second)
	later := sign(ctx("d-4"))
	if later == first || verify(t, keys, later)["jti"] != "d-4" {
		t.Error("past half its lifetime the signature was reused")
	}
}

func BenchmarkSign(b *testing.B) {
	keys, err := authctx.ParseKeys(keySet(b, edKey(b, "k")))
	if err != nil {
		b.Fatal(err)
	}
	s := authctx.NewSigner(keys, authctx.Options{Issuer: "langgate", Audience: []string{"langgraph"}, TTL: time.Minute})
	c := func(i int) *langgatev1.AuthContext {
		return &langgatev1.AuthContext{Jti: "d", Policy: "p", User: &langgatev1.User{Identity: "alice", Permissions: []string{"threads"}},
			Request: &langgatev1.RequestBinding{Method: "GET", Path: "/threads/" + string(rune('a'+i%26))},
			Events:  []*langgatev1.Event{{Resource: "threads", Action: "read"}}}
	}
	b.Run("reused", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Sign(c(0)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fresh", func(b *testing.B) {
		fresh := authctx.NewSigner(keys, authctx.Options{Issuer: "langgate", Audience: []string{"langgraph"}, TTL: 2 * time.Second})
		i := 0
		for b.Loop() {
			i++
			ctx := c(0)
			ctx.Request.BodySha256 = string(rune(i))
			if _, err := fresh.Sign(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
