package tracing_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/langgate/langgate/pkg/tracing"
)

func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestReadSettings(t *testing.T) {
	for _, c := range []struct {
		name     string
		env      []string
		enabled  bool
		protocol string
		sampler  string // the sampler's Description
		tc       bool
		err      string // a substring of the error
	}{
		{name: "off by default", env: nil},
		{name: "the SDK's default exporter alone does not turn it on", env: []string{"OTEL_SERVICE_NAME", "x"}},
		{name: "an endpoint turns it on", env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"}, enabled: true, protocol: "http/protobuf",
			sampler: "ParentBased{root:AlwaysOnSampler,remoteParentSampled:AlwaysOnSampler,remoteParentNotSampled:AlwaysOffSampler,localParentSampled:AlwaysOnSampler,localParentNotSampled:AlwaysOffSampler}", tc: true},
		{name: "a traces endpoint turns it on", env: []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces"}, enabled: true, protocol: "http/protobuf", tc: true},
		{name: "exporter otlp", env: []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"}, enabled: true, protocol: "grpc", tc: true},
		{name: "the traces protocol wins", env: []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"}, enabled: true, protocol: "http/protobuf", tc: true},
		{name: "exporter none wins over an endpoint", env: []string{"OTEL_TRACES_EXPORTER", "none", "OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"}},
		{name: "SDK disabled", env: []string{"OTEL_SDK_DISABLED", "true", "OTEL_TRACES_EXPORTER", "otlp"}},
		{name: "ratio sampler", env: []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "0.25"},
			enabled: true, protocol: "http/protobuf", sampler: "TraceIDRatioBased{0.25}", tc: true},
		{name: "always off", env: []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_TRACES_SAMPLER", "always_off"}, enabled: true, protocol: "http/protobuf", sampler: "AlwaysOffSampler", tc: true},
		{name: "no propagation", env: []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_PROPAGATORS", "none"}, enabled: true, protocol: "http/protobuf"},
		{name: "baggage alone", env: []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_PROPAGATORS", "baggage"}, enabled: true, protocol: "http/protobuf"},

		{name: "unknown exporter", env: []string{"OTEL_TRACES_EXPORTER", "jaeger"}, err: `OTEL_TRACES_EXPORTER="jaeger"`},
		{name: "http/json", env: []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"}, err: `OTEL_EXPORTER_OTLP_PROTOCOL="http/json"`},
		{name: "unknown sampler", env: []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_TRACES_SAMPLER", "sometimes"}, err: `OTEL_TRACES_SAMPLER="sometimes"`},
		{name: "ratio above one", env: []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_TRACES_SAMPLER", "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG", "2"}, err: `OTEL_TRACES_SAMPLER_ARG="2"`},
		{name: "ratio not a number", env: []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "half"}, err: `OTEL_TRACES_SAMPLER_ARG="half"`},
		{name: "b3 propagator", env: []string{"OTEL_TRACES_EXPORTER", "otlp", "OTEL_PROPAGATORS", "tracecontext,b3"}, err: `"b3" is not supported`},
		{name: "disabled is a boolean", env: []string{"OTEL_SDK_DISABLED", "yes"}, err: `OTEL_SDK_DISABLED="yes"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, err := tracing.ReadSettings(env(c.env...))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, tracing.ErrConfig) {
					t.Fatalf("error %v, want an ErrConfig containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Enabled != c.enabled || s.Protocol != c.protocol || s.TraceContext != c.tc {
				t.Errorf("got %+v, want enabled %v protocol %q tracecontext %v", s, c.enabled, c.protocol, c.tc)
			}
			if c.sampler != "" && s.Sampler.Description() != c.sampler {
				t.Errorf("sampler %s, want %s", s.Sampler.Description(), c.sampler)
			}
		})
	}
}

// TestFromEnvOff: with nothing set there is no tracer, and a nil tracer's
// Start returns the context it was given and a span that records nothing.
func TestFromEnvOff(t *testing.T) {
	tr, err := tracing.FromEnv(context.Background(), env(), "test")
	if err != nil || tr != nil {
		t.Fatalf("FromEnv = %v, %v; want nil, nil", tr, err)
	}
	ctx := context.Background()
	got, sp := tr.Start(ctx, "x", nil, propagation.HeaderCarrier(http.Header{"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}))
	if got != ctx || sp.IsRecording() || sp.SpanContext().IsValid() {
		t.Errorf("a nil tracer started a span: %v", sp.SpanContext())
	}
	if err := tr.Shutdown(0); err != nil {
		t.Error(err)
	}
}

// TestFromEnvOn builds the exporter the variables name (it connects
// lazily, so no collector is needed) and shuts it down.
func TestFromEnvOn(t *testing.T) {
	for _, proto := range []string{"grpc", "http/protobuf"} {
		tr, err := tracing.FromEnv(context.Background(), env("OTEL_TRACES_EXPORTER", "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", proto), "test")
		if err != nil || tr == nil {
			t.Fatalf("%s: FromEnv = %v, %v", proto, tr, err)
		}
		if err := tr.Shutdown(5 * time.Second); err != nil {
			t.Errorf("%s: shutdown with nothing buffered: %v", proto, err)
		}
	}
}

// TestNoPropagation: with OTEL_PROPAGATORS=none the caller's context is
// ignored and every span is a root.
func TestNoPropagation(t *testing.T) {
	s, err := tracing.ReadSettings(env("OTEL_TRACES_EXPORTER", "otlp", "OTEL_PROPAGATORS", "none"))
	if err != nil {
		t.Fatal(err)
	}
	rec := tracetest.NewSpanRecorder()
	tr := tracing.New(s, sdktrace.WithSpanProcessor(rec))
	_, sp := tr.Start(context.Background(), "x", nil, tracing.MapCarrier{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
	sp.End()
	if p := rec.Ended()[0].Parent(); p.IsValid() {
		t.Errorf("parent %v, want none", p)
	}
}
