package routes

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (go test ./pkg/routes -update to accept):\n%s", name, diff(string(want), got))
	}
}

func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			fmt.Fprintf(&b, "line %d\n  want: %s\n   got: %s\n", i+1, a, c)
		}
	}
	return b.String()
}

// sampleRequest builds a request that exercises every value field of r:
// each path parameter, query key and body field gets a recognizable value.
func sampleRequest(r *Route) (path string, body string) {
	segs := strings.Split(r.Pattern, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, "{") {
			segs[i] = strings.Trim(s, "{}") + "-1"
		}
	}
	path = strings.Join(segs, "/")
	q := url.Values{}
	obj := map[string]any{}
	for _, e := range r.Events {
		for _, f := range e.Fields {
			switch f.From {
			case FromQuery:
				q.Set(f.key(), f.key()+"-q")
			case FromQueryDotted:
				q.Set(f.key(), "ns-a.ns-b")
			case FromBody:
				obj[f.key()] = f.key() + "-b"
			case FromBodyGroup:
				for _, k := range f.Keys {
					obj[k] = k + "-b"
				}
			}
		}
	}
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if len(obj) > 0 {
		var v any = obj
		for _, e := range r.Events {
			if e.EachBodyItem {
				second := map[string]any{"assistant_id": "other-b"}
				v = []any{obj, second}
			}
		}
		b, _ := json.Marshal(v)
		body = string(b)
	}
	return path, body
}

// TestLangGraphGolden records, for every route of the built-in table, the
// events a sample request fires and the value each handler sees.
func TestLangGraphGolden(t *testing.T) {
	rs := LangGraph()
	table, err := NewTable(rs)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range table.Routes() {
		path, body := sampleRequest(r)
		target, err := Normalize(path)
		if err != nil {
			t.Fatalf("%s %s: %v", r.Method, path, err)
		}
		got, params := table.Match(r.Method, target.Segments)
		if got != r {
			t.Fatalf("%s %s matched %v, want its own route %s", r.Method, path, got, r.Pattern)
		}
		fmt.Fprintf(&b, "%s %s", r.Method, path)
		if body != "" {
			fmt.Fprintf(&b, " %s", body)
		}
		b.WriteString("\n")
		switch {
		case r.Public:
			b.WriteString("  public\n")
		case r.Blocked:
			b.WriteString("  blocked\n")
		}
		for _, ev := range r.Fire(params, target.Query, &Body{Data: []byte(body), ContentType: "application/json"}) {
			if ev.ValueErr != nil {
				t.Fatalf("%s %s: %v", r.Method, path, ev.ValueErr)
			}
			v, _ := json.Marshal(ev.Value)
			fmt.Fprintf(&b, "  %s:%s %s\n", ev.Resource, ev.Action, v)
		}
	}
	golden(t, "langgraph.golden", b.String())
	golden(t, "langgraph-table.golden", strings.Join(table.Describe(), "\n")+"\n")
}

func TestMatch(t *testing.T) {
	table, err := NewTable(LangGraph())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method, path string
		pattern      string
		params       string
	}{
		{"POST", "/threads/search", "/threads/search", ""},
		// No GET on the literal: the parameter branch takes it.
		{"GET", "/threads/search", "/threads/{thread_id}", "thread_id=search"},
		{"GET", "/threads/t1/runs/r1/join", "/threads/{thread_id}/runs/{run_id}/join", "thread_id=t1 run_id=r1"},
		{"POST", "/runs/crons/search", "/runs/crons/search", ""},
		{"GET", "/runs/crons/c1", "/runs/crons/{cron_id}", "cron_id=c1"},
		{"GET", "/runs/r1/stream", "/runs/{run_id}/stream", "run_id=r1"},
		{"GET", "/assistants/a1/subgraphs/ns", "/assistants/{assistant_id}/subgraphs/{namespace}", "assistant_id=a1 namespace=ns"},
		{"PUT", "/threads", "", ""},
		// HEAD runs the GET handler upstream, so it is authorized as GET.
		{"HEAD", "/threads/t1", "/threads/{thread_id}", "thread_id=t1"},
		{"HEAD", "/store/items", "/store/items", ""},
		{"HEAD", "/ok", "/ok", ""},
		{"HEAD", "/threads/search", "/threads/{thread_id}", "thread_id=search"},
		{"GET", "/threads/t1/unknown", "", ""},
		{"GET", "/", "/", ""}, // the Python server's root health check
	}
	for _, tc := range tests {
		target, err := Normalize(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		r, params := table.Match(tc.method, target.Segments)
		got := ""
		if r != nil {
			got = r.Pattern
		}
		var ps []string
		for _, p := range params {
			ps = append(ps, p.Name+"="+p.Value)
		}
		if got != tc.pattern || strings.Join(ps, " ") != tc.params {
			t.Errorf("%s %s: matched %q %v, want %q %q", tc.method, tc.path, got, ps, tc.pattern, tc.params)
		}
	}
}

