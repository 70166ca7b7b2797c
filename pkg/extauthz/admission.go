package extauthz

import (
	"container/list"
	"context"
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

// CheckMethod is the full name of the method Admission bounds as Checks.
const CheckMethod = "/envoy.service.auth.v3.Authorization/Check"

// Defaults of Options.
const (
	// DefaultMaxStreams bounds the streams in flight across every
	// connection: two connections' worth of MaxConcurrentStreams.
	DefaultMaxStreams = 2 * MaxConcurrentStreams
	// DefaultCheckTimeout bounds the time from a Check's HEADERS frame
	// to the end of its message. It is well over the budget of any Envoy
	// configuration (ext_authz's timeout is 200 ms by default, the
	// shipped one's 50 ms), so a Check it ends was one Envoy had already
	// given up on, or one a client trickled in on purpose.
	DefaultCheckTimeout = 5 * time.Second
	// DefaultReceiveGrace is how long a Check's message may take to
	// arrive before, under memory pressure, the Check is ended to free
	// what it holds. Envoy sends a whole CheckRequest at once: on a
	// loopback or a LAN it arrives in well under a millisecond.
	DefaultReceiveGrace = 250 * time.Millisecond
	// DefaultMaxReceiving bounds the Checks reading their message at
	// once: at most 5 × 16 × MaxRecvBytes, 160 MiB, is held by messages
	// being read (the slots stretched, and the reserve). Reading one
	// takes microseconds of CPU.
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
	// CheckTimeout bounds the time from a Check's HEADERS frame to the
	// end of its message, whatever deadline (or none) the client sent. A
	// Check whose message is still arriving then is ended, its buffers
	// released, and its connection closed (on a listener from Listener):
	// a client that takes that long to send a CheckRequest is not a
	// proxy. (Once the message is in, deciding takes microseconds and
	// nothing on the way waits on the network.)
	CheckTimeout time.Duration
	// ReceiveGrace is how long a message may take to arrive under memory
	// pressure: at overload.High, the connections of Checks still
	// receiving after it are closed; at overload.Critical, every Check
	// still receiving is ended, and new streams are refused. It is also
	// how long a Check may hold a receive slot before another
	// connection's Check may end it to take the slot (MaxReceiving).
	ReceiveGrace time.Duration
	// MaxReceiving bounds the Checks reading their message at once. A
	// stream's window stays at StreamWindow until its Check takes one of
	// these slots (grpc-go then opens it to the message's declared size),
	// so what messages hold is at most MaxStreams × StreamWindow +
	// 5 × MaxReceiving × MaxRecvBytes. When every slot is taken, a Check
	// waits for one; while every holder has been reading for over 50 ms
	// (a message from a proxy arrives in a fraction of that, unless the
	// machine is short of CPU) the slots stretch, up to 4 × MaxReceiving,
	// and a Check of a connection holding under half its share may take
	// one of MaxReceiving more (the reserve); past that, it may end a
	// Check of the connection holding the most that has held its slot
	// for over ReceiveGrace with its connection stalled. A freed slot
	// goes to a waiting Check of the connection that holds the fewest.
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
	receiving queue
	// slots holds the streams reading their message, oldest first.
	slots queue
	// holdingPeers counts the connections holding a receive slot.
	holdingPeers int
	// waiters are the streams waiting for a receive slot, oldest first.
	waiters []*admitted
	// peers are the connections with streams in flight, by remote
	// address (the net.Addr the connection returns, compared as such).
	peers map[net.Addr]*peerState
	// conns are the connections accepted through Listener, by remote
	// address.
	conns map[net.Addr]*trackedConn
	// sweep ends the Checks whose message is still arriving at their
	// CheckTimeout: one timer, armed for the oldest (a.receiving is in
	// admission order), instead of one per Check.
	sweep      *time.Timer
	sweepArmed bool
	// regrant runs grantLocked, while streams wait for a slot, when the
	// next slot holder turns slow enough to change what it can do
	// (regrantAt, zero when not armed).
	regrant   *time.Timer
	regrantAt time.Time
	granting  bool // grantLocked is running
	// others are the streams of other methods (health, reflection),
	// oldest first: grpc-go reads a unary request whole before its
	// handler runs, so they are few (maxOthers), and over that the oldest
	// is ended.
	others list.List
}

// maxOthers bounds the streams of methods other than Check in flight:
// health checks and reflection, a few at a time.
const maxOthers = 64

// peerState is one connection's streams in flight.
type peerState struct {
	key       net.Addr
	receiving queue // its streams in a.receiving, oldest first
	holders   int   // its streams holding a receive slot
	// lastDone is when a stream of it last finished reading its message;
	// read is how long its streams have been taking to read one, from
	// taking the slot (a moving average, over about 8).
	lastDone time.Time
	read     time.Duration
	inFlight int
}

// admitted is one admitted stream.
type admitted struct {
	a      *Admission
	cancel context.CancelFunc // ends the stream
	peer   *peerState
	since  time.Time
	ended  atomic.Bool // its in-flight count was given back
	done   atomic.Bool // end ran
	// Under a.mu: its places in a.receiving, peer.receiving and a.slots
	// (the first two until its message arrived or it ended, the last
	// while it reads its message).
	links     [nQueues]links
	slotSince time.Time
	granted   chan struct{} // closed when a slot is handed to it while it waits
}

// The queues an admitted stream can be in, each through its own links
// (intrusive lists: no allocation per stream and queue).
const (
	qReceiving = iota
	qPeer
	qSlots
	nQueues
)

type links struct {
	prev, next *admitted
	in         bool
}

// queue is a list of admitted streams, oldest first, through links[k].
type queue struct {
	head, tail *admitted
	n, k       int
}

func (q *queue) push(s *admitted) {
	l := &s.links[q.k]
	l.prev, l.next, l.in = q.tail, nil, true
	if q.tail != nil {
		q.tail.links[q.k].next = s
	} else {
		q.head = s
	}
	q.tail = s
	q.n++
}

func (q *queue) remove(s *admitted) {
	l := &s.links[q.k]
	if !l.in {
		return
	}
	if l.prev != nil {
		l.prev.links[q.k].next = l.next
	} else {
		q.head = l.next
	}
	if l.next != nil {
		l.next.links[q.k].prev = l.prev
	} else {
		q.tail = l.prev
	}
	*l = links{}
	q.n--
}

// receiving reports whether s is still waiting for its message.
func (s *admitted) receiving() bool { return s.links[qReceiving].in }

// holding reports whether s holds a receive slot.
func (s *admitted) holding() bool { return s.links[qSlots].in }

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
		guard: o.Overload, peers: map[net.Addr]*peerState{}, conns: map[net.Addr]*trackedConn{},
		receiving: queue{k: qReceiving}, slots: queue{k: qSlots}}
	a.sweep = time.AfterFunc(time.Hour, a.sweepLate)
	a.sweep.Stop()
	a.regrant = time.AfterFunc(time.Hour, a.regrantLate)
	a.regrant.Stop()
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
func (a *Admission) admit(ctx context.Context, info *tap.Info) (context.Context, error) {
	level := a.guard.Level()
	if a.guard.RefuseNew() {
		return ctx, errOverloaded
	}
	if info.FullMethodName != CheckMethod {
		return a.admitOther(ctx)
	}
	var key net.Addr
	if p, ok := peer.FromContext(ctx); ok {
		key = p.Addr
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
		ps = &peerState{key: key, receiving: queue{k: qPeer}}
		a.peers[key] = ps
	}
	ps.inFlight++
	cctx, cancel := context.WithCancel(ctx)
	actx := &admittedCtx{Context: cctx}
	s := &actx.s
	*s = admitted{a: a, cancel: cancel, peer: ps, since: now}
	a.receiving.push(s)
	ps.receiving.push(s)
	if !a.sweepArmed {
		a.sweepArmed = true
		a.sweep.Reset(a.timeout)
	}
	a.mu.Unlock()
	// Check's handler releases the stream's place when it returns
	// (admitted.end): grpc-go runs the handler of every stream it
	// admits, also one reset before it could be read. (Not
	// context.AfterFunc on the stream's context: that costs a goroutine
	// per Check.)
	return actx, nil
}

