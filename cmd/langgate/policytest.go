package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/decision"
)

// errTestsFailed makes `langgate test` exit 1 after its summary.
var errTestsFailed = errors.New("tests failed")

// policyTests is one *_test.yaml file: the configuration it tests and its
// cases.
type policyTests struct {
	// Config is the configuration file, relative to the test file.
	Config string `yaml:"config"`
	// Env resolves the configuration's ${NAME} references (then the
	// process environment).
	Env   map[string]string `yaml:"env"`
	Tests []policyTest      `yaml:"tests"`
}

// policyTest is one request and what langgate must answer.
type policyTest struct {
	Name    string      `yaml:"name"`
	Request testRequest `yaml:"request"`
	// Claims stand in for a verified token (no signature is checked, as
	// with `langgate check --claims`); without them the request carries
	// whatever credential its headers hold (none, an API key).
	Claims map[string]any `yaml:"claims"`
	Expect expectation    `yaml:"expect"`
	line   int
}

type testRequest struct {
	Method  string            `yaml:"method"`
	Path    string            `yaml:"path"`
	Headers map[string]string `yaml:"headers"`
	Context map[string]string `yaml:"context"`
	// Body is sent as is; JSON is encoded as the body.
	Body string `yaml:"body"`
	JSON any    `yaml:"json"`
}

// expectation lists what is checked; a field left out is not.
type expectation struct {
	Outcome  string            `yaml:"outcome"`
	Status   int               `yaml:"status"`
	Handler  *string           `yaml:"handler"`
	Detail   *string           `yaml:"detail"`
	Filters  any               `yaml:"filters"`
	Metadata any               `yaml:"metadata"`
	Events   []string          `yaml:"events"`
	Headers  map[string]string `yaml:"headers"`
	// WouldDeny is whether a shadow handler would have refused an event,
	// or the shadow policy the request.
	WouldDeny *bool `yaml:"would_deny"`
	// ShadowVerdict is the shadow policy's verdict (agree, would_deny,
	// would_allow, would_filter); "none" when no shadow policy decided.
	ShadowVerdict string `yaml:"shadow_verdict"`
}

// policyTestCmd runs policy tests like `opa test`: every *_test.yaml file
// named or found under the directories named, a line per failure with
// what differs, a summary, exit 1 when anything failed.
func policyTestCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.Bool("v", false, "print every test, not only failures")
	coverage := fs.Bool("coverage", false, "list the handlers and routes no test reached")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: langgate test [-v] [--coverage] FILE_test.yaml|DIR...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	if fs.NArg() == 0 {
		return usageError{"test: name test files (*_test.yaml) or directories holding them"}
	}
	var files []string
	for _, a := range fs.Args() {
		st, err := os.Stat(a)
		if err != nil {
			return fmt.Errorf("test: %w", err)
		}
		if !st.IsDir() {
			files = append(files, a)
			continue
		}
		err = filepath.WalkDir(a, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, "_test.yaml") {
				files = append(files, p)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("test: %w", err)
		}
	}
	if len(files) == 0 {
		return fmt.Errorf("test: no *_test.yaml files under %s", strings.Join(fs.Args(), ", "))
	}
	passed, failed := 0, 0
	for _, f := range files {
		p, fl, err := runTestFile(f, stdout, *verbose, *coverage)
		if err != nil {
			return err
		}
		passed, failed = passed+p, failed+fl
	}
	fmt.Fprintf(stdout, "%d passed, %d failed (%d files)\n", passed, failed, len(files))
	if failed > 0 {
		return errTestsFailed
	}
	return nil
}

