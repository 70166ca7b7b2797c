package extauthz

import (
	"container/list"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
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
	// DefaultMaxReceiving bounds the Checks reading their message at
	// once: at most 4 × 16 × MaxRecvBytes, 128 MiB, is held by messages
	// being read. Reading one takes microseconds of CPU.
	DefaultMaxReceiving = 16
	// StreamWindow is each stream's HTTP/2 flow-control window before
	// its Check starts reading its message: what a stream can make the
	// server hold while it waits for a receive slot.
	StreamWindow = 64 << 10
	// minReceive is how long a Check holds a receive slot before it
	// counts as slow.
	minReceive = 50 * time.Millisecond
	// overSlots is how far the receive slots stretch past MaxReceiving
	// while every holder is over minReceive.
	overSlots = 4
)

// Options bound the Checks an Admission lets in. Zero fields take the
// defaults.
type Options struct {
	// MaxStreams bounds the Checks in flight across all connections.
	// When it is reached, a Check still waiting for its message is ended
	// to make room: one that has held a receive slot for over 50 ms, else
	// the oldest of the connection with the most such Checks (a client
	// trickling messages in cannot hold every slot, nor push out another
	// connection's Checks); when none is waiting for its message, a new
	// stream is refused with RESOURCE_EXHAUSTED before any of it is read.
	MaxStreams int
	// CheckTimeout bounds each Check, its message's arrival included,
	// whatever deadline (or none) the client sent. A Check over it is
	// ended with DEADLINE_EXCEEDED and its buffers released; when its
	// message had not arrived whole, its connection is closed too (on a
	// listener from Listener): a client that takes that long to send a
	// CheckRequest is not a proxy.
	CheckTimeout time.Duration
	// ReceiveGrace is how long a message may take to arrive under memory
	// pressure: at overload.High, the connections of Checks still
	// receiving after it are closed; at overload.Critical, every Check
	// still receiving is ended, and new streams are refused.
	ReceiveGrace time.Duration
	// MaxReceiving bounds the Checks reading their message at once. A
	// stream's window stays at StreamWindow until its Check takes one of
	// these slots (grpc-go then opens it to the message's declared size),
	// so what messages hold is at most MaxStreams × StreamWindow +
	// 4 × MaxReceiving × MaxRecvBytes. When every slot is taken, a Check
	// waits for one; while every holder has been reading for over 50 ms
	// (a message from a proxy arrives in a fraction of that, unless the
	// machine is short of CPU) the slots stretch, up to 4 × MaxReceiving,
	// and past that a new reader ends the slowest. A freed slot goes to a
	// waiting Check of the connection that holds the fewest.
	MaxReceiving int
	// Overload, when set, is the memory pressure the above follows.
	Overload *overload.Guard
}

// Admission is a server's tap (NewServerWith): it runs when a stream's
// HEADERS arrive, before any of its message is read, so what it refuses
// costs no buffer. Each stream a gRPC client opens can hold up to
// MaxRecvBytes while its message arrives (grpc-go opens the stream's
// flow-control window to the size the message declares when the message
// is read), so the bounds on what streams hold are the number in flight,
// the number reading their message, the time each may take, and, under
// memory pressure, ending the ones whose message is late.
type Admission struct {
	max     int64
	timeout time.Duration
	grace   time.Duration
	maxRecv int
	guard   *overload.Guard

	inFlight    atomic.Int64
	evicted     atomic.Uint64
	connsClosed atomic.Uint64

	mu sync.Mutex
	// receiving holds the admitted streams whose message has not yet
	// arrived, oldest first.
	receiving list.List
	// slots holds the streams reading their message, oldest first.
	slots list.List
	// waiters are the streams waiting for a receive slot, oldest first.
	waiters []*admitted
	// peers are the connections with streams in flight, by remote
	// address.
	peers map[string]*peerState
	// conns are the connections accepted through Listener, by remote
	// address.
	conns map[string]*trackedConn
}

