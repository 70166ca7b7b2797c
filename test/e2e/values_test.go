package e2e

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/langgate/langgate/internal/envoyproc"
	"github.com/langgate/langgate/internal/langgraphjs"
	"github.com/langgate/langgate/internal/langgraphpy"
	"github.com/langgate/langgate/internal/testproc"
	"github.com/langgate/langgate/pkg/upstream"
	langgatev1 "github.com/langgate/langgate/proto/langgate/v1"
)

// TestParserDifferential sends generated variants of every request whose
// query or body langgate reads for the store (the events it binds) —
// repeats in both orders, percent-encoded names and values, "+" against
// %20, empty values, ";", name[], duplicate and escaped JSON keys,
// content-type and charset variants, byte order marks, lone surrogates,
// NUL, large integers — as bob, through the real Envoy with each shipped
// front proxy (gRPC and HTTP mode), to each real LangGraph server, whose
// adapter records every (event, value) LangGraph hands it
// (recording_auth.py / recording_auth.mjs). Each record is compared with
// langgate's decision log line for the request: an event the server ran
// must be one langgate allowed, on a value langgate bound. Any other
// outcome is a finding, as is a response carrying alice's secret or a
// change to her item. Variants the adapter had to refuse (the server read
// the request otherwise than langgate, and only the value check caught
// it) are listed. LANGGATE_DIFFERENTIAL_LONG=1 (make test-differential)
// runs the full cross product instead of the bounded corpus.
func TestParserDifferential(t *testing.T) {
	long := os.Getenv("LANGGATE_DIFFERENTIAL_LONG") != ""
	variants := parserVariants(long)
	lg := startLanggateWith(t, "../../examples/langgraph/langgate.yaml", nil, "--log-format", "json", "--log-allows")
	for _, srv := range []struct {
		name  string
		start func(t *testing.T, log string) string
	}{
		{"js", startRecordingJS},
		{"python", startRecordingPython},
	} {
		t.Run(srv.name, func(t *testing.T) {
			valueLog := filepath.Join(t.TempDir(), "values.jsonl")
			addr := srv.start(t, valueLog)
			for _, file := range []string{"front-proxy.yaml", "front-proxy-http.yaml"} {
				t.Run(strings.TrimSuffix(file, ".yaml"), func(t *testing.T) {
					e := envoyTo(t, file, lg, addr, relaxed)
					runParserVariants(t, e.URL("langgraph_http"), lg, valueLog, variants, srv.name+"/"+file)
				})
			}
		})
	}
}

// variant is one generated request.
type variant struct {
	name, method, target, contentType string
	body                              []byte
}

// valueRecord is a line of recording_auth.{py,mjs}.
type valueRecord struct {
	Probe    string         `json:"probe"`
	Event    string         `json:"event"`
	Value    map[string]any `json:"value"`
	Accepted bool           `json:"accepted"`
}

