// Command checkload measures langgate's gRPC Check against a server that
// decides nothing (bench/noop), on the same machine with the same load:
// 600 distinct pre-built CheckRequests shaped the way Envoy 1.40 sends them
// with the shipped envoy/front-proxy.yaml (a thread read, a thread search
// with a JSON body and a store put, for each of 200 users whose tokens are
// all cached after the warm-up), sent by the project's load generator
// (bench/load: pre-encoded messages, no protobuf work of its own).
//
// Servers are measured in rounds (noop langgate, noop langgate, …), each at
// its maximum (closed loop) and then at a fixed rate of half of the noop's
// maximum in that round; every ratio is taken within a round, and the median over
// rounds is printed, so that drift on a shared machine hits both alike.
//
//	make build && go run ./bench/checkload [-rounds 3] [-duration 10s] [-workers 32] [-conns 2]
//	    [-users 200] [-gomaxprocs N] [-also NAME=BINARY] [-profile FILE] [-allocprofile FILE]
//	    [-ghz bin/ghz] [-json FILE]
//
// -ghz also drives every server at its maximum with ghz (a compiled load
// generator that is not ours: it decodes every answer and spends more CPU
// per request), with the same requests, workers and connections, in every
// round. -json writes the figures bench/table (make bench) prints.
//
// -also adds another langgate binary to every round (say, one built from an
// earlier commit), so a change is measured before and after in one run.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/bench/load"
	"github.com/langgate/langgate/bench/proc"
	"github.com/langgate/langgate/internal/envoyproc"
	"github.com/langgate/langgate/internal/procgroup"
	"github.com/langgate/langgate/pkg/devissuer"
)

// target is one server under load.
type target struct {
	name  string
	addr  string
	cmd   *exec.Cmd
	admin string // langgate's admin address; "" for the noop
	send  load.Send
}

type also []string

func (a *also) String() string     { return strings.Join(*a, ",") }
func (a *also) Set(v string) error { *a = append(*a, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "checkload:", err)
		os.Exit(1)
	}
}

