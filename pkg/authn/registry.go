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

// Registry holds what one configuration's authentication uses: the issuers
// (discovery and key sets, one background loop per issuer however many
// policies trust it), the API key stores (one file watcher each) and the
// verified-token caches.
//
// Building a configuration fills a registry and starts nothing. The
// registry of a reload is made with Next from the one in service: it takes
// over, by pointer, every issuer, key store and cache whose settings did
// not change (they keep running, with their keys, keys and tokens), and
// makes new ones for the rest, unstarted. A build that fails leaves
// nothing to clean up. Committing is Start (the new ones begin their
// background work), the swap, then Handover from the old registry (what
// only it used stops).
type Registry struct {
	opts Options
	// prev is the registry in service while this one is built, for the
	// take-over; dropped at Start so registries never chain.
	prev *Registry

	mu      sync.Mutex
	issuers map[config.KeySource]*Issuer
	stores  map[apiKeySource]*APIKeyStore
	caches  map[string]*Cache
	// retired accumulates the counters of caches reloads dropped, so
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

// Next returns an empty registry for the configuration that will replace
// r's: building into it takes over r's unchanged issuers, key stores and
// caches. r is only read.
func (r *Registry) Next(opts Options) *Registry {
	n := NewRegistry(opts)
	n.prev = r
	return n
}

// takeOver looks up what the previous registry holds under key.
func takeOver[K comparable, V any](prev *Registry, m func(*Registry) map[K]V, key K) (V, bool) {
	if prev == nil {
		var zero V
		return zero, false
	}
	prev.mu.Lock()
	defer prev.mu.Unlock()
	v, ok := m(prev)[key]
	return v, ok
}

// issuer returns the registry's issuer for cfg: the one it already has,
// the previous registry's, or a new one (not started). Issuers are keyed
// by everything that decides where and when their keys are fetched
// (issuer, jwks_url, refresh schedule, unknown-kid interval); audiences,
// algorithms, leeway and token rules are per policy.
func (r *Registry) issuer(cfg config.OIDCIssuer) *Issuer {
	key := config.KeySourceOf(cfg)
	r.mu.Lock()
	iss := r.issuers[key]
	r.mu.Unlock()
	if iss != nil {
		return iss
	}
	iss, ok := takeOver(r.prev, func(p *Registry) map[config.KeySource]*Issuer { return p.issuers }, key)
	if !ok {
		iss = newIssuer(cfg, r.opts.HTTPClient, r.opts.Now, r.opts.MinRefetch, r.opts.Logger)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.issuers[key] = iss
	return iss
}

// apiKeyStore returns the registry's store for cfg: the one it already
// has, the previous registry's, or a new one whose keys are read now (an
// unreadable list is then an error) and whose watcher starts with Start.
func (r *Registry) apiKeyStore(cfg config.APIKeys) (*APIKeyStore, error) {
	key := apiKeySource{file: cfg.File, env: cfg.Env}
	if cfg.ReloadInterval != nil {
		key.every = cfg.ReloadInterval.Duration
	}
	r.mu.Lock()
	s := r.stores[key]
	r.mu.Unlock()
	if s != nil {
		return s, nil
	}
	s, ok := takeOver(r.prev, func(p *Registry) map[apiKeySource]*APIKeyStore { return p.stores }, key)
	if !ok {
		var err error
		if s, err = newAPIKeyStore(cfg, r.opts.LookupEnv, r.opts.Now, r.opts.Logger); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stores[key] = s
	return s, nil
}

// cacheFor returns the token cache of an authentication section, by its
// fingerprint: a reload that leaves the section unchanged keeps its cache.
// The section's `cache` bounds win over the registry's options.
func (r *Registry) cacheFor(fp string, bounds *config.TokenCache) *Cache {
	r.mu.Lock()
	c := r.caches[fp]
	r.mu.Unlock()
	if c != nil {
		return c
	}
	c, ok := takeOver(r.prev, func(p *Registry) map[string]*Cache { return p.caches }, fp)
	if !ok {
		entries, bytes := r.opts.CacheEntries, r.opts.CacheBytes
		if bounds != nil {
			if bounds.MaxEntries > 0 {
				entries = bounds.MaxEntries
			}
			if bounds.MaxBytes != nil {
				bytes = bounds.MaxBytes.Bytes
			}
		}
		c = NewCache(entries, bytes, r.opts.Now)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.caches[fp] = c
	return c
}

// Start commits the registry: every issuer's discovery and key refresh
// and every API key file watcher runs until ctx ends. Those taken over
// from the previous registry already run and are left as they are;
// calling Start again is harmless.
func (r *Registry) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.prev = nil
	for _, iss := range r.issuers {
		iss.start(ctx)
	}
	for _, s := range r.stores {
		s.start(ctx)
	}
}

// Handover is called on the registry that was in service once next has
// replaced it: the issuers and API key stores next did not take over stop,
// and the counters of the caches it did not take over are carried into
// next's totals.
func (r *Registry) Handover(next *Registry) {
	if next == r {
		return
	}
	next.mu.Lock()
	keepIss := make(map[*Issuer]bool, len(next.issuers))
	for _, iss := range next.issuers {
		keepIss[iss] = true
	}
	keepStore := make(map[*APIKeyStore]bool, len(next.stores))
	for _, s := range next.stores {
		keepStore[s] = true
	}
	keepCache := make(map[*Cache]bool, len(next.caches))
	for _, c := range next.caches {
		keepCache[c] = true
	}
	next.mu.Unlock()

	r.mu.Lock()
	retired := r.retired
	for _, iss := range r.issuers {
		if !keepIss[iss] {
			iss.stop()
		}
	}
	for _, s := range r.stores {
		if !keepStore[s] {
			s.stop()
		}
	}
	for _, c := range r.caches {
		if !keepCache[c] {
			st := c.Stats()
			retired.Hits += st.Hits
			retired.Misses += st.Misses
			retired.Evictions += st.Evictions
		}
	}
	r.mu.Unlock()

	next.mu.Lock()
	next.retired.Hits += retired.Hits
	next.retired.Misses += retired.Misses
	next.retired.Evictions += retired.Evictions
	next.mu.Unlock()
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