func runParserVariants(t *testing.T, base string, lg *langgate, valueLog string, variants []variant, where string) {
	alice, bob := bearer(token(t, "alice")), bearer(token(t, "bob"))
	jsonType := [2]string{"Content-Type", "application/json"}
	marker := "alice-secret-" + newProbe()
	item := `{"namespace":["alice","notes"],"key":"k1","value":{"secret":"` + marker + `"}}`
	if r := send(t, h1, "PUT", base+"/store/items", [][2]string{alice, jsonType}, []byte(item)); r.status/100 != 2 {
		t.Fatalf("alice puts her item: %d %s", r.status, r.body)
	}
	// The first reproduction: 400 at the edge.
	if r := send(t, h1, "GET", base+"/store/items?namespace=bob&namespace=alice.notes&key=k1", [][2]string{bob}, nil); r.status != 400 ||
		!strings.Contains(r.detail(), `query parameter "namespace" is given 2 times`) {
		t.Errorf("GET /store/items?namespace=bob&namespace=alice.notes&key=k1 as bob: %d %s, want 400", r.status, short(r.body))
	}
	bobThread, _ := createThread(t, base, [][2]string{bob}, `{}`)
	counts := map[string]int{}
	var adapterCaught, serverRefused []string
	for _, v := range variants {
		id := newProbe()
		before := len(lg.log.String())
		headers := [][2]string{bob, probe(id), {"traceparent", "00-" + traceOf(id) + "-" + id + "-01"}}
		if v.contentType != "-" {
			headers = append(headers, [2]string{"Content-Type", v.contentType})
		}
		// {T}: bob's thread; {UUID}: a fresh id, the same in one request.
		fresh := newUUID(t)
		target := strings.NewReplacer("{T}", bobThread, "{UUID}", fresh).Replace(v.target)
		body := []byte(strings.NewReplacer("{T}", bobThread, "{UUID}", fresh, "{UUIDU}", strings.ToUpper(fresh)).Replace(string(v.body)))
		if v.body == nil {
			body = nil
		}
		r := send(t, h1, v.method, base+target, headers, body)
		d := awaitDecision(t, base, lg, before, id, bob)
		class, finding := judgeValues(v, r, d, valueRecords(t, valueLog, id), marker)
		counts[class]++
		switch {
		case finding:
			t.Errorf("%s %s %s [%s]: %s\n  client got %d %s; langgate: %v", v.name, v.method, short(v.target), v.contentType, class, r.status, short(r.body), summary(d))
		case strings.HasPrefix(class, "refused by the adapter"):
			adapterCaught = append(adapterCaught, fmt.Sprintf("%s (%s %s)", v.name, v.method, short(v.target)))
		case strings.HasPrefix(class, "allowed; the server refused"):
			serverRefused = append(serverRefused, fmt.Sprintf("%s (%s %s): %d %s", v.name, v.method, short(v.target), r.status, short(r.body)))
		}
	}
	got := send(t, h1, "GET", base+"/store/items?namespace=alice.notes&key=k1", [][2]string{alice}, nil)
	if got.status != 200 || !strings.Contains(got.body, marker) {
		t.Errorf("alice's item after bob's variants: %d %s", got.status, short(got.body))
	}
	if counts["ran, on the value langgate bound"] < 5 {
		t.Errorf("only %d variants ran an event: the corpus no longer reaches the handlers", counts["ran, on the value langgate bound"])
	}
	classes := make([]string, 0, len(counts))
	for c, n := range counts {
		classes = append(classes, fmt.Sprintf("%s: %d", c, n))
	}
	sort.Strings(classes)
	t.Logf("%s: %d variants; %s", where, len(variants), strings.Join(classes, "; "))
	for _, s := range adapterCaught {
		t.Logf("%s: the server read otherwise than langgate, the adapter refused: %s", where, s)
	}
	for _, s := range serverRefused {
		t.Logf("%s: langgate allowed, the server refused before a handler: %s", where, s)
	}
}

// awaitDecision returns langgate's decision line for the request with
// this probe id (nil: it never reached langgate), after a sentinel
// request's line shows the log has caught up.
func awaitDecision(t *testing.T, base string, lg *langgate, before int, id string, bob [2]string) map[string]any {
	t.Helper()
	if ds := decisionsOf(lg, before, id); len(ds) == 1 {
		return ds[0]
	}
	sid := newProbe()
	send(t, h1, "GET", base+"/store/items?namespace=bob&key=sentinel", [][2]string{bob, {"traceparent", "00-" + traceOf(sid) + "-" + sid + "-01"}}, nil)
	deadline := time.Now().Add(10 * time.Second)
	for len(decisionsOf(lg, before, sid)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the sentinel never reached langgate's log")
		}
		time.Sleep(5 * time.Millisecond)
	}
	switch ds := decisionsOf(lg, before, id); len(ds) {
	case 0:
		return nil
	case 1:
		return ds[0]
	default:
		t.Fatalf("%d decisions for one request", len(ds))
	}
	return nil
}

func summary(d map[string]any) string {
	if d == nil {
		return "no decision"
	}
	return fmt.Sprintf("%v %v events=%v values=%v (%v)", d["outcome"], d["status"], d["events"], d["values"], d["reason"])
}

// valueRecords returns what the adapter recorded for the probe.
func valueRecords(t *testing.T, file, id string) []valueRecord {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []valueRecord
	for _, line := range strings.Split(string(data), "\n") {
		var rec valueRecord
		if strings.Contains(line, id) && json.Unmarshal([]byte(line), &rec) == nil && rec.Probe == id {
			out = append(out, rec)
		}
	}
	return out
}

