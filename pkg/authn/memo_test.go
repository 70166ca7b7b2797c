package authn

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestMemo(t *testing.T) {
	u := NewUser("alice", "", nil, nil)
	calls := 0
	get := func(key int) any {
		return Memo(u, key, func() any { calls++; return key * 10 })
	}
	for range 3 {
		if v := get(1); v != 10 {
			t.Fatalf("Memo(1) = %v", v)
		}
	}
	if calls != 1 {
		t.Fatalf("f ran %d times for one key", calls)
	}
	// Past MemoLimit a new key replaces the oldest: keys 1 and 2 go,
	// the last MemoLimit keys stay.
	for k := 2; k <= MemoLimit+2; k++ {
		get(k)
	}
	calls = 0
	for k := 3; k <= MemoLimit+2; k++ {
		get(k)
	}
	if calls != 0 {
		t.Fatalf("the %d newest keys were not all kept: f ran %d times", MemoLimit, calls)
	}
	get(1)
	if calls != 1 {
		t.Fatal("the oldest key was not replaced")
	}
	// Another user has its own memo.
	other := NewUser("bob", "", nil, nil)
	if v := Memo(other, 1, func() any { return "bob's" }); v != "bob's" {
		t.Fatalf("users share a memo: %v", v)
	}
}

func TestMemoConcurrent(t *testing.T) {
	u := NewUser("alice", "", nil, nil)
	var ran atomic.Int32
	var wg sync.WaitGroup
	seen := make(chan any, 64)
	for range 64 {
		wg.Go(func() {
			seen <- Memo(u, "k", func() any { ran.Add(1); return new(int) })
		})
	}
	wg.Wait()
	close(seen)
	for v := range seen {
		if v == nil {
			t.Fatal("Memo returned nil")
		}
	}
	// Later calls all see the one stored value.
	if v := Memo(u, "k", func() any { t.Fatal("recomputed after storing"); return nil }); v == nil {
		t.Fatal("nothing stored")
	}
	if ran.Load() == 0 {
		t.Fatal("f never ran")
	}
}
