package authn_test

import (
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/devissuer"
)

// maxHeapPerUser pins what one cached token of the typical shape costs
// the heap (its user, payload, header JSON and cache slot): 1,207 B with
// Go 1.26 on 2026-12-07 (as BenchmarkCacheMemory, which measures it the
// same way: cachedHeap), so a growth of over 15% fails here; a change
// that shrinks it should lower the bound.
const maxHeapPerUser = 1390

// TestHeapPerCachedUser: 20,000 distinct tokens verified, their header
// JSON built, and the heap they hold measured after a collection.
func TestHeapPerCachedUser(t *testing.T) {
	if testing.Short() {
		t.Skip("mints 20,000 tokens")
	}
	is := startIssuer(t, devissuer.Options{Algorithm: jose.EdDSA})
	const n = 20_000 // as BenchmarkCacheMemory: the map and queue grow in steps
	tokens := mintTokens(t, is, n, benchClaims)
	a, _ := compile(t, issuerYAML(is, "  cache: {max_entries: 100000, max_bytes: 1GiB}\n"), authn.Options{})
	waitReady(t, a, 5*time.Second)
	per, _ := cachedHeap(t, a, tokens)
	t.Logf("%.0f B of heap per cached user (bound %d)", per, maxHeapPerUser)
	if per > maxHeapPerUser {
		t.Errorf("a cached user costs %.0f B of heap, over the %d B pinned: what grew?", per, maxHeapPerUser)
	}
}