func run() error {
	lgBin := flag.String("langgate", "bin/langgate", "the langgate binary (make build)")
	duration := flag.Duration("duration", 10*time.Second, "length of each measured run")
	rounds := flag.Int("rounds", 3, "rounds over the servers")
	workers := flag.Int("workers", 32, "closed-loop concurrency (requests in flight)")
	conns := flag.Int("conns", 2, "gRPC connections to each server (Envoy opens one per worker thread)")
	users := flag.Int("users", 200, "distinct users (three requests each)")
	procs := flag.Int("gomaxprocs", 0, "GOMAXPROCS of the servers (0: Go's default)")
	profile := flag.String("profile", "", "write langgate's CPU profile during its first maximum run to this file")
	allocs := flag.String("allocprofile", "", "write langgate's allocation profile (the same run's) to this file")
	heap := flag.String("heapprofile", "", "write langgate's heap profile after the warm-up (every token cached) to this file")
	var extra also
	ghzBin := flag.String("ghz", "", "also measure each server's maximum with this ghz binary (make ghz)")
	jsonOut := flag.String("json", "", "write the figures as JSON to this file (bench/table)")
	flag.Var(&extra, "also", "NAME=BINARY: another langgate binary measured in every round (repeatable)")
	flag.Parse()

	root, err := envoyproc.ModuleRoot()
	if err != nil {
		return err
	}
	var stops []func()
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	env := os.Environ()
	if *procs > 0 {
		env = append(env, fmt.Sprintf("GOMAXPROCS=%d", *procs))
	}

	tmp, err := os.MkdirTemp("", "checkload")
	if err != nil {
		return err
	}
	stops = append(stops, func() { _ = os.RemoveAll(tmp) })
	noopBin, err := proc.BuildNoop(root, tmp)
	if err != nil {
		return err
	}
	noop := &target{name: "noop", cmd: exec.Command(noopBin)}
	noop.cmd.Env = env
	if noop.addr, err = proc.StartAndRead(noop.cmd, "LISTEN "); err != nil {
		return fmt.Errorf("noop: %w", err)
	}
	stops = append(stops, func() { proc.Stop(noop.cmd) })

	servers := []*target{noop}
	lgs := []string{"langgate=" + *lgBin}
	lgs = append(lgs, extra...)
	// One issuer, in this process, signs every token; each langgate
	// fetches its keys once at start.
	issuer, err := devissuer.Start(devissuer.Options{Algorithm: jose.EdDSA}) // quick to sign 100k tokens
	if err != nil {
		return err
	}
	stops = append(stops, func() { _ = issuer.Close() })
	// The example policy, with a token cache that holds every user.
	example, err := os.ReadFile(filepath.Join(root, "examples/langgraph/langgate.yaml"))
	if err != nil {
		return err
	}
	cfgFile := filepath.Join(tmp, "langgate.yaml")
	cfg := strings.Replace(string(example), "\nauthenticate:\n",
		fmt.Sprintf("\nauthenticate:\n  cache: {max_entries: %d, max_bytes: 4GiB}\n", max(*users, 1000)), 1)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return err
	}
	for _, spec := range lgs {
		name, bin, ok := strings.Cut(spec, "=")
		if !ok {
			return fmt.Errorf("-also %q: want NAME=BINARY", spec)
		}
		t, err := startLanggate(name, bin, env, cfgFile, issuer.URL)
		if err != nil {
			return err
		}
		stops = append(stops, func() { proc.Stop(t.cmd) })
		servers = append(servers, t)
	}

	// A typical access token: a name, an email, scopes (about 700 bytes).
	tokens := make([]string, *users)
	for i := range tokens {
		sub := fmt.Sprintf("user-%03d", i)
		if tokens[i], err = issuer.Token(sub, 2*time.Hour, map[string]any{
			"name": "Bench User " + sub, "email": sub + "@example.com", "scope": "openid profile threads:read threads:write store",
		}); err != nil {
			return err
		}
	}
	reqs, allow, err := corpus(tokens)
	if err != nil {
		return err
	}
	var ghzData string
	if *ghzBin != "" {
		if ghzData, err = ghzCorpus(tmp, reqs); err != nil {
			return err
		}
	}
	rss := map[string]int64{}
	for _, s := range servers {
		cs, err := load.Dial(s.addr, *conns)
		if err != nil {
			return err
		}
		stops = append(stops, func() {
			for _, c := range cs {
				_ = c.Close()
			}
		})
		a := allow
		if s == noop {
			a = make([]bool, len(allow))
			for i := range a {
				a[i] = true
			}
		}
		s.send = load.GRPC(cs, reqs, a)
		// Every request answers as expected (and every token is cached)
		// before anything is measured.
		if err := warm(s.send, len(reqs)); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		if s.admin != "" {
			rss[s.name] = proc.RSS(s.cmd.Process.Pid)
			fmt.Fprintf(os.Stderr, "%s: %d users cached, RSS %.1f MiB\n", s.name, *users, float64(rss[s.name])/(1<<20))
			if *heap != "" && s.name == "langgate" {
				b, err := proc.Fetch(s.admin + "/debug/pprof/heap?gc=1")
				if err != nil {
					return err
				}
				if err := os.WriteFile(*heap, []byte(b), 0o600); err != nil {
					return err
				}
				fmt.Fprintf(os.Stderr, "%s: after a GC, RSS %.1f MiB\n", s.name, float64(proc.RSS(s.cmd.Process.Pid))/(1<<20))
			}
		}
		if r := load.Closed(context.Background(), s.send, 4, time.Second); r.Errors > 0 {
			return fmt.Errorf("%s: %d errors of %d in the warm-up", s.name, r.Errors, r.Sent)
		}
	}

	ctx := context.Background()
	maxRuns, fixedRuns := map[string][]load.Result{}, map[string][]load.Result{}
	ghzRuns := map[string][]load.Result{}
	cpu := map[string]time.Duration{}
	var rate float64
	var rates []float64
	for round := 1; round <= *rounds; round++ {
		for _, s := range servers {
			prof := make(chan error, 2)
			n := 0
			if round == 1 && s.admin != "" && s.name == "langgate" {
				if *profile != "" {
					n++
					go func() { prof <- proc.SaveProfile(s.admin, "profile", *profile, *duration-time.Second) }()
				}
				if *allocs != "" {
					n++
					go func() { prof <- proc.SaveProfile(s.admin, "allocs", *allocs, *duration-time.Second) }()
				}
			}
			before := proc.CPUTime(s.cmd.Process.Pid)
			r := load.Closed(ctx, s.send, *workers, *duration)
			for range n {
				if err := <-prof; err != nil {
					return err
				}
			}
			if round == 1 {
				cpu[s.name] = (proc.CPUTime(s.cmd.Process.Pid) - before) / time.Duration(max(r.Sent, 1))
			}
			fmt.Fprintf(os.Stderr, "round %d %-10s max:    %v\n", round, s.name, r)
			maxRuns[s.name] = append(maxRuns[s.name], r)
		}
		// Half of this round's noop maximum: a machine that drifts
		// between rounds does not turn a later round's fixed rate into an
		// overload.
		rate = maxRuns[noop.name][round-1].Throughput() / 2
		rates = append(rates, rate)
		for _, s := range servers {
			r := load.Fixed(ctx, s.send, rate, 4**workers, *duration)
			fmt.Fprintf(os.Stderr, "round %d %-10s %5.0f/s: %v\n", round, s.name, rate, r)
			fixedRuns[s.name] = append(fixedRuns[s.name], r)
		}
		if *ghzBin == "" {
			continue
		}
		for _, s := range servers {
			r, err := ghz(*ghzBin, s.addr, ghzData, *workers, *conns, *duration)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			fmt.Fprintf(os.Stderr, "round %d %-10s ghz:    %.0f req/s, %d errors of %d\n", round, s.name, r.Throughput(), r.Errors, r.Sent)
			ghzRuns[s.name] = append(ghzRuns[s.name], r)
		}
	}

	gmp := "Go's default"
	if *procs > 0 {
		gmp = fmt.Sprint(*procs)
	}
	fmt.Printf("%d requests (%d users), %d in flight over %d gRPC connections, %v per run, %d rounds (medians), GOMAXPROCS %s\n\n",
		len(reqs), *users, *workers, *conns, *duration, *rounds, gmp)
	fmt.Println("At maximum (closed loop):")
	fmt.Println()
	fmt.Println("| server | Checks/s | × noop | p50 | p99 | p99 × noop | CPU/Check | errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, s := range servers {
		rs := maxRuns[s.name]
		fmt.Printf("| %s | %.0f | %.2f | %s | %s | %.2f | %.1f µs | %d |\n", s.name, load.Median(rs, load.Result.Throughput),
			load.Ratio(maxRuns[s.name], maxRuns[noop.name], load.Result.Throughput), ms(load.Median(rs, load.Quantile(0.5))), ms(load.Median(rs, load.Quantile(0.99))),
			load.Ratio(maxRuns[s.name], maxRuns[noop.name], load.Quantile(0.99)), float64(cpu[s.name])/1e3, errs(rs))
	}
	slices.Sort(rates)
	fmt.Printf("\nAt a fixed rate, half of the round's noop maximum (median %.0f Checks/s; latency from each request's scheduled time):\n\n", rates[len(rates)/2])
	fmt.Println("| server | served/s | p50 | p99 | p99.9 | p50 × noop | p99 × noop | p99.9 × noop | errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, s := range servers {
		rs := fixedRuns[s.name]
		fmt.Printf("| %s | %.0f | %s | %s | %s | %.2f | %.2f | %.2f | %d |\n", s.name, load.Median(rs, load.Result.Throughput),
			ms(load.Median(rs, load.Quantile(0.5))), ms(load.Median(rs, load.Quantile(0.99))), ms(load.Median(rs, load.Quantile(0.999))),
			load.Ratio(rs, fixedRuns[noop.name], load.Quantile(0.5)), load.Ratio(rs, fixedRuns[noop.name], load.Quantile(0.99)),
			load.Ratio(rs, fixedRuns[noop.name], load.Quantile(0.999)), errs(rs))
	}
	if *ghzBin != "" {
		fmt.Printf("\nAt maximum with ghz (%d workers, %d connections, the same %d requests round robin):\n\n", *workers, *conns, len(reqs))
		fmt.Println("| server | Checks/s | × noop | errors |")
		fmt.Println("|---|---|---|---|")
		for _, s := range servers {
			rs := ghzRuns[s.name]
			fmt.Printf("| %s | %.0f | %.2f | %d |\n", s.name, load.Median(rs, load.Result.Throughput), load.Ratio(rs, ghzRuns[noop.name], load.Result.Throughput), errs(rs))
		}
	}
	if *jsonOut == "" {
		return nil
	}
	out := map[string]any{"users": *users, "requests": len(reqs), "fixed_rate": rates[len(rates)/2]}
	for _, s := range servers {
		f := map[string]float64{
			"max_rps":   load.Median(maxRuns[s.name], load.Result.Throughput),
			"max_ratio": load.Ratio(maxRuns[s.name], maxRuns[noop.name], load.Result.Throughput),
			"p50_ms":    load.Median(fixedRuns[s.name], load.Quantile(0.5)) / 1e6,
			"p99_ms":    load.Median(fixedRuns[s.name], load.Quantile(0.99)) / 1e6,
			"p999_ms":   load.Median(fixedRuns[s.name], load.Quantile(0.999)) / 1e6,
			"errors":    float64(errs(maxRuns[s.name]) + errs(fixedRuns[s.name]) + errs(ghzRuns[s.name])),
		}
		if r, ok := rss[s.name]; ok {
			f["rss_mib"] = float64(r) / (1 << 20)
		}
		if *ghzBin != "" {
			f["ghz_rps"] = load.Median(ghzRuns[s.name], load.Result.Throughput)
			f["ghz_ratio"] = load.Ratio(ghzRuns[s.name], ghzRuns[noop.name], load.Result.Throughput)
		}
		out[s.name] = f
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(*jsonOut, b, 0o600)
}

