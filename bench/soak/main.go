// Command soak runs langgate behind the real Envoy (the shipped
// envoy/front-proxy.yaml) for a long time at half of its maximum
// throughput, with token churn: a new user every few milliseconds, each
// with a token langgate has never verified, up to -users over the run
// (the cached users' tokens keep coming back as well). Every second it
// samples langgate's resident memory and goroutines; at the end it writes
// the samples (CSV) and a plot of both (SVG) and checks the bars:
//
//   - RSS after the warm-up grows by at most 10 %;
//   - no request fails (every one must be allowed: a 200 from the sink);
//   - goroutines end where they started (at most 20 % above the first sample
//     after the warm-up; a peak in between is Checks in flight, reported).
//
// make soak runs it for 10 minutes; it is not part of make test.
//
//	go run ./bench/soak [-langgate bin/langgate] [-duration 10m] [-users 100000] [-out .cache/soak]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/bench/load"
	"github.com/langgate/langgate/bench/proc"
	"github.com/langgate/langgate/internal/envoyproc"
	"github.com/langgate/langgate/internal/procgroup"
	"github.com/langgate/langgate/pkg/devissuer"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// sample is one second of the run.
type sample struct {
	at         time.Duration
	rss        int64
	goroutines float64
	sent, errs int64
}

