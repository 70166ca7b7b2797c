package authn

import (
	"crypto/sha256"
	"math/rand/v2"
	"testing"
	"time"
)

// TestCacheEvictsOldest: a full cache drops the entry put longest ago, and
// a key put again counts as new.
func TestCacheEvictsOldest(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := NewCache(3, 0, func() time.Time { return now })
	u := NewUser("alice", "", nil, nil)
	key := func(s string) [sha256.Size]byte { return sha256.Sum256([]byte(s)) }
	has := func(want ...string) {
		t.Helper()
		for _, k := range []string{"a", "b", "c", "d", "e"} {
			_, got := c.m[key(k)]
			in := false
			for _, w := range want {
				in = in || w == k
			}
			if got != in {
				t.Fatalf("%q cached: %v, want %v (want %v)", k, got, in, want)
			}
		}
	}
	for _, k := range []string{"a", "b", "c", "d"} {
		c.Put(key(k), u, now.Add(time.Hour), 100)
	}
	has("b", "c", "d")
	c.Put(key("b"), u, now.Add(time.Hour), 100) // b is now the newest
	c.Put(key("e"), u, now.Add(time.Hour), 100)
	has("b", "d", "e")
	if st := c.Stats(); st.Evictions != 2 || st.Entries != 3 {
		t.Errorf("stats %+v, want 2 evictions and 3 entries", st)
	}
}

// TestCacheInvariants: under random Puts (keys put again, sizes that hit
// the byte bound, expired entries), the counts stay exact, the bounds
// hold, every entry has exactly one live slot in the order, and the order
// stays within a constant factor of the entries.
func TestCacheInvariants(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := NewCache(50, 64<<10, func() time.Time { return now })
	u := NewUser("alice", "", nil, nil)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200_000 {
		k := sha256.Sum256([]byte{byte(r.IntN(120)), byte(r.IntN(2))})
		c.Put(k, u, now.Add(time.Duration(r.IntN(120)-10)*time.Second), r.IntN(3000))
		if i%97 == 0 {
			now = now.Add(time.Second)
		}
		if i%1013 != 0 {
			continue
		}
		var bytes int64
		for _, e := range c.m {
			bytes += e.size
		}
		live := map[[sha256.Size]byte]int{}
		for _, s := range c.order[c.head:] {
			if e, ok := c.m[s.key]; ok && e.seq == s.seq {
				live[s.key]++
			}
		}
		switch {
		case bytes != c.bytes:
			t.Fatalf("Put %d: counted %d bytes, the entries hold %d", i, c.bytes, bytes)
		case len(c.m) > c.maxEntries || c.bytes > c.maxBytes:
			t.Fatalf("Put %d: %d entries, %d bytes: over the bounds", i, len(c.m), c.bytes)
		case len(live) != len(c.m):
			t.Fatalf("Put %d: %d entries, %d with a live slot", i, len(c.m), len(live))
		case len(c.order)-c.head > 2*len(c.m)+65:
			t.Fatalf("Put %d: %d slots for %d entries", i, len(c.order)-c.head, len(c.m))
		case cap(c.order) > 4*(c.maxEntries+65):
			t.Fatalf("Put %d: the order's capacity grew to %d", i, cap(c.order))
		}
		for k, n := range live {
			if n != 1 {
				t.Fatalf("Put %d: key %x has %d live slots", i, k[:4], n)
			}
		}
	}
	// A cache with room never evicts, so stale slots are not consumed
	// that way: one key put again and again (an introspection refresh)
	// must not grow the order.
	roomy := NewCache(1000, 1<<30, func() time.Time { return now })
	k := sha256.Sum256([]byte("same"))
	for range 100_000 {
		roomy.Put(k, u, now.Add(time.Hour), 100)
	}
	if n := len(roomy.order) - roomy.head; n > 2*len(roomy.m)+65 || len(roomy.m) != 1 {
		t.Errorf("one key put 100,000 times: %d entries, %d slots", len(roomy.m), n)
	}
}

// TestCacheExpiryFarFuture: an exp past what Unix nanoseconds hold
// (year 2262) is kept as never, not wrapped into the past.
func TestCacheExpiryFarFuture(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := NewCache(10, 1<<20, func() time.Time { return now })
	var k1, k2 [32]byte
	k2[0] = 1
	c.Put(k1, NewUser("far", "", nil, nil), time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC), 10)
	c.Put(k2, NewUser("past", "", nil, nil), time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC), 10)
	if u, ok := c.Get(k1); !ok || u.Identity != "far" {
		t.Errorf("exp in the year 3000: not cached")
	}
	if _, ok := c.Get(k2); ok {
		t.Errorf("exp in the year 1000: cached")
	}
}