// peerState is one connection's streams in flight.
type peerState struct {
	key       string
	receiving list.List // its streams in a.receiving, oldest first
	holders   int       // its streams holding a receive slot
	inFlight  int
}

// admitted is one admitted stream.
type admitted struct {
	a      *Admission
	ctx    context.Context // the stream's, with CheckTimeout
	cancel context.CancelFunc
	peer   *peerState
	since  time.Time
	ended  atomic.Bool
	// Under a.mu:
	elem, peerElem *list.Element // in a.receiving and peer.receiving; nil once the message arrived or the stream ended
	slot           *list.Element // in a.slots while it reads its message
	slotSince      time.Time
	granted        chan struct{} // closed when a slot is handed to it while it waits
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
	if o.MaxReceiving <= 0 {
		o.MaxReceiving = DefaultMaxReceiving
	}
	a := &Admission{max: int64(o.MaxStreams), timeout: o.CheckTimeout, grace: o.ReceiveGrace, maxRecv: o.MaxReceiving,
		guard: o.Overload, peers: map[string]*peerState{}, conns: map[string]*trackedConn{}}
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
		return ctx, errOverloaded
	}
	var key string
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		key = p.Addr.String()
	}
	now := time.Now()
	a.mu.Lock()
	if level >= overload.High {
		a.evictLocked(now.Add(-a.grace), true)
	}
	if a.inFlight.Load() >= a.max && !a.makeRoomLocked() {
		a.mu.Unlock()
		a.guard.CountRefused()
		return ctx, errTooManyStreams
	}
	a.inFlight.Add(1)
	ps := a.peers[key]
	if ps == nil {
		ps = &peerState{key: key}
		a.peers[key] = ps
	}
	ps.inFlight++
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	s := &admitted{a: a, ctx: ctx, cancel: cancel, peer: ps, since: now}
	s.elem = a.receiving.PushBack(s)
	s.peerElem = ps.receiving.PushBack(s)
	a.mu.Unlock()
	// The timeout's context is a child of the stream's: the stream's end
	// cancels it, and its own end (timeout, eviction) ends the stream.
	context.AfterFunc(ctx, s.end)
	return context.WithValue(ctx, admittedKey{}, s), nil
}

// end runs when the stream's context ends: it releases the stream's
// place, and when CheckTimeout passed with the message still arriving,
// closes its connection.
func (s *admitted) end() {
	a := s.a
	late := errors.Is(s.ctx.Err(), context.DeadlineExceeded)
	s.cancel()
	a.mu.Lock()
	if late && s.elem != nil {
		a.closeConnLocked(s.peer.key)
	}
	a.stopReceivingLocked(s)
	if !s.ended.Swap(true) {
		a.inFlight.Add(-1)
	}
	s.peer.inFlight--
	if s.peer.inFlight == 0 && a.peers[s.peer.key] == s.peer {
		delete(a.peers, s.peer.key)
	}
	a.mu.Unlock()
}

// stopReceivingLocked takes s out of the receiving lists and gives back
// its receive slot, or its place among the waiters.
func (a *Admission) stopReceivingLocked(s *admitted) {
	if s.elem != nil {
		a.receiving.Remove(s.elem)
		s.peer.receiving.Remove(s.peerElem)
		s.elem, s.peerElem = nil, nil
	}
	if s.slot != nil {
		a.slots.Remove(s.slot)
		s.slot = nil
		s.peer.holders--
		a.grantLocked()
	}
}

// grantLocked hands a free receive slot to the waiting stream whose
// connection holds the fewest slots (the oldest such).
func (a *Admission) grantLocked() {
	for a.slots.Len() < a.maxRecv && len(a.waiters) > 0 {
		best := 0
		for i, w := range a.waiters {
			if w.peer.holders < a.waiters[best].peer.holders {
				best = i
			}
		}
		w := a.waiters[best]
		a.waiters = append(a.waiters[:best], a.waiters[best+1:]...)
		a.takeSlotLocked(w)
		close(w.granted)
	}
}

