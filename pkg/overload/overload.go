// Package overload tells langgate's transports and its authentication
// when the process is under memory pressure, so that they shed work in a
// fixed order: first the work no credential has paid for (a token not in
// the verified-token cache, which would cost a signature check or an
// introspection call), then, near the limit, every new check. A check
// refused for load is a 503, never an allow.
//
// The signal is the Go runtime's own accounting, sampled in the
// background (never on a request's path): the heap that survived the
// last collection plus goroutine stacks, against the soft memory limit in
// force (GOMEMLIMIT or langgate's --memory-limit). Without a limit there
// is no pressure to measure, and nothing is shed for memory; the
// transports' own caps (connections, streams, body bytes) still hold.
package overload

import (
	"context"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// Level is how close the process is to its memory limit.
type Level int32

// Levels, in order.
const (
	// Normal: nothing is shed.
	Normal Level = iota
	// High: credentials that are not already verified and cached are
	// refused (503) instead of verified; cached users are still served.
	High
	// Critical: every new check is refused (503) until memory falls.
	Critical
)

// String returns the level's name, a bounded metric label.
func (l Level) String() string {
	switch l {
	case High:
		return "high"
	case Critical:
		return "critical"
	default:
		return "normal"
	}
}

// Thresholds, as shares of the memory limit. The gap between a level's
// entry and its exit keeps a process hovering at a threshold from
// flapping every sample.
const (
	HighShare     = 0.80
	CriticalShare = 0.92
	// exitMargin is how far below a threshold memory must fall before
	// the level drops.
	exitMargin = 0.05
	// SampleInterval is how often Run samples the runtime.
	SampleInterval = 100 * time.Millisecond
	// staleAfter is how old the live heap figure may be above Normal.
	staleAfter = 250 * time.Millisecond
)

// Guard holds the current level and counts what was shed. The zero Guard
// is usable and always Normal; a nil *Guard is too.
type Guard struct {
	level atomic.Int32
	// limit is the memory limit sampled against (0: none).
	limit atomic.Int64
	used  atomic.Int64
	shed  [2]atomic.Uint64 // by Reason

	mu        sync.Mutex
	listeners []func(Level) bool
}

// Notify registers f to be called with the level after each observation
// at High or above (from Run's goroutine: f must not block). f reports
// whether it let go of memory (ended streams, closed connections): Run
// then collects at once, so that the level falls as soon as the memory
// is free instead of at the next collection.
func (g *Guard) Notify(f func(Level) bool) {
	g.mu.Lock()
	g.listeners = append(g.listeners, f)
	g.mu.Unlock()
}

// Reason is why a check was shed.
type Reason int

// Reasons.
const (
	// Unverified: a credential that would have needed verification,
	// refused at High.
	Unverified Reason = iota
	// Refused: a new check refused at Critical, or over a transport's cap.
	Refused
)

// String returns the reason's name, a bounded metric label.
func (r Reason) String() string {
	if r == Unverified {
		return "unverified"
	}
	return "refused"
}

// Level returns the current level.
func (g *Guard) Level() Level {
	if g == nil {
		return Normal
	}
	return Level(g.level.Load())
}

// ShedUnverified reports whether a credential not in the cache is to be
// refused instead of verified, and counts it when so.
func (g *Guard) ShedUnverified() bool {
	if g.Level() < High {
		return false
	}
	g.shed[Unverified].Add(1)
	return true
}

// RefuseNew reports whether a new check is to be refused outright, and
// counts it when so.
func (g *Guard) RefuseNew() bool {
	if g.Level() < Critical {
		return false
	}
	g.shed[Refused].Add(1)
	return true
}

// CountRefused counts a check a transport refused for one of its own caps.
func (g *Guard) CountRefused() {
	if g != nil {
		g.shed[Refused].Add(1)
	}
}

// Stats are the guard's state and counters.
type Stats struct {
	Level Level
	// Used and Limit are the last sample, in bytes (Limit 0: none).
	Used, Limit int64
	// ShedUnverified and Refused count checks shed for each reason.
	ShedUnverified, Refused uint64
}

// Stats returns the current state.
func (g *Guard) Stats() Stats {
	if g == nil {
		return Stats{}
	}
	return Stats{Level: g.Level(), Used: g.used.Load(), Limit: g.limit.Load(),
		ShedUnverified: g.shed[Unverified].Load(), Refused: g.shed[Refused].Load()}
}

// Observe sets the level from memory in use against a limit (limit ≤ 0:
// none, Normal) and tells the listeners. It is Run's step, and a test's
// way to apply pressure.
func (g *Guard) Observe(used, limit int64) Level {
	l, _ := g.level2(used, limit)
	return l
}

// observe is Observe reporting whether a listener let go of memory.
func (g *Guard) observe(used, limit int64) bool {
	_, released := g.level2(used, limit)
	return released
}

func (g *Guard) level2(used, limit int64) (Level, bool) {
	g.used.Store(used)
	g.limit.Store(max(limit, 0))
	if limit <= 0 {
		g.level.Store(int32(Normal))
		return Normal, false
	}
	share := float64(used) / float64(limit)
	cur := Level(g.level.Load())
	next := Normal
	switch {
	case share >= CriticalShare || (cur == Critical && share >= CriticalShare-exitMargin):
		next = Critical
	case share >= HighShare || (cur >= High && share >= HighShare-exitMargin):
		next = High
	}
	g.level.Store(int32(next))
	return next, g.notify(next)
}

// notify tells the listeners about a level at High or above, and
// reports whether any of them let go of memory.
func (g *Guard) notify(l Level) bool {
	if l < High {
		return false
	}
	g.mu.Lock()
	fs := g.listeners
	g.mu.Unlock()
	released := false
	for _, f := range fs {
		released = f(l) || released
	}
	return released
}

// sampleNames are the runtime metrics a sample reads: the heap that
// survived the last collection (what a collection cannot give back) and
// the goroutine stacks (what a flood of connections holds).
var sampleNames = []string{"/gc/heap/live:bytes", "/memory/classes/heap/stacks:bytes"}

// Run samples the runtime every interval (SampleInterval when zero)
// until ctx ends.
func (g *Guard) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = SampleInterval
	}
	samples := make([]metrics.Sample, len(sampleNames))
	for i, n := range sampleNames {
		samples[i].Name = n
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var lastGC time.Time
	for {
		released := g.observe(memoryUsed(samples), memoryLimit())
		// The live heap is as of the last collection, and a process that
		// has stopped allocating does not collect: above Normal, collect
		// at least once every staleAfter, so that the level falls once the
		// memory is free; and at once when a listener let go of some
		// (what it released is garbage now).
		if released || (g.Level() > Normal && time.Since(lastGC) >= staleAfter) {
			runtime.GC()
			lastGC = time.Now()
			g.observe(memoryUsed(samples), memoryLimit())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func memoryUsed(samples []metrics.Sample) int64 {
	metrics.Read(samples)
	var n uint64
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			n += s.Value.Uint64()
		}
	}
	return int64(min(n, math.MaxInt64)) //nolint:gosec // clamped above
}

// memoryLimit is the runtime's soft memory limit, 0 when none is set.
func memoryLimit() int64 {
	l := debug.SetMemoryLimit(-1)
	if l == math.MaxInt64 {
		return 0
	}
	return l
}
