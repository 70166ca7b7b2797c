package authn

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"time"
)

// Cache bounds.
const (
	DefaultCacheEntries = 100_000
	DefaultCacheBytes   = 64 << 20
	// entryOverhead and the factor in entrySize make the accounted size
	// match the heap a cached user really takes: the user, its verified
	// payload, its CEL view, its header JSON and the map slot, which
	// BenchmarkCacheMemory measures at 1.15 KB for a typical 270-byte
	// payload and 2.4 KB for 1.5 KB (about 860 B + 1.05 × payload), plus
	// memoAllowance for the one memoized handler result (authn.Memo) a
	// user of the LangGraph seed policy holds, about 800 B in
	// bench/checkload's heap profile.
	entryOverhead = 860 + memoAllowance
	memoAllowance = 800
)

// entrySize is the accounted memory of a user built from a claims payload
// of the given length.
func entrySize(payload int) int64 { return entryOverhead + int64(payload)*11/10 }

// Cache holds users built from verified tokens, keyed by the token's
// SHA-256, so a token seen before costs a hash and a map lookup. It is
// bounded in entries and (approximate) bytes, and an entry never outlives
// its token's exp.
type Cache struct {
	maxEntries int
	maxBytes   int64
	now        func() time.Time

	mu    sync.RWMutex
	m     map[[sha256.Size]byte]cacheEntry
	bytes int64

	hits, misses, evictions atomic.Uint64
}

type cacheEntry struct {
	user    *User
	expires time.Time
	size    int64
}

// NewCache returns an empty cache; zero bounds take the defaults.
func NewCache(maxEntries int, maxBytes int64, now func() time.Time) *Cache {
	if maxEntries <= 0 {
		maxEntries = DefaultCacheEntries
	}
	if maxBytes <= 0 {
		maxBytes = DefaultCacheBytes
	}
	return &Cache{maxEntries: maxEntries, maxBytes: maxBytes, now: now, m: make(map[[sha256.Size]byte]cacheEntry)}
}

// CacheStats are the cache's counters.
type CacheStats struct {
	Hits, Misses, Evictions uint64
	Entries                 int
	Bytes                   int64
}

// Stats returns the counters.
func (c *Cache) Stats() CacheStats {
	c.mu.RLock()
	n, b := len(c.m), c.bytes
	c.mu.RUnlock()
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Evictions: c.evictions.Load(), Entries: n, Bytes: b}
}

// Get returns the user cached for a token hash, if present and unexpired.
func (c *Cache) Get(key [sha256.Size]byte) (*User, bool) {
	c.mu.RLock()
	e, ok := c.m[key]
	c.mu.RUnlock()
	if !ok || !c.now().Before(e.expires) {
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	return e.user, true
}

// Put caches a user until expires; size is the length of the claims
// payload it was built from.
func (c *Cache) Put(key [sha256.Size]byte, u *User, expires time.Time, size int) {
	e := cacheEntry{user: u, expires: expires, size: entrySize(size)}
	if e.size > c.maxBytes/16 {
		return // one huge token must not flush the cache
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[key]; ok {
		// Out of the map and the count together, so eviction cannot count
		// it a second time.
		c.bytes -= old.size
		delete(c.m, key)
	}
	for len(c.m) >= c.maxEntries || c.bytes+e.size > c.maxBytes {
		c.evictLocked()
	}
	c.m[key] = e
	c.bytes += e.size
}

// evictLocked drops expired entries, or failing that an arbitrary one (Go's
// map order is randomized, which makes this random eviction).
func (c *Cache) evictLocked() {
	now := c.now()
	dropped := false
	for k, e := range c.m {
		if !now.Before(e.expires) {
			c.bytes -= e.size
			delete(c.m, k)
			c.evictions.Add(1)
			dropped = true
		}
	}
	if dropped {
		return
	}
	for k, e := range c.m {
		c.bytes -= e.size
		delete(c.m, k)
		c.evictions.Add(1)
		return
	}
}