func run() error {
	lgBin := flag.String("langgate", "bin/langgate", "the langgate binary (make build)")
	duration := flag.Duration("duration", 10*time.Minute, "length of the soak")
	warmup := flag.Duration("warmup", time.Minute, "time before the memory baseline is taken")
	users := flag.Int("users", 100000, "distinct users over the run (a new one every duration/users)")
	workers := flag.Int("workers", 16, "concurrent senders")
	out := flag.String("out", ".cache/soak", "directory for samples.csv and rss.svg")
	cache := flag.String("cache", "16MiB", "the token cache's max_bytes: small enough to fill during the warm-up, so the soak runs on a full cache that keeps evicting")
	flag.Parse()

	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	// The upstream: a sink that answers 200.
	sinkLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	sink := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "{}")
	})}
	go func() { _ = sink.Serve(sinkLn) }()
	stops = append(stops, func() { _ = sink.Close() })

	issuer, err := devissuer.Start(devissuer.Options{Algorithm: jose.EdDSA}) // quick to sign 100k tokens
	if err != nil {
		return err
	}
	stops = append(stops, func() { _ = issuer.Close() })
	fmt.Printf("minting %d tokens\n", *users)
	tokens := make([]string, *users)
	for i := range tokens {
		if tokens[i], err = issuer.Token(fmt.Sprintf("user-%d", i), 2*time.Hour+*duration, nil); err != nil {
			return err
		}
	}

	root, err := envoyproc.ModuleRoot()
	if err != nil {
		return err
	}
	grpcAddr, err := proc.FreeAddr()
	if err != nil {
		return err
	}
	adminAddr, err := proc.FreeAddr()
	if err != nil {
		return err
	}
	// The example policy, with a token cache that fills during the warm-up.
	example, err := os.ReadFile(filepath.Join(root, "examples", "langgraph", "langgate.yaml"))
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "soak-")
	if err != nil {
		return err
	}
	stops = append(stops, func() { _ = os.RemoveAll(tmp) })
	cfgFile := filepath.Join(tmp, "langgate.yaml")
	policy := strings.Replace(string(example), "\nauthenticate:\n", "\nauthenticate:\n  cache: {max_bytes: "+*cache+"}\n", 1)
	if policy == string(example) {
		return errors.New("the example policy has no authenticate section to give a cache")
	}
	if err := os.WriteFile(cfgFile, []byte(policy), 0o600); err != nil {
		return err
	}
	lg := exec.Command(*lgBin, "serve", "--config", cfgFile,
		"--grpc-addr", grpcAddr, "--admin-addr", adminAddr, "--log-level", "warn", "--watch-interval", "0")
	lg.Env = append(os.Environ(), "OIDC_ISSUER="+issuer.URL, "OIDC_AUDIENCE="+issuer.Audience)
	lg.Stdout, lg.Stderr = io.Discard, os.Stderr
	procgroup.Prepare(lg)
	if err := lg.Start(); err != nil {
		return fmt.Errorf("%s: %w (make build)", *lgBin, err)
	}
	stops = append(stops, func() { proc.Stop(lg) })
	admin := "http://" + adminAddr
	if err := proc.WaitOK(admin + "/readyz"); err != nil {
		return fmt.Errorf("langgate: %w", err)
	}

	bin, err := envoyproc.Find()
	if err != nil {
		return err
	}
	cfg, err := envoyproc.LoadConfig(filepath.Join(root, "envoy", "front-proxy.yaml"))
	if err != nil {
		return err
	}
	cfg.Loopback()
	if err := cfg.SetEndpoint("langgate", grpcAddr, port(adminAddr)); err != nil {
		return err
	}
	if err := cfg.SetEndpoint("langgraph", sinkLn.Addr().String(), 0); err != nil {
		return err
	}
	cfg.SetCheckTimeout(time.Second) // a soak on a shared machine, not a latency test
	e, err := envoyproc.Start(bin, envoyproc.Options{Bootstrap: cfg.Bytes(), Dir: filepath.Join(tmp, "envoy")})
	if err != nil {
		return err
	}
	stops = append(stops, func() { _ = e.Stop() })
	base := e.URL("langgraph_http") + "/threads/1ef5c0de-1b2c-6d3e-8f90-123456789abc"

	client := load.Client(*workers * 4)
	var start time.Time
	every := *duration / time.Duration(*users)
	// Each request is a new user's when one is due (a token langgate has
	// never seen), else one of the last thousand users' (cached tokens, as
	// real clients send them).
	var issued atomic.Int64
	send := func(i uint64) bool {
		due := min(int64(time.Since(start)/every)+1, int64(len(tokens)))
		u := int64(-1)
		for n := issued.Load(); n < due; n = issued.Load() {
			if issued.CompareAndSwap(n, n+1) {
				u = n
				break
			}
		}
		if u < 0 {
			n := max(issued.Load(), 1)
			u = n - 1 - int64(i%1000)%min(n, 1000) //nolint:gosec // i%1000 fits
		}
		req, err := http.NewRequest("GET", base, nil)
		if err != nil {
			return false
		}
		req.Header.Set("Authorization", "Bearer "+tokens[u])
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}

	// Maximum throughput with cached tokens, then half of it for the soak.
	start = time.Now()
	maxRes := load.Closed(context.Background(), send, *workers, 10*time.Second)
	if maxRes.Errors > 0 {
		return fmt.Errorf("maximum run: %s", maxRes)
	}
	rate := maxRes.Throughput() / 2
	fmt.Printf("maximum %s; soaking at %.0f req/s for %s, a new user every %s\n", maxRes, rate, *duration, every)

	var mu sync.Mutex
	var samples []sample
	var sent, failed atomic.Int64
	counted := func(i uint64) bool {
		ok := send(i)
		sent.Add(1)
		if !ok {
			failed.Add(1)
		}
		return ok
	}
	start = time.Now()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan load.Result, 1)
	go func() { done <- load.Fixed(ctx, counted, rate, *workers*4, *duration) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var res load.Result
loop:
	for {
		select {
		case res = <-done:
			break loop
		case <-tick.C:
			s := sample{at: time.Since(start), rss: proc.RSS(lg.Process.Pid), goroutines: goroutines(admin), sent: sent.Load(), errs: failed.Load()}
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
			if len(samples)%60 == 0 {
				fmt.Printf("%s: RSS %.1f MiB, %0.f goroutines, %d sent, %d failed\n", s.at.Round(time.Second), float64(s.rss)/(1<<20), s.goroutines, s.sent, s.errs)
			}
		}
	}
	cancel()
	fmt.Printf("soak: %s\n", res)

	if err := os.MkdirAll(*out, 0o750); err != nil {
		return err
	}
	if err := writeCSV(filepath.Join(*out, "samples.csv"), samples); err != nil {
		return err
	}
	if err := writeSVG(filepath.Join(*out, "rss.svg"), samples, *warmup); err != nil {
		return err
	}
	return judge(samples, *warmup, res)
}