func TestNewTableConflicts(t *testing.T) {
	for _, tc := range []struct {
		routes []Route
		want   string
	}{
		{[]Route{{Method: "GET", Pattern: "/a/{x}"}, {Method: "GET", Pattern: "/a/{x}"}}, "duplicates GET /a/{x}"},
		{[]Route{{Method: "GET", Pattern: "/a/{x}"}, {Method: "GET", Pattern: "/{y}/b"}}, "routes GET /a/{x} and GET /{y}/b overlap (both match /a/b) and neither is more specific"},
		{[]Route{{Method: "GET", Pattern: "/a/{x}/c"}, {Method: "GET", Pattern: "/a/b/{y...}"}}, "overlap (both match /a/b/c)"},
		{[]Route{{Method: "GET", Pattern: "/f/{p...}"}, {Method: "GET", Pattern: "/f/{q...}"}}, "duplicates"},
		{[]Route{{Method: "GET", Pattern: "/f/{p...}/x"}}, "must be the last segment"},
		{[]Route{{Method: "GET", Pattern: "/a//b"}}, "empty segment"},
		{[]Route{{Method: "GET", Pattern: "/a/../b"}}, "dot segments"},
		{[]Route{{Method: "GET", Pattern: "/a/{x-y}"}}, "invalid"},
		{[]Route{{Method: "GET", Pattern: "/a/{x}"}, {Method: "POST", Pattern: "/a/{y}"}}, "parameter {y} conflicts with {x}"},
		{[]Route{{Method: "GET", Pattern: "/a/{x}/{x}"}}, "empty, invalid or repeated"},
		{[]Route{{Method: "GET", Pattern: "/a/b{x}"}}, "mixes a parameter with text"},
		{[]Route{{Method: "GET", Pattern: "a"}}, "must start with /"},
	} {
		if _, err := NewTable(tc.routes); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.routes, err, tc.want)
		}
	}
}