// judgeValues classifies one variant; finding is set when the server ran
// an event langgate did not authorize on that value, or alice's secret
// leaked.
func judgeValues(v variant, r response, d map[string]any, recs []valueRecord, marker string) (class string, finding bool) {
	if strings.Contains(r.body, marker) {
		return "LEAK: bob received alice's secret", true
	}
	allowed := d != nil && d["outcome"] == "allowed"
	ran := false
	for _, rec := range recs {
		if !rec.Accepted {
			continue
		}
		ran = true
		if !allowed {
			return "RAN " + rec.Event + " WITHOUT AN ALLOW", true
		}
		if !listed(d["events"], rec.Event) {
			return "RAN " + rec.Event + ", WHICH LANGGATE DID NOT AUTHORIZE", true
		}
		vals, _ := d["values"].(map[string]any)
		bound, ok := vals[rec.Event].([]any)
		if !ok && strings.HasPrefix(rec.Event, "store:") {
			return "RAN " + rec.Event + " WITH NO VALUE BOUND", true
		}
		if ok && !matchesBound(rec.Event, rec.Value, bound) {
			b, _ := json.Marshal(rec.Value)
			return fmt.Sprintf("RAN %s ON %s, NOT THE VALUE LANGGATE BOUND", rec.Event, b), true
		}
	}
	switch {
	case ran:
		return "ran, on the value langgate bound", false
	case len(recs) > 0 && allowed:
		return "refused by the adapter (allowed by langgate)", false
	case len(recs) > 0:
		return "REACHED THE HANDLER WITHOUT AN ALLOW", true
	case d == nil:
		return fmt.Sprintf("refused before langgate (%d)", r.status), false
	case !allowed:
		return fmt.Sprintf("refused by langgate (%v)", d["status"]), false
	}
	return fmt.Sprintf("allowed; the server refused it before a handler (%d)", r.status), false
}

func listed(events any, name string) bool {
	list, _ := events.([]any)
	for _, e := range list {
		if e == name {
			return true
		}
	}
	return false
}

// matchesBound checks a recorded value as the Go verifier does
// (upstream.CheckValue), a store namespace the server has as null being
// an empty one, as the adapters read it.
func matchesBound(event string, value map[string]any, bound []any) bool {
	resource, action, _ := strings.Cut(event, ":")
	ev := &langgatev1.Event{Resource: resource, Action: action}
	if resource == "store" && value["namespace"] == nil {
		value["namespace"] = []any{}
	}
	for _, b := range bound {
		m, _ := b.(map[string]any)
		if resource == "store" {
			if ns, ok := m["/namespace"]; ok && ns == nil {
				m["/namespace"] = []any{}
			}
		}
		s, err := structpb.NewStruct(m)
		if err != nil {
			return false
		}
		ev.Values = append(ev.Values, s)
	}
	return len(ev.Values) > 0 && upstream.CheckValue(ev, value) == nil
}