// ghzCorpus writes the requests as the JSON array ghz sends round robin.
func ghzCorpus(dir string, reqs [][]byte) (string, error) {
	msgs := make([]json.RawMessage, len(reqs))
	for i, b := range reqs {
		var req authv3.CheckRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			return "", err
		}
		j, err := protojson.Marshal(&req)
		if err != nil {
			return "", err
		}
		msgs[i] = j
	}
	b, err := json.Marshal(msgs)
	if err != nil {
		return "", err
	}
	file := filepath.Join(dir, "ghz-data.json")
	return file, os.WriteFile(file, b, 0o600)
}

// ghz drives addr at its maximum with ghz for d and returns what it
// reports (its own count of requests and of errors; its latencies are not
// used).
func ghz(bin, addr, data string, workers, conns int, d time.Duration) (load.Result, error) {
	cmd := exec.Command(bin, "--insecure", "--call", "envoy.service.auth.v3.Authorization/Check",
		"--data-file", data, "-c", fmt.Sprint(workers), "--connections", fmt.Sprint(conns),
		"-z", d.String(), "--format", "json", addr)
	cmd.Stderr = os.Stderr
	b, err := cmd.Output()
	if err != nil {
		return load.Result{}, fmt.Errorf("ghz: %w", err)
	}
	var rep struct {
		Count        int            `json:"count"`
		Total        time.Duration  `json:"total"`
		ErrorsByType map[string]int `json:"errorDistribution"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return load.Result{}, fmt.Errorf("ghz's report: %w", err)
	}
	r := load.Result{Sent: rep.Count, Elapsed: rep.Total}
	for msg, n := range rep.ErrorsByType {
		// The calls in flight when -z runs out, which ghz ends by
		// cancelling them and closing its connections, are not errors.
		if !strings.Contains(msg, "code = Canceled") && !strings.Contains(msg, "use of closed network connection") {
			r.Errors += n
		}
	}
	return r, nil
}

// startLanggate runs `langgate serve` with cfgFile (the LangGraph example
// policy, what `--dev` embeds, with a larger token cache) on free loopback
// ports, trusting issuer.
func startLanggate(name, bin string, env []string, cfgFile, issuer string) (*target, error) {
	grpcAddr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	adminAddr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--config", cfgFile,
		"--grpc-addr", grpcAddr, "--admin-addr", adminAddr, "--log-level", "warn", "--pprof", "--watch-interval", "0")
	cmd.Env = append(slices.Clip(env), "OIDC_ISSUER="+issuer, "OIDC_AUDIENCE="+devissuer.DefaultAudience)
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	procgroup.Prepare(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w (make build)", bin, err)
	}
	t := &target{name: name, addr: grpcAddr, cmd: cmd, admin: "http://" + adminAddr}
	if err := proc.WaitOK(t.admin + "/readyz"); err != nil {
		proc.Stop(cmd)
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return t, nil
}

// corpus builds three CheckRequests per token, as Envoy sends them with
// the shipped front-proxy.yaml (pack_as_bytes, the context extension that
// selects the policy), encoded once; allow says which ones langgate allows.
func corpus(tokens []string) ([][]byte, []bool, error) {
	var reqs [][]byte
	var allow []bool
	now := timestamppb.New(time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC))
	for u, tok := range tokens {
		sub := fmt.Sprintf("user-%03d", u)
		shapes := []struct {
			method, path string
			body         string
		}{
			{"GET", fmt.Sprintf("/threads/1ef5c0de-1b2c-6d3e-8f90-%012x", u), ""},
			{"POST", "/threads/search", `{"metadata":{"project":"bench"},"status":"idle","limit":10,"offset":0}`},
			{"PUT", "/store/items", fmt.Sprintf(`{"namespace":[%q,"notes"],"key":"note-%d","value":{"text":"hello"}}`, sub, u)},
		}
		for i, sh := range shapes {
			h := map[string]string{
				":authority":                     "langgraph.example.com",
				":method":                        sh.method,
				":path":                          sh.path,
				":scheme":                        "http",
				"accept":                         "application/json",
				"authorization":                  "Bearer " + tok,
				"user-agent":                     "langgraph-sdk-py/0.4.14",
				"x-forwarded-proto":              "http",
				"x-request-id":                   fmt.Sprintf("5f0c7a0e-3b8d-4a52-9f1e-%012x", u*3+i),
				"x-envoy-expected-rq-timeout-ms": "15000",
			}
			httpReq := &authv3.AttributeContext_HttpRequest{
				Id: h["x-request-id"], Method: sh.method, Headers: h, Path: sh.path,
				Host: h[":authority"], Scheme: "http", Protocol: "HTTP/1.1",
			}
			if sh.body != "" {
				h["content-type"] = "application/json"
				h["content-length"] = fmt.Sprint(len(sh.body))
				httpReq.RawBody = []byte(sh.body)
				httpReq.Size = int64(len(sh.body))
			}
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Source:               &authv3.AttributeContext_Peer{Address: sockAddr("127.0.0.1", uint32(40000+u))},
				Destination:          &authv3.AttributeContext_Peer{Address: sockAddr("127.0.0.1", 10000)},
				Request:              &authv3.AttributeContext_Request{Time: now, Http: httpReq},
				ContextExtensions:    map[string]string{"policy": "langgraph"},
				MetadataContext:      &corev3.Metadata{},
				RouteMetadataContext: &corev3.Metadata{},
			}}
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
			if err != nil {
				return nil, nil, err
			}
			reqs = append(reqs, b)
			allow = append(allow, true)
		}
	}
	return reqs, allow, nil
}

// warm sends every request of the corpus once, from a few goroutines.
func warm(send load.Send, n int) error {
	const workers = 8
	errc := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := w; i < n; i += workers {
				if !send(uint64(i)) { //nolint:gosec // i >= 0
					errc <- fmt.Errorf("request %d of the corpus was not answered as expected", i)
					return
				}
			}
			errc <- nil
		}()
	}
	var err error
	for range workers {
		err = errors.Join(err, <-errc)
	}
	return err
}

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func errs(rs []load.Result) int {
	n := 0
	for _, r := range rs {
		n += r.Errors
	}
	return n
}

func ms(ns float64) string { return fmt.Sprintf("%.2f ms", ns/1e6) }
