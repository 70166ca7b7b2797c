package authn

import (
	"crypto/sha256"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Cache bounds.
const (
	DefaultCacheEntries = 100_000
	DefaultCacheBytes   = 64 << 20
	// entryOverhead and the factor in entrySize make the accounted size
	// match the heap a cached user really takes: the user, its header
	// JSON, the map slot and its place in the eviction order, which
	// BenchmarkCacheMemory measures at 485 B, plus its verified payload
	// when the policy reads claims (1.06 × the payload: 287 B for a typical
	// 270-byte one; Put is then given the payload's length), plus
	// memoAllowance for the memoized handler results (authn.Memo) a user
	// of the LangGraph seed policy holds: 435 B in bench/checkload's heap
	// profile at 100,000 users (docs/performance.md).
	entryOverhead = 490 + memoAllowance
	memoAllowance = 480
)

// entrySize is the accounted memory of a user built from a claims payload
// of the given length.
func entrySize(payload int) int64 { return entryOverhead + int64(payload)*11/10 }

// Cache holds users built from verified tokens, keyed by the token's
// SHA-256, so a token seen before costs a hash and a map lookup. It is
// bounded in entries and (approximate) bytes, and an entry never outlives
// its token's exp.
//
// A full cache evicts its oldest entry (first in, first out), which with
// tokens of one lifetime is also the first to expire. Eviction is O(1): a
// queue of keys in insertion order, so a Put into a full cache costs what
// a Put into an empty one does. (The former eviction scanned the whole map
// for expired entries under the write lock on every Put: 391 µs per Put in
// a full cache of the default size, during which every Get waited;
// BenchmarkCachePut.)
type Cache struct {
	maxEntries int
	maxBytes   int64
	now        func() time.Time

	mu    sync.RWMutex
	m     map[[sha256.Size]byte]cacheEntry
	bytes int64
	// order holds the keys in insertion order from head on. A slot whose
	// seq is not its key's entry's is stale (the key was put again since),
	// and is skipped.
	order []cacheSlot
	head  int
	seq   uint64

	hits, misses, evictions atomic.Uint64
}

type cacheEntry struct {
	user    *User
	expires int64 // Unix nanoseconds: 8 bytes where a time.Time takes 24
	size    int64
	seq     uint64
}

type cacheSlot struct {
	key [sha256.Size]byte
	seq uint64
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
	if !ok || c.now().UnixNano() >= e.expires {
		c.misses.Add(1)
		return nil, false
	}
	c.hits.Add(1)
	return e.user, true
}

// Put caches a user until expires; size is the length of the claims
// payload it was built from.
func (c *Cache) Put(key [sha256.Size]byte, u *User, expires time.Time, size int) {
	e := cacheEntry{user: u, expires: unixNano(expires), size: entrySize(size)}
	if e.size > c.maxBytes/16 {
		return // one huge token must not flush the cache
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.m[key]; ok {
		// Out of the map and the count together; its slot in the order
		// goes stale.
		c.bytes -= old.size
		delete(c.m, key)
	}
	for len(c.m) > 0 && (len(c.m) >= c.maxEntries || c.bytes+e.size > c.maxBytes) {
		c.evictOldestLocked()
	}
	c.seq++
	e.seq = c.seq
	c.m[key] = e
	c.bytes += e.size
	c.order = append(c.order, cacheSlot{key: key, seq: e.seq})
	if stale := len(c.order) - c.head - len(c.m); stale > len(c.m)+64 {
		c.compactLocked()
	}
}

// unixNano is t in Unix nanoseconds, clamped to what an int64 holds (a
// token may claim an exp past the year 2262).
func unixNano(t time.Time) int64 {
	switch {
	case t.After(maxNano):
		return math.MaxInt64
	case t.Before(minNano):
		return math.MinInt64
	}
	return t.UnixNano()
}

var maxNano, minNano = time.Unix(0, math.MaxInt64), time.Unix(0, math.MinInt64)

// evictOldestLocked drops the entry put longest ago.
func (c *Cache) evictOldestLocked() {
	for c.head < len(c.order) {
		s := c.order[c.head]
		c.order[c.head] = cacheSlot{}
		c.head++
		if e, ok := c.m[s.key]; ok && e.seq == s.seq {
			c.bytes -= e.size
			delete(c.m, s.key)
			c.evictions.Add(1)
			break
		}
	}
	if c.head == len(c.order) {
		c.order, c.head = c.order[:0], 0
	} else if c.head > len(c.order)/2 {
		// Slide the queue down once half of it is consumed: amortized
		// O(1), and the slice never grows past twice what it holds.
		n := copy(c.order, c.order[c.head:])
		clear(c.order[n:])
		c.order, c.head = c.order[:n], 0
	}
}

// compactLocked drops the stale slots: a key put again and again (an
// introspection refresh) would otherwise grow the order without bound.
func (c *Cache) compactLocked() {
	live := c.order[:0]
	for _, s := range c.order[c.head:] {
		if e, ok := c.m[s.key]; ok && e.seq == s.seq {
			live = append(live, s)
		}
	}
	clear(c.order[len(live):])
	c.order, c.head = live, 0
}
