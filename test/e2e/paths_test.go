package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/langgate/langgate/internal/envoyproc"
	"github.com/langgate/langgate/internal/langgraphjs"
	"github.com/langgate/langgate/internal/langgraphpy"
	"github.com/langgate/langgate/internal/testproc"
)

// TestPathDifferential sends the corpus of tricky request targets
// (testdata/paths.txt) through the real Envoy, with each shipped front
// proxy configuration (langgate over gRPC and in HTTP mode), to each real
// LangGraph server, and compares two records of every request: the route
// langgate authorized (its decision log: route pattern and normalized
// path) and the handler the server ran (the server's own router, recorded
// by routelog.mjs / routelog.py: the route that ran and the parameters it
// parsed). They must be the same route with the same parameters, or the
// request must be refused before a handler runs; a request langgate
// denied must never reach the server; and no response to alice may carry
// the secret marker in the metadata of bob's thread.
func TestPathDifferential(t *testing.T) {
	corpus := readCorpus(t, "testdata/paths.txt")
	lg := startLanggateWith(t, "../../examples/langgraph/langgate.yaml", nil, "--log-format", "json", "--log-allows")
	for _, srv := range []struct {
		name  string
		start func(t *testing.T, log string) string
	}{
		{"js", startRoutedJS},
		{"python", startRoutedPython},
	} {
		t.Run(srv.name, func(t *testing.T) {
			routeLog := filepath.Join(t.TempDir(), "routes.jsonl")
			upstream := srv.start(t, routeLog)
			for _, file := range []string{"front-proxy.yaml", "front-proxy-http.yaml"} {
				t.Run(strings.TrimSuffix(file, ".yaml"), func(t *testing.T) {
					e := envoyTo(t, file, lg, upstream, relaxed)
					base := e.URL("langgraph_http")
					alice, bob := token(t, "alice"), token(t, "bob")
					a, _ := createThread(t, base, [][2]string{bearer(alice)}, `{}`)
					marker := "bob-secret-" + newProbe()
					b, _ := createThread(t, base, [][2]string{bearer(bob)}, `{"metadata":{"marker":"`+marker+`"}}`)
					addr := strings.TrimPrefix(base, "http://")
					counts := map[string]int{}
					for _, c := range corpus {
						target := c.expand(a, b)
						o := observe(t, addr, c.method, target, alice, lg, routeLog, "/threads/"+a)
						class, bad := o.judge(marker)
						counts[class]++
						if bad {
							t.Errorf("%s (line %d): %s\n  %s", c.text, c.line, class, o)
						} else if testing.Verbose() {
							t.Logf("%-28s %s (line %d)\n  %s", class, c.text, c.line, o)
						}
					}
					if got := counts["agree"]; got < 10 {
						t.Errorf("only %d requests reached a handler langgate authorized: the corpus no longer tests routing", got)
					}
					classes := make([]string, 0, len(counts))
					for c, n := range counts {
						classes = append(classes, fmt.Sprintf("%s %d", c, n))
					}
					sort.Strings(classes)
					t.Logf("%d targets: %s", len(corpus), strings.Join(classes, ", "))
				})
			}
		})
	}
}

// startRoutedJS starts the real JS server with routelog.mjs (its router's
// record, appended to log) and returns its address.
func startRoutedJS(t *testing.T, log string) string {
	t.Helper()
	buf := &testproc.SyncBuffer{}
	srv, err := langgraphjs.Start(langgraphjs.Options{
		Dir: ".", Config: "langgraph.paths.json", Stderr: buf, Timeout: 90 * time.Second, Env: []string{"PATH_LOG=" + log},
	})
	if err != nil {
		t.Fatalf("the JS server: %v\n%s", err, buf.String())
	}
	t.Cleanup(func() {
		srv.Stop()
		if t.Failed() {
			t.Logf("the JS server's log:\n%s", tail(buf.String(), 4000))
		}
	})
	return strings.TrimPrefix(srv.URL, "http://")
}

