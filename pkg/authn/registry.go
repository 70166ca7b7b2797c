package authn

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/langgate/langgate/pkg/config"
)

// Registry holds what outlives one configuration: the issuers (discovery
// and key sets, one background fetcher per issuer however many policies
// trust it) and the verified-token caches. A reload builds its engine
// against the same registry, so unchanged issuers keep their keys and
// unchanged authentication sections keep their caches; Retain then stops
// what the new configuration no longer uses.
type Registry struct {
	opts Options

	mu      sync.Mutex
	ctx     context.Context // set by Start: issuers added later start at once
	issuers map[string]*Issuer
	caches  map[string]*Cache
	// retired accumulates the counters of caches a reload dropped, so
	// totals never go backwards.
	retired CacheStats
}

// NewRegistry returns an empty registry.
func NewRegistry(opts Options) *Registry {
	opts.defaults()
	return &Registry{opts: opts, issuers: map[string]*Issuer{}, caches: map[string]*Cache{}}
}

// issuerKey identifies an issuer by everything that decides where its keys
// come from; audiences, algorithms and leeway are per policy.
func issuerKey(cfg config.OIDCIssuer) string {
	return cfg.Issuer + "\x00" + cfg.JWKSURL + "\x00" + cfg.RefreshInterval.String()
}

// issuer returns the registry's issuer for cfg, creating (and, once the
// registry runs, starting) it on first use.
func (r *Registry) issuer(cfg config.OIDCIssuer) *Issuer {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := issuerKey(cfg)
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

// cacheFor returns the token cache of an authentication section, by its
// fingerprint: a reload that leaves the section unchanged keeps its cache.
func (r *Registry) cacheFor(fp string) *Cache {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c := r.caches[fp]; c != nil {
		return c
	}
	c := NewCache(r.opts.CacheEntries, r.opts.CacheBytes, r.opts.Now)
	r.caches[fp] = c
	return c
}

// Start runs every issuer's discovery and key refresh until ctx ends;
// issuers added afterwards start when they are added. Calling it again is
// harmless.
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
}

// Retain stops and forgets the issuers and caches that the given
// authenticators (the new configuration's) do not use.
func (r *Registry) Retain(keep []*Authenticator) {
	usedIss := map[*Issuer]bool{}
	usedCache := map[*Cache]bool{}
	for _, a := range keep {
		for _, iss := range a.used {
			usedIss[iss] = true
		}
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

// fingerprint identifies an authentication section by its meaning (issuer
// settings and user expressions), not by where it sits in the file.
func fingerprint(ac *config.Authenticate) string {
	type iss struct {
		Issuer, JWKSURL, Leeway, Refresh string
		Audiences, Algorithms            []string
	}
	v := struct {
		Issuers                        []iss
		Identity, Display, Permissions string
	}{Identity: ac.User.Identity.Source, Display: ac.User.DisplayName.Source, Permissions: ac.User.Permissions.Source}
	for _, c := range ac.OIDC {
		v.Issuers = append(v.Issuers, iss{c.Issuer, c.JWKSURL, c.Leeway.String(), c.RefreshInterval.String(), c.Audiences, c.Algorithms})
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%p", ac) // never shared
	}
	return string(b)
}
