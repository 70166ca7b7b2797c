// Package devissuertest is the dev issuer as tests use it: a real
// devissuer.Issuer behind a middleware that injects outages, slowness and
// JWKS caching headers and counts requests per endpoint, plus a signer of
// raw JWS for attack tests. It is imported by tests only, so none of it is
// in the shipped binary.
package devissuertest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/pkg/devissuer"
)

// Issuer is a running dev issuer with fault injection.
type Issuer struct {
	*devissuer.Issuer

	mu           sync.RWMutex
	cacheControl string
	failStatus   int
	delay        time.Duration
	discoHits    atomic.Uint64
	jwksHits     atomic.Uint64
	introHits    atomic.Uint64
}

// New starts an issuer (see devissuer.Start) behind the fault middleware;
// the caller closes it.
func New(opts devissuer.Options) (*Issuer, error) {
	is := &Issuer{}
	inner := opts.Wrap
	opts.Wrap = func(h http.Handler) http.Handler {
		if inner != nil {
			h = inner(h)
		}
		return is.faulty(h)
	}
	var err error
	if is.Issuer, err = devissuer.Start(opts); err != nil {
		return nil, err
	}
	return is, nil
}

// Start is New for a test: the issuer is closed when the test ends.
func Start(tb testing.TB, opts devissuer.Options) *Issuer {
	tb.Helper()
	is, err := New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = is.Close() })
	return is
}

// MustToken is Token for a test: a mint that fails fails the test, so a
// test of a refusal cannot pass on a token that was never made.
func (is *Issuer) MustToken(tb testing.TB, subject string, ttl time.Duration, extra map[string]any) string {
	tb.Helper()
	tok, err := is.Token(subject, ttl, extra)
	if err != nil {
		tb.Fatalf("minting a token for %q: %v", subject, err)
	}
	return tok
}

// MustOpaqueToken is OpaqueToken for a test, as MustToken is Token.
func (is *Issuer) MustOpaqueToken(tb testing.TB, subject string, ttl time.Duration, extra map[string]any) string {
	tb.Helper()
	tok, err := is.OpaqueToken(subject, ttl, extra)
	if err != nil {
		tb.Fatalf("minting an opaque token for %q: %v", subject, err)
	}
	return tok
}

// MustKey is devissuer.NewKey for a test.
func MustKey(tb testing.TB, alg jose.SignatureAlgorithm, kid string) jose.JSONWebKey {
	tb.Helper()
	k, err := devissuer.NewKey(alg, kid)
	if err != nil {
		tb.Fatalf("a %s key %q: %v", alg, kid, err)
	}
	return k
}

// SetJWKSCacheControl sets the Cache-Control header of the JWKS response
// ("" sends none).
func (is *Issuer) SetJWKSCacheControl(v string) {
	is.mu.Lock()
	is.cacheControl = v
	is.mu.Unlock()
}

// SetFailure makes discovery, JWKS and introspection answer with an HTTP
// status (an outage); 0 heals it.
func (is *Issuer) SetFailure(status int) {
	is.mu.Lock()
	is.failStatus = status
	is.mu.Unlock()
}

// SetDelay makes discovery, JWKS and introspection wait d before answering
// (a slow provider), or until the caller gives up; 0 removes it.
func (is *Issuer) SetDelay(d time.Duration) {
	is.mu.Lock()
	is.delay = d
	is.mu.Unlock()
}

// DiscoveryRequests counts requests to the discovery document.
func (is *Issuer) DiscoveryRequests() uint64 { return is.discoHits.Load() }

// JWKSRequests counts requests to the JWKS endpoint.
func (is *Issuer) JWKSRequests() uint64 { return is.jwksHits.Load() }

// IntrospectionRequests counts requests to the introspection endpoint.
func (is *Issuer) IntrospectionRequests() uint64 { return is.introHits.Load() }

// faulty wraps the issuer's handler with the injected delay and failure
// on every endpoint but the token endpoint, and counts requests.
func (is *Issuer) faulty(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case devissuer.TokenPath:
			h.ServeHTTP(w, r)
			return
		case devissuer.DiscoveryPath:
			is.discoHits.Add(1)
		case devissuer.JWKSPath:
			is.jwksHits.Add(1)
		case devissuer.IntrospectionPath:
			is.introHits.Add(1)
		}
		is.mu.RLock()
		delay, status, cc := is.delay, is.failStatus, is.cacheControl
		is.mu.RUnlock()
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if status != 0 {
			http.Error(w, "injected failure", status)
			return
		}
		if cc != "" && r.URL.Path == devissuer.JWKSPath {
			w.Header().Set("Cache-Control", cc)
		}
		h.ServeHTTP(w, r)
	})
}

// SignRaw signs claims with key under an arbitrary protected header, for
// attack tests: the header is used as given (add "alg", "kid", "typ",
// "crit", "jku", "jwk" as needed), except that "alg" defaults to the key's
// algorithm. The signature is always made with key's own algorithm, so a
// header that claims another one yields a token whose alg disagrees with
// its key.
func SignRaw(key jose.JSONWebKey, header, claims map[string]any) (string, error) {
	h := map[string]any{"alg": key.Algorithm}
	for k, v := range header {
		h[k] = v
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("devissuertest: %w", err)
	}
	cj, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devissuertest: %w", err)
	}
	input := base64.RawURLEncoding.EncodeToString(hj) + "." + base64.RawURLEncoding.EncodeToString(cj)
	sig, err := rawSign(key, []byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

func rawSign(key jose.JSONWebKey, input []byte) ([]byte, error) {
	switch k := key.Key.(type) {
	case *rsa.PrivateKey:
		sum := sha256.Sum256(input)
		sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
		if err != nil {
			return nil, fmt.Errorf("devissuertest: %w", err)
		}
		return sig, nil
	case *ecdsa.PrivateKey:
		sum := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, k, sum[:])
		if err != nil {
			return nil, fmt.Errorf("devissuertest: %w", err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out, nil
	case ed25519.PrivateKey:
		return ed25519.Sign(k, input), nil
	case []byte:
		return nil, fmt.Errorf("devissuertest: symmetric keys are not supported")
	default:
		return nil, fmt.Errorf("devissuertest: unsupported key type %T", key.Key)
	}
}
