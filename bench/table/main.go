// Command table prints the four figures of `make bench` (docs/performance.md)
// from the JSON that bench/checkload and bench/envoyoverhead wrote in one
// run of it: memory per cached user, the tail at 100,000 users, gRPC
// throughput against a server that decides nothing (with the project's
// load generator and with ghz), and Envoy → langgate against Envoy with no
// auth filter. Each row shows today's figure, the goal and whether it is
// met; the tables after it show what the rows are made of.
//
//	go run ./bench/table DIR   (DIR holds users-200.json, users-10000.json,
//	                            users-100000.json and envoy.json)
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// server is one server's figures in a checkload run (see its -json).
type server struct {
	MaxRPS   float64 `json:"max_rps"`
	MaxRatio float64 `json:"max_ratio"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	P999     float64 `json:"p999_ms"`
	RSS      float64 `json:"rss_mib"`
	GHZRPS   float64 `json:"ghz_rps"`
	GHZRatio float64 `json:"ghz_ratio"`
	Errors   float64 `json:"errors"`
}

// checkRun is one checkload run.
type checkRun struct {
	Users    int     `json:"users"`
	Rate     float64 `json:"fixed_rate"`
	Noop     server  `json:"noop"`
	Langgate server  `json:"langgate"`
	Requests int     `json:"requests"`
}

// envoyConfig is one configuration of an envoyoverhead run.
type envoyConfig struct {
	RPS        float64 `json:"rps"`
	RatioA     float64 `json:"ratio_a"`
	EnvoyUS    float64 `json:"envoy_us"`
	LanggateUS float64 `json:"langgate_us"`
	Errors     float64 `json:"errors"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: table DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "table:", err)
		os.Exit(1)
	}
}

func read(file string, v any) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

func run(dir string) error {
	var runs []checkRun
	for _, n := range []int{200, 10_000, 100_000} {
		var r checkRun
		if err := read(filepath.Join(dir, fmt.Sprintf("users-%d.json", n)), &r); err != nil {
			return err
		}
		runs = append(runs, r)
	}
	var envoy map[string]envoyConfig
	if err := read(filepath.Join(dir, "envoy.json"), &envoy); err != nil {
		return err
	}
	small, big := runs[0], runs[2]
	perUser := (big.Langgate.RSS - small.Langgate.RSS) * (1 << 20) / float64(big.Users-small.Users)
	tail := big.Langgate.P99 / small.Langgate.P99
	grpc, none := envoy["grpc"], envoy["none"]
	met := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "**no**"
	}
	fmt.Println("| figure | today | goal | met |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| RSS with %d distinct cached tokens | %.0f MiB (%.0f B per user over the %d-user run's %.0f MiB) | ≤ 96 MiB, under 1 KiB per user | %s |\n",
		big.Users, big.Langgate.RSS, perUser, small.Users, small.Langgate.RSS, met(big.Langgate.RSS <= 96))
	// The load generator's own tail grows with the corpus (it holds every
	// request): the noop's p99 grows too, so each p99 is also taken as a
	// multiple of its own run's noop.
	norm := (big.Langgate.P99 / big.Noop.P99) / (small.Langgate.P99 / small.Noop.P99)
	fmt.Printf("| p99 of Check at %d users, fixed rate | %.2f ms, %.2f× the p99 at %d users (%.2f ms); as multiples of each run's noop (%.2f× and %.2f×), %.2f× | ≤ 2× | %s raw, %s against the noop |\n",
		big.Users, big.Langgate.P99, tail, small.Users, small.Langgate.P99, big.Langgate.P99/big.Noop.P99, small.Langgate.P99/small.Noop.P99, norm, met(tail <= 2), met(norm <= 2))
	fmt.Printf("| gRPC Checks/s × noop, c=32, %d requests | %.2f× with bench/load, %.2f× with ghz | ≥ 1.0× on both | %s |\n",
		small.Requests, small.Langgate.MaxRatio, small.Langgate.GHZRatio, met(small.Langgate.MaxRatio >= 1 && small.Langgate.GHZRatio >= 1))
	fmt.Printf("| Envoy → langgate (gRPC) req/s × Envoy with no auth filter | %.2f× (Envoy %.0f µs per request, %.0f without the filter) | ≥ 0.6× | %s |\n",
		grpc.RatioA, grpc.EnvoyUS, none.EnvoyUS, met(grpc.RatioA >= 0.6))

	fmt.Println("\nLatency at a fixed rate of half the noop's maximum (each run's own noop beside it):")
	fmt.Println()
	fmt.Println("| users | rate | langgate p50 | p99 | p99.9 | noop p50 | p99 | p99.9 | langgate RSS | errors |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range runs {
		l, n := r.Langgate, r.Noop
		fmt.Printf("| %d | %.0f/s | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.2f ms | %.0f MiB | %.0f |\n",
			r.Users, r.Rate, l.P50, l.P99, l.P999, n.P50, n.P99, n.P999, l.RSS, l.Errors)
	}

	fmt.Println("\nEnvoy's share (bench/envoyoverhead -variants; CPU per request at maximum):")
	fmt.Println()
	fmt.Println("| configuration | req/s × (a) | Envoy CPU | langgate CPU | errors |")
	fmt.Println("|---|---|---|---|---|")
	for _, c := range []struct{ name, label string }{
		{"none", "(a) no auth filter"}, {"jwt", "(b) Envoy jwt_authn"}, {"grpc", "(c) ext_authz → langgate gRPC (shipped)"},
		{"http", "(d) ext_authz → langgate HTTP (shipped)"}, {"grpc-noop", "(e) ext_authz → noop gRPC"},
		{"google-grpc", "(f) (c) with google_grpc"}, {"grpc-nolog", "(g) (c) without the access log"},
		{"grpc-log1", "(h) (c), the log's nine ext_authz fields as one object"},
	} {
		e, ok := envoy[c.name]
		if !ok {
			continue
		}
		fmt.Printf("| %s | %.2f | %.0f µs | %.0f µs | %.0f |\n", c.label, e.RatioA, e.EnvoyUS, e.LanggateUS, e.Errors)
	}
	return nil
}