// admittedCtx is an admitted stream's context: the stream's, cancellable,
// carrying the stream's admission (one allocation for both).
type admittedCtx struct {
	context.Context
	s admitted
}

// Value returns the admission for admittedKey, else the stream's value.
func (c *admittedCtx) Value(key any) any {
	if _, ok := key.(admittedKey); ok {
		return &c.s
	}
	return c.Context.Value(key)
}

// admitOther admits a stream of another method, ending the oldest such
// stream when there are maxOthers already.
func (a *Admission) admitOther(ctx context.Context) (context.Context, error) {
	ctx, cancel := context.WithCancel(ctx)
	a.mu.Lock()
	if a.others.Len() >= maxOthers {
		old := a.others.Front()
		a.others.Remove(old)
		old.Value.(context.CancelFunc)() //nolint:forcetypeassert // the list holds CancelFuncs only
		a.evicted.Add(1)
	}
	e := a.others.PushBack(cancel)
	a.mu.Unlock()
	context.AfterFunc(ctx, func() {
		a.mu.Lock()
		a.others.Remove(e) // a no-op when it was evicted
		a.mu.Unlock()
	})
	return ctx, nil
}

// sweepLate is the sweep timer's function: it ends the Checks still
// receiving their message CheckTimeout after they were admitted, closes
// their connections (no proxy takes that long to send a CheckRequest),
// and arms the timer for the next oldest.
func (a *Admission) sweepLate() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.evictLocked(time.Now().Add(-a.timeout), true)
	a.sweepArmed = false
	if front := a.receiving.head; front != nil {
		a.sweepArmed = true
		a.sweep.Reset(max(time.Until(front.since.Add(a.timeout)), time.Millisecond))
	}
}