// loadTests reads a test file strictly: an unknown field is an error
// with its line.
func loadTests(file string) (*policyTests, error) {
	data, err := config.ReadBounded(file, config.MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("test: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var pt policyTests
	if err := dec.Decode(&pt); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	// Each test's line, for failures.
	if len(doc.Content) > 0 {
		root := doc.Content[0]
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == "tests" {
				for j, n := range root.Content[i+1].Content {
					if j < len(pt.Tests) {
						pt.Tests[j].line = n.Line
					}
				}
			}
		}
	}
	switch {
	case pt.Config == "":
		return nil, fmt.Errorf("%s: config: the configuration file to test is required", file)
	case len(pt.Tests) == 0:
		return nil, fmt.Errorf("%s: tests: no tests", file)
	}
	for i, t := range pt.Tests {
		if t.Name == "" || t.Request.Method == "" || t.Request.Path == "" {
			return nil, fmt.Errorf("%s:%d: every test needs a name, request.method and request.path", file, t.line)
		}
		if t.Request.Body != "" && t.Request.JSON != nil {
			return nil, fmt.Errorf("%s:%d: give request.body or request.json, not both", file, t.line)
		}
		if t.Expect.Outcome == "" && t.Expect.Status == 0 {
			return nil, fmt.Errorf("%s:%d: test %q: expect needs at least an outcome or a status", file, t.line, pt.Tests[i].Name)
		}
	}
	return &pt, nil
}

func runTestFile(file string, stdout io.Writer, verbose, coverage bool) (passed, failed int, _ error) {
	pt, err := loadTests(file)
	if err != nil {
		return 0, 0, err
	}
	eng, err := buildFromFile(filepath.Join(filepath.Dir(file), pt.Config), func(k string) (string, bool) {
		if v, ok := pt.Env[k]; ok {
			return v, true
		}
		return os.LookupEnv(k)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", file, err)
	}
	handlers, routesSeen := map[string]bool{}, map[string]bool{}
	for _, t := range pt.Tests {
		tr, d, err := decideTest(eng, t)
		if err != nil {
			return 0, 0, fmt.Errorf("%s:%d: %w", file, t.line, err)
		}
		for _, ev := range tr.Events {
			if ev.Handler != "" {
				handlers[tr.Policy+"\x00"+ev.Handler] = true
			}
		}
		if tr.Route != "" {
			routesSeen[tr.Policy+"\x00"+tr.Route] = true
		}
		if sp := d.ShadowPolicy; sp != nil {
			// The shadow policy reached what decided its verdict.
			handlers[sp.Policy+"\x00"+sp.Handler] = sp.Handler != ""
			if sp.Route != "" {
				routesSeen[sp.Policy+"\x00"+sp.Route] = true
			}
		}
		diffs := compare(t.Expect, tr, d)
		if len(diffs) == 0 {
			passed++
			if verbose {
				fmt.Fprintf(stdout, "PASS %s:%d %s\n", file, t.line, t.Name)
			}
			continue
		}
		failed++
		fmt.Fprintf(stdout, "FAIL %s:%d %s\n", file, t.line, t.Name)
		for _, df := range diffs {
			fmt.Fprintf(stdout, "  %s\n", df)
		}
		fmt.Fprintf(stdout, "  reason: %s\n", tr.Reason)
	}
	if coverage {
		writeCoverage(stdout, file, eng, handlers, routesSeen)
	}
	return passed, failed, nil
}

// decideTest decides one test's request offline, traced.
func decideTest(eng *decision.Engine, t policyTest) (*decision.Trace, *decision.Decision, error) {
	r := t.Request
	req := &decision.Request{Method: strings.ToUpper(r.Method), Path: r.Path, Headers: map[string]string{}, Context: r.Context}
	for k, v := range r.Headers {
		req.Headers[strings.ToLower(k)] = v
	}
	if _, ok := req.Headers[":authority"]; !ok {
		req.Headers[":authority"] = "langgate.test"
	}
	body := r.Body
	if r.JSON != nil {
		b, err := json.Marshal(r.JSON)
		if err != nil {
			return nil, nil, fmt.Errorf("request.json: %w", err)
		}
		body = string(b)
	}
	if body != "" {
		req.Body = []byte(body)
		if _, ok := req.Headers["content-length"]; !ok {
			req.Headers["content-length"] = fmt.Sprint(len(body))
		}
		if _, ok := req.Headers["content-type"]; !ok {
			// A JSON body, as the SDKs send it (set headers.content-type
			// to test another).
			req.Headers["content-type"] = "application/json"
		}
	}
	opts := decision.DecideOptions{Trace: &decision.Trace{}, Claims: t.Claims}
	d := eng.DecideWith(context.Background(), req, opts)
	return opts.Trace, d, nil
}

// compare lists how the decision differs from what the test expects.
func compare(want expectation, tr *decision.Trace, d *decision.Decision) []string {
	var out []string
	differ := func(field string, want, got any) {
		out = append(out, fmt.Sprintf("%s: want %s, got %s", field, compactJSON(want), compactJSON(got)))
	}
	if want.Outcome != "" && want.Outcome != string(d.Outcome) {
		differ("outcome", want.Outcome, string(d.Outcome))
	}
	if want.Status != 0 && want.Status != d.Status {
		differ("status", want.Status, d.Status)
	}
	if want.Handler != nil && *want.Handler != d.Handler {
		differ("handler", *want.Handler, d.Handler)
	}
	if want.Detail != nil && *want.Detail != d.Detail {
		differ("detail", *want.Detail, d.Detail)
	}
	if want.Filters != nil && !sameJSON(want.Filters, orEmptyMap(d.Filters)) {
		differ("filters", want.Filters, orEmptyMap(d.Filters))
	}
	if want.Metadata != nil && !sameJSON(want.Metadata, orEmptyMap(d.Metadata)) {
		differ("metadata", want.Metadata, orEmptyMap(d.Metadata))
	}
	if want.Events != nil {
		var got []string
		for _, g := range d.Grants {
			got = append(got, g.Event)
		}
		if !slices.Equal(want.Events, got) {
			differ("events (granted)", want.Events, got)
		}
	}
	if want.WouldDeny != nil && *want.WouldDeny != d.WouldDeny() {
		differ("would_deny (shadow)", *want.WouldDeny, d.WouldDeny())
	}
	if want.ShadowVerdict != "" {
		got := "none"
		if d.ShadowPolicy != nil {
			got = d.ShadowPolicy.Verdict
		}
		if got != want.ShadowVerdict {
			differ("shadow_verdict", want.ShadowVerdict, got)
		}
	}
	names := make([]string, 0, len(want.Headers))
	for k := range want.Headers {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		got, ok := header(tr, strings.ToLower(k))
		if !ok || got != want.Headers[k] {
			differ("header "+k, want.Headers[k], got)
		}
	}
	return out
}

func header(tr *decision.Trace, name string) (string, bool) {
	for _, hs := range [][]decision.Header{tr.Headers, tr.ResponseHeaders} {
		for _, h := range hs {
			if h.Name == name {
				return h.Value, true
			}
		}
	}
	return "", false
}

func orEmptyMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// sameJSON compares as JSON documents: 2 and 2.0 are the same number.
func sameJSON(a, b any) bool {
	var x, y any
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	if err1 != nil || err2 != nil || json.Unmarshal(ja, &x) != nil || json.Unmarshal(jb, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// writeCoverage lists, per policy, the handlers and routes no test reached.
func writeCoverage(w io.Writer, file string, eng *decision.Engine, handlers, routesSeen map[string]bool) {
	for _, p := range eng.Policies() {
		var hs, rs []string
		for _, h := range p.Handlers.List() {
			if !handlers[p.Name+"\x00"+h.Key] {
				hs = append(hs, fmt.Sprintf("%q (line %d)", h.Key, h.Pos.Line))
			}
		}
		total := 0
		for _, r := range p.Table.Routes() {
			total++
			if !routesSeen[p.Name+"\x00"+routeLabel(r.Method, r.Pattern, r.Public, r.Blocked)] {
				rs = append(rs, r.Method+" "+r.Pattern)
			}
		}
		fmt.Fprintf(w, "coverage %s, policy %s: handlers %d/%d, routes %d/%d\n", file, p.Name,
			len(p.Handlers.List())-len(hs), len(p.Handlers.List()), total-len(rs), total)
		for _, h := range hs {
			fmt.Fprintf(w, "  handler not reached: %s\n", h)
		}
		for _, r := range rs {
			fmt.Fprintf(w, "  route not reached: %s\n", r)
		}
	}
}

// routeLabel is a route as the trace names it.
func routeLabel(method, pattern string, public, blocked bool) string {
	s := method + " " + pattern
	switch {
	case public:
		s += " (public)"
	case blocked:
		s += " (blocked)"
	}
	return s
}
