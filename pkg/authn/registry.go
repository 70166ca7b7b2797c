package authn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"time"

	"github.com/langgate/langgate/pkg/config"
)

// Registry holds what outlives one configuration: the issuers (discovery
// and key sets, one background fetcher per issuer however many policies
// trust it), the API key stores (one file watcher each) and the
// verified-token caches. A reload builds its engine against the same
// registry, so unchanged issuers keep their keys, unchanged key lists their
// watcher and unchanged authentication sections their caches; Retain then
// stops what the new configuration no longer uses.
type Registry struct {
	opts Options

	mu      sync.Mutex
	ctx     context.Context // set by Start: issuers added later start at once
	issuers map[config.KeySource]*Issuer
	stores  map[apiKeySource]*APIKeyStore
	caches  map[string]*Cache
	// retired accumulates the counters of caches a reload dropped, so
	// totals never go backwards.
	retired CacheStats
}

type apiKeySource struct {
	file, env string
	every     time.Duration
}

// NewRegistry returns an empty registry.
func NewRegistry(opts Options) *Registry {
	opts.defaults()
	return &Registry{opts: opts, issuers: map[config.KeySource]*Issuer{}, stores: map[apiKeySource]*APIKeyStore{}, caches: map[string]*Cache{}}
}

// issuer returns the registry's issuer for cfg, creating (and, once the
// registry runs, starting) it on first use. Issuers are keyed by everything
// that decides where and when their keys are fetched (issuer, jwks_url,
// refresh schedule, unknown-kid interval); audiences, algorithms, leeway
// and token rules are per policy.
func (r *Registry) issuer(cfg config.OIDCIssuer) *Issuer {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := config.KeySourceOf(cfg)
	if iss := r.issuers[key]; iss != nil {
		return iss
	}
	iss := newIssuer(cfg, r.opts.HTTPClient, r.opts.Now, r.opts.MinRefetch, r.opts.Logger)
	r.issuers[key] = iss
	if r.ctx != nil {
		iss.start(r.ctx)
	}
	return iss
}

// apiKeyStore returns the registry's store for cfg, reading the keys when
// it is new (an unreadable list is then an error), and starting its file
// watcher once the registry runs.
func (r *Registry) apiKeyStore(cfg config.APIKeys) (*APIKeyStore, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := apiKeySource{file: cfg.File, env: cfg.Env}
	if cfg.ReloadInterval != nil {
		key.every = cfg.ReloadInterval.Duration
	}
	if s := r.stores[key]; s != nil {
		return s, nil
	}
	s, err := newAPIKeyStore(cfg, r.opts.LookupEnv, r.opts.Now, r.opts.Logger)
	if err != nil {
		return nil, err
	}
	r.stores[key] = s
	if r.ctx != nil {
		s.start(r.ctx)
	}
	return s, nil
}

// cacheFor returns the token cache of an authentication section, by its
// fingerprint: a reload that leaves the section unchanged keeps its cache.
// The section's `cache` bounds win over the registry's options.
func (r *Registry) cacheFor(fp string, bounds *config.TokenCache) *Cache {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.caches[fp]; c != nil {
		return c
	}
	entries, bytes := r.opts.CacheEntries, r.opts.CacheBytes
	if bounds != nil {
		if bounds.MaxEntries > 0 {
			entries = bounds.MaxEntries
		}
		if bounds.MaxBytes != nil {
			bytes = bounds.MaxBytes.Bytes
		}
	}
	c := NewCache(entries, bytes, r.opts.Now)
	r.caches[fp] = c
	return c
}

// Start runs every issuer's discovery and key refresh and every API key
// file watcher until ctx ends; those added afterwards start when they are
// added. Calling it again is harmless.
func (r *Registry) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx != nil {
		return
	}
	r.ctx = ctx
	for _, iss := range r.issuers {
		iss.start(ctx)
	}
	for _, s := range r.stores {
		s.start(ctx)
	}
}

// Retain stops and forgets the issuers, API key stores and caches that the
// given authenticators (the new configuration's) do not use.
func (r *Registry) Retain(keep []*Authenticator) {
	usedIss := map[*Issuer]bool{}
	usedStore := map[*APIKeyStore]bool{}
	usedCache := map[*Cache]bool{}
	for _, a := range keep {
		for _, iss := range a.used {
			usedIss[iss] = true
		}
		usedStore[a.apiKeys] = true
		usedCache[a.cache] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, iss := range r.issuers {
		if !usedIss[iss] {
			iss.stop()
			delete(r.issuers, k)
		}
	}
	for k, s := range r.stores {
		if !usedStore[s] {
			s.stop()
			delete(r.stores, k)
		}
	}
	for k, c := range r.caches {
		if !usedCache[c] {
			st := c.Stats()
			r.retired.Hits += st.Hits
			r.retired.Misses += st.Misses
			r.retired.Evictions += st.Evictions
			delete(r.caches, k)
		}
	}
}

// Caches lists the live token caches.
func (r *Registry) Caches() []*Cache {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Cache, 0, len(r.caches))
	for _, c := range r.caches {
		out = append(out, c)
	}
	return out
}

// CacheTotals sums the live caches' state and every counter since the
// registry was made (caches dropped by reloads included).
func (r *Registry) CacheTotals() CacheStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.retired
	for _, c := range r.caches {
		st := c.Stats()
		t.Hits, t.Misses, t.Evictions = t.Hits+st.Hits, t.Misses+st.Misses, t.Evictions+st.Evictions
		t.Entries += st.Entries
		t.Bytes += st.Bytes
	}
	return t
}

// fingerprint identifies an authentication section by its meaning (every
// setting, expressions by their text), not by where it sits in the file:
// positions are left out, so moving a section keeps its cache while any
// change of meaning starts a new one. It is a hash, so secrets in the
// section are not kept in the map's keys.
func fingerprint(ac *config.Authenticate) string {
	b, err := json.Marshal(canonical(reflect.ValueOf(ac)))
	if err != nil {
		return fmt.Sprintf("%p", ac) // never shared
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

var (
	posType      = reflect.TypeOf(config.Pos{})
	exprType     = reflect.TypeOf(config.Expr{})
	durationType = reflect.TypeOf(config.Duration{})
	byteSizeType = reflect.TypeOf(config.ByteSize{})
)

// canonical converts configuration values to plain JSON-able values
// without positions.
func canonical(v reflect.Value) any {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return canonical(v.Elem())
	case reflect.Struct:
		switch v.Type() {
		case exprType:
			return v.Interface().(config.Expr).Source
		case durationType:
			return v.Interface().(config.Duration).String()
		case byteSizeType:
			return v.Interface().(config.ByteSize).Bytes
		}
		out := map[string]any{}
		for i := 0; i < v.NumField(); i++ {
			f := v.Type().Field(i)
			if !f.IsExported() || f.Type == posType {
				continue
			}
			out[f.Name] = canonical(v.Field(i))
		}
		return out
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = canonical(v.Index(i))
		}
		return out
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		out := make(map[string]any, len(keys))
		for _, k := range keys {
			out[fmt.Sprint(k)] = canonical(v.MapIndex(k))
		}
		return out
	default:
		if v.CanInterface() {
			return v.Interface()
		}
		return nil
	}
}
