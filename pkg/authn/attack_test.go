package authn_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/devissuer"
	"github.com/langgate/langgate/pkg/devissuer/devissuertest"
)

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// attacker is a server an attacker controls, publishing the attacker's key:
// a verifier that ever follows a token's jku or x5u would fetch from it.
type attacker struct {
	srv  *httptest.Server
	key  jose.JSONWebKey
	hits atomic.Int64
}

func newAttacker(t *testing.T) *attacker {
	t.Helper()
	key, err := devissuer.NewKey(jose.RS256, "attacker")
	if err != nil {
		t.Fatal(err)
	}
	at := &attacker{key: key}
	at.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		at.hits.Add(1)
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.Public()}})
	}))
	t.Cleanup(at.srv.Close)
	return at
}

// selfSignedX5C returns an x5c chain (one self-signed certificate) for key.
func selfSignedX5C(t *testing.T, key *ecdsa.PrivateKey) []string {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "attacker"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return []string{base64.StdEncoding.EncodeToString(der)}
}

// TestJWTAttacks holds one case per rule of ENVOY.md "JWT rules" (RFC
// 8725): each token is refused with its stated reason, and none of them
// makes langgate fetch anything from a URL the token names.
func TestJWTAttacks(t *testing.T) {
	is := startIssuer(t, devissuer.Options{})
	real := is.SigningKey()
	es, err := devissuer.NewKey(jose.ES256, "es-1")
	if err != nil {
		t.Fatal(err)
	}
	is.SetKeys(real, es)
	at := newAttacker(t)
	a, _ := compile(t, `authenticate:
  oidc:
    - issuer: `+is.URL+`
      audiences: [`+is.Audience+`]
      leeway: 30s
      max_token_bytes: 4KiB
  user: {identity: claims.sub}
`, authn.Options{MinRefetch: time.Hour})
	typed, _ := compile(t, `authenticate:
  oidc:
    - issuer: `+is.URL+`
      audiences: [`+is.Audience+`]
      typ: at+jwt
      algorithms: [ES256]
  user: {identity: claims.sub}
`, authn.Options{MinRefetch: time.Hour})
	waitReady(t, a, 5*time.Second)
	waitReady(t, typed, 5*time.Second)

	now := time.Now()
	claims := func(over map[string]any) map[string]any { return is.Claims("alice", time.Hour, over) }
	sign := func(key jose.JSONWebKey, header, over map[string]any) string {
		t.Helper()
		tok, err := devissuertest.SignRaw(key, header, claims(over))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	realHeader := func(extra map[string]any) map[string]any {
		h := map[string]any{"kid": real.KeyID, "typ": "JWT"}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	payload := b64(mustJSON(t, claims(nil)))

	// HS256 with the issuer's public key as the HMAC secret: the classic
	// algorithm confusion.
	der, err := x509.MarshalPKIXPublicKey(real.Public().Key)
	if err != nil {
		t.Fatal(err)
	}
	hsInput := b64(mustJSON(t, map[string]any{"alg": "HS256", "kid": real.KeyID, "typ": "JWT"})) + "." + payload
	mac := hmac.New(sha256.New, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	mac.Write([]byte(hsInput))
	hs256 := hsInput + "." + b64(mac.Sum(nil))

	// An attacker's EC key, for alg/key mismatch and embedded keys.
	ecKey, err := devissuer.NewKey(jose.ES256, real.KeyID)
	if err != nil {
		t.Fatal(err)
	}
	ecPub, err := json.Marshal(ecKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	var ecJWK map[string]any
	_ = json.Unmarshal(ecPub, &ecJWK)
	atPub, _ := json.Marshal(at.key.Public())
	var atJWK map[string]any
	_ = json.Unmarshal(atPub, &atJWK)

	// Two signatures (JWS JSON general serialization), and the flattened
	// JSON serialization of a genuinely signed token.
	good := sign(real, realHeader(nil), nil)
	parts := strings.Split(good, ".")
	twoSigs := string(mustJSON(t, map[string]any{"payload": parts[1], "signatures": []map[string]string{
		{"protected": parts[0], "signature": parts[2]}, {"protected": parts[0], "signature": parts[2]}}}))
	flattened := string(mustJSON(t, map[string]any{"payload": parts[1], "protected": parts[0], "signature": parts[2]}))

	tests := []struct {
		rule, name string
		auth       *authn.Authenticator
		token      string
		reason     string
	}{
		{"alg none", "unsigned", a, b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + payload + ".", "algorithm not allowed"},
		{"alg none", "None spelled otherwise", a, b64([]byte(`{"alg":"None"}`)) + "." + payload + ".", "algorithm not allowed"},
		{"no HS*/RS* confusion", "HS256 signed with the RSA public key", a, hs256, "algorithm not allowed"},
		{"alg agrees with the key", "ES256 header on the RSA key's kid", a, sign(ecKey, map[string]any{"kid": real.KeyID}, nil), "algorithm does not match the key"},
		{"alg agrees with the key", "PS256 header on an RS256 key", a, sign(real, realHeader(map[string]any{"alg": "PS256"}), nil), "algorithm does not match the key"},
		{"alg allowlist", "RS256 where only ES256 is pinned", typed, sign(real, realHeader(map[string]any{"typ": "at+jwt"}), nil), "algorithm not allowed"},
		{"no keys from headers", "jku to the attacker's key set", a, sign(at.key, map[string]any{"kid": "attacker", "jku": at.srv.URL}, nil), "unknown signing key"},
		{"no keys from headers", "x5u to the attacker's certificate", a, sign(at.key, map[string]any{"kid": "attacker", "x5u": at.srv.URL}, nil), "unknown signing key"},
		{"no keys from headers", "embedded jwk, attacker's kid", a, sign(at.key, map[string]any{"kid": "attacker", "jwk": atJWK}, nil), "unknown signing key"},
		{"no keys from headers", "embedded jwk under the real kid", a, sign(at.key, map[string]any{"kid": real.KeyID, "jwk": atJWK}, nil), "bad signature"},
		{"no keys from headers", "embedded EC jwk, no kid", a, sign(ecKey, map[string]any{"jwk": ecJWK}, nil), "bad signature"},
		{"no keys from headers", "embedded x5c", a, sign(ecKey, map[string]any{"x5c": selfSignedX5C(t, ecKey.Key.(*ecdsa.PrivateKey))}, nil), "bad signature"},
		{"kid is untrusted text", "path traversal kid", a, sign(at.key, map[string]any{"kid": "../../../../etc/passwd"}, nil), "unknown signing key"},
		{"kid is untrusted text", "injection kid", a, sign(at.key, map[string]any{"kid": "' OR 1=1 --\u0000"}, nil), "unknown signing key"},
		{"kid is untrusted text", "kid too long", a, sign(at.key, map[string]any{"kid": strings.Repeat("k", 300)}, nil), "malformed token"},
		{"kid is untrusted text", "kid not a string", a, sign(real, map[string]any{"kid": 7}, nil), "malformed token"},
		{"unknown crit", "crit names exp", a, sign(real, realHeader(map[string]any{"crit": []string{"exp"}, "exp": 1}), nil), "unsupported critical header"},
		{"unknown crit", "crit b64 (RFC 7797)", a, sign(real, realHeader(map[string]any{"crit": []string{"b64"}, "b64": false}), nil), "unsupported critical header"},
		{"exactly one signature", "JSON serialization with two signatures", a, twoSigs, "malformed token"},
		{"exactly one signature", "flattened JSON serialization", a, flattened, "malformed token"},
		{"exactly one signature", "four parts", a, good + ".x", "malformed token"},
		{"exp required", "missing exp", a, sign(real, realHeader(nil), map[string]any{"exp": nil}), "missing exp"},
		{"exp required", "exp a string", a, sign(real, realHeader(nil), map[string]any{"exp": "tomorrow"}), "malformed exp"},
		{"exp required", "expired beyond leeway", a, sign(real, realHeader(nil), map[string]any{"exp": now.Add(-time.Minute).Unix()}), "expired"},
		{"nbf with leeway", "nbf in the future", a, sign(real, realHeader(nil), map[string]any{"nbf": now.Add(time.Minute).Unix()}), "not yet valid"},
		{"iat with leeway", "iat in the future", a, sign(real, realHeader(nil), map[string]any{"iat": now.Add(time.Minute).Unix()}), "issued in the future"},
		{"iss exact", "trailing slash", a, sign(real, realHeader(nil), map[string]any{"iss": is.URL + "/"}), "untrusted issuer"},
		{"iss exact", "another issuer", a, sign(real, realHeader(nil), map[string]any{"iss": "https://evil.example"}), "untrusted issuer"},
		{"iss exact", "no iss", a, sign(real, realHeader(nil), map[string]any{"iss": nil}), "untrusted issuer"},
		{"aud exact", "wrong audience", a, sign(real, realHeader(nil), map[string]any{"aud": "someone-else"}), "wrong audience"},
		{"aud exact", "audience prefix", a, sign(real, realHeader(nil), map[string]any{"aud": is.Audience + "x"}), "wrong audience"},
		{"aud exact", "no audience", a, sign(real, realHeader(nil), map[string]any{"aud": nil}), "wrong audience"},
		{"typ pinning", "an ID token (typ JWT) where at+jwt is pinned", typed, sign(ecKey, map[string]any{"kid": "x", "typ": "JWT"}, nil), "wrong token type"},
		{"typ pinning", "no typ where at+jwt is pinned", typed, sign(ecKey, map[string]any{"kid": "x"}, nil), "wrong token type"},
		{"bounded size", "over max_token_bytes", a, sign(real, realHeader(nil), map[string]any{"pad": strings.Repeat("p", 4<<10)}), "token too large"},
		{"bounded size", "over the absolute bound", a, strings.Repeat("a", 70<<10), "token too large"},
	}
	fetches := a.Issuers()[0].KeySet().Fetches()
	for _, tc := range tests {
		t.Run(tc.rule+"/"+tc.name, func(t *testing.T) {
			u, err := tc.auth.Authenticate(context.Background(), tc.token)
			if err == nil {
				t.Fatalf("accepted as %q", u.Identity)
			}
			if kind(err) != authn.KindInvalid || reason(err) != tc.reason {
				t.Errorf("got %v (reason %q), want invalid %q", err, reason(err), tc.reason)
			}
			if e, _ := authn.AsError(err); e != nil && strings.Contains(e.Error(), tc.token) && len(tc.token) > 8 {
				t.Error("the error echoes the token")
			}
		})
	}
	if n := at.hits.Load(); n != 0 {
		t.Errorf("the attacker's server was asked %d times: keys were taken from a token header", n)
	}
	// MinRefetch is an hour: at most the one fetch the first unknown kid
	// was allowed. A mismatched alg on a known kid never refetches.
	if got := a.Issuers()[0].KeySet().Fetches() - fetches; got > 1 {
		t.Errorf("the attack tokens caused %d key set fetches, want at most 1", got)
	}

	// The positive controls: the same issuer's genuine tokens pass, typ
	// compared as RFC 7515 says (case, optional application/ prefix).
	if _, err := a.Authenticate(context.Background(), good); err != nil {
		t.Errorf("genuine token refused: %v", err)
	}
	within := sign(real, realHeader(nil), map[string]any{"nbf": now.Add(20 * time.Second).Unix(), "exp": now.Add(-20 * time.Second).Unix()})
	if _, err := a.Authenticate(context.Background(), within); err != nil {
		t.Errorf("nbf and exp within the leeway refused: %v", err)
	}
	for _, typ := range []string{"at+jwt", "application/at+jwt", "AT+JWT"} {
		tok := sign(es, map[string]any{"kid": "es-1", "typ": typ}, map[string]any{"jti": typ})
		if _, err := typed.Authenticate(context.Background(), tok); err != nil {
			t.Errorf("typ %q refused: %v", typ, err)
		}
	}
}

// waitFor polls cond until it holds or the time is up.
func waitFor(t testing.TB, within time.Duration, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > within {
			t.Fatalf("condition not met after %s", within)
		}
	}
}

// TestKeyTypeAgainstCurve: an EC key is used only with its own curve's
// algorithm (a P-256 key never verifies an ES384 token).
func TestKeyTypeAgainstCurve(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	is := startIssuer(t, devissuer.Options{Algorithm: jose.ES256})
	a, _ := compile(t, "authenticate:\n  oidc: [{issuer: "+is.URL+", audiences: [x]}]\n  user: {identity: claims.sub}\n", authn.Options{MinRefetch: time.Hour})
	waitReady(t, a, 5*time.Second)
	// Sign ES384 with a P-384 key under the P-256 key's kid.
	k := jose.JSONWebKey{Key: p384, KeyID: "dev-1", Algorithm: "ES384"}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES384, Key: k}, nil)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := signer.Sign(mustJSON(t, map[string]any{"iss": is.URL, "sub": "m", "aud": "x", "exp": time.Now().Add(time.Hour).Unix()}))
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := obj.CompactSerialize()
	if _, err := a.Authenticate(context.Background(), tok); reason(err) != "algorithm does not match the key" {
		t.Errorf("got %v", err)
	}
}