// end releases the stream's place, once; Check's handler calls it when
// it returns.
func (s *admitted) end() {
	if s.done.Swap(true) {
		return
	}
	s.cancel()
	a := s.a
	a.mu.Lock()
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
	a.receiving.remove(s)
	s.peer.receiving.remove(s)
	if s.holding() {
		a.slots.remove(s)
		s.peer.holders--
		if s.peer.holders == 0 {
			a.holdingPeers--
		}
		a.grantLocked()
	}
}

// grantLocked hands out receive slots to waiting streams, the waiter of
// the connection holding the fewest first (the oldest such): a free slot
// under MaxReceiving; a stretched one, up to overSlots × MaxReceiving,
// while the oldest holder has held its slot over minReceive; past that,
// the slot of a slow holder it may end (victimLocked). While streams
// still wait, it arms the regrant timer (nextChangeLocked): until then
// only a slot given back can change anything, and that calls
// grantLocked.
func (a *Admission) grantLocked() {
	if a.granting {
		return // an eviction below gave back a slot: the loop sees it
	}
	a.granting = true
	defer func() { a.granting = false }()
loop:
	for len(a.waiters) > 0 && (a.slots.n < a.reserveEnd() || a.slowestHolderLocked() != nil) {
		best := 0
		for i, w := range a.waiters {
			if w.peer.holders < a.waiters[best].peer.holders {
				best = i
			}
		}
		w := a.waiters[best]
		switch n := a.slots.n; {
		case a.freeSlotLocked():
		case n < a.reserveEnd() && a.underShareLocked(w.peer):
			// The reserve: a connection holding under half its share
			// reads at once, without ending a holder that may be slow
			// only for want of CPU.
		case n >= a.stretchEnd():
			v := a.victimLocked(w.peer)
			if v == nil {
				break loop
			}
			a.evictStreamLocked(v, false)
		default:
			break loop // not yet stretching
		}
		a.waiters = append(a.waiters[:best], a.waiters[best+1:]...)
		a.takeSlotLocked(w)
		close(w.granted)
	}
	if len(a.waiters) == 0 {
		return
	}
	now := time.Now()
	if at := a.nextChangeLocked(now); !at.IsZero() && (a.regrantAt.IsZero() || at.Before(a.regrantAt)) {
		a.regrantAt = at
		a.regrant.Reset(max(at.Sub(now), time.Millisecond))
	}
}

