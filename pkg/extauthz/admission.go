package extauthz

import (
	"context"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/langgate/langgate/pkg/overload"
)

// Defaults of Options.
const (
	// DefaultMaxStreams bounds the streams in flight across every
	// connection: two connections' worth of MaxConcurrentStreams.
	DefaultMaxStreams = 2 * MaxConcurrentStreams
	// DefaultCheckTimeout bounds one Check from its HEADERS frame to its
	// answer, the time to receive its message included. It is well over
	// the budget of any Envoy configuration (ext_authz's timeout is 200 ms
	// by default, the shipped one's 1 s), so a Check it ends was one Envoy
	// had already given up on, or one a client trickled in on purpose.
	DefaultCheckTimeout = 5 * time.Second
)

// Options bound the Checks an Admission lets in. Zero fields take the
// defaults.
type Options struct {
	// MaxStreams bounds the Checks in flight across all connections;
	// a stream over it is refused with RESOURCE_EXHAUSTED before any of
	// its message is read. Each may hold up to MaxRecvBytes while its
	// message arrives, so MaxStreams × MaxRecvBytes bounds what received
	// messages can hold.
	MaxStreams int
	// CheckTimeout bounds each Check, its message's arrival included,
	// whatever deadline (or none) the client sent. A Check over it is
	// ended with DEADLINE_EXCEEDED and its buffers released.
	CheckTimeout time.Duration
	// Overload, when set, refuses new streams at overload.Critical.
	Overload *overload.Guard
}

// Admission is a server's tap (NewServerWith): it runs when a stream's
// HEADERS arrive, before any of its message is read, so what it refuses
// costs no buffer.
type Admission struct {
	max      int64
	timeout  time.Duration
	guard    *overload.Guard
	inFlight atomic.Int64
}

var (
	errTooManyStreams = status.Error(codes.ResourceExhausted, "langgate: too many checks in flight")
	errOverloaded     = status.Error(codes.ResourceExhausted, "langgate: overloaded")
)

// NewAdmission returns an Admission with the bounds of o.
func NewAdmission(o Options) *Admission {
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = DefaultCheckTimeout
	}
	return &Admission{max: int64(o.MaxStreams), timeout: o.CheckTimeout, guard: o.Overload}
}

// admit is a tap.ServerInHandle. The context it returns is the stream's
// for the rest of its life, its receive included (grpc-go reads the
// message under it), so its deadline ends a trickled message. grpc-go
// cancels the stream's context when the stream ends, however it ends, so
// the release registered on it runs exactly once per admitted stream.
func (a *Admission) admit(ctx context.Context, _ *tap.Info) (context.Context, error) {
	if a.guard.RefuseNew() {
		return ctx, errOverloaded
	}
	if a.inFlight.Add(1) > a.max {
		a.inFlight.Add(-1)
		a.guard.CountRefused()
		return ctx, errTooManyStreams
	}
	context.AfterFunc(ctx, func() { a.inFlight.Add(-1) })
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	// The timeout's context is a child of the stream's: the stream's end
	// cancels it (and stops its timer) with the rest.
	context.AfterFunc(ctx, cancel)
	return ctx, nil
}

// InFlight returns the Checks admitted and not yet ended.
func (a *Admission) InFlight() int64 { return a.inFlight.Load() }

// serverOption installs the tap.
func (a *Admission) serverOption() grpc.ServerOption { return grpc.InTapHandle(a.admit) }
