package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/decision"
)

// validate loads and compiles a configuration without serving it and
// reports every problem at once with file:line:column.
func validate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file to check")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{"validate: --config is required"}
	}
	eng, err := buildFromFile(*path, os.LookupEnv)
	if err != nil {
		return err
	}
	warnings := 0
	for _, p := range eng.Policies() {
		for _, w := range p.Handlers.Lint(p.Vocabulary) {
			warnings++
			where := &config.Error{File: *path, Pos: w.Pos, Msg: "warning: " + w.Msg}
			if len(eng.Policies()) > 1 {
				where.Msg = fmt.Sprintf("warning: policy %q: %s", p.Name, w.Msg)
			}
			fmt.Fprintln(stdout, where.Error())
		}
	}
	for _, p := range eng.Policies() {
		if p.ShadowOf == "" {
			printBodyRoutes(stdout, p)
		}
	}
	fmt.Fprintf(stdout, "%s: ok (%d policies, %d warnings)\n", *path, len(eng.Policies()), warnings)
	return nil
}

// printBodyRoutes tells the operator on which routes the proxy must send
// the request body (Envoy's with_request_body): those where a rule of the
// policy, or of its shadow, reads it. Buffering elsewhere only adds
// latency, memory and 413s for large bodies.
func printBodyRoutes(w io.Writer, p *decision.Policy) {
	rs := p.BodyRoutes()
	if len(rs) == 0 {
		fmt.Fprintf(w, "policy %q reads no request body: the proxy need not send one\n", p.Name)
		return
	}
	noun := "routes"
	if len(rs) == 1 {
		noun = "route"
	}
	fmt.Fprintf(w, "policy %q reads the request body on %d %s; send the body (with_request_body) there, on no other route:\n", p.Name, len(rs), noun)
	for _, r := range rs {
		fmt.Fprintf(w, "  %-6s %s\n", r.Method, r.Pattern)
	}
}

// buildFromFile loads and compiles a configuration for the offline
// commands (validate, check, test): nothing is started, nothing is
// logged. lookup resolves its ${NAME} references (os.LookupEnv).
func buildFromFile(path string, lookup func(string) (string, bool)) (*decision.Engine, error) {
	f, err := config.LoadFileWith(path, lookup)
	if err != nil {
		return nil, err
	}
	return decision.Build(f, decision.Options{Logger: slog.New(slog.DiscardHandler)})
}
