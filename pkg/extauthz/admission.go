package extauthz

import (
	"container/list"
	"context"
	"sync"
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
	// by default, the shipped one's 50 ms), so a Check it ends was one
	// Envoy had already given up on, or one a client trickled in on
	// purpose.
	DefaultCheckTimeout = 5 * time.Second
	// DefaultReceiveGrace is how long a Check's message may take to
	// arrive before, under memory pressure, the Check is ended to free
	// what it holds. Envoy sends a whole CheckRequest at once: on a
	// loopback or a LAN it arrives in well under a millisecond.
	DefaultReceiveGrace = 250 * time.Millisecond
)

// Options bound the Checks an Admission lets in. Zero fields take the
// defaults.
type Options struct {
	// MaxStreams bounds the Checks in flight across all connections.
	// When it is reached, the Check that has waited longest for the rest
	// of its message is ended to make room (a client trickling messages
	// in cannot hold every slot); when none is waiting for its message, a
	// new stream is refused with RESOURCE_EXHAUSTED before any of it is
	// read.
	MaxStreams int
	// CheckTimeout bounds each Check, its message's arrival included,
	// whatever deadline (or none) the client sent. A Check over it is
	// ended with DEADLINE_EXCEEDED and its buffers released.
	CheckTimeout time.Duration
	// ReceiveGrace is how long a message may take to arrive under memory
	// pressure: at overload.High, Checks still receiving after it are
	// ended; at overload.Critical, every Check still receiving is, and
	// new streams are refused.
	ReceiveGrace time.Duration
	// Overload, when set, is the memory pressure the above follows.
	Overload *overload.Guard
}

// Admission is a server's tap (NewServerWith): it runs when a stream's
// HEADERS arrive, before any of its message is read, so what it refuses
// costs no buffer. Each stream a gRPC client opens can hold up to
// MaxRecvBytes while its message arrives (grpc-go opens the stream's
// flow-control window to the size the message declares), so the bounds
// on what streams hold are the number in flight, the time each may take,
// and, under memory pressure, ending the ones whose message is late.
type Admission struct {
	max     int64
	timeout time.Duration
	grace   time.Duration
	guard   *overload.Guard

	inFlight atomic.Int64
	evicted  atomic.Uint64

	mu sync.Mutex
	// receiving holds the admitted streams whose message has not yet
	// arrived, oldest first.
	receiving list.List
}

// admitted is one admitted stream.
type admitted struct {
	a      *Admission
	cancel context.CancelFunc
	since  time.Time
	elem   *list.Element // in a.receiving; nil once the message arrived or the stream ended
	ended  atomic.Bool
}

type admittedKey struct{}

var (
	errTooManyStreams = status.Error(codes.ResourceExhausted, "langgate: too many checks in flight")
	errOverloaded     = status.Error(codes.ResourceExhausted, "langgate: overloaded")
)

// NewAdmission returns an Admission with the bounds of o. With an
// overload guard, it follows the guard's samples (Guard.Notify).
func NewAdmission(o Options) *Admission {
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	if o.CheckTimeout <= 0 {
		o.CheckTimeout = DefaultCheckTimeout
	}
	if o.ReceiveGrace <= 0 {
		o.ReceiveGrace = DefaultReceiveGrace
	}
	a := &Admission{max: int64(o.MaxStreams), timeout: o.CheckTimeout, grace: o.ReceiveGrace, guard: o.Overload}
	if a.guard != nil {
		a.guard.Notify(a.relieve)
	}
	return a
}

// admit is a tap.ServerInHandle. The context it returns is the stream's
// for the rest of its life, its receive included (grpc-go reads the
// message under it), so its deadline, or its cancellation, ends a
// trickled message. grpc-go cancels the stream's context when the stream
// ends, however it ends, so the release registered on it always runs.
func (a *Admission) admit(ctx context.Context, _ *tap.Info) (context.Context, error) {
	level := a.guard.Level()
	if a.guard.RefuseNew() {
		a.relieve(level)
		return ctx, errOverloaded
	}
	now := time.Now()
	a.mu.Lock()
	if level >= overload.High {
		a.evictLocked(now.Add(-a.grace))
	}
	if a.inFlight.Load() >= a.max && !a.evictOldestLocked() {
		a.mu.Unlock()
		a.guard.CountRefused()
		return ctx, errTooManyStreams
	}
	a.inFlight.Add(1)
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	s := &admitted{a: a, cancel: cancel, since: now}
	s.elem = a.receiving.PushBack(s)
	a.mu.Unlock()
	// The timeout's context is a child of the stream's: the stream's end
	// cancels it, and its own end (timeout, eviction) ends the stream.
	context.AfterFunc(ctx, s.end)
	return context.WithValue(ctx, admittedKey{}, s), nil
}

// end releases a stream's slot, once.
func (s *admitted) end() {
	if s.ended.Swap(true) {
		return
	}
	s.cancel()
	s.a.mu.Lock()
	if s.elem != nil {
		s.a.receiving.Remove(s.elem)
		s.elem = nil
	}
	s.a.mu.Unlock()
	s.a.inFlight.Add(-1)
}

// received marks the stream of ctx as no longer receiving: its message
// arrived whole.
func received(ctx context.Context) {
	s, ok := ctx.Value(admittedKey{}).(*admitted)
	if !ok {
		return
	}
	s.a.mu.Lock()
	if s.elem != nil {
		s.a.receiving.Remove(s.elem)
		s.elem = nil
	}
	s.a.mu.Unlock()
}

// evictOldestLocked ends the stream that has waited longest for its
// message, if any, and takes its slot at once.
func (a *Admission) evictOldestLocked() bool {
	front := a.receiving.Front()
	if front == nil {
		return false
	}
	a.evictElemLocked(front)
	return true
}

// evictLocked ends every stream still receiving that was admitted at or
// before cutoff.
func (a *Admission) evictLocked(cutoff time.Time) {
	for e := a.receiving.Front(); e != nil; e = a.receiving.Front() {
		s := e.Value.(*admitted) //nolint:forcetypeassert // the list holds *admitted only
		if s.since.After(cutoff) {
			return
		}
		a.evictElemLocked(e)
	}
}

// evictElemLocked ends the stream at e: out of the list and its slot freed
// now, its context cancelled (grpc-go then resets the stream and drops
// its buffers).
func (a *Admission) evictElemLocked(e *list.Element) {
	s := e.Value.(*admitted) //nolint:forcetypeassert // the list holds *admitted only
	a.receiving.Remove(e)
	s.elem = nil
	if !s.ended.Swap(true) {
		a.inFlight.Add(-1)
		a.evicted.Add(1)
	}
	s.cancel()
}

// relieve is called with each overload sample: at High it ends the
// streams whose message is later than the grace, at Critical every
// stream still receiving.
func (a *Admission) relieve(level overload.Level) {
	if level < overload.High {
		return
	}
	cutoff := time.Now().Add(-a.grace)
	if level >= overload.Critical {
		cutoff = time.Now()
	}
	a.mu.Lock()
	a.evictLocked(cutoff)
	a.mu.Unlock()
}

// InFlight returns the Checks admitted and not yet ended.
func (a *Admission) InFlight() int64 { return a.inFlight.Load() }

// Evicted returns how many Checks were ended while their message was
// still arriving, to make room or for memory pressure.
func (a *Admission) Evicted() uint64 { return a.evicted.Load() }

// serverOption installs the tap.
func (a *Admission) serverOption() grpc.ServerOption { return grpc.InTapHandle(a.admit) }