// startRoutedPython is startRoutedJS for the real Python server with
// routelog.py.
func startRoutedPython(t *testing.T, log string) string {
	t.Helper()
	root, err := envoyproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	buf := &testproc.SyncBuffer{}
	srv, err := langgraphpy.Start(langgraphpy.Options{
		Config: "langgraph.paths.python.json", Venv: langgraphpy.Venv(root), Stderr: buf, Timeout: 90 * time.Second,
		Env: []string{"PATH_LOG=" + log},
	})
	if err != nil {
		t.Fatalf("the Python server: %v\n%s", err, buf.String())
	}
	t.Cleanup(func() {
		srv.Stop()
		if t.Failed() {
			t.Logf("the Python server's log:\n%s", tail(buf.String(), 4000))
		}
	})
	return strings.TrimPrefix(srv.URL, "http://")
}

// corpusEntry is one line of the corpus.
type corpusEntry struct {
	line           int
	text           string
	method, target string
}

var longPlaceholder = regexp.MustCompile(`\{LONG:(\d+)\}`)

// expand replaces the placeholders of the target with thread ids a and b.
func (c corpusEntry) expand(a, b string) string {
	s := c.target
	s = strings.ReplaceAll(s, "{A%}", fmt.Sprintf("%%%02X", a[0])+a[1:])
	s = strings.ReplaceAll(s, "{AU}", strings.ToUpper(a))
	s = strings.ReplaceAll(s, "{A}", a)
	s = strings.ReplaceAll(s, "{B}", b)
	return longPlaceholder.ReplaceAllStringFunc(s, func(m string) string {
		n, _ := strconv.Atoi(longPlaceholder.FindStringSubmatch(m)[1]) // \d+, bounded below
		return strings.Repeat("a", n)
	})
}

// readCorpus reads the corpus; a malformed line fails the test.
func readCorpus(t *testing.T, path string) []corpusEntry {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []corpusEntry
	for i, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line == "" || line[0] == '#' {
			continue
		}
		method, target, ok := strings.Cut(line, " ")
		if !ok || method == "" || target == "" || strings.Contains(target, " ") {
			t.Fatalf("%s:%d: want METHOD TARGET, got %q", path, i+1, line)
		}
		raw, err := unescapeTarget(target)
		if err != nil {
			t.Fatalf("%s:%d: %v", path, i+1, err)
		}
		if m := longPlaceholder.FindStringSubmatch(raw); m != nil {
			if n, err := strconv.Atoi(m[1]); err != nil || n > 1<<20 {
				t.Fatalf("%s:%d: {LONG:%s} is not a length up to 1 MiB", path, i+1, m[1])
			}
		}
		out = append(out, corpusEntry{line: i + 1, text: line, method: method, target: raw})
	}
	if len(out) == 0 {
		t.Fatalf("%s has no requests", path)
	}
	return out
}

// unescapeTarget decodes the corpus's \xNN and \\ escapes.
func unescapeTarget(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		switch {
		case i+1 < len(s) && s[i+1] == '\\':
			b.WriteByte('\\')
			i++
		case i+3 < len(s) && s[i+1] == 'x':
			n, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
			if err != nil {
				return "", fmt.Errorf("bad escape %q", s[i:i+4])
			}
			b.WriteByte(byte(n))
			i += 3
		default:
			return "", fmt.Errorf("bad escape at offset %d (want \\xNN or \\\\)", i)
		}
	}
	return b.String(), nil
}

// observation is everything known about one request of the corpus.
type observation struct {
	method, target string
	// status and body are the client's answer (status 0: Envoy closed
	// the connection without one).
	status int
	body   string
	// decision is langgate's decision log line for the request (nil: it
	// never reached langgate).
	decision map[string]any
	// ran is the server's router's record of it (nil: it never reached a
	// handler-choosing point of the server).
	ran *routeRecord
}

// routeRecord is a line of routelog.mjs / routelog.py.
type routeRecord struct {
	Probe  string            `json:"probe"`
	Method string            `json:"method"`
	Raw    string            `json:"raw"`
	Route  string            `json:"route"`
	Params map[string]string `json:"params"`
	Status int               `json:"status"`
}