// parserVariants generates the requests: the bounded corpus, or with long
// the cross product of every encoding of a name, a value and an order.
func parserVariants(long bool) []variant {
	var out []variant
	get := func(name, query string) {
		out = append(out, variant{name: name, method: "GET", target: "/store/items?" + query, contentType: "-"})
	}
	get("own", "namespace=bob&key=k1")
	get("alice's", "namespace=alice.notes&key=k1")
	// Repeats, in every order.
	pairs := []string{"namespace=bob", "namespace=alice.notes", "key=k1"}
	for _, p := range permutations(pairs) {
		get("repeat", strings.Join(p, "&"))
	}
	get("repeated key", "namespace=bob&key=k1&key=k2")
	get("repeated key, other order", "namespace=bob&key=k2&key=k1")
	names := []string{"%6Eamespace", "%6eamespace", "n%61mespace", "NAMESPACE", "Namespace", "namespace[]", "namespace%5B%5D",
		"namespace%00", "namespace%20", "+namespace", "namespace+", "namespace.", "namespace%3D", "namespace%26"}
	values := []string{"alice.notes", "alice%2Enotes", "alice%2enotes", "%61lice.notes", "alice.notes%00", "alice.notes%20",
		"alice.notes+", "alice%zznotes", "alice%ff", "alice%C0%AE", "alice%E2%80%AEnotes", "alice%26namespace%3Dbob", "alice.notes%23"}
	for _, n := range names {
		get("encoded name "+n, n+"=alice.notes&namespace=bob&key=k1")
		get("encoded name "+n+", other order", "namespace=bob&"+n+"=alice.notes&key=k1")
	}
	for _, val := range values {
		get("encoded value "+val, "namespace="+val+"&key=k1")
	}
	if long {
		for _, n := range append(names, "namespace") {
			for _, val := range values {
				for _, order := range [][2]string{{n + "=" + val, "namespace=bob"}, {"namespace=bob", n + "=" + val}} {
					for _, key := range []string{"key=k1", "key=k+1", "key=k%201", "key=k%2B1", "key=k1&key=k2"} {
						get("cross "+n+"="+val, order[0]+"&"+order[1]+"&"+key)
						get("cross, key first "+n+"="+val, key+"&"+order[0]+"&"+order[1])
					}
				}
			}
		}
	}
	for _, q := range []string{
		"namespace=&namespace=bob&key=k1", "namespace=bob&namespace=&key=k1", "namespace&namespace=bob&key=k1",
		"namespace=bob&key=", "namespace=bob&key", "namespace=&key=k1", "namespace=bob;namespace=alice.notes&key=k1",
		"namespace=bob&key=k1;namespace=alice.notes", "namespace=alice.notes;&namespace=bob&key=k1", "&&namespace=bob&&key=k1&&",
		"namespace==alice.notes&key=k1", "=alice&namespace=bob&key=k1", "namespace=bob&key=k+1", "namespace=bob&key=k%201",
		"namespace=bob&key=k%2B1", "namespace=bob&key=k1&refresh_ttl=true&refresh_ttl=false", "namespace=bob.&key=k1",
		"namespace=.bob&key=k1", "namespace=bob..notes&key=k1", "namespace=bob%2Fnotes&key=k1",
	} {
		get("edge "+q, q)
	}

	// Bodies of the store routes that read one, with the field that names
	// the namespace.
	type bodyRoute struct {
		method, path, field, rest string
	}
	routes := []bodyRoute{
		{"PUT", "/store/items", "namespace", `,"key":"k1","value":{"v":1}`},
		{"DELETE", "/store/items", "namespace", `,"key":"k1"`},
		{"POST", "/store/items/search", "namespace_prefix", ``},
		{"POST", "/store/namespaces", "prefix", ``},
	}
	const own, theirs = `["bob"]`, `["alice","notes"]`
	contentTypes := []string{"text/plain", "-", "application/json;charset=latin-1", "APPLICATION/JSON", "Application/Json",
		"application/json; charset=UTF-8", "application/json;charset=\"utf-8\"", "application/x-www-form-urlencoded",
		"application/merge-patch+json", "application/json, text/plain", "application/json; boundary=x", " application/json"}
	for _, rt := range routes {
		add := func(name, ct, body string) {
			out = append(out, variant{name: rt.path + " " + name, method: rt.method, target: rt.path, contentType: ct, body: []byte(body)})
		}
		f := `"` + rt.field + `"`
		escaped := `"\u00` + fmt.Sprintf("%x", rt.field[0]) + rt.field[1:] + `"`
		obj := func(parts ...string) string { return "{" + strings.Join(parts, ",") + rt.rest + "}" }
		add("own", "application/json", obj(f+":"+own))
		add("alice's", "application/json", obj(f+":"+theirs))
		add("duplicate key", "application/json", obj(f+":"+own, f+":"+theirs))
		add("duplicate key, other order", "application/json", obj(f+":"+theirs, f+":"+own))
		add("escaped duplicate key", "application/json", obj(f+":"+own, escaped+":"+theirs))
		add("escaped duplicate key, other order", "application/json", obj(escaped+":"+theirs, f+":"+own))
		add("other case", "application/json", obj(f+":"+own, strings.ToUpper(f)+":"+theirs))
		add("byte order mark", "application/json", "\ufeff"+obj(f+":"+own))
		add("lone surrogate", "application/json", obj(f+`:["bob\ud800"]`))
		add("NUL", "application/json", obj(f+`:["bob\u0000"]`))
		add("trailing document", "application/json", obj(f+":"+own)+obj(f+":"+theirs))
		add("big integer", "application/json", obj(f+":"+own, `"limit":9007199254740993`))
		add("nested namespace", "application/json", obj(f+":"+own, `"filter":{"namespace":`+theirs+`}`))
		for _, ct := range contentTypes {
			add("content-type "+ct, ct, obj(f+":"+own))
			if long {
				add("content-type "+ct+", duplicate", ct, obj(f+":"+own, f+":"+theirs))
			}
		}
		out = append(out, variant{name: rt.path + " query ignored", method: rt.method, target: rt.path + "?" + rt.field + "=alice.notes&namespace=alice.notes",
			contentType: "application/json", body: []byte(obj(f + ":" + own))})
	}

	// The ids other events act on, from the body: a new thread's, a run's
	// assistant (by graph id, which the servers turn into its uuid5, or by
	// that id in other spellings).
	js := func(name, method, target, body string) {
		out = append(out, variant{name: name, method: method, target: target, contentType: "application/json", body: []byte(body)})
	}
	js("thread id", "POST", "/threads", `{"thread_id":"{UUID}"}`)
	js("thread id, upper case", "POST", "/threads", `{"thread_id":"{UUIDU}"}`)
	js("thread id, duplicate", "POST", "/threads", `{"thread_id":"{UUID}","thread_id":"{T}"}`)
	js("thread id, escaped duplicate", "POST", "/threads", `{"thread_id":"{UUID}","\u0074hread_id":"{T}"}`)
	js("no thread id", "POST", "/threads", `{"metadata":{"v":1}}`)
	js("run by graph id", "POST", "/threads/{T}/runs", `{"assistant_id":"agent","input":{"messages":[]}}`)
	js("run by assistant id", "POST", "/threads/{T}/runs", `{"assistant_id":"fe096781-5601-53d2-b2f6-0d3403f7e9ca","input":{"messages":[]}}`)
	js("run by assistant id, upper case", "POST", "/threads/{T}/runs", `{"assistant_id":"FE096781-5601-53D2-B2F6-0D3403F7E9CA","input":{"messages":[]}}`)
	js("run, duplicate assistant", "POST", "/threads/{T}/runs", `{"assistant_id":"agent","assistant_id":"slow","input":{"messages":[]}}`)
	js("stateless run by graph id", "POST", "/runs", `{"assistant_id":"slow","input":{"messages":[]}}`)
	return out
}

