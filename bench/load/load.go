// Package load is the project's load generator: pre-built requests (HTTP
// over keep-alive connections, or ext_authz Checks over gRPC, see GRPC)
// sent either in a closed loop (a fixed number
// of workers, each sending its next request when the last one answered:
// the maximum throughput) or at a fixed rate (requests scheduled on a
// clock, latency measured from the scheduled time, so a stalled server is
// charged for every request it delayed: no coordinated omission). It
// reports throughput, errors and latency percentiles.
package load

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Request is one pre-built request; Body is sent as is.
type Request struct {
	Method, URL string
	Header      http.Header
	Body        []byte
	// Status is the status a correct answer has.
	Status int
}

// Result summarises one run.
type Result struct {
	// Sent is the number of requests completed; Errors those that failed
	// (transport error or a status other than the request's Status).
	Sent, Errors int
	// Elapsed is the run's wall time.
	Elapsed time.Duration
	// Latencies, sorted.
	latencies []time.Duration
}

// Throughput is completed requests per second.
func (r Result) Throughput() float64 { return float64(r.Sent) / r.Elapsed.Seconds() }

// Percentile returns the q-quantile (0..1) of the latencies.
func (r Result) Percentile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(q * float64(len(r.latencies)-1))
	return r.latencies[i]
}

// String is a one-line summary.
func (r Result) String() string {
	return fmt.Sprintf("%.0f req/s, p50 %v, p99 %v, %d errors of %d", r.Throughput(),
		r.Percentile(0.50).Round(time.Microsecond), r.Percentile(0.99).Round(time.Microsecond), r.Errors, r.Sent)
}

// Client returns an HTTP/1.1 client keeping up to conns connections open.
func Client(conns int) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
		IdleConnTimeout: time.Minute, DisableCompression: true,
	}}
}

// Send sends the request numbered i (modulo the corpus) and reports
// whether the answer was the expected one. It is called from many
// goroutines at once.
type Send func(i uint64) bool

// HTTP sends reqs, in turn, through client.
func HTTP(client *http.Client, reqs []Request) Send {
	return func(i uint64) bool { return one(client, reqs[i%uint64(len(reqs))]) }
}

// one sends req and reports whether the answer was the expected one.
func one(client *http.Client, req Request) bool {
	var body io.Reader
	if req.Body != nil {
		body = bytes.NewReader(req.Body)
	}
	hr, err := http.NewRequest(req.Method, req.URL, body)
	if err != nil {
		return false
	}
	hr.Header = req.Header
	resp, err := client.Do(hr)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == req.Status
}

// Closed runs workers concurrent loops of send for d.
func Closed(ctx context.Context, send Send, workers int, d time.Duration) Result {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	// Each request is due when its worker is free.
	return drive(send, workers, func() (time.Time, bool) { return time.Now(), ctx.Err() == nil })
}

// Fixed sends rate requests per second for d, spread evenly, from a pool
// of up to maxInFlight concurrent senders. A request's latency runs from
// the moment it was due, so time spent waiting for a free sender counts.
func Fixed(ctx context.Context, send Send, rate float64, maxInFlight int, d time.Duration) Result {
	interval := time.Duration(float64(time.Second) / rate)
	n := int(d / interval)
	due := make(chan time.Time, n)
	start := time.Now()
	for i := range n {
		due <- start.Add(time.Duration(i) * interval)
	}
	close(due)
	return drive(send, maxInFlight, func() (time.Time, bool) {
		at, ok := <-due
		return at, ok && ctx.Err() == nil
	})
}

// drive runs workers senders until next reports no more requests; next
// gives each request's due time, which its latency is measured from.
func drive(send Send, workers int, next func() (time.Time, bool)) Result {
	var mu sync.Mutex
	var res Result
	var wg sync.WaitGroup
	var i atomic.Uint64
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lat []time.Duration
			errs := 0
			for {
				at, ok := next()
				if !ok {
					break
				}
				if w := time.Until(at); w > 0 {
					time.Sleep(w)
				}
				if !send(i.Add(1)) {
					errs++
				}
				lat = append(lat, time.Since(at))
			}
			mu.Lock()
			res.latencies = append(res.latencies, lat...)
			res.Errors += errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Sent = len(res.latencies)
	slices.Sort(res.latencies)
	return res
}

// Quantile is Percentile as a metric of a Result, for Median and Ratio.
func Quantile(q float64) func(Result) float64 {
	return func(r Result) float64 { return float64(r.Percentile(q)) }
}

// Median is the median over runs (rounds) of f.
func Median(rs []Result, f func(Result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

// Ratio is the median over rounds of x's f over base's f in the same
// round (x[i] and base[i] ran minutes apart at most), so a machine that
// drifts over the whole run does not skew the comparison.
func Ratio(x, base []Result, f func(Result) float64) float64 {
	v := make([]float64, len(x))
	for i := range x {
		v[i] = f(x[i]) / f(base[i])
	}
	slices.Sort(v)
	return v[len(v)/2]
}
