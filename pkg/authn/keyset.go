package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// MaxJWKSBytes bounds a key set document.
const MaxJWKSBytes = 1 << 20

// DefaultMinRefetch is the least time between two key set fetches caused by
// tokens with an unknown kid: a flood of forged tokens costs the identity
// provider at most one fetch per interval.
const DefaultMinRefetch = 10 * time.Second

// MinRSABits is the smallest RSA modulus a key set may use; smaller keys
// are dropped when the set is read.
const MinRSABits = 2048

// maxNegativeKids bounds the unknown-kid cache.
const maxNegativeKids = 1024

var (
	errUnknownKey   = errors.New("no key matches the token's kid")
	errBadSignature = errors.New("signature does not verify")
	errAlgMismatch  = errors.New("the token's alg does not fit the key its kid names")
	errNoKeys       = errors.New("no keys fetched yet")
	errRateLimited  = errors.New("key set refetch rate limited")
	// errMalformedJWS: the token does not parse as a compact JWS with one
	// signature.
	errMalformedJWS = errors.New("malformed JWS")
	// errAlgNotAllowed: the token's alg is not one the caller allows.
	errAlgNotAllowed = errors.New("signature algorithm not allowed")
	// errPayloadMismatch: the verified payload is not the one decoded.
	errPayloadMismatch = errors.New("the verified payload differs from the decoded one")
)

// KeySet is a JSON Web Key Set fetched over HTTP: kept in memory, refreshed
// in the background by its issuer on a schedule its Cache-Control header
// influences, and refetched on an unknown kid at most once per minRefetch.
// A kid still unknown after a fetch is remembered (negatively cached) for
// the same interval. It implements go-oidc's KeySet interface; langgate
// itself calls verify, with each policy's algorithm pins.
type KeySet struct {
	url        atomic.Pointer[string]
	client     *http.Client
	algs       []jose.SignatureAlgorithm
	minRefetch time.Duration
	now        func() time.Time
	log        *slog.Logger

	keys atomic.Pointer[[]jose.JSONWebKey]
	// lifetime is the freshness the last successful response declared
	// (Cache-Control max-age, Expires), or -1 when it declared none.
	lifetime atomic.Int64

	mu sync.Mutex
	// life is what fetches run under: the issuer's lifetime once it has
	// started (a fetch serves every waiting caller, so no one caller's
	// context may end it, but a retired or stopped issuer's may).
	life      context.Context
	inflight  chan struct{} // closed when the running fetch ends
	lastFetch time.Time
	lastErr   error
	negative  map[string]time.Time // kid → when a fetch last failed to find it

	fetches, failures, rateLimited, negativeHits atomic.Uint64
}

var _ oidc.KeySet = (*KeySet)(nil)

func newKeySet(client *http.Client, algs []jose.SignatureAlgorithm, minRefetch time.Duration, now func() time.Time, log *slog.Logger) *KeySet {
	k := &KeySet{client: client, algs: algs, minRefetch: minRefetch, now: now, log: log, negative: map[string]time.Time{}, life: context.Background()}
	k.lifetime.Store(-1)
	return k
}

// setLife makes fetches from now on run under ctx, which ends them.
func (k *KeySet) setLife(ctx context.Context) {
	k.mu.Lock()
	k.life = ctx
	k.mu.Unlock()
}

// setURL tells the key set where its keys are (once discovery found them).
func (k *KeySet) setURL(u string) { k.url.Store(&u) }

// Fetches reports how many times the key set was fetched.
func (k *KeySet) Fetches() uint64 { return k.fetches.Load() }

// FetchResults reports how many fetches succeeded and failed.
func (k *KeySet) FetchResults() (ok, failed uint64) {
	f := k.failures.Load()
	return k.fetches.Load() - f, f
}

// Loaded reports whether keys have been fetched at least once.
func (k *KeySet) Loaded() bool { return k.keys.Load() != nil }

// KeySetStats are a key set's counters.
type KeySetStats struct {
	// Fetches and Failures count fetches and the failed ones.
	Fetches, Failures uint64
	// RateLimited counts unknown-kid refetches refused by the rate limit.
	RateLimited uint64
	// NegativeHits counts tokens refused because their kid was recently
	// looked for and not found.
	NegativeHits uint64
	// Keys is the number of usable keys held.
	Keys int
}

// Stats returns the counters.
func (k *KeySet) Stats() KeySetStats {
	st := KeySetStats{Fetches: k.fetches.Load(), Failures: k.failures.Load(), RateLimited: k.rateLimited.Load(), NegativeHits: k.negativeHits.Load()}
	if keys := k.keys.Load(); keys != nil {
		st.Keys = len(*keys)
	}
	return st
}

