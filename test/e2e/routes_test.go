package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/langgate/langgate/pkg/routes"
)

// serverRoute is one route a real LangGraph server serves.
type serverRoute struct{ method, template string }

// TestRouteTableCoversServers reads the routes each real server serves —
// the Python server's OpenAPI document, the JS server's router table
// (routes.mjs; it publishes no OpenAPI) — and fails on any that the
// LangGraph table does not map (to events, public or blocked), or maps to
// a route of another shape: a server upgrade that adds a route is caught
// here before it can run unmapped.
func TestRouteTableCoversServers(t *testing.T) {
	node := requireTool(t, "node", "Node.js")
	table, err := routes.NewTable(routes.LangGraph())
	if err != nil {
		t.Fatal(err)
	}
	t.Run("js", func(t *testing.T) {
		out, err := exec.Command(node, "routes.mjs").Output()
		if err != nil {
			t.Fatalf("node routes.mjs: %v", err)
		}
		var rs []serverRoute
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			var r struct{ Method, Path string }
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("routes.mjs printed %q: %v", sc.Text(), err)
			}
			rs = append(rs, honoRoutes(r.Method, r.Path)...)
		}
		checkCovered(t, table, rs, 50)
	})
	t.Run("python", func(t *testing.T) {
		py, _ := pythonServer(t)
		resp, err := http.Get("http://" + py.addr + "/openapi.json")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc struct {
			Paths map[string]map[string]json.RawMessage `json:"paths"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			t.Fatalf("the Python server's OpenAPI document: %v", err)
		}
		var rs []serverRoute
		for path, ops := range doc.Paths {
			for m := range ops {
				switch m = strings.ToUpper(m); m {
				case "GET", "POST", "PUT", "PATCH", "DELETE":
					rs = append(rs, serverRoute{m, path})
				}
			}
		}
		checkCovered(t, table, rs, 50)
	})
}

var honoParam = regexp.MustCompile(`:([A-Za-z_][A-Za-z0-9_]*)(\?)?`)

// honoRoutes turns a Hono path (":id", ":id?" optional) into templates.
func honoRoutes(method, path string) []serverRoute {
	if m := honoParam.FindStringSubmatchIndex(path); m != nil && m[4] >= 0 {
		without := strings.TrimSuffix(path[:m[0]], "/") + path[m[1]:]
		with := path[:m[0]] + ":" + path[m[2]:m[3]] + path[m[1]:]
		return append(honoRoutes(method, without), honoRoutes(method, with)...)
	}
	return []serverRoute{{method, honoParam.ReplaceAllString(path, "{$1}")}}
}

var templateParam = regexp.MustCompile(`\{[^}]*\}`)

// checkCovered fails on every server route the table leaves unmapped or
// maps to a route of another shape; min guards against an empty list.
func checkCovered(t *testing.T, table *routes.Table, rs []serverRoute, min int) {
	t.Helper()
	if len(rs) < min {
		t.Fatalf("only %d routes read from the server, want at least %d: the check would prove nothing", len(rs), min)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].template+rs[i].method < rs[j].template+rs[j].method })
	shape := func(p string) string { return strings.TrimSuffix(templateParam.ReplaceAllString(p, "{}"), "/") }
	for _, r := range rs {
		concrete := templateParam.ReplaceAllString(r.template, "p1")
		target, err := routes.Normalize(concrete)
		if err != nil {
			t.Errorf("%s %s: %v", r.method, r.template, err)
			continue
		}
		route, _ := table.Match(r.method, target.Segments)
		switch {
		case route == nil:
			t.Errorf("%s %s is served but not in the LangGraph route table", r.method, r.template)
		case strings.HasSuffix(route.Pattern, "...}") && (route.Public || route.Blocked):
			// A public or blocked subtree (/ui/{path...}).
		case shape(route.Pattern) != shape(r.template):
			t.Errorf("%s %s is decided as %s %s", r.method, r.template, route.Method, route.Pattern)
		}
	}
}
