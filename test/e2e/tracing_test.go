package e2e

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/langgate/langgate/internal/envoyproc"
	"github.com/langgate/langgate/internal/testproc"
	"github.com/langgate/langgate/pkg/extauthz"
)

// otlpSpan is one span a receiver got, ids in hex.
type otlpSpan struct {
	service, name       string
	trace, span, parent string
	attrs               map[string]string
}

// otlpReceiver is an OTLP trace receiver built on the protocol's own
// types: the gRPC TraceService (Envoy's OpenTelemetry tracer, langgate's
// grpc exporter) and POST /v1/traces (langgate's http/protobuf exporter).
type otlpReceiver struct {
	collectortrace.UnimplementedTraceServiceServer
	grpcAddr, httpAddr string
	mu                 sync.Mutex
	spans              []otlpSpan
}

func startReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(gs, r)
	go func() { _ = gs.Serve(gl) }()
	t.Cleanup(gs.Stop)
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(r.serveHTTP), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(hl) }()
	t.Cleanup(func() { _ = hs.Close() })
	r.grpcAddr, r.httpAddr = gl.Addr().String(), hl.Addr().String()
	return r
}

// Export is the gRPC TraceService's one method.
func (r *otlpReceiver) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	r.add(req)
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

func (r *otlpReceiver) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if req.URL.Path != "/v1/traces" || req.Header.Get("Content-Type") != "application/x-protobuf" {
		http.Error(w, "want POST /v1/traces application/x-protobuf", http.StatusBadRequest)
		return
	}
	b, err := io.ReadAll(req.Body)
	var msg collectortrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &msg)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.add(&msg)
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (r *otlpReceiver) add(req *collectortrace.ExportTraceServiceRequest) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		var service string
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				attrs := map[string]string{}
				for _, kv := range s.GetAttributes() {
					attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
				}
				r.spans = append(r.spans, otlpSpan{service: service, name: s.GetName(),
					trace: hex.EncodeToString(s.GetTraceId()), span: hex.EncodeToString(s.GetSpanId()), parent: hex.EncodeToString(s.GetParentSpanId()), attrs: attrs})
			}
		}
	}
}

// trace returns the spans received so far of trace id.
func (r *otlpReceiver) trace(id string) []otlpSpan {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []otlpSpan
	for _, s := range r.spans {
		if s.trace == id {
			out = append(out, s)
		}
	}
	return out
}

// withTracing turns on Envoy's OpenTelemetry tracer in every connection
// manager, exporting over gRPC to addr, and flushes each span at once
// (Envoy batches 5 spans or 5 s by default).
func withTracing(t *testing.T, addr string) func(*envoyproc.Config) {
	port := testproc.Port(t, addr)
	return func(cfg *envoyproc.Config) {
		relaxed(cfg)
		cfg.Visit(func(m map[string]any) {
			if m["static_resources"] != nil {
				m["layered_runtime"] = map[string]any{"layers": []any{map[string]any{"name": "tracing", "static_layer": map[string]any{
					"tracing.opentelemetry.min_flush_spans": 1, "tracing.opentelemetry.flush_interval_ms": 100}}}}
			}
			if t, _ := m["@type"].(string); strings.HasSuffix(t, ".HttpConnectionManager") {
				m["tracing"] = map[string]any{"provider": map[string]any{"name": "envoy.tracers.opentelemetry", "typed_config": map[string]any{
					"@type":        "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
					"grpc_service": map[string]any{"envoy_grpc": map[string]any{"cluster_name": "otlp"}, "timeout": "1s"},
					"service_name": "envoy",
				}}}
			}
		})
		cfg.AddCluster(map[string]any{
			"name": "otlp", "type": "STATIC", "connect_timeout": "1s",
			"typed_extension_protocol_options": map[string]any{"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": map[string]any{
				"@type":                "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
				"explicit_http_config": map[string]any{"http2_protocol_options": map[string]any{}}}},
			"load_assignment": map[string]any{"cluster_name": "otlp", "endpoints": []any{map[string]any{"lb_endpoints": []any{map[string]any{
				"endpoint": map[string]any{"address": map[string]any{"socket_address": map[string]any{
					"address": "127.0.0.1", "port_value": port}}}}}}}},
		})
	}
}