func (o *observation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client got %d", o.status)
	if d := o.decision; d != nil {
		fmt.Fprintf(&b, "; langgate: %v %v route=%v path=%q events=%v", d["outcome"], d["status"], d["route"], short(fmt.Sprint(d["path"])), d["events"])
	} else {
		b.WriteString("; langgate: no decision")
	}
	if r := o.ran; r != nil {
		fmt.Fprintf(&b, "; server got %q, ran %q %v (%d)", short(r.Raw), r.Route, r.Params, r.Status)
	} else {
		b.WriteString("; server: nothing")
	}
	return b.String()
}

func short(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// observe sends one request and collects what langgate and the server
// recorded of it. The request carries a traceparent whose trace id is its
// probe id, which langgate's decision log line carries as trace_id; the
// server's record carries the probe header. Both are written before the
// answer leaves, but langgate's log reaches the test through a pipe: when
// the request's line is not there yet, a sentinel request's line is
// awaited, and the log is ordered.
func observe(t *testing.T, addr, method, target, tok string, lg *langgate, routeLog, sentinel string) *observation {
	t.Helper()
	id := newProbe()
	before := len(lg.log.String())
	o := &observation{method: method, target: target}
	o.status, o.body = rawRequest(t, addr, method, target, tok, id)
	decisions := decisionsOf(lg, before, id)
	if len(decisions) == 0 {
		sid := newProbe()
		rawRequest(t, addr, "GET", sentinel, tok, sid)
		deadline := time.Now().Add(10 * time.Second)
		for len(decisionsOf(lg, before, sid)) == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the sentinel GET %s never reached langgate's log", sentinel)
			}
			time.Sleep(5 * time.Millisecond)
		}
		decisions = decisionsOf(lg, before, id)
	}
	switch len(decisions) {
	case 0:
	case 1:
		o.decision = decisions[0]
	default:
		t.Fatalf("%s %s: %d decisions for one request", method, short(target), len(decisions))
	}
	data, err := os.ReadFile(routeLog)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		var rec routeRecord
		if json.Unmarshal(line, &rec) == nil && rec.Probe == id {
			if o.ran != nil {
				t.Fatalf("%s %s: the server routed it twice", method, short(target))
			}
			o.ran = &rec
		}
	}
	return o
}

// decisionsOf returns the decision lines langgate logged, from offset on,
// for the request with this probe id.
func decisionsOf(lg *langgate, offset int, id string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(lg.log.String()[offset:], "\n") {
		if !strings.Contains(line, id) {
			continue
		}
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == "decision" && rec["trace_id"] == traceOf(id) {
			out = append(out, rec)
		}
	}
	return out
}

// traceOf is the trace id a probe's request carries.
func traceOf(id string) string { return id + id }

// rawRequest writes the request line and headers itself, so that the
// target reaches Envoy exactly as the corpus has it (net/http would clean
// it), and returns the answer's status and body.
func rawRequest(t *testing.T, addr, method, target, tok, id string) (int, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n%s: %s\r\ntraceparent: 00-%s-%s-01\r\nConnection: close\r\n",
		method, target, tok, probeHeader, id, traceOf(id), id)
	switch strings.ToUpper(method) {
	case "GET", "HEAD", "DELETE", "OPTIONS", "TRACE":
	default:
		req.WriteString("Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
	}
	if !bytes.HasSuffix(req.Bytes(), []byte("{}")) {
		req.WriteString("\r\n")
	}
	if _, err := conn.Write(req.Bytes()); err != nil {
		t.Fatalf("%s %s: %v", method, short(target), err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: strings.ToUpper(method)})
	if err != nil {
		// Envoy may close a connection whose request it cannot parse.
		return 0, ""
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	if _, err := body.ReadFrom(resp.Body); err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, short(target), err)
	}
	return resp.StatusCode, body.String()
}

