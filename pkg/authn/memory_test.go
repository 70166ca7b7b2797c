package authn_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/devissuer"
)

// heapPerUser pins what one cached token of the typical shape costs the
// heap (its user, header JSON and cache slot, and its verified payload
// when the policy reads claims), as BenchmarkCacheMemory measures it
// (cachedHeap): with Go 1.26 on 2026-12-07, 511 B without the claims and
// 799 B with them (1,207 B before the user's CEL map went, and before
// claims no expression reads were dropped). A growth of over 15% fails;
// a change that shrinks it should lower the bounds.
var heapPerUser = []struct {
	needs authn.Needs
	max   float64
}{{authn.Needs{}, 590}, {authn.Needs{Claims: true}, 920}}

// TestHeapPerCachedUser: 20,000 distinct tokens verified, their header
// JSON built, and the heap they hold measured after a collection.
func TestHeapPerCachedUser(t *testing.T) {
	if testing.Short() {
		t.Skip("mints 20,000 tokens")
	}
	is := startIssuer(t, devissuer.Options{Algorithm: jose.EdDSA})
	const n = 20_000 // as BenchmarkCacheMemory: the map and queue grow in steps
	tokens := mintTokens(t, is, n, benchClaims)
	for _, c := range heapPerUser {
		ctx, cancel := context.WithCancel(context.Background())
		a, _ := compileNeeds(ctx, t, issuerYAML(is, "  cache: {max_entries: 100000, max_bytes: 1GiB}\n"), authn.Options{}, c.needs)
		waitReady(t, a, 5*time.Second)
		per, _ := cachedHeap(t, a, tokens)
		cancel()
		t.Logf("claims kept %v: %.0f B of heap per cached user (bound %.0f)", c.needs.Claims, per, c.max)
		if per > c.max {
			t.Errorf("claims kept %v: a cached user costs %.0f B of heap, over the %.0f B pinned: what grew?", c.needs.Claims, per, c.max)
		}
	}
}
