package routes

import (
	"fmt"
	"regexp"
	"testing"
)

// syntheticRoutes builds n routes shaped like a REST API: per resource a
// collection, an item, and item sub-resources.
func syntheticRoutes(n int) []Route {
	rs := make([]Route, 0, n)
	for i := 0; len(rs) < n; i++ {
		res := fmt.Sprintf("res%d", i)
		for _, p := range []struct{ m, path string }{
			{"GET", "/api/v1/" + res},
			{"POST", "/api/v1/" + res},
			{"GET", "/api/v1/" + res + "/{id}"},
			{"PATCH", "/api/v1/" + res + "/{id}"},
			{"DELETE", "/api/v1/" + res + "/{id}"},
			{"GET", "/api/v1/" + res + "/{id}/items/{item_id}"},
			{"POST", "/api/v1/" + res + "/{id}/items"},
			{"GET", "/api/v1/" + res + "/{id}/files/{path...}"},
		} {
			if len(rs) == n {
				break
			}
			rs = append(rs, Route{Method: p.m, Pattern: p.path, Events: []EventSpec{{Resource: res, Action: "a"}}})
		}
	}
	return rs
}

// BenchmarkMatch: route matching cost must not grow with the table the way
// a linear scan does (the 1,000-route table within 2x of the 10-route one).
func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{16, 96, 1000, 10000} {
		table, err := NewTable(syntheticRoutes(n))
		if err != nil {
			b.Fatal(err)
		}
		// The last resource's item route: a linear scan's worst case.
		target, _ := Normalize(fmt.Sprintf("/api/v1/res%d/42/items/7", n/8-1))
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if r, _ := table.Match("GET", target.Segments); r == nil {
					b.Fatal("no match")
				}
			}
		})
	}
}

// BenchmarkRegexScan is the approach the trie replaces, for comparison:
// one precompiled regular expression per route, tried in order.
func BenchmarkRegexScan(b *testing.B) {
	for _, n := range []int{16, 1000} {
		rs := syntheticRoutes(n)
		res := make([]*regexp.Regexp, len(rs))
		param := regexp.MustCompile(`\{[a-z_]+(\.\.\.)?\}`)
		for i, r := range rs {
			res[i] = regexp.MustCompile("^" + param.ReplaceAllString(r.Pattern, "[^/]+") + "$")
		}
		path := fmt.Sprintf("/api/v1/res%d/42/items/7", n/8-1)
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				found := false
				for _, re := range res {
					if re.MatchString(path) {
						found = true
						break
					}
				}
				if !found {
					b.Fatal("no match")
				}
			}
		})
	}
}

// TestLargeTableBuilds: 10,000 routes compile (with the ambiguity check)
// quickly enough for a configuration reload.
func TestLargeTableBuilds(t *testing.T) {
	if _, err := NewTable(syntheticRoutes(10000)); err != nil {
		t.Fatal(err)
	}
}