// judge classifies the observation; bad is set when it breaks a property.
func (o *observation) judge(marker string) (class string, bad bool) {
	if strings.Contains(o.body, marker) {
		return "LEAK: alice received bob's thread", true
	}
	d, r := o.decision, o.ran
	allowed := d != nil && (d["outcome"] == "allowed" || d["outcome"] == "public")
	want, _ := d["route"].(string)
	switch {
	case d == nil && r != nil && r.Route != "" && envoyPublic(r.Method, r.Route):
		// The shipped configs skip the check on these routes.
		return "public in Envoy (no check)", false
	case r != nil && !allowed:
		return "REACHED THE SERVER WITHOUT AN ALLOW", true
	case d == nil:
		return "refused by Envoy", false
	case !allowed:
		return "refused by langgate", false
	case r == nil:
		if strings.EqualFold(o.method, "OPTIONS") && want == "" {
			// The servers' CORS layer answers a preflight before routing;
			// langgate authorized no event.
			return "preflight answered before routing", false
		}
		if o.status >= 200 && o.status < 300 {
			return "SERVED WITH NO ROUTE RECORD", true
		}
		return "refused by the server before routing", false
	case r.Route == "":
		return "no handler ran", false
	case r.Status == http.StatusMethodNotAllowed && want == "":
		// Starlette matched the path, not the method: its route answers
		// 405 without running a handler.
		return "no handler ran (405)", false
	}
	if want == "" {
		return fmt.Sprintf("DISAGREE: langgate matched no route, the server ran %s", r.Route), true
	}
	wantMethod, wantPattern, _ := strings.Cut(want, " ")
	if m := strings.ToUpper(o.method); m != wantMethod && (m != "HEAD" || wantMethod != "GET") {
		return fmt.Sprintf("DISAGREE: langgate authorized %s, the server ran %s %s", want, m, r.Route), true
	}
	if shape(wantPattern) != shape(r.Route) {
		return fmt.Sprintf("DISAGREE: langgate authorized %s, the server ran %s", want, r.Route), true
	}
	path, _ := d["path"].(string)
	got, err := templateValues(wantPattern, path)
	if err != nil {
		return "DISAGREE: " + err.Error(), true
	}
	names := routeParams(r.Route)
	if len(names) != len(got) {
		return fmt.Sprintf("DISAGREE: %d parameters in langgate's route, %d in the server's", len(got), len(names)), true
	}
	for i, name := range names {
		if r.Params[name] != got[i] {
			return fmt.Sprintf("DISAGREE: parameter %d is %q to langgate, %s=%q to the server", i+1, got[i], name, r.Params[name]), true
		}
	}
	return "agree", false
}

// envoyPublic reports the routes the shipped Envoy configs send upstream
// without a check (GET and HEAD of /ok, /info, /docs, /openapi.json and
// /metrics).
func envoyPublic(method, route string) bool {
	switch route {
	case "/ok", "/info", "/docs", "/openapi.json", "/metrics":
		return method == "GET" || method == "HEAD"
	}
	return false
}

var (
	braceParam = regexp.MustCompile(`\{([A-Za-z_][A-Za-z0-9_]*)(:[^}]*)?\}`)
	colonParam = regexp.MustCompile(`:([A-Za-z_][A-Za-z0-9_]*)\??`)
)

// shape is a route template with its parameter names erased: langgate's
// and Starlette's {name}, Hono's :name.
func shape(pattern string) string {
	return colonParam.ReplaceAllString(braceParam.ReplaceAllString(pattern, "{}"), "{}")
}

// routeParams lists a server template's parameter names, in order.
func routeParams(pattern string) []string {
	var out []string
	for _, seg := range strings.Split(pattern, "/") {
		if m := braceParam.FindStringSubmatch(seg); m != nil {
			out = append(out, m[1])
		} else if m := colonParam.FindStringSubmatch(seg); m != nil && strings.HasPrefix(seg, ":") {
			out = append(out, m[1])
		}
	}
	return out
}

// templateValues reads the values of a langgate template's parameters out
// of the normalized path langgate logged, percent-decoded.
func templateValues(pattern, path string) ([]string, error) {
	ps, ss := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(ss) {
		return nil, fmt.Errorf("langgate's path %q does not have the shape of its route %s", path, pattern)
	}
	var out []string
	for i, p := range ps {
		if !strings.HasPrefix(p, "{") {
			continue
		}
		v, err := url.PathUnescape(ss[i])
		if err != nil {
			return nil, fmt.Errorf("langgate's path %q: %w", path, err)
		}
		out = append(out, v)
	}
	return out, nil
}