// nextChangeLocked is when, with nothing else happening, a waiting
// Check may next be granted a slot: the first moment after now that a
// holder passes minReceive (the slots may stretch) or what victimLocked
// asks of its age; or, once every such moment has passed and the slots
// are stretched to the end, minReceive from now, as whether a holder's
// connection is stalled changes with no event here. Zero when nothing
// but a slot given back can change anything.
func (a *Admission) nextChangeLocked(now time.Time) time.Time {
	var next time.Time
	for h := a.slots.head; h != nil; h = h.links[qSlots].next {
		for _, at := range [2]time.Time{h.slotSince.Add(minReceive), h.slotSince.Add(max(a.grace, 4*h.peer.read))} {
			if at.After(now) && (next.IsZero() || at.Before(next)) {
				next = at
			}
		}
	}
	if next.IsZero() && a.slots.n >= a.stretchEnd() {
		next = now.Add(minReceive)
	}
	return next
}

// freeSlotLocked reports whether a reader may take a slot without ending
// another's: one is free under MaxReceiving, or the slots may stretch.
func (a *Admission) freeSlotLocked() bool {
	n := a.slots.n
	return n < a.maxRecv || n < a.stretchEnd() && a.slowestHolderLocked() != nil
}

// stretchEnd is how far the receive slots stretch while every holder is
// slow; reserveEnd, how far they go for connections under their share.
func (a *Admission) stretchEnd() int { return overSlots * a.maxRecv }
func (a *Admission) reserveEnd() int { return a.stretchEnd() + a.maxRecv }

// regrantLate is the regrant timer's function.
func (a *Admission) regrantLate() {
	a.mu.Lock()
	a.regrantAt = time.Time{}
	a.grantLocked()
	a.mu.Unlock()
}

func (a *Admission) takeSlotLocked(s *admitted) {
	s.slotSince = time.Now()
	a.slots.push(s)
	if s.peer.holders == 0 {
		a.holdingPeers++
	}
	s.peer.holders++
}

// release ends the admission of the stream of ctx: Check's handler
// defers it.
func release(ctx context.Context) {
	if s, ok := ctx.Value(admittedKey{}).(*admitted); ok {
		s.end()
	}
}

// receive takes a receive slot for the stream of ctx, waiting for one
// when none is free (grantLocked hands them out); the stream then reads
// its message and calls done. It fails when the stream's context ends
// first, or the stream is ended to make room.
func receive(ctx context.Context) (done func(whole bool), err error) {
	s, ok := ctx.Value(admittedKey{}).(*admitted)
	if !ok {
		return func(bool) {}, nil
	}
	a := s.a
	a.mu.Lock()
	defer a.mu.Unlock()
	if !s.receiving() { // ended before it could read
		return nil, context.Canceled
	}
	if len(a.waiters) == 0 && a.freeSlotLocked() {
		a.takeSlotLocked(s)
		return s.received, nil
	}
	s.granted = make(chan struct{})
	a.waiters = append(a.waiters, s)
	a.grantLocked()
	ch := s.granted
	a.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	}
	a.mu.Lock()
	if s.holding() {
		return s.received, nil
	}
	a.dropWaiterLocked(s)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, context.Canceled
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
// whole (whole: and its connection was served one), or will not; its
// receive slot is free.
func (s *admitted) received(whole bool) {
	s.a.mu.Lock()
	if whole && s.holding() { // not ended to make room meanwhile
		now := time.Now()
		s.peer.lastDone = now
		s.peer.read += (now.Sub(s.slotSince) - s.peer.read) / 8
	}
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
		if ps.receiving.n > 0 && (most == nil || ps.receiving.n > most.receiving.n) {
			most = ps
		}
	}
	if most == nil {
		return false
	}
	a.evictStreamLocked(most.receiving.head, false)
	return true
}

