package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// MaxJWKSBytes bounds a key set document.
const MaxJWKSBytes = 1 << 20

// DefaultMinRefetch is the least time between two key set fetches caused by
// tokens with an unknown kid: a flood of forged tokens costs the identity
// provider at most one fetch per interval.
const DefaultMinRefetch = 10 * time.Second

var (
	errUnknownKey   = errors.New("no key matches the token's kid")
	errBadSignature = errors.New("signature does not verify")
	errNoKeys       = errors.New("no keys fetched yet")
)

// KeySet is a JSON Web Key Set fetched over HTTP: kept in memory, refreshed
// in the background by its issuer, and refetched on an unknown kid at most
// once per MinRefetch. It implements go-oidc's KeySet interface.
type KeySet struct {
	url        atomic.Pointer[string]
	client     *http.Client
	algs       []jose.SignatureAlgorithm
	minRefetch time.Duration
	now        func() time.Time
	log        *slog.Logger

	keys atomic.Pointer[[]jose.JSONWebKey]

	mu        sync.Mutex
	inflight  chan struct{} // closed when the running fetch ends
	lastFetch time.Time
	lastErr   error
	fetches   atomic.Uint64
	failures  atomic.Uint64
}

func newKeySet(client *http.Client, algs []jose.SignatureAlgorithm, minRefetch time.Duration, now func() time.Time, log *slog.Logger) *KeySet {
	return &KeySet{client: client, algs: algs, minRefetch: minRefetch, now: now, log: log}
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

// VerifySignature verifies a compact JWS against the key its kid names and
// returns the payload. A kid not in the set triggers a refetch (rate
// limited); a known kid whose signature fails never does.
func (k *KeySet) VerifySignature(ctx context.Context, token string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(token, k.algs)
	if err != nil {
		return nil, fmt.Errorf("parsing JWS: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("JWS has %d signatures, want exactly 1", len(jws.Signatures))
	}
	payload, err := k.verifyCached(jws)
	if !errors.Is(err, errUnknownKey) && !errors.Is(err, errNoKeys) {
		return payload, err
	}
	if rerr := k.refresh(ctx, false); rerr != nil && !errors.Is(rerr, errRateLimited) {
		if k.keys.Load() == nil {
			return nil, fmt.Errorf("%w: %w", errNoKeys, rerr)
		}
	}
	return k.verifyCached(jws)
}

func (k *KeySet) verifyCached(jws *jose.JSONWebSignature) ([]byte, error) {
	keys := k.keys.Load()
	if keys == nil {
		return nil, errNoKeys
	}
	sig := jws.Signatures[0].Protected
	tried := false
	for i := range *keys {
		key := &(*keys)[i]
		if sig.KeyID != "" && key.KeyID != sig.KeyID {
			continue
		}
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		// A key that states its algorithm is used with that algorithm only.
		if key.Algorithm != "" && key.Algorithm != sig.Algorithm {
			continue
		}
		tried = true
		if payload, err := jws.Verify(key.Key); err == nil {
			return payload, nil
		}
	}
	if !tried {
		return nil, errUnknownKey
	}
	return nil, errBadSignature
}

var errRateLimited = errors.New("key set refetch rate limited")

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
	k.mu.Unlock()

	// The fetch outlives any one caller's context: it serves them all.
	keys, err := k.fetch(context.WithoutCancel(ctx))
	if err != nil {
		k.failures.Add(1)
	}
	k.fetches.Add(1)

	k.mu.Lock()
	k.lastErr = err
	k.inflight = nil
	k.mu.Unlock()
	if err == nil {
		k.keys.Store(&keys)
		k.log.Debug("key set fetched", "keys", len(keys))
	} else {
		k.log.Warn("key set fetch failed; keeping the previous keys", "error", err, "have_keys", k.Loaded())
	}
	close(ch)
	return err
}

func (k *KeySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	up := k.url.Load()
	if up == nil {
		return nil, errors.New("the key set URL is not known yet (discovery pending)")
	}
	url := *up
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if len(data) > MaxJWKSBytes {
		return nil, fmt.Errorf("key set at %s is larger than %d bytes", url, MaxJWKSBytes)
	}
	return parseJWKS(data)
}

// parseJWKS decodes a key set, keeping only public signature keys of
// asymmetric types; one unusable key does not discard the others.
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
		switch key.Key.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			key = key.Public()
		default:
			continue // symmetric keys never verify anything here
		}
		keys = append(keys, key)
	}
	if len(keys) == 0 && len(doc.Keys) > 0 {
		return nil, errors.New("key set holds no usable public signing key")
	}
	return keys, nil
}