// cacheLifetime returns the freshness lifetime the last successful response
// declared, if it declared one.
func (k *KeySet) cacheLifetime() (time.Duration, bool) {
	d := k.lifetime.Load()
	return time.Duration(d), d >= 0
}

// VerifySignature verifies a compact JWS against the key its kid names and
// returns the payload. A kid not in the set triggers a refetch (rate
// limited, and not at all while the kid is negatively cached); a known kid
// whose signature fails, or whose key does not fit the token's alg, never
// does.
func (k *KeySet) VerifySignature(ctx context.Context, token string) ([]byte, error) {
	return k.verify(ctx, token, k.algs)
}

// verify is VerifySignature for a token whose alg must be one of algs.
// Its errors wrap the key set's sentinels (errUnknownKey, errBadSignature,
// errAlgMismatch, errNoKeys, errMalformedJWS, errAlgNotAllowed).
func (k *KeySet) verify(ctx context.Context, token string, algs []jose.SignatureAlgorithm) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(token, algs)
	if err != nil {
		var unexpected *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &unexpected) {
			return nil, fmt.Errorf("%w: %w", errAlgNotAllowed, err)
		}
		return nil, fmt.Errorf("%w: %w", errMalformedJWS, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: %d signatures, want exactly 1", errMalformedJWS, len(jws.Signatures))
	}
	payload, err := k.verifyCached(jws)
	if !errors.Is(err, errUnknownKey) && !errors.Is(err, errNoKeys) {
		return payload, err
	}
	kid := jws.Signatures[0].Protected.KeyID
	if errors.Is(err, errUnknownKey) && k.negativelyCached(kid) {
		k.negativeHits.Add(1)
		return nil, err
	}
	rerr := k.refresh(ctx, false)
	switch {
	case errors.Is(rerr, errRateLimited):
		k.rateLimited.Add(1)
	case rerr != nil && k.keys.Load() == nil:
		return nil, fmt.Errorf("%w: %w", errNoKeys, rerr)
	}
	payload, err = k.verifyCached(jws)
	if errors.Is(err, errUnknownKey) && rerr == nil {
		k.rememberUnknown(kid)
	}
	return payload, err
}

// negativelyCached reports whether a fetch less than minRefetch ago already
// looked for kid and did not find it.
func (k *KeySet) negativelyCached(kid string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	at, ok := k.negative[kid]
	return ok && k.now().Sub(at) < k.minRefetch
}

// rememberUnknown records that a fresh key set does not hold kid. The map
// is bounded: when full, stale entries go, and if none are stale it starts
// over (a flood of distinct kids is held off by the rate limit anyway).
func (k *KeySet) rememberUnknown(kid string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	if len(k.negative) >= maxNegativeKids {
		for id, at := range k.negative {
			if now.Sub(at) >= k.minRefetch {
				delete(k.negative, id)
			}
		}
		if len(k.negative) >= maxNegativeKids {
			clear(k.negative)
		}
	}
	k.negative[kid] = k.lastFetch
}

func (k *KeySet) verifyCached(jws *jose.JSONWebSignature) ([]byte, error) {
	keys := k.keys.Load()
	if keys == nil {
		return nil, errNoKeys
	}
	sig := jws.Signatures[0].Protected
	named, tried := false, false
	for i := range *keys {
		key := &(*keys)[i]
		if sig.KeyID != "" && key.KeyID != sig.KeyID {
			continue
		}
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		named = true
		// One key, one algorithm: a key is used only with an algorithm of
		// its own type (and the one it states, if it states one), so an
		// RSA key never verifies an HMAC or ECDSA signature.
		if !algFits(key, sig.Algorithm) {
			continue
		}
		tried = true
		if payload, err := jws.Verify(key.Key); err == nil {
			return payload, nil
		}
	}
	switch {
	case tried:
		return nil, errBadSignature
	case named && sig.KeyID != "":
		return nil, errAlgMismatch
	default:
		return nil, errUnknownKey
	}
}

// algFits reports whether a public key may verify a signature made with alg.
func algFits(key *jose.JSONWebKey, alg string) bool {
	if key.Algorithm != "" && key.Algorithm != alg {
		return false
	}
	switch pk := key.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch pk.Curve {
		case elliptic.P256():
			return alg == string(jose.ES256)
		case elliptic.P384():
			return alg == string(jose.ES384)
		case elliptic.P521():
			return alg == string(jose.ES512)
		}
		return false
	case ed25519.PublicKey:
		return alg == string(jose.EdDSA)
	default:
		return false
	}
}

