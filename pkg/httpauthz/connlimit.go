package httpauthz

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// ConnLimit caps the connections an http.Server holds. A connection over
// the cap makes room by closing the one that has waited longest (a
// keep-alive connection between requests, or one that has not sent its
// first: it holds a goroutine, buffers and a descriptor for nothing); when
// none is waiting, the new connection is closed at once. A client that
// keeps sending requests is never the one that waited longest. So
// idle connections, however many a client opens, never lock out one that
// sends a request. Install it with Server.ConnState = l.ConnState.
type ConnLimit struct {
	max int
	mu  sync.Mutex
	// open holds each connection and, while it waits for a request, the
	// time it started waiting (zero while it is busy).
	open map[net.Conn]time.Time
}

// NewConnLimit caps the connections at max (at least 1).
func NewConnLimit(maxConns int) *ConnLimit {
	return &ConnLimit{max: max(maxConns, 1), open: map[net.Conn]time.Time{}}
}

// ConnState tracks a connection's state (http.Server.ConnState).
func (l *ConnLimit) ConnState(c net.Conn, st http.ConnState) {
	var closeConn net.Conn
	l.mu.Lock()
	switch st {
	case http.StateNew:
		if len(l.open) >= l.max {
			closeConn = c
			var oldest time.Time
			for o, since := range l.open {
				if !since.IsZero() && (oldest.IsZero() || since.Before(oldest)) {
					closeConn, oldest = o, since
				}
			}
			delete(l.open, closeConn)
		}
		if closeConn != c {
			l.open[c] = time.Now()
		}
	case http.StateIdle:
		if _, ok := l.open[c]; ok {
			l.open[c] = time.Now()
		}
	case http.StateActive:
		if _, ok := l.open[c]; ok {
			l.open[c] = time.Time{}
		}
	case http.StateClosed, http.StateHijacked:
		delete(l.open, c)
	}
	l.mu.Unlock()
	if closeConn != nil {
		_ = closeConn.Close()
	}
}

// Open is the number of connections held.
func (l *ConnLimit) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.open)
}
