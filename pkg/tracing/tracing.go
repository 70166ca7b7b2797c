// Package tracing sets up OpenTelemetry tracing from the standard OTEL_*
// environment variables, and starts the server span of each authorization
// request as a child of the caller's span.
//
// Tracing is off unless asked for: OTEL_TRACES_EXPORTER=otlp, or an OTLP
// endpoint (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
// with OTEL_TRACES_EXPORTER unset. OTEL_SDK_DISABLED=true or
// OTEL_TRACES_EXPORTER=none turns it off. When it is off, FromEnv returns a
// nil *Tracer, whose methods do nothing and cost nothing on the request path.
//
// The exporter's own variables (endpoint, headers, timeout, compression,
// certificates) and the batch processor's (OTEL_BSP_*) are read by the
// OpenTelemetry SDK; this package reads and validates the exporter, the
// protocol, the sampler and the propagators, so that a typo is a startup
// error and not a silent fallback.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of langgate's spans.
const ScopeName = "github.com/langgate/langgate"

// DefaultServiceName is service.name when neither OTEL_SERVICE_NAME nor
// OTEL_RESOURCE_ATTRIBUTES names one.
const DefaultServiceName = "langgate"

// Protocols of the OTLP exporter (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// ErrConfig classifies every error in the OTEL_* variables.
var ErrConfig = errors.New("tracing configuration")

// Settings are what FromEnv read, before anything is built.
type Settings struct {
	// Enabled is false when tracing is off; nothing else is then set.
	Enabled bool
	// Protocol is ProtocolGRPC or ProtocolHTTP.
	Protocol string
	// Sampler describes the sampler (its Description()).
	Sampler sdktrace.Sampler
	// TraceContext is set when OTEL_PROPAGATORS includes tracecontext
	// (the default): the caller's W3C trace context parents langgate's
	// span. Baggage is accepted and ignored: langgate propagates nothing.
	TraceContext bool
}

// ReadSettings reads the OTEL_* variables through lookup (os.LookupEnv in
// the binary). An unknown exporter, protocol, sampler or propagator, or a
// sampler argument that is not a ratio in [0, 1], is an ErrConfig naming
// the variable.
func ReadSettings(lookup func(string) (string, bool)) (Settings, error) {
	get := func(name string) string {
		v, _ := lookup(name)
		return strings.TrimSpace(v)
	}
	var s Settings
	switch v := strings.ToLower(get("OTEL_SDK_DISABLED")); v {
	case "", "false":
	case "true":
		return s, nil
	default:
		return s, fmt.Errorf("%w: OTEL_SDK_DISABLED=%q: want true or false", ErrConfig, v)
	}
	switch v := strings.ToLower(get("OTEL_TRACES_EXPORTER")); v {
	case "none":
		return s, nil
	case "otlp":
	case "":
		// The specification's default exporter is otlp; langgate keeps
		// tracing off unless an endpoint says where spans should go.
		if get("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
			return s, nil
		}
	default:
		return s, fmt.Errorf("%w: OTEL_TRACES_EXPORTER=%q: langgate exports traces with otlp (or none)", ErrConfig, v)
	}
	s.Enabled = true

	name, proto := "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if proto == "" {
		name, proto = "OTEL_EXPORTER_OTLP_PROTOCOL", get("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch proto {
	case "", ProtocolHTTP:
		s.Protocol = ProtocolHTTP // the specification's default
	case ProtocolGRPC:
		s.Protocol = ProtocolGRPC
	default:
		return Settings{}, fmt.Errorf("%w: %s=%q: want grpc or http/protobuf", ErrConfig, name, proto)
	}

	var err error
	if s.Sampler, err = sampler(strings.ToLower(get("OTEL_TRACES_SAMPLER")), get("OTEL_TRACES_SAMPLER_ARG")); err != nil {
		return Settings{}, err
	}

	props := get("OTEL_PROPAGATORS")
	if props == "" {
		props = "tracecontext,baggage"
	}
	for _, p := range strings.Split(props, ",") {
		switch p = strings.TrimSpace(p); p {
		case "tracecontext":
			s.TraceContext = true
		case "baggage", "none":
		default:
			return Settings{}, fmt.Errorf("%w: OTEL_PROPAGATORS: %q is not supported (tracecontext, baggage)", ErrConfig, p)
		}
	}
	return s, nil
}

