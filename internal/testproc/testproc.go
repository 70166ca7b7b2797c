// Package testproc holds what tests that run servers and child processes
// on loopback share: free addresses, the port of an address, a polling
// wait, an HTTP status probe and a buffer safe for exec's writer
// goroutines. Only tests import it.
package testproc

import (
	"bytes"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// FreeAddr returns a loopback host:port that was free a moment ago, for a
// process that must be told its address before it starts (or restart on
// the same one).
//
// The port is picked below the kernel's ephemeral range
// (/proc/sys/net/ipv4/ip_local_port_range), where neither an outgoing
// connection's local port nor another server's ":0" can take it between
// this call and the process's bind: a port from ":0" was taken so, once,
// by a LangGraph server starting beside the test ("bind: address already
// in use"). Only when no such port is free does it fall back to ":0".
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	lo := ephemeralLow()
	for range 50 {
		port := 10000 + rand.IntN(lo-10000) //nolint:gosec // a test port, not a secret
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		addr := ln.Addr().String()
		if err := ln.Close(); err != nil {
			tb.Fatal(err)
		}
		return addr
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default, 32768, when it cannot be read or leaves no room below it).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 32768
	}
	lo, err := strconv.Atoi(f[0])
	if err != nil || lo <= 12000 {
		return 32768
	}
	return lo
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