// TestSpecificity: overlapping routes are fine when one is strictly more
// specific, and the most specific one matches.
func TestSpecificity(t *testing.T) {
	table, err := NewTable([]Route{
		{Method: "GET", Pattern: "/files/{path...}"},
		{Method: "GET", Pattern: "/files/{id}"},
		{Method: "GET", Pattern: "/files/{id}/meta"},
		{Method: "GET", Pattern: "/files/special"},
		{Method: "GET", Pattern: "/files/special/meta"},
		{Method: "POST", Pattern: "/{tenant}/orders"},
		{Method: "POST", Pattern: "/{tenant}/orders/{id}"},
		{Method: "GET", Pattern: "/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/files/a":             "/files/{id} id=a",
		"/files/a/meta":        "/files/{id}/meta id=a",
		"/files/special":       "/files/special ",
		"/files/special/meta":  "/files/special/meta ",
		"/files/a/b/c":         "/files/{path...} path=a/b/c",
		"/files/special/other": "/files/{path...} path=special/other",
		"/files":               "",
		"/acme/orders":         "",
		"/":                    "/ ",
	} {
		tg, _ := Normalize(path)
		r, ps := table.Match("GET", tg.Segments)
		got := ""
		if r != nil {
			var kv []string
			for _, p := range ps {
				kv = append(kv, p.Name+"="+p.Value)
			}
			got = r.Pattern + " " + strings.Join(kv, " ")
		}
		if got != want {
			t.Errorf("GET %s matched %q, want %q", path, got, want)
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		raw, path, segs, query string
		err                    string
	}{
		{raw: "/", path: "/", segs: ""},
		{raw: "/threads", path: "/threads", segs: "threads"},
		{raw: "//threads///t1//", path: "/threads/t1", segs: "threads|t1"},
		{raw: "/a/./b/../c", path: "/a/c", segs: "a|c"},
		{raw: "/../../a", path: "/a", segs: "a"},
		{raw: "/a/%2E%2e/b", path: "/b", segs: "b"},
		{raw: "/%61%62", path: "/ab", segs: "ab"},
		{raw: "/a%20b", path: "/a%20b", segs: "a b"},
		{raw: "/a%C3%A9", path: "/a%C3%A9", segs: "aé"},
		{raw: "/store/items?namespace=a.b&key=k", path: "/store/items", segs: "store|items", query: "key=k&namespace=a.b"},
		{raw: "/x?a=1#frag", path: "/x", segs: "x", query: "a=1"},
		{raw: "/x#frag?a=1", path: "/x", segs: "x"},
		{raw: "", err: "must start with /"},
		{raw: "x", err: "must start with /"},
		{raw: "*", err: "must start with /"},
		{raw: "http://h/x", err: "must start with /"},
		{raw: "/a b", err: "byte 0x20"},
		{raw: "/a`b", err: "not allowed in a path"},
		{raw: "/a|b", err: "not allowed in a path"},
		{raw: "/a{b}", err: "not allowed in a path"},
		{raw: "/a\\b", err: "not allowed in a path"},
		{raw: "/a?q=`|{}", path: "/a", segs: "a", query: "q=%60%7C%7B%7D"},
		{raw: "/a:b@c!$&'()*+,;=", path: "/a:b@c!$&'()*+,;=", segs: "a:b@c!$&'()*+,;="},
		{raw: "/a\tb", err: "byte 0x09"},
		{raw: "/\xc3\xa9", err: "byte 0xc3"},
		{raw: "/a%2fb", err: "encoded slash"},
		{raw: "/a%5cb", err: "encoded slash"},
		{raw: "/a%00", err: "encoded slash, backslash or NUL"},
		{raw: "/a%g0", err: "malformed percent-encoding"},
		{raw: "/a%", err: "malformed percent-encoding"},
		{raw: "/a?b=%zz", err: "query"},
		{raw: "/a?b;c", err: "query"},
		// Decoding to invalid UTF-8: the LangGraph servers disagree about
		// it (TestPathDifferential), so it is refused.
		{raw: "/threads/%FF", err: "invalid UTF-8"},
		{raw: "/threads/t1%C0%AFstate", err: "invalid UTF-8"},
		{raw: "/threads/%E0%80%AE%E0%80%AE/t1", err: "invalid UTF-8"},
		{raw: "/threads/%ED%A0%80", err: "invalid UTF-8"}, // a UTF-16 surrogate
		{raw: "/store/items?namespace=%FF", err: "query parameter \"namespace\": decodes to invalid UTF-8"},
		{raw: "/store/items?%C0%AE=1", err: "query parameter name"},
		{raw: "/a%EF%BC%8Fb", path: "/a%EF%BC%8Fb", segs: "a／b"}, // U+FF0F is valid UTF-8, and no slash
		{raw: "/" + strings.Repeat("a", MaxPathLength), err: "longer than"},
	}
	for _, tc := range tests {
		got, err := Normalize(tc.raw)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrBadPath) {
				t.Errorf("Normalize(%q) error %v, want %q", tc.raw, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("Normalize(%q): %v", tc.raw, err)
			continue
		}
		if got.Path != tc.path || strings.Join(got.Segments, "|") != tc.segs || got.Query.Encode() != tc.query {
			t.Errorf("Normalize(%q) = %q %q %q, want %q %q %q", tc.raw, got.Path, strings.Join(got.Segments, "|"), got.Query.Encode(), tc.path, tc.segs, tc.query)
		}
	}
}

// FuzzNormalize checks that normalization never panics, is idempotent,
// and never yields a segment that could be read as a path separator or a
// dot segment by the upstream.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"/", "/threads/t1", "//a/../b/%2e%2e/c?x=1", "/a%2fb", "/%", "/a?b=%zz#c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := Normalize(raw)
		if err != nil {
			if !errors.Is(err, ErrBadPath) {
				t.Fatalf("error %v does not wrap ErrBadPath", err)
			}
			return
		}
		for _, s := range got.Segments {
			if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "/\\\x00") {
				t.Fatalf("Normalize(%q) segment %q", raw, s)
			}
		}
		again, err := Normalize(got.Path)
		if err != nil || again.Path != got.Path {
			t.Fatalf("not idempotent: %q -> %q -> %q (%v)", raw, got.Path, again.Path, err)
		}
		// The canonical fast path agrees with the general one.
		rawPath, _, _ := strings.Cut(strings.SplitN(raw, "#", 2)[0], "?")
		if fast, ok := canonical(rawPath); ok {
			slow, err := slowPath(rawPath)
			if err != nil || fast.Path != slow.Path || !slices.Equal(fast.Segments, slow.Segments) {
				t.Fatalf("%q: fast path %q %q, general %q %q (%v)", raw, fast.Path, fast.Segments, slow.Path, slow.Segments, err)
			}
		}
	})
}