// TestTracingThroughEnvoy: the real Envoy traces a request with its
// OpenTelemetry tracer and asks langgate, which exports its own spans (OTLP
// over gRPC in gRPC mode, over HTTP in HTTP mode) to the same receiver.
// langgate's span is in the client's trace, its parent is a span Envoy
// exported (its ext_authz call), its phases are its children, and the
// decision log names it.
func TestTracingThroughEnvoy(t *testing.T) {
	recv := startReceiver(t)
	alice := token(t, "alice")
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			env := []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_SERVICE_NAME=langgate-e2e", "OTEL_BSP_SCHEDULE_DELAY=50"}
			span := extauthz.SpanName
			if m.name == "grpc" {
				env = append(env, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc", "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+recv.grpcAddr)
			} else {
				env = append(env, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+recv.httpAddr)
				span = "GET /envoy"
			}
			lg := startLanggateWith(t, seedPolicy, env, "--log-allows")
			e := envoyFor(t, m.file, lg, withTracing(t, recv.grpcAddr))
			clientTrace, clientSpan := newProbe()+newProbe(), newProbe()
			r := send(t, h1, "GET", e.URL("langgraph_http")+"/threads/00000000-0000-4000-8000-000000000001",
				[][2]string{bearer(alice), {"traceparent", "00-" + clientTrace + "-" + clientSpan + "-01"}}, nil)
			if r.status == 401 || r.status == 403 || r.status >= 500 {
				t.Fatalf("status %d %s", r.status, r.body)
			}
			var lgSpan, parent otlpSpan
			var spans []otlpSpan
			testproc.WaitFor(t, 20*time.Second, func() bool {
				spans = recv.trace(clientTrace)
				byID := map[string]otlpSpan{}
				for _, s := range spans {
					byID[s.span] = s
				}
				for _, s := range spans {
					if s.service == "langgate-e2e" && s.name == span && byID[s.parent].service == "envoy" {
						lgSpan, parent = s, byID[s.parent]
						return true
					}
				}
				return false
			}, "no langgate span whose parent is an Envoy span in the client's trace (spans so far are logged below)")
			t.Cleanup(func() {
				if t.Failed() {
					for _, s := range spans {
						t.Logf("span %+v", s)
					}
				}
			})
			// Envoy's span for its call to langgate, "async <service or
			// cluster> egress", on the langgate cluster.
			if !strings.HasPrefix(parent.name, "async ") || !strings.HasPrefix(parent.attrs["upstream_cluster"], "langgate") {
				t.Errorf("langgate's parent is Envoy's %q on cluster %q, want its ext_authz call", parent.name, parent.attrs["upstream_cluster"])
			}
			if got := lgSpan.attrs["langgate.route"]; got != "GET /threads/{thread_id}" {
				t.Errorf("langgate.route %q", got)
			}
			if id := lgSpan.attrs["langgate.decision_id"]; id == "" {
				t.Error("no langgate.decision_id")
			}
			phases := 0
			testproc.WaitFor(t, 10*time.Second, func() bool {
				phases = 0
				for _, s := range recv.trace(clientTrace) {
					if s.parent == lgSpan.span && strings.HasPrefix(s.name, "langgate.") {
						phases++
					}
				}
				return phases == 4
			}, "langgate's four phase spans did not arrive as its children")
			line := ""
			testproc.WaitFor(t, 5*time.Second, func() bool {
				for _, l := range strings.Split(lg.log.String(), "\n") {
					if strings.Contains(l, "decision_id="+lgSpan.attrs["langgate.decision_id"]) {
						line = l
						return true
					}
				}
				return false
			}, "no decision log line")
			if !strings.Contains(line, "trace_id="+clientTrace) || !strings.Contains(line, "span_id="+lgSpan.span) {
				t.Errorf("decision log %q does not name trace %s span %s", line, clientTrace, lgSpan.span)
			}
		})
	}
}