// refresh fetches the key set unless one was fetched less than minRefetch
// ago (force skips that check, for the scheduled refresh). Concurrent
// callers share one fetch and stop waiting when their context ends.
func (k *KeySet) refresh(ctx context.Context, force bool) error {
	k.mu.Lock()
	if ch := k.inflight; ch != nil {
		k.mu.Unlock()
		select {
		case <-ch:
			k.mu.Lock()
			err := k.lastErr
			k.mu.Unlock()
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if !force && !k.lastFetch.IsZero() && k.now().Sub(k.lastFetch) < k.minRefetch {
		k.mu.Unlock()
		return errRateLimited
	}
	ch := make(chan struct{})
	k.inflight = ch
	k.lastFetch = k.now()
	life := k.life
	k.mu.Unlock()

	// The fetch outlives any one caller's context: it serves them all. The
	// HTTP client's timeouts bound it, and the issuer's stop ends it.
	keys, lifetime, err := k.fetch(life)
	if err != nil {
		k.failures.Add(1)
	}
	k.fetches.Add(1)

	if err == nil {
		k.keys.Store(&keys)
		k.lifetime.Store(int64(lifetime))
		k.log.Debug("key set fetched", "keys", len(keys), "max_age", lifetime)
	} else {
		k.log.Warn("key set fetch failed; keeping the previous keys", "error", err, "have_keys", k.Loaded())
	}
	k.mu.Lock()
	k.lastErr = err
	k.inflight = nil
	k.mu.Unlock()
	close(ch)
	return err
}

// fetch reads the key set and the freshness lifetime its response declares
// (-1 for none).
func (k *KeySet) fetch(ctx context.Context) ([]jose.JSONWebKey, time.Duration, error) {
	up := k.url.Load()
	if up == nil {
		return nil, -1, errors.New("the key set URL is not known yet (discovery pending)")
	}
	url := *up
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, -1, fmt.Errorf("key set request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, -1, fmt.Errorf("fetching key set: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, -1, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return nil, -1, fmt.Errorf("reading %s: %w", url, err)
	}
	if len(data) > MaxJWKSBytes {
		return nil, -1, fmt.Errorf("key set at %s is larger than %d bytes", url, MaxJWKSBytes)
	}
	keys, err := parseJWKS(data)
	if err != nil {
		return nil, -1, err
	}
	lifetime, ok := freshness(resp.Header, k.now())
	if !ok {
		lifetime = -1
	}
	return keys, lifetime, nil
}

// freshness computes a response's freshness lifetime as HTTP caching does
// (RFC 9111 §4.2.1): Cache-Control max-age minus Age, else Expires minus
// Date; no-store and no-cache mean zero. ok is false when the response
// says nothing.
func freshness(h http.Header, now time.Time) (time.Duration, bool) {
	maxAge, found := time.Duration(0), false
	for _, line := range h.Values("Cache-Control") {
		for _, d := range strings.Split(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				return 0, true
			case "max-age":
				n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(val), `"`), 10, 64)
				if err != nil || n < 0 {
					return 0, true // RFC 9111 §4.2.1: an invalid max-age means stale
				}
				maxAge, found = time.Duration(min(n, int64(365*24*3600)))*time.Second, true
			}
		}
	}
	if found {
		if age, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64); err == nil && age > 0 {
			maxAge -= time.Duration(age) * time.Second
		}
		return max(maxAge, 0), true
	}
	if exp := h.Get("Expires"); exp != "" {
		t, err := http.ParseTime(exp)
		if err != nil {
			return 0, true // an invalid Expires ("0") means already expired
		}
		base := now
		if d, err := http.ParseTime(h.Get("Date")); err == nil {
			base = d
		}
		return max(t.Sub(base), 0), true
	}
	return 0, false
}

// parseJWKS decodes a key set, keeping only public signature keys of
// asymmetric types (RSA of at least MinRSABits); one unusable key does not
// discard the others. A set with no usable key is an error, so an identity
// provider that briefly serves an empty set does not erase the keys held.
func parseJWKS(data []byte) ([]jose.JSONWebKey, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("key set is not valid JSON: %w", err)
	}
	keys := make([]jose.JSONWebKey, 0, len(doc.Keys))
	for _, raw := range doc.Keys {
		var key jose.JSONWebKey
		if err := key.UnmarshalJSON(raw); err != nil {
			continue // unsupported key type or malformed key
		}
		switch pk := key.Key.(type) {
		case *rsa.PublicKey:
			if pk.N.BitLen() < MinRSABits {
				continue
			}
		case *ecdsa.PublicKey, ed25519.PublicKey:
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			key = key.Public()
		default:
			continue // symmetric keys never verify anything here
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, errors.New("key set holds no usable public signing key")
	}
	return keys, nil
}