// newUUID is a random version 4 UUID.
func newUUID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func permutations(xs []string) [][]string {
	if len(xs) <= 1 {
		return [][]string{append([]string(nil), xs...)}
	}
	var out [][]string
	for i := range xs {
		rest := append(append([]string(nil), xs[:i]...), xs[i+1:]...)
		for _, p := range permutations(rest) {
			out = append(out, append([]string{xs[i]}, p...))
		}
	}
	return out
}

// startRecordingJS starts the real JS server with recording_auth.mjs (the
// shipped adapter, recorded to log) and returns its address.
func startRecordingJS(t *testing.T, log string) string {
	t.Helper()
	buf := &testproc.SyncBuffer{}
	srv, err := langgraphjs.Start(langgraphjs.Options{
		Dir: ".", Config: "langgraph.values.json", Stderr: buf, Timeout: 90 * time.Second, Env: []string{"VALUE_LOG=" + log},
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

// startRecordingPython is startRecordingJS for the real Python server
// with recording_auth.py.
func startRecordingPython(t *testing.T, log string) string {
	t.Helper()
	root, err := envoyproc.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	buf := &testproc.SyncBuffer{}
	srv, err := langgraphpy.Start(langgraphpy.Options{
		Config: "langgraph.values.python.json", Venv: langgraphpy.Venv(root), Stderr: buf, Timeout: 90 * time.Second,
		Env: []string{"VALUE_LOG=" + log},
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