// victimLocked is the receive slot holder a waiting reader of connection
// p may end when the slots are stretched to the end: the oldest holder,
// for over ReceiveGrace (by then an Envoy with the default timeout,
// 200 ms, has given up on its Check), of the stalled connection
// (stalledLocked) holding the most slots, if that is more than p holds
// and p holds under half its share (the slots over the connections
// holding any, p counted); and only if the holder's connection has
// finished reading no message since the holder took its slot, and the
// holder has been reading for over 4 times what its connection's reads
// have been taking.
//
// A holder can be slow only because the machine is short of CPU (a
// proxy's burst of thousands of Checks on two cores: its goroutine waits
// to run), and ending it fails a legitimate request. So: ending a holder
// only moves a slot from one connection to another, which does nothing
// for a reader of the connection that holds the slots, and trading one
// for one between connections holding as many gains nothing; a
// connection whose Checks go on arriving is being served, slowly, at the
// pace the machine allows; and a holder can wait for its message behind
// thousands of other streams' frames on its connection that the server
// has yet to read (a proxy's burst). A client that trickles its messages
// finishes none; if it finishes some to look alive, each slot it gives
// back goes to the connection holding the fewest. (A connection under
// half its share reads from the reserve before it ends anyone's Check:
// grantLocked.)
func (a *Admission) victimLocked(p *peerState) *admitted {
	if !a.underShareLocked(p) {
		return nil
	}
	// Whether a connection is stalled costs a system call: asked once
	// per connection (of the first few; the rest are asked each time).
	var asked [4]struct {
		p       *peerState
		stalled bool
	}
	nAsked := 0
	stalled := func(q *peerState) bool {
		for _, x := range asked[:nAsked] {
			if x.p == q {
				return x.stalled
			}
		}
		st := a.stalledLocked(q)
		if nAsked < len(asked) {
			asked[nAsked].p, asked[nAsked].stalled = q, st
			nAsked++
		}
		return st
	}
	var victim *admitted
	for h := a.slots.head; h != nil; h = h.links[qSlots].next {
		since := time.Since(h.slotSince)
		if since <= a.grace {
			break // the rest took theirs later
		}
		q := h.peer
		if q.holders <= p.holders || victim != nil && q.holders <= victim.peer.holders ||
			!q.lastDone.Before(h.slotSince) || since <= 4*q.read || !stalled(q) {
			continue
		}
		victim = h
	}
	return victim
}

// stalledLocked reports whether the server has read everything connection
// p sent: its reader waits in Read and its socket holds no unread byte.
// A holder of such a connection is waiting for bytes its client has not
// sent. (A connection whose reader is behind, working through a burst of
// frames, holds its holders' messages, or is about to: their stall is the
// server's, not the client's.) A connection that did not come through
// Listener counts as stalled.
func (a *Admission) stalledLocked(p *peerState) bool {
	c, ok := a.conns[p.key]
	return !ok || c.reading.Load() && unread(c.Conn) == 0
}

// underShareLocked reports whether connection p holds under half its
// share of the receive slots held: the slots over the connections holding
// any, p counted.
func (a *Admission) underShareLocked(p *peerState) bool {
	peers := a.holdingPeers
	if p.holders == 0 {
		peers++
	}
	return 2*p.holders*peers < a.slots.n
}

// slowestHolderLocked is the stream that has held a receive slot longest,
// if for over minReceive; nil otherwise.
func (a *Admission) slowestHolderLocked() *admitted {
	h := a.slots.head
	if h == nil {
		return nil
	}
	if time.Since(h.slotSince) <= minReceive {
		return nil
	}
	return h
}

// evictLocked ends every stream still receiving that was admitted at or
// before cutoff; with closeConns, it closes their connections too.
func (a *Admission) evictLocked(cutoff time.Time, closeConns bool) {
	for s := a.receiving.head; s != nil; s = a.receiving.head {
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
func (a *Admission) closeConnLocked(addr net.Addr) {
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
	tc := &trackedConn{Conn: c, a: l.a, key: c.RemoteAddr()}
	l.a.mu.Lock()
	l.a.conns[tc.key] = tc
	l.a.mu.Unlock()
	return tc, nil
}

// trackedConn forgets itself when closed, and tells whether its reader
// waits for the client.
type trackedConn struct {
	net.Conn
	a       *Admission
	key     net.Addr
	once    sync.Once
	reading atomic.Bool // in Read
}

// Read is the connection's; while it runs, the server waits for the
// client (grpc-go reads a connection from one goroutine).
func (c *trackedConn) Read(p []byte) (int, error) {
	c.reading.Store(true)
	n, err := c.Conn.Read(p)
	c.reading.Store(false)
	return n, err
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

// Evicted returns how many streams were ended while their message was
// still arriving: to make room, at CheckTimeout, or for memory pressure.
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
