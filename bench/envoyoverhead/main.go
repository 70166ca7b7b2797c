// Command envoyoverhead measures what authorization costs through the real
// Envoy: GET requests with a bearer token through Envoy to a trivial
// upstream, with
//
//	(a) none   no auth filter (envoy/front-proxy.yaml without ext_authz)
//	(b) jwt    Envoy's own jwt_authn verifying the same token in process
//	           (local JWKS, its verified-token cache on)
//	(c) grpc   ext_authz to langgate over gRPC (envoy/front-proxy.yaml)
//	(d) http   ext_authz to langgate's HTTP mode (envoy/front-proxy-http.yaml)
//
// and, with -variants, what Envoy's share of (c) is made of:
//
//	(e) grpc-noop    (c) against bench/noop, which allows with one header:
//	                 Envoy's ext_authz client with the smallest answer
//	(f) google-grpc  (c) with google_grpc (gRPC C++) instead of envoy_grpc
//	(g) grpc-nolog   (c) without the access log (its nine ext_authz fields)
//	(h) grpc-log1    (c) with the log's ext_authz fields as one object
//
// -perf FILE records Envoy with perf(1) during (c)'s first maximum run and
// writes where its CPU went (kernel or Envoy, by shared object) to FILE.
//
// on one machine in one run, each at its maximum (closed loop) and at a
// fixed rate of half of (a)'s maximum, in rounds (a b c d, a b c d, …) so
// that drift on a shared machine hits every configuration alike. It prints
// throughput and p50/p99 latency, and their ratios to (a) and (b), as the
// Markdown table docs/performance.md shows.
//
//	make build envoy && go run ./bench/envoyoverhead [-duration 10s] [-rounds 2] [-workers 16]
//	    [-variants] [-perf FILE] [-json FILE]
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/langgate/langgate/bench/load"
	"github.com/langgate/langgate/bench/proc"
	"github.com/langgate/langgate/internal/envoyproc"
	"github.com/langgate/langgate/internal/procgroup"
)

// config is one way of putting authorization in Envoy.
type config struct {
	name, label string
	envoy       *envoyproc.Envoy
	url         string
}

// share is where the CPU went during one run, per request.
type share struct{ envoy, langgate, upstream, loadgen time.Duration }

func main() {
	if os.Getenv("ENVOYOVERHEAD_UPSTREAM") == "1" {
		upstream()
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "envoyoverhead:", err)
		os.Exit(1)
	}
}

// upstream is the trivial server behind Envoy: 200 and two bytes.
func upstream() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("LISTEN", ln.Addr())
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "ok")
	})}
	_ = srv.Serve(ln)
}