// judge checks the bars and prints the figures.
func judge(samples []sample, warmup time.Duration, res load.Result) error {
	var after []sample
	for _, s := range samples {
		if s.at >= warmup {
			after = append(after, s)
		}
	}
	if len(after) < 2 {
		return errors.New("too short a run to judge (no samples after the warm-up)")
	}
	first, last := after[0], after[len(after)-1]
	var peak int64
	maxG := 0.0
	for _, s := range after {
		peak = max(peak, s.rss)
		maxG = math.Max(maxG, s.goroutines)
	}
	growth := float64(last.rss-first.rss) / float64(first.rss)
	peakGrowth := float64(peak-first.rss) / float64(first.rss)
	fmt.Printf("RSS after the warm-up: %.1f MiB → %.1f MiB at the end (%+.1f %%), peak %.1f MiB (%+.1f %%)\n",
		mib(first.rss), mib(last.rss), 100*growth, mib(peak), 100*peakGrowth)
	fmt.Printf("goroutines: %.0f after the warm-up, at most %.0f, %.0f at the end\n", first.goroutines, maxG, last.goroutines)
	fmt.Printf("requests: %d, failed %d\n", res.Sent, res.Errors)
	var bad []string
	if peakGrowth > 0.10 {
		bad = append(bad, fmt.Sprintf("RSS grew %.1f %% after the warm-up (bar: 10 %%)", 100*peakGrowth))
	}
	if res.Errors > 0 {
		bad = append(bad, fmt.Sprintf("%d requests failed", res.Errors))
	}
	// A leak shows at the end; a peak is Checks in flight during a stall.
	if last.goroutines > 1.2*first.goroutines+10 {
		bad = append(bad, fmt.Sprintf("goroutines rose from %.0f to %.0f at the end", first.goroutines, last.goroutines))
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// goroutines reads go_goroutines from langgate's /metrics (NaN if it
// cannot).
func goroutines(admin string) float64 {
	body, err := proc.Fetch(admin + "/metrics")
	if err != nil {
		return math.NaN()
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return math.NaN()
}

func writeCSV(file string, samples []sample) error {
	var b strings.Builder
	b.WriteString("seconds,rss_bytes,goroutines,sent,failed\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "%.0f,%d,%.0f,%d,%d\n", s.at.Seconds(), s.rss, s.goroutines, s.sent, s.errs)
	}
	return os.WriteFile(file, []byte(b.String()), 0o600)
}

// writeSVG plots RSS (MiB) over time, with the warm-up shaded and the
// 10 % bar over the first sample after it drawn as a line.
func writeSVG(file string, samples []sample, warmup time.Duration) error {
	const w, h, pad = 800.0, 320.0, 50.0
	if len(samples) == 0 {
		return errors.New("no samples")
	}
	end := samples[len(samples)-1].at.Seconds()
	var top float64
	var base int64
	for _, s := range samples {
		top = math.Max(top, mib(s.rss))
		if base == 0 && s.at >= warmup {
			base = s.rss
		}
	}
	top = math.Max(top, mib(base)*1.1) * 1.1
	x := func(sec float64) float64 { return pad + (w-2*pad)*sec/math.Max(end, 1) }
	y := func(m float64) float64 { return h - pad - (h-2*pad)*m/top }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#eee"/>`+"\n", x(0), pad, x(warmup.Seconds())-x(0), h-2*pad)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#c00" stroke-dasharray="4"/>`+"\n", x(0), y(mib(base)*1.1), x(end), y(mib(base)*1.1))
	b.WriteString(`<polyline fill="none" stroke="#036" stroke-width="1.5" points="`)
	for _, s := range samples {
		fmt.Fprintf(&b, "%.1f,%.1f ", x(s.at.Seconds()), y(mib(s.rss)))
	}
	b.WriteString("\"/>\n")
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000"/>`+"\n", pad, h-pad, w-pad, h-pad)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000"/>`+"\n", pad, pad, pad, h-pad)
	for i := 0; i <= 4; i++ {
		m := top * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%.0f</text>`+"\n", pad-4, y(m)+4, m)
		sec := end * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0fs</text>`+"\n", x(sec), h-pad+16, sec)
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">langgate RSS (MiB) over the soak; shaded: warm-up; dashed: +10 %% over the first sample after it</text>`+"\n", pad, pad-16)
	b.WriteString("</svg>\n")
	return os.WriteFile(file, []byte(b.String()), 0o600)
}

func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}