// sampler is OTEL_TRACES_SAMPLER with its argument; the default,
// parentbased_always_on, follows the caller's sampling decision.
func sampler(name, arg string) (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("%w: OTEL_TRACES_SAMPLER_ARG=%q: want a ratio between 0 and 1", ErrConfig, arg)
		}
		return r, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	default:
		return nil, fmt.Errorf("%w: OTEL_TRACES_SAMPLER=%q: want always_on, always_off, traceidratio or their parentbased_ forms", ErrConfig, name)
	}
}

// Tracer starts langgate's spans and exports them. A nil *Tracer is
// tracing turned off.
type Tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
}

// FromEnv builds the tracer the OTEL_* variables describe, or returns nil
// when tracing is off. version is langgate's, recorded as
// service.version. Nothing is sent until the first span ends; a collector
// that is down costs dropped spans and a logged error, never a request.
func FromEnv(ctx context.Context, lookup func(string) (string, bool), version string) (*Tracer, error) {
	s, err := ReadSettings(lookup)
	if err != nil || !s.Enabled {
		return nil, err
	}
	var client otlptrace.Client
	if s.Protocol == ProtocolGRPC {
		client = otlptracegrpc.NewClient()
	} else {
		client = otlptracehttp.NewClient()
	}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("OTLP trace exporter: %w", err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", DefaultServiceName), attribute.String("service.version", version)),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: OTEL_RESOURCE_ATTRIBUTES: %w", ErrConfig, err)
	}
	return New(s, sdktrace.WithBatcher(exp), sdktrace.WithResource(res)), nil
}

// New is a Tracer over a provider built with opts and the sampler and
// propagators of s: FromEnv's, or a test's with its own span processor.
func New(s Settings, opts ...sdktrace.TracerProviderOption) *Tracer {
	p := sdktrace.NewTracerProvider(append([]sdktrace.TracerProviderOption{sdktrace.WithSampler(s.Sampler)}, opts...)...)
	prop := propagation.NewCompositeTextMapPropagator() // none
	if s.TraceContext {
		prop = propagation.TraceContext{}
	}
	return &Tracer{provider: p, tracer: p.Tracer(ScopeName), prop: prop}
}

// Defaults are the settings of OTEL_TRACES_EXPORTER=otlp with nothing else
// set: parentbased_always_on, W3C trace context. Tests build their tracer
// with New(Defaults(), their own span processor).
func Defaults() Settings {
	return Settings{Enabled: true, Protocol: ProtocolHTTP, Sampler: sdktrace.ParentBased(sdktrace.AlwaysSample()), TraceContext: true}
}

// Start begins a server span named name as a child of the first carrier
// that holds a valid W3C trace context (the gRPC metadata, then the
// headers of the request being authorized), or as a root when none does.
// On a nil Tracer it returns ctx and a non-recording span.
func (t *Tracer) Start(ctx context.Context, name string, attrs []attribute.KeyValue, carriers ...propagation.TextMapCarrier) (context.Context, trace.Span) {
	if t == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	parent := ctx
	for _, c := range carriers {
		if c == nil {
			continue
		}
		if pc := t.prop.Extract(ctx, c); trace.SpanContextFromContext(pc).IsValid() {
			parent = pc
			break
		}
	}
	return t.tracer.Start(parent, name, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
}

// Shutdown exports the spans still buffered and stops the exporter,
// waiting at most timeout. A nil Tracer has nothing to do.
func (t *Tracer) Shutdown(timeout time.Duration) error {
	if t == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return t.provider.Shutdown(ctx)
}

// MapCarrier reads a trace context from request headers keyed by their
// lowercase names (decision.Request.Headers).
type MapCarrier map[string]string

// Get returns the header's value.
func (m MapCarrier) Get(key string) string { return m[strings.ToLower(key)] }

// Set is not used: langgate never injects into the request it authorizes.
func (m MapCarrier) Set(string, string) {}

// Keys returns the header names.
func (m MapCarrier) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
