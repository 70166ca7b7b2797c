package authn_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/devissuer"
	"github.com/langgate/langgate/pkg/devissuer/devissuertest"
)

// benchClaims are the extra claims of a typical access token (besides iss,
// sub, aud, iat, nbf, exp, name and scope).
var benchClaims = map[string]any{"email": "alice@example.com", "azp": "web", "org": "acme", "roles": []string{"member", "editor"}}

// BenchmarkAuthenticate: one token verified end to end, per algorithm;
// "cached" is a token seen before (hash and lookup), "uncached" a token never
// seen (decode, claim checks, signature, user mapping, cache insert), made
// by cycling 64 tokens through a one-entry cache.
func BenchmarkAuthenticate(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA} {
		is := startIssuer(b, devissuer.Options{Algorithm: alg})
		text := issuerYAML(is, "")
		cached, _ := compile(b, text, authn.Options{})
		uncached, _ := compile(b, text, authn.Options{CacheEntries: 1})
		waitReady(b, cached, 5*time.Second)
		waitReady(b, uncached, 5*time.Second)
		tokens := make([]string, 64)
		for i := range tokens {
			extra := map[string]any{"jti": strconv.Itoa(i)}
			for k, v := range benchClaims {
				extra[k] = v
			}
			tokens[i] = is.MustToken(b, "alice", time.Hour, extra)
		}
		ctx := context.Background()
		b.Run(string(alg)+"/cached", func(b *testing.B) {
			if _, err := cached.Authenticate(ctx, tokens[0]); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := cached.Authenticate(ctx, tokens[0]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(alg)+"/uncached", func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := uncached.Authenticate(ctx, tokens[i%len(tokens)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRefused: what a forged or misdirected token costs.
func BenchmarkRefused(b *testing.B) {
	is := startIssuer(b, devissuer.Options{Algorithm: jose.ES256})
	a, _ := compile(b, issuerYAML(is, ""), authn.Options{MinRefetch: time.Hour})
	waitReady(b, a, 5*time.Second)
	other := startIssuer(b, devissuer.Options{})
	foreign := other.MustToken(b, "mallory", time.Hour, nil)
	expired := is.MustToken(b, "mallory", -time.Hour, nil)
	forged := forge(b, is, is.SigningKey().KeyID, 0)
	unknownKid := forge(b, is, "unknown", 0)
	_, _ = a.Authenticate(context.Background(), unknownKid) // spends the one refetch
	for name, tok := range map[string]string{"untrusted_issuer": foreign, "expired": expired, "bad_signature": forged, "unknown_kid": unknownKid} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := a.Authenticate(context.Background(), tok); err == nil {
					b.Fatal("accepted")
				}
			}
		})
	}
}

// BenchmarkAPIKey: an API key in a header, among 10,000 keys.
func BenchmarkAPIKey(b *testing.B) {
	var list []map[string]any
	var key string
	for i := 0; i < 10_000; i++ {
		k, h, _ := authn.GenerateAPIKey()
		if i == 5000 {
			key = k
		}
		list = append(list, map[string]any{"hash": h, "identity": "svc-" + strconv.Itoa(i), "permissions": []string{"threads"}})
	}
	raw, _ := json.Marshal(list)
	a, _ := compile(b, "authenticate:\n  credentials: [{header: x-api-key, type: api_key}]\n  api_keys: {env: KEYS}\n",
		authn.Options{LookupEnv: func(string) (string, bool) { return string(raw), true }})
	h := map[string]string{"x-api-key": key}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := a.AuthenticateRequest(context.Background(), h, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIntrospection: an opaque token, cached after its first
// introspection.
func BenchmarkIntrospection(b *testing.B) {
	is := startIssuer(b, devissuer.Options{})
	a, _ := compile(b, introspectionYAML(is, ""), authn.Options{})
	tok := is.MustOpaqueToken(b, "alice", time.Hour, benchClaims)
	b.Run("cached", func(b *testing.B) {
		if _, err := a.Authenticate(context.Background(), tok); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := a.Authenticate(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached_loopback", func(b *testing.B) {
		toks := make([]string, b.N)
		for i := range toks {
			toks[i] = is.MustOpaqueToken(b, "alice", time.Hour, benchClaims)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := a.Authenticate(context.Background(), toks[i]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkCacheMemory measures what one cached user really costs on the
// heap (the user, its claims when kept, its header JSON, the entry)
// against what the cache accounts for it, for a typical token and one with
// 40 groups.
func BenchmarkCacheMemory(b *testing.B) {
	is := startIssuer(b, devissuer.Options{Algorithm: jose.EdDSA})
	groups := make([]string, 40)
	for i := range groups {
		groups[i] = "group-" + strconv.Itoa(i) + "-of-the-organization"
	}
	shapes := []struct {
		name  string
		extra map[string]any
	}{{"typical", benchClaims}, {"40_groups", map[string]any{"email": "alice@example.com", "groups": groups}}}
	const n = 20_000
	for _, shape := range shapes {
		tokens := mintTokens(b, is, n, shape.extra)
		for _, needs := range []authn.Needs{{}, {Claims: true}} {
			name := shape.name
			if needs.Claims {
				name += "/claims_kept"
			}
			b.Run(name, func(b *testing.B) {
				b.StopTimer() // what is measured is the heap, not the time
				for iter := 0; iter < b.N; iter++ {
					ctx, cancel := context.WithCancel(context.Background())
					a, _ := compileNeeds(ctx, b, issuerYAML(is, "      leeway: "+strconv.Itoa(iter+1)+"s\n  cache: {max_entries: 100000, max_bytes: 1GiB}\n"), authn.Options{}, needs)
					waitReady(b, a, 5*time.Second)
					heap, st := cachedHeap(b, a, tokens)
					cancel()
					b.ReportMetric(heap, "heap-B/entry")
					b.ReportMetric(float64(st.Bytes)/n, "accounted-B/entry")
				}
			})
		}
	}
}

// mintTokens returns n tokens of is for distinct users, each with the
// claims of extra and a jti of its own.
func mintTokens(tb testing.TB, is *devissuertest.Issuer, n int, extra map[string]any) []string {
	tb.Helper()
	tokens := make([]string, n)
	for i := range tokens {
		claims := map[string]any{"jti": strconv.Itoa(i)}
		for k, v := range extra {
			claims[k] = v
		}
		tokens[i] = is.MustToken(tb, "user-"+strconv.Itoa(i), time.Hour, claims)
	}
	return tokens
}

// cachedHeap verifies every token with a (whose cache must take them
// all) and builds each user's header JSON, and returns the heap that
// holds, per token, measured between two collections, with the cache's
// counts.
func cachedHeap(tb testing.TB, a *authn.Authenticator, tokens []string) (float64, authn.CacheStats) {
	tb.Helper()
	enc := func(v any) (string, error) { b, err := json.Marshal(v); return string(b), err }
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for _, tok := range tokens {
		u, err := a.Authenticate(context.Background(), tok)
		if err != nil {
			tb.Fatal(err)
		}
		if _, _, err := u.HeaderJSON(enc); err != nil {
			tb.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := a.Cache().Stats()
	if st.Entries != len(tokens) {
		tb.Fatalf("%d entries cached, want %d", st.Entries, len(tokens))
	}
	runtime.KeepAlive(a)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(len(tokens)), st
}

// BenchmarkCachePut is the cost of caching a new user, in a cache with
// room and in a full one (the default bounds, filled with unexpired
// entries of a typical 300-byte payload), where every Put evicts. A
// token never seen before takes this path once; with churn (a new user
// every few ms) a full cache takes it continually, holding the lock every
// Get waits on.
func BenchmarkCachePut(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	u := authn.NewUser("alice", "", nil, nil)
	key := func(i int) [sha256.Size]byte {
		var k [sha256.Size]byte
		binary.LittleEndian.PutUint64(k[:], uint64(i))
		return k
	}
	for _, full := range []bool{false, true} {
		name := "room"
		if full {
			name = "full"
		}
		b.Run(name, func(b *testing.B) {
			c := authn.NewCache(0, 0, func() time.Time { return now })
			n := 0
			if full {
				for c.Stats().Evictions == 0 {
					c.Put(key(n), u, now.Add(time.Hour), 300)
					n++
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				c.Put(key(n+i), u, now.Add(time.Hour), 300)
			}
			b.StopTimer()
			if st := c.Stats(); full && st.Evictions < uint64(b.N) {
				b.Fatalf("a full cache evicted %d times in %d Puts", st.Evictions, b.N)
			}
		})
	}
}