func (a *Admission) takeSlotLocked(s *admitted) {
	s.slotSince = time.Now()
	s.slot = a.slots.PushBack(s)
	s.peer.holders++
}

// receive takes a receive slot for the stream of ctx, waiting for one
// when all are taken; the stream then reads its message and calls done.
// It fails when the stream's context ends first.
func receive(ctx context.Context) (done func(), err error) {
	s, ok := ctx.Value(admittedKey{}).(*admitted)
	if !ok {
		return func() {}, nil
	}
	a := s.a
	a.mu.Lock()
	defer a.mu.Unlock()
	queued := false
	for {
		switch {
		case s.slot != nil: // handed one while it waited
			return s.received, nil
		case s.elem == nil: // evicted before it could read
			if queued {
				a.dropWaiterLocked(s)
			}
			return nil, context.Canceled
		}
		// The next in line: none waits, or it is the oldest waiter.
		next := (!queued && len(a.waiters) == 0) || (queued && a.waiters[0] == s)
		n := a.slots.Len()
		if next && (n < a.maxRecv || n < overSlots*a.maxRecv && a.slowestHolderLocked() != nil) {
			// A free slot; or every slot is held, the oldest for over
			// minReceive, and the slots may stretch: the holder may be
			// slow because its goroutine or its proxy is short of CPU,
			// so it is left to finish.
			if queued {
				a.dropWaiterLocked(s)
			}
			a.takeSlotLocked(s)
			return s.received, nil
		}
		if n >= overSlots*a.maxRecv {
			// Stretched to the end: the slowest holder makes room.
			if h := a.slowestHolderLocked(); h != nil {
				a.evictStreamLocked(h, false)
				continue
			}
		}
		if !queued {
			s.granted = make(chan struct{})
			a.waiters = append(a.waiters, s)
			queued = true
			a.grantLocked()
			continue
		}
		// Wait for a slot, or for the oldest holder to become slow.
		wait := minReceive
		if front := a.slots.Front(); front != nil {
			h := front.Value.(*admitted) //nolint:forcetypeassert // the list holds *admitted only
			wait = max(minReceive-time.Since(h.slotSince), time.Millisecond)
		}
		ch := s.granted
		a.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		a.mu.Lock()
		if err := ctx.Err(); err != nil && s.slot == nil {
			a.dropWaiterLocked(s)
			return nil, err
		}
	}
}

func (a *Admission) dropWaiterLocked(s *admitted) {
	for i, w := range a.waiters {
		if w == s {
			a.waiters = append(a.waiters[:i], a.waiters[i+1:]...)
			return
		}
	}
}

// received marks the stream as no longer receiving: its message arrived
// whole, or will not; its receive slot is free.
func (s *admitted) received() {
	s.a.mu.Lock()
	s.a.stopReceivingLocked(s)
	s.a.mu.Unlock()
}

// makeRoomLocked makes room for a new stream: it ends the stream that has
// held a receive slot longest, if for over minReceive (that frees a slot
// for the Checks waiting for one too), else the oldest stream still
// waiting for its message of the connection with the most such streams.
// It reports whether it ended one.
func (a *Admission) makeRoomLocked() bool {
	if h := a.slowestHolderLocked(); h != nil {
		a.evictStreamLocked(h, false)
		return true
	}
	var most *peerState
	for _, ps := range a.peers {
		if ps.receiving.Len() > 0 && (most == nil || ps.receiving.Len() > most.receiving.Len()) {
			most = ps
		}
	}
	if most == nil {
		return false
	}
	a.evictStreamLocked(most.receiving.Front().Value.(*admitted), false) //nolint:forcetypeassert // the list holds *admitted only
	return true
}

// slowestHolderLocked is the stream that has held a receive slot longest,
// if for over minReceive; nil otherwise.
func (a *Admission) slowestHolderLocked() *admitted {
	front := a.slots.Front()
	if front == nil {
		return nil
	}
	h := front.Value.(*admitted) //nolint:forcetypeassert // the list holds *admitted only
	if time.Since(h.slotSince) <= minReceive {
		return nil
	}
	return h
}

