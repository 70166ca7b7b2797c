// Package extauthz is the Envoy adapter: a gRPC server answering
// envoy.service.auth.v3.Authorization/Check. It decodes each CheckRequest
// straight into a decision.Request (decode.go), decides through the core's
// one entry point, and encodes the Decision straight into a CheckResponse
// (encode.go), with no generated message in between: the transport, not
// the decision, is most of a Check's cost. Check never answers with a gRPC
// error once a request is decoded: every outcome, including a panic or a
// cancelled context, is an explicit CheckResponse, and only OK allows.
package extauthz

import (
	"context"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/routes"
	"github.com/langgate/langgate/pkg/tracing"
)

// Limits and settings of the server NewServer builds.
const (
	// MaxRecvBytes bounds one CheckRequest: the largest body langgate
	// reads (routes.MaxBodyBytes, the shipped Envoy configuration's
	// largest max_request_bytes) plus 1 MiB for headers and attributes.
	// A larger message is refused by gRPC (RESOURCE_EXHAUSTED) before it
	// is decoded, and Envoy answers with its status_on_error.
	MaxRecvBytes = routes.MaxBodyBytes + 1<<20
	// MaxConcurrentStreams bounds the Checks one connection has in flight
	// (and so the goroutines and buffers they hold); Envoy opens another
	// connection when it needs more.
	MaxConcurrentStreams = 4096
	// MaxHeaderListBytes bounds a stream's gRPC headers (grpc-go's
	// default is 16 MiB, held by every stream in flight). Envoy puts the
	// request's headers in the CheckRequest, not in gRPC headers: its own
	// are a few hundred bytes, trace context included.
	MaxHeaderListBytes = 64 << 10
	// MinPingInterval is the most often a client may send keepalive
	// pings, with or without Checks in flight. It is below the shipped
	// Envoy configuration's connection_keepalive interval (30 s): grpc-go's
	// default (5 minutes, none while idle) closes a connection whose
	// client pings more often, so an idle Envoy connection was dropped
	// with GOAWAY too_many_pings after its third ping.
	MinPingInterval = 10 * time.Second
)

// server answers Check over the engine in a Holder.
type server struct {
	engines *decision.Holder
	tracer  *tracing.Tracer
}

// SpanName is the name of a Check's span (the gRPC method, as otelgrpc
// names it).
const SpanName = "envoy.service.auth.v3.Authorization/Check"

// spanAttrs are a Check span's RPC attributes (OpenTelemetry semantic
// conventions for gRPC servers).
var spanAttrs = []attribute.KeyValue{
	attribute.String("rpc.system", "grpc"),
	attribute.String("rpc.service", authv3.Authorization_ServiceDesc.ServiceName),
	attribute.String("rpc.method", "Check"),
}

// serviceDesc is envoy.service.auth.v3.Authorization as the generated
// authv3.Authorization_ServiceDesc describes it, with a handler that
// decodes into a wireRequest: the same service, name and method on the
// wire, and reflection finds its descriptor under the same file.
var serviceDesc = grpc.ServiceDesc{
	ServiceName: authv3.Authorization_ServiceDesc.ServiceName,
	HandlerType: (*any)(nil),
	// A stream handler, though Check is unary on the wire: grpc-go reads
	// a unary method's message before its handler runs, and langgate
	// reads it only once it holds a receive slot (admission.go).
	Streams:  []grpc.StreamDesc{{StreamName: "Check", Handler: checkStream}},
	Metadata: authv3.Authorization_ServiceDesc.Metadata,
}

// NewServer returns a gRPC server answering Check with whatever engine
// engines holds, with langgate's codec (which must be the server's: Check
// is registered for it) and the settings above; opts come after them
// and may override any but the codec. Register health or reflection on
// it as on any gRPC server. With a tracer, each Check is a span, the
// child of the trace context in the gRPC metadata (Envoy's ext_authz
// span), else of the one in the CheckRequest's headers (the client's).
func NewServer(engines *decision.Holder, tracer *tracing.Tracer, opts ...grpc.ServerOption) *grpc.Server {
	return NewServerWith(engines, tracer, NewAdmission(Options{}), opts...)
}

// StreamWorkers is the number of goroutines that serve Checks and are
// kept between them (a Check beyond them gets a fresh goroutine). Each
// keeps the stack a Check grows, about 16 KiB: 2 MiB for all of them.
const StreamWorkers = 128

// NewServerWith is NewServer with the Checks it admits bounded by adm
// (streams in flight across connections, a deadline on each, refusal
// under memory pressure).
func NewServerWith(engines *decision.Holder, tracer *tracing.Tracer, adm *Admission, opts ...grpc.ServerOption) *grpc.Server {
	base := append(adm.serverOptions(),
		grpc.MaxRecvMsgSize(MaxRecvBytes),
		grpc.MaxConcurrentStreams(MaxConcurrentStreams),
		grpc.MaxHeaderListSize(MaxHeaderListBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: MinPingInterval, PermitWithoutStream: true}),
		// Reused goroutines keep the stacks they grew: a goroutine per
		// stream spends about 9 % of the CPU growing a fresh stack. A
		// worker is held for a whole Check, its wait for the message
		// included, so one per core left most Checks of a 32-deep load
		// to fresh goroutines (grpc-go starts one when no worker is free).
		grpc.NumStreamWorkers(StreamWorkers),
	)
	gs := grpc.NewServer(append(append(base, opts...), grpc.ForceServerCodecV2(newCodec()))...)
	gs.RegisterService(&serviceDesc, &server{engines: engines, tracer: tracer})
	return gs
}

// checkStream is Check's handler: it takes a receive slot, reads the
// CheckRequest, and answers it. Stream interceptors apply to it; unary
// ones do not.
func checkStream(srv any, ss grpc.ServerStream) error {
	ctx := ss.Context()
	defer release(ctx)
	done, err := receive(ctx)
	if err != nil {
		return status.FromContextError(err).Err()
	}
	in := new(wireRequest)
	err = ss.RecvMsg(in)
	done(err == nil)
	if err != nil {
		return err
	}
	s := srv.(*server) //nolint:forcetypeassert // registered with a *server only
	return ss.SendMsg(s.check(ctx, &in.Request))
}

// check decides one request through the core's one entry point, which
// answers every outcome (no configuration yet, a panic) with a decision.
func (s *server) check(ctx context.Context, req *decision.Request) *wireResponse {
	if s.tracer != nil {
		md, _ := metadata.FromIncomingContext(ctx)
		var sp trace.Span
		ctx, sp = s.tracer.Start(ctx, SpanName, spanAttrs, mdCarrier(md), tracing.MapCarrier(req.Headers))
		defer sp.End()
	}
	return &wireResponse{d: s.engines.DecideWith(ctx, req, decision.DecideOptions{HeadersOnly: true})}
}

// mdCarrier reads a trace context from incoming gRPC metadata.
type mdCarrier metadata.MD

func (m mdCarrier) Get(key string) string {
	if vs := metadata.MD(m).Get(key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

func (m mdCarrier) Set(string, string) {}

func (m mdCarrier) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
