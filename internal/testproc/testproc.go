// Package testproc holds what tests that run servers and child processes
// on loopback share: free addresses, the port of an address, a polling
// wait, an HTTP status probe and a buffer safe for exec's writer
// goroutines. Only tests import it.
package testproc

import (
	"bytes"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// FreeAddr returns a loopback host:port that was free a moment ago, for a
// process that must be told its address before it starts (or restart on
// the same one).
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Port is the port of a host:port.
func Port(tb testing.TB, addr string) int {
	tb.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		tb.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// HTTPStatus is the status of a GET of url, 0 when there is no answer
// within 2 s.
func HTTPStatus(url string) int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// WaitFor polls cond every 10 ms until it holds, failing the test with msg
// after d.
func WaitFor(tb testing.TB, d time.Duration, cond func() bool, msg string) {
	tb.Helper()
	for start := time.Now(); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > d {
			tb.Fatal(msg)
		}
	}
}

// SyncBuffer is a bytes.Buffer safe for the writer goroutine exec uses.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
