// Package h2flood is a hostile gRPC client for langgate's exhaustion
// tests: over raw HTTP/2 frames (h2c, prior knowledge) it opens many Check
// streams on one connection, declares a large message on each and sends
// only part of it, then stalls, as a client that means to hold the
// server's buffers would. A gRPC client library cannot do this: it sends
// whole messages. It obeys the server's flow control (it sends no more
// than each window allows) and answers its pings, so what it holds is
// what a well-behaved HTTP/2 peer can make the server hold.
package h2flood

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// CheckPath is the ext_authz Check method's path.
const CheckPath = "/envoy.service.auth.v3.Authorization/Check"

// Result is what became of a connection's streams.
type Result struct {
	// Opened is the streams whose HEADERS were sent.
	Opened int
	// Refused is the streams the server refused or ended before they were
	// complete (RST_STREAM, or a response with a non-OK grpc-status).
	Refused int
	// Statuses counts the grpc-status values the server ended streams
	// with ("RST" for a reset).
	Statuses map[string]int
	// Sent is the DATA bytes sent.
	Sent int64
	// Closed reports that the server closed the connection.
	Closed bool
}

// Conn is one flooding connection.
type Conn struct {
	// Path is the method the streams call (CheckPath unless set).
	Path string

	c   net.Conn
	fr  *http2.Framer
	wmu sync.Mutex
	// next is the next stream's id (odd, as a client's are).
	next uint32

	mu       sync.Mutex
	connWin  int64
	initWin  int64
	streams  map[uint32]*stream
	res      Result
	readErr  error
	winReady *sync.Cond
}

type stream struct {
	win   int64
	ended bool
}

// Dial opens an HTTP/2 connection to addr (h2c) and starts reading its
// frames.
func Dial(addr string) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		_ = c.Close()
		return nil, err
	}
	fc := &Conn{c: c, fr: http2.NewFramer(c, c), next: 1, connWin: 65535, initWin: 65535, streams: map[uint32]*stream{}}
	fc.res.Statuses = map[string]int{}
	fc.winReady = sync.NewCond(&fc.mu)
	fc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fc.fr.WriteSettings(); err != nil {
		_ = c.Close()
		return nil, err
	}
	go fc.read()
	return fc, nil
}

// read handles the server's frames: flow-control windows, settings,
// pings, and the end of streams.
func (fc *Conn) read() {
	for {
		f, err := fc.fr.ReadFrame()
		if err != nil {
			fc.mu.Lock()
			fc.readErr = err
			fc.res.Closed = true
			fc.winReady.Broadcast()
			fc.mu.Unlock()
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			fc.mu.Lock()
			if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
				delta := int64(v) - fc.initWin
				fc.initWin = int64(v)
				for _, s := range fc.streams {
					s.win += delta
				}
			}
			fc.winReady.Broadcast()
			fc.mu.Unlock()
			fc.wmu.Lock()
			_ = fc.fr.WriteSettingsAck()
			fc.wmu.Unlock()
		case *http2.PingFrame:
			if !f.IsAck() {
				fc.wmu.Lock()
				_ = fc.fr.WritePing(true, f.Data)
				fc.wmu.Unlock()
			}
		case *http2.WindowUpdateFrame:
			fc.mu.Lock()
			if f.StreamID == 0 {
				fc.connWin += int64(f.Increment)
			} else if s := fc.streams[f.StreamID]; s != nil {
				s.win += int64(f.Increment)
			}
			fc.winReady.Broadcast()
			fc.mu.Unlock()
		case *http2.RSTStreamFrame:
			fc.end(f.StreamID, "RST")
		case *http2.MetaHeadersFrame:
			if !f.StreamEnded() {
				continue // response headers; the status is in the trailers
			}
			st := f.PseudoValue("status")
			for _, hf := range f.Fields {
				if hf.Name == "grpc-status" {
					st = hf.Value
				}
			}
			fc.end(f.StreamID, st)
		case *http2.GoAwayFrame:
			fc.mu.Lock()
			fc.res.Closed = true
			fc.mu.Unlock()
		}
	}
}

func (fc *Conn) end(id uint32, status string) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	s := fc.streams[id]
	if s == nil || s.ended {
		return
	}
	s.ended = true
	fc.res.Statuses[status]++
	if status != "0" {
		fc.res.Refused++
	}
	fc.winReady.Broadcast()
}

// Flood opens n Check streams, declares a message of declared bytes on
// each and sends send bytes of it (no more than the windows allow; it
// waits for them at most wait in all), and leaves every stream open.
func (fc *Conn) Flood(n, declared, send int, wait time.Duration) error {
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	prefix := make([]byte, 5)
	binary.BigEndian.PutUint32(prefix[1:], uint32(declared)) //nolint:gosec // a test's size
	chunk := make([]byte, 16<<10)
	deadline := time.Now().Add(wait)
	for range n {
		id := fc.next
		fc.next += 2
		hbuf.Reset()
		for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", fc.path()}, {":authority", "langgate"},
			{"content-type", "application/grpc"}, {"te", "trailers"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		fc.mu.Lock()
		fc.streams[id] = &stream{win: fc.initWin}
		fc.res.Opened++
		fc.mu.Unlock()
		fc.wmu.Lock()
		err := fc.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndHeaders: true})
		if err == nil {
			err = fc.fr.WriteData(id, false, prefix)
		}
		fc.wmu.Unlock()
		if err != nil {
			return fmt.Errorf("stream %d: %w", id, err)
		}
		for left := send; left > 0; {
			k, err := fc.take(id, min(left, len(chunk)), deadline)
			if err != nil || k == 0 {
				break // the stream ended, or no window before the deadline: stall here
			}
			fc.wmu.Lock()
			err = fc.fr.WriteData(id, false, chunk[:k])
			fc.wmu.Unlock()
			if err != nil {
				return fmt.Errorf("stream %d: %w", id, err)
			}
			fc.mu.Lock()
			fc.res.Sent += int64(k)
			fc.mu.Unlock()
			left -= k
		}
	}
	return nil
}

// take waits until the connection and stream windows allow some bytes
// (at most want), reserves them and returns how many: 0 when the stream
// ended, the connection closed or the deadline passed.
func (fc *Conn) take(id uint32, want int, deadline time.Time) (int, error) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	stop := time.AfterFunc(time.Until(deadline), func() {
		fc.mu.Lock()
		fc.winReady.Broadcast()
		fc.mu.Unlock()
	})
	defer stop.Stop()
	for {
		s := fc.streams[id]
		if s == nil || s.ended || fc.readErr != nil {
			return 0, fc.readErr
		}
		if k := min(int64(want), fc.connWin, s.win); k > 0 {
			fc.connWin -= k
			s.win -= k
			return int(k), nil
		}
		if !time.Now().Before(deadline) {
			return 0, nil
		}
		fc.winReady.Wait()
	}
}

func (fc *Conn) path() string {
	if fc.Path != "" {
		return fc.Path
	}
	return CheckPath
}

// Result returns what became of the streams so far.
func (fc *Conn) Result() Result {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	r := fc.res
	r.Statuses = make(map[string]int, len(fc.res.Statuses))
	for k, v := range fc.res.Statuses {
		r.Statuses[k] = v
	}
	return r
}

// Open returns the streams not yet ended by the server.
func (fc *Conn) Open() int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	n := 0
	for _, s := range fc.streams {
		if !s.ended {
			n++
		}
	}
	return n
}

// Close closes the connection.
func (fc *Conn) Close() error {
	err := fc.c.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