func run() error {
	lgBin := flag.String("langgate", "bin/langgate", "the langgate binary (make build)")
	duration := flag.Duration("duration", 10*time.Second, "length of each measured run")
	rounds := flag.Int("rounds", 2, "rounds over the four configurations")
	workers := flag.Int("workers", 16, "closed-loop workers (one keep-alive connection each)")
	concurrency := flag.Int("envoy-concurrency", 1, "Envoy worker threads")
	profile := flag.String("profile", "", "write langgate's CPU profile during the first gRPC maximum run to this file (go tool pprof)")
	variants := flag.Bool("variants", false, "also measure (e) grpc-noop, (f) google-grpc, (g) grpc-nolog and (h) grpc-log1")
	perfOut := flag.String("perf", "", "record Envoy with perf(1) during (c)'s first maximum run; write its summary to this file")
	jsonOut := flag.String("json", "", "write the figures (req/s × (a), CPU per request) as JSON to this file (bench/table)")
	flag.Parse()

	root, err := envoyproc.ModuleRoot()
	if err != nil {
		return err
	}
	bin, err := envoyproc.Find()
	if err != nil {
		return err
	}
	version, err := envoyproc.Version(bin)
	if err != nil {
		return err
	}
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()

	self, err := os.Executable()
	if err != nil {
		return err
	}
	up := exec.Command(self)
	up.Env = append(os.Environ(), "ENVOYOVERHEAD_UPSTREAM=1")
	upAddr, err := proc.StartAndRead(up, "LISTEN ")
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	stops = append(stops, func() { proc.Stop(up) })

	var noopAddr string
	if *variants {
		tmp, err := os.MkdirTemp("", "envoyoverhead")
		if err != nil {
			return err
		}
		stops = append(stops, func() { _ = os.RemoveAll(tmp) })
		noopBin, err := proc.BuildNoop(root, tmp)
		if err != nil {
			return err
		}
		noop := exec.Command(noopBin, "-header", "x-langgate-noop") // one the shipped mutation rules allow
		if noopAddr, err = proc.StartAndRead(noop, "LISTEN "); err != nil {
			return fmt.Errorf("noop: %w", err)
		}
		stops = append(stops, func() { proc.Stop(noop) })
	}

	addrs := make([]string, 4)
	for i := range addrs {
		if addrs[i], err = proc.FreeAddr(); err != nil {
			return err
		}
	}
	grpcAddr, adminAddr, httpAddr, issuerAddr := addrs[0], addrs[1], addrs[2], addrs[3]
	lg := exec.Command(*lgBin, "serve", "--dev", "--dev-issuer-addr", issuerAddr, "--grpc-addr", grpcAddr,
		"--admin-addr", adminAddr, "--http-addr", httpAddr, "--log-level", "warn", "--pprof")
	lg.Stdout, lg.Stderr = io.Discard, os.Stderr
	procgroup.Prepare(lg)
	if err := lg.Start(); err != nil {
		return fmt.Errorf("%s: %w (make build)", *lgBin, err)
	}
	stops = append(stops, func() { proc.Stop(lg) })
	if err := proc.WaitOK("http://" + adminAddr + "/readyz"); err != nil {
		return fmt.Errorf("langgate: %w", err)
	}
	issuer := "http://" + issuerAddr
	token, err := fetchToken(issuer)
	if err != nil {
		return err
	}
	jwks, err := proc.Fetch(issuer + "/jwks")
	if err != nil {
		return err
	}

	adminPort := port(adminAddr)
	configs := []*config{
		{name: "none", label: "(a) no auth filter"},
		{name: "jwt", label: "(b) Envoy jwt_authn"},
		{name: "grpc", label: "(c) ext_authz → langgate gRPC"},
		{name: "http", label: "(d) ext_authz → langgate HTTP"},
	}
	if *variants {
		configs = append(configs,
			&config{name: "grpc-noop", label: "(e) ext_authz → noop gRPC"},
			&config{name: "google-grpc", label: "(f) (c) with google_grpc"},
			&config{name: "grpc-nolog", label: "(g) (c) without the access log"},
			&config{name: "grpc-log1", label: "(h) (c), the log's ext_authz fields as one"})
	}
	for _, c := range configs {
		file := "front-proxy.yaml"
		if c.name == "http" {
			file = "front-proxy-http.yaml"
		}
		cfg, err := envoyproc.LoadConfig(filepath.Join(root, "envoy", file))
		if err != nil {
			return err
		}
		cfg.Loopback()
		if err := cfg.SetEndpoint("langgraph", upAddr, 0); err != nil {
			return err
		}
		switch c.name {
		case "none":
			replaceExtAuthz(cfg, nil)
		case "jwt":
			replaceExtAuthz(cfg, jwtAuthn(issuer, jwks))
		case "grpc":
			err = cfg.SetEndpoint("langgate", grpcAddr, adminPort)
		case "http":
			err = cfg.SetEndpoint("langgate_http", httpAddr, adminPort)
		case "grpc-noop":
			// The noop has no health service: no active health checks.
			delete(cfg.Cluster("langgate"), "health_checks")
			err = cfg.SetEndpoint("langgate", noopAddr, 0)
		case "google-grpc":
			err = googleGRPC(cfg, grpcAddr)
		case "grpc-nolog":
			cfg.Visit(func(m map[string]any) { delete(m, "access_log") })
			err = cfg.SetEndpoint("langgate", grpcAddr, adminPort)
		case "grpc-log1":
			cfg.Visit(func(m map[string]any) {
				if jf, ok := m["json_format"].(map[string]any); ok {
					for k := range jf {
						if strings.HasPrefix(k, "authz_") {
							delete(jf, k)
						}
					}
					jf["authz"] = "%DYNAMIC_METADATA(envoy.filters.http.ext_authz)%"
				}
			})
			err = cfg.SetEndpoint("langgate", grpcAddr, adminPort)
		}
		if err != nil {
			return err
		}
		e, err := envoyproc.Start(bin, envoyproc.Options{Bootstrap: cfg.Bytes(), Concurrency: *concurrency})
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		stops = append(stops, func() { _ = e.Stop() })
		c.envoy, c.url = e, e.URL("langgraph_http")
	}

	ctx := context.Background()
	reqs := func(c *config) []load.Request {
		h := http.Header{"Authorization": {"Bearer " + token}}
		return []load.Request{{Method: "GET", URL: c.url + "/threads/1ef5c0de-1b2c-6d3e-8f90-123456789abc", Header: h, Status: 200}}
	}
	client := load.Client(*workers)
	// Every configuration answers correctly before anything is measured.
	for _, c := range configs {
		if r := load.Closed(ctx, load.HTTP(client, reqs(c)), 2, time.Second); r.Errors > 0 || r.Sent == 0 {
			return fmt.Errorf("%s: %d errors of %d in the warm-up; Envoy's access log ends:\n%s", c.name, r.Errors, r.Sent, tail(c.envoy.Stdout(), 3))
		}
	}
	maxRuns := map[string][]load.Result{}
	fixedRuns := map[string][]load.Result{}
	lowRuns := map[string][]load.Result{}
	cpu := map[string]share{}
	var rate, low float64
	for round := 1; round <= *rounds; round++ {
		for _, c := range configs {
			pids := []int{c.envoy.Pid(), lg.Process.Pid, up.Process.Pid, os.Getpid()}
			before := make([]time.Duration, len(pids))
			for i, p := range pids {
				before[i] = proc.CPUTime(p)
			}
			prof := make(chan error, 2)
			if *profile != "" && round == 1 && c.name == "grpc" {
				go func() { prof <- proc.SaveProfile("http://"+adminAddr, "profile", *profile, *duration-time.Second) }()
			} else {
				prof <- nil
			}
			if *perfOut != "" && round == 1 && c.name == "grpc" {
				go func() { prof <- perfRecord(c.envoy.Pid(), *perfOut, *duration-time.Second) }()
			} else {
				prof <- nil
			}
			r := load.Closed(ctx, load.HTTP(client, reqs(c)), *workers, *duration)
			for range 2 {
				if err := <-prof; err != nil {
					return err
				}
			}
			per := func(i int) time.Duration { return (proc.CPUTime(pids[i]) - before[i]) / time.Duration(max(r.Sent, 1)) }
			if round == 1 {
				cpu[c.name] = share{envoy: per(0), langgate: per(1), upstream: per(2), loadgen: per(3)}
			}
			fmt.Fprintf(os.Stderr, "round %d %-5s max:   %v\n", round, c.name, r)
			maxRuns[c.name] = append(maxRuns[c.name], r)
		}
		if rate == 0 {
			rate = maxRuns["none"][0].Throughput() / 2
			low = rate
			for _, c := range configs {
				low = min(low, maxRuns[c.name][0].Throughput()/2)
			}
		}
		for _, c := range configs {
			r := load.Fixed(ctx, load.HTTP(client, reqs(c)), rate, 4**workers, *duration)
			fmt.Fprintf(os.Stderr, "round %d %-5s %5.0f/s: %v\n", round, c.name, rate, r)
			fixedRuns[c.name] = append(fixedRuns[c.name], r)
		}
		for _, c := range configs {
			r := load.Fixed(ctx, load.HTTP(client, reqs(c)), low, 4**workers, *duration)
			fmt.Fprintf(os.Stderr, "round %d %-5s %5.0f/s: %v\n", round, c.name, low, r)
			lowRuns[c.name] = append(lowRuns[c.name], r)
		}
	}

	fmt.Printf("Envoy %s (--concurrency %d), %d closed-loop connections, %v per run, %d rounds (medians); "+
		"fixed rates: %.0f req/s (half of (a)'s first maximum) and %.0f req/s (half of the lowest maximum)\n\n",
		version, *concurrency, *workers, *duration, *rounds, rate, low)
	errs := func(name string) int {
		n := 0
		for _, runs := range []map[string][]load.Result{maxRuns, fixedRuns, lowRuns} {
			for _, r := range runs[name] {
				n += r.Errors
			}
		}
		return n
	}
	a, b := "none", "jwt"
	fmt.Println("At maximum (closed loop):")
	fmt.Println()
	fmt.Println("| configuration | req/s | × (a) | × (b) | p50 | p99 | errors |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, c := range configs {
		m := load.Median(maxRuns[c.name], load.Result.Throughput)
		fmt.Printf("| %s | %.0f | %.2f | %.2f | %s | %s | %d |\n", c.label, m, load.Ratio(maxRuns[c.name], maxRuns[a], load.Result.Throughput), load.Ratio(maxRuns[c.name], maxRuns[b], load.Result.Throughput),
			ms(load.Median(maxRuns[c.name], load.Quantile(0.5))), ms(load.Median(maxRuns[c.name], load.Quantile(0.99))), errs(c.name))
	}
	for _, fr := range []struct {
		runs map[string][]load.Result
		rate float64
	}{{fixedRuns, rate}, {lowRuns, low}} {
		fmt.Printf("\nAt a fixed %.0f req/s (latency from each request's scheduled time):\n\n", fr.rate)
		fmt.Println("| configuration | req/s served | p50 | p99 | p50 × (a) | p99 × (a) | p50 × (b) | p99 × (b) |")
		fmt.Println("|---|---|---|---|---|---|---|---|")
		for _, c := range configs {
			rs := fr.runs[c.name]
			p50, p99 := load.Median(rs, load.Quantile(0.5)), load.Median(rs, load.Quantile(0.99))
			fmt.Printf("| %s | %.0f | %s | %s | %.2f | %.2f | %.2f | %.2f |\n", c.label, load.Median(rs, load.Result.Throughput), ms(p50), ms(p99),
				load.Ratio(fr.runs[c.name], fr.runs[a], load.Quantile(0.5)), load.Ratio(fr.runs[c.name], fr.runs[a], load.Quantile(0.99)), load.Ratio(fr.runs[c.name], fr.runs[b], load.Quantile(0.5)), load.Ratio(fr.runs[c.name], fr.runs[b], load.Quantile(0.99)))
		}
	}
	fmt.Println("\nCPU time per request at maximum (round 1; /proc/PID/stat):")
	fmt.Println()
	fmt.Println("| configuration | Envoy | langgate | upstream | load generator |")
	fmt.Println("|---|---|---|---|---|")
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }
	for _, c := range configs {
		s := cpu[c.name]
		fmt.Printf("| %s | %s | %s | %s | %s |\n", c.label, us(s.envoy), us(s.langgate), us(s.upstream), us(s.loadgen))
	}
	if *jsonOut != "" {
		out := map[string]map[string]float64{}
		for _, c := range configs {
			s := cpu[c.name]
			out[c.name] = map[string]float64{
				"rps":         load.Median(maxRuns[c.name], load.Result.Throughput),
				"ratio_a":     load.Ratio(maxRuns[c.name], maxRuns[a], load.Result.Throughput),
				"envoy_us":    float64(s.envoy) / 1e3,
				"langgate_us": float64(s.langgate) / 1e3,
				"errors":      float64(errs(c.name)),
			}
		}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*jsonOut, b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// googleGRPC points the ext_authz filter at addr through google_grpc (the
// gRPC C++ client) instead of envoy_grpc (Envoy's own HTTP/2 client and
// the langgate cluster).
func googleGRPC(cfg *envoyproc.Config, addr string) error {
	n := 0
	cfg.Visit(func(m map[string]any) {
		gs, ok := m["grpc_service"].(map[string]any)
		if !ok || gs["envoy_grpc"] == nil {
			return
		}
		delete(gs, "envoy_grpc")
		gs["google_grpc"] = map[string]any{"target_uri": addr, "stat_prefix": "langgate"}
		n++
	})
	if n == 0 {
		return fmt.Errorf("no envoy_grpc service in the configuration")
	}
	return nil
}

// perfRecord samples pid's CPU with perf(1) for d, call graphs off, and
// writes perf report's breakdown by shared object and by symbol (Envoy's
// binary is stripped: its own code shows as addresses in envoy, the rest
// by name) to out.
func perfRecord(pid int, out string, d time.Duration) error {
	data := out + ".data"
	rec := exec.Command("perf", "record", "-q", "-F", "1999", "-p", fmt.Sprint(pid), "-o", data, "--", "sleep", fmt.Sprint(d.Seconds()))
	if b, err := rec.CombinedOutput(); err != nil {
		return fmt.Errorf("perf record: %w: %s", err, b)
	}
	var report []byte
	for _, sort := range []string{"dso", "dso,sym"} {
		b, err := exec.Command("perf", "report", "-i", data, "--stdio", "--no-children", "--sort", sort, "--percent-limit", "0.7").Output()
		if err != nil {
			return fmt.Errorf("perf report: %w", err)
		}
		report = append(report, b...)
	}
	return os.WriteFile(out, report, 0o600)
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

func ms(ns float64) string { return fmt.Sprintf("%.2f ms", ns/1e6) }

// replaceExtAuthz takes the ext_authz filter (and its per-route settings)
// out of the chain, putting filter in its place when not nil.
func replaceExtAuthz(cfg *envoyproc.Config, filter map[string]any) {
	cfg.Visit(func(m map[string]any) {
		if tpf, ok := m["typed_per_filter_config"].(map[string]any); ok {
			delete(tpf, "envoy.filters.http.ext_authz")
		}
		hf, ok := m["http_filters"].([]any)
		if !ok {
			return
		}
		var out []any
		for _, f := range hf {
			if fm, _ := f.(map[string]any); fm["name"] == "envoy.filters.http.ext_authz" {
				if filter != nil {
					out = append(out, filter)
				}
				continue
			}
			out = append(out, f)
		}
		m["http_filters"] = out
	})
}

// jwtAuthn is Envoy's JWT filter for the dev issuer: the same token rules
// langgate applies (issuer, audience, signature), the user id forwarded
// as a header, verified tokens cached.
func jwtAuthn(issuer, jwks string) map[string]any {
	return map[string]any{
		"name": "envoy.filters.http.jwt_authn",
		"typed_config": map[string]any{
			"@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
			"providers": map[string]any{"dev": map[string]any{
				"issuer":           issuer,
				"audiences":        []any{"langgate-dev"},
				"local_jwks":       map[string]any{"inline_string": jwks},
				"forward":          true,
				"claim_to_headers": []any{map[string]any{"header_name": "x-user-id", "claim_name": "sub"}},
				"jwt_cache_config": map[string]any{"jwt_cache_size": 1000},
			}},
			"rules": []any{map[string]any{"match": map[string]any{"prefix": "/"}, "requires": map[string]any{"provider_name": "dev"}}},
		},
	}
}

func port(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	var n int
	_, _ = fmt.Sscan(p, &n)
	return n
}

func fetchToken(issuer string) (string, error) {
	b, err := proc.Fetch(issuer + "/token?sub=alice&ttl=2h")
	if err != nil {
		return "", err
	}
	var t struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(b), &t); err != nil || t.AccessToken == "" {
		return "", fmt.Errorf("token: %s %w", b, err)
	}
	return t.AccessToken, nil
}