// evictLocked ends every stream still receiving that was admitted at or
// before cutoff; with closeConns, it closes their connections too.
func (a *Admission) evictLocked(cutoff time.Time, closeConns bool) {
	for e := a.receiving.Front(); e != nil; e = a.receiving.Front() {
		s := e.Value.(*admitted) //nolint:forcetypeassert // the list holds *admitted only
		if s.since.After(cutoff) {
			return
		}
		a.evictStreamLocked(s, closeConns)
	}
}

// evictStreamLocked ends s, which is still receiving: out of the lists and its
// slot freed now, its context cancelled (grpc-go then resets the stream
// and drops its buffers), and with closeConn its connection closed.
func (a *Admission) evictStreamLocked(s *admitted, closeConn bool) {
	a.stopReceivingLocked(s)
	a.dropWaiterLocked(s)
	a.evicted.Add(1)
	if !s.ended.Swap(true) {
		a.inFlight.Add(-1)
	}
	s.cancel()
	if closeConn {
		a.closeConnLocked(s.peer.key)
	}
}

// closeConnLocked closes the connection at remote address addr, if it
// came through Listener: grpc-go then ends every stream on it and drops
// their buffers.
func (a *Admission) closeConnLocked(addr string) {
	if c, ok := a.conns[addr]; ok {
		delete(a.conns, addr)
		c.once.Do(func() {}) // forgotten already: its Close must not take a.mu
		_ = c.Conn.Close()
		a.connsClosed.Add(1)
	}
}

// relieve is called with each overload sample: at High it closes the
// connections of the streams whose message is later than the grace, at
// Critical it ends every stream still receiving too. It reports whether
// it ended any.
func (a *Admission) relieve(level overload.Level) bool {
	if level < overload.High {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.evicted.Load()
	a.evictLocked(time.Now().Add(-a.grace), true)
	if level >= overload.Critical {
		a.evictLocked(time.Now(), false)
	}
	return a.evicted.Load() != n
}

// Listener returns ln with its connections known to the Admission, so
// that it can close the connection of a client that sends its messages
// too slowly. Serve the server NewServerWith builds on it.
func (a *Admission) Listener(ln net.Listener) net.Listener { return &listener{Listener: ln, a: a} }

type listener struct {
	net.Listener
	a *Admission
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, a: l.a, key: c.RemoteAddr().String()}
	l.a.mu.Lock()
	l.a.conns[tc.key] = tc
	l.a.mu.Unlock()
	return tc, nil
}

// trackedConn forgets itself when closed.
type trackedConn struct {
	net.Conn
	a    *Admission
	key  string
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.a.mu.Lock()
		if c.a.conns[c.key] == c {
			delete(c.a.conns, c.key)
		}
		c.a.mu.Unlock()
	})
	return c.Conn.Close()
}

// InFlight returns the Checks admitted and not yet ended.
func (a *Admission) InFlight() int64 { return a.inFlight.Load() }

// Evicted returns how many Checks were ended while their message was
// still arriving, to make room or for memory pressure.
func (a *Admission) Evicted() uint64 { return a.evicted.Load() }

// ConnsClosed returns how many connections were closed for sending a
// message too slowly.
func (a *Admission) ConnsClosed() uint64 { return a.connsClosed.Load() }

// serverOptions install the tap and the static stream window the
// receive slots rely on (grpc-go's dynamic windows would let a stream
// grow its window before its Check reads).
func (a *Admission) serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.InTapHandle(a.admit), grpc.StaticStreamWindowSize(StreamWindow), grpc.StaticConnWindowSize(connWindow)}
}

// connWindow is the connection's flow-control window. grpc-go gives it
// back as frames arrive, whether or not they are read, so it bounds
// nothing held; it only has to let a message of MaxRecvBytes through
// without a round trip per window.
const connWindow = 4 << 20
