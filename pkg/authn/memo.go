package authn

import "sync"

// MemoLimit bounds the values one user holds in its memo: a user is
// cached for as long as its token, so what it memoizes is bounded per
// user as the cache bounds users. Past the limit a new value replaces the
// oldest, so the entries of a configuration a reload replaced (whose keys
// no longer match: a user's cache entry survives reloads) age out.
const MemoLimit = 4

// memo is a user's small table of values computed from the user alone.
// It grows one entry at a time up to MemoLimit: most users hold one or
// two, and a user is cached for as long as its token.
type memo struct {
	mu      sync.Mutex
	entries []memoEntry
	next    int // the entry the next value replaces once MemoLimit are in use
}

type memoEntry struct {
	key, val any
}

// Memo returns the value u stores under key, or computes it with f and
// stores it (replacing the oldest past MemoLimit). f's result must depend only on the user and the key (a
// handler's results for an event when no expression of it reads the
// request); the value is shared by every later request of the user, so
// nobody may modify it. Concurrent first calls may each run f; one result
// is kept. (A function, not a method, so that a lookup does not box the
// key: only storing it does.)
func Memo[K comparable](u *User, key K, f func() any) any {
	m := u.memo.Load()
	if m == nil {
		u.memo.CompareAndSwap(nil, new(memo))
		m = u.memo.Load()
	}
	m.mu.Lock()
	for i := range m.entries {
		if k, ok := m.entries[i].key.(K); ok && k == key {
			v := m.entries[i].val
			m.mu.Unlock()
			return v
		}
	}
	m.mu.Unlock()
	v := f()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.entries {
		if k, ok := m.entries[i].key.(K); ok && k == key {
			return m.entries[i].val
		}
	}
	if len(m.entries) < MemoLimit {
		// Exactly one more: append's doubling would round 3 up to 4.
		m.entries = append(make([]memoEntry, 0, len(m.entries)+1), m.entries...)
		m.entries = append(m.entries, memoEntry{key: key, val: v})
		return v
	}
	m.entries[m.next] = memoEntry{key: key, val: v}
	m.next = (m.next + 1) % MemoLimit
	return v
}