// TestCanonicalFastPath: the paths the fast path takes, and those it
// leaves to the general one, agree with it (FuzzNormalize explores more).
func TestCanonicalFastPath(t *testing.T) {
	for _, p := range []string{"/threads/t1", "/a", "/a/b/c", "/a/", "/", "//a", "/a//b", "/a/./b", "/a/../b", "/a/%41", "/a/..", "/.a/b.", "/a:b@c"} {
		slow, err := slowPath(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		fast, ok := canonical(p)
		if !ok {
			continue
		}
		if fast.Path != slow.Path || !slices.Equal(fast.Segments, slow.Segments) {
			t.Errorf("%s: fast %q %q, general %q %q", p, fast.Path, fast.Segments, slow.Path, slow.Segments)
		}
	}
	if _, ok := canonical("/threads/t1"); !ok {
		t.Fatal("a canonical path missed the fast path")
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = Normalize("/threads/1ef5c0de/runs/r1") }); n > 1 {
		t.Errorf("Normalize of a canonical path: %.0f allocations, want at most 1 (the segments)", n)
	}
}

// FuzzBody checks that any body yields either an object or a typed error,
// and holds langgate's JSON reader to encoding/json: what it reads,
// encoding/json reads the same; what it calls malformed, encoding/json
// refuses too; the rest of what it refuses is ambiguous.
func FuzzBody(f *testing.F) {
	for _, s := range []string{`{"namespace":["a"],"key":"k"}`, `[1]`, `{"a":`, `{"a":1,"\u0061":2}`, `{"s":"\ud800"}`,
		`{"n":9007199254740993}`, `{"n":1e400}`, `{"n":NaN}`, "\xef\xbb\xbf{}", `{"a":"\u00e9\ud83d\ude00"}`, `{"a":[1.5e-3,-0,true,null]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b := &Body{Data: data, ContentType: "application/json"}
		obj, err := b.Object()
		if err == nil && obj == nil {
			t.Fatal("nil object without an error")
		}
		if err != nil && !errors.Is(err, ErrBodyNotJSON) && !errors.Is(err, ErrBodyTooLarge) && !errors.Is(err, ErrAmbiguous) {
			t.Fatalf("untyped error %v", err)
		}
		if len(data) > MaxBodyBytes || len(strings.TrimSpace(string(data))) == 0 {
			return
		}
		mine, myErr := parseJSON(data)
		var std any
		stdErr := json.Unmarshal(data, &std)
		switch {
		case myErr == nil && stdErr != nil:
			t.Fatalf("read %q, which encoding/json refuses: %v", data, stdErr)
		case myErr == nil && !reflect.DeepEqual(mine, std):
			t.Fatalf("%q: read %#v, encoding/json %#v", data, mine, std)
		case errors.Is(myErr, ErrBodyNotJSON) && stdErr == nil && !strings.Contains(myErr.Error(), "nesting"):
			t.Fatalf("%q: called malformed (%v), encoding/json reads it", data, myErr)
		}
	})
}
