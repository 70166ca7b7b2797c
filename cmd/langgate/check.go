package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/langgate/langgate/pkg/decision"
)

// multiFlag collects repeated K=V flags.
type multiFlag map[string]string

func (m multiFlag) String() string { return "" }

func (m multiFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("want K=V, got %q", v)
	}
	m[k] = val
	return nil
}

// errDenied makes `check` exit 1 after printing a denial.
var errDenied = fmt.Errorf("denied")

// check decides one request offline and explains every step.
func check(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file")
	token := fs.String("token", "", "a bearer token to verify (fetches the issuer's keys); without --token or --claims the credential is whatever --header carries (an API key, a cookie)")
	claims := fs.String("claims", "", "claims as JSON, used WITHOUT any signature verification")
	body := fs.String("body", "", "the request body (JSON)")
	output := fs.String("output", "text", "text or json")
	headers, context_ := multiFlag{}, multiFlag{}
	fs.Var(headers, "header", "a request header K=V (repeatable)")
	fs.Var(context_, "context", "an Envoy context extension K=V (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: langgate check --config FILE [--token JWT | --claims JSON] METHOD PATH [--body JSON] [--header K=V]... [--context K=V]... [--output text|json]")
		fs.PrintDefaults()
	}
	// Flags may come before or after METHOD and PATH.
	var pos []string
	for rest := args; ; {
		if err := fs.Parse(rest); err != nil {
			return usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	switch {
	case *path == "":
		return usageError{"check: --config is required"}
	case len(pos) != 2:
		return usageError{"check: METHOD and PATH are required, e.g. langgate check --config c.yaml --claims '{\"sub\":\"alice\"}' GET /threads/1"}
	case *token != "" && *claims != "":
		return usageError{"check: give --token or --claims, not both (or neither, to use the credential in --header)"}
	case *output != "text" && *output != "json":
		return usageError{"check: --output must be text or json"}
	}
	eng, err := buildFromFile(*path, os.LookupEnv)
	if err != nil {
		return err
	}
	req := &decision.Request{Method: strings.ToUpper(pos[0]), Path: pos[1], Headers: map[string]string{}, Context: context_}
	for k, v := range headers {
		req.Headers[strings.ToLower(k)] = v
	}
	if *body != "" {
		req.Body = []byte(*body)
		req.Headers["content-length"] = fmt.Sprint(len(*body))
		if _, ok := req.Headers["content-type"]; !ok {
			// --body is JSON, as the SDKs send it.
			req.Headers["content-type"] = "application/json"
		}
	}
	opts := decision.DecideOptions{Trace: &decision.Trace{}}
	if *claims != "" {
		if err := json.Unmarshal([]byte(*claims), &opts.Claims); err != nil || opts.Claims == nil {
			return usageError{fmt.Sprintf("check: --claims must be a JSON object: %v", err)}
		}
	} else {
		if *token != "" {
			req.Headers["authorization"] = "Bearer " + *token
		}
		// Verify for real: the issuers' keys are fetched first.
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		eng.Start(cctx)
		for !eng.Ready() {
			if cctx.Err() != nil {
				return fmt.Errorf("check: the issuers' keys could not be fetched within 15s")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	d := eng.DecideWith(ctx, req, opts)
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		out := struct {
			Request          string `json:"request"`
			SignatureSkipped bool   `json:"signature_verification_skipped"`
			*decision.Trace
		}{req.Method + " " + req.Path, *claims != "", opts.Trace}
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		writeTrace(stdout, req, opts.Trace, *claims != "")
	}
	if !d.Allow() {
		return errDenied
	}
	return nil
}

func writeTrace(w io.Writer, req *decision.Request, t *decision.Trace, claims bool) {
	line := func(k, format string, args ...any) { fmt.Fprintf(w, "%-10s %s\n", k+":", fmt.Sprintf(format, args...)) }
	line("request", "%s %s", req.Method, req.Path)
	if t.Policy != "" {
		line("policy", "%s (selected by %s)", t.Policy, t.PolicyWhy)
	}
	if t.Path != "" {
		line("path", "%s", t.Path)
		if t.Route == "" {
			line("route", "none")
		} else {
			line("route", "%s", t.Route)
		}
	}
	if t.Identity != "" {
		how := "credential verified"
		if claims {
			how = "from --claims: SIGNATURE NOT VERIFIED"
		}
		line("identity", "%s (%s)", t.Identity, how)
	}
	for i, ev := range t.Events {
		if ev.Optional {
			line(fmt.Sprintf("event %d", i+1), "%s (optional: the server fires it only in some cases)", ev.Event)
		} else {
			line(fmt.Sprintf("event %d", i+1), "%s", ev.Event)
		}
		if ev.ValueError != "" {
			fmt.Fprintf(w, "  value:   unavailable: %s\n", ev.ValueError)
		} else {
			fmt.Fprintf(w, "  value:   %s\n", compactJSON(ev.Value))
		}
		if ev.Handler != "" {
			fmt.Fprintf(w, "  handler: %q, %s\n", ev.Handler, ev.Why)
		} else {
			fmt.Fprintf(w, "  handler: none, %s\n", ev.Why)
		}
		for _, s := range ev.Steps {
			if s.Error != "" {
				fmt.Fprintf(w, "  %s: %s => error: %s\n", s.Part, s.Expr, s.Error)
			} else {
				fmt.Fprintf(w, "  %s: %s => %s\n", s.Part, s.Expr, compactJSON(s.Result))
			}
		}
	}
	if t.Outcome == string(decision.Allowed) || t.Outcome == string(decision.Public) {
		line("result", "ALLOW (%s)", t.Outcome)
	} else {
		line("result", "DENY %d %s", t.Status, t.Body)
	}
	line("reason", "%s", t.Reason)
	for _, s := range t.Shadow {
		verdict := "would allow"
		if !s.Allowed {
			verdict = fmt.Sprintf("would deny %d", s.Status)
		}
		line("shadow", "%s: handler %q %s (%s); not enforced", s.Event, s.Handler, verdict, s.Reason)
	}
	if s := t.ShadowPolicy; s != nil {
		line("shadow", "policy %q: %s, %s %d (%s); not enforced", s.Policy, strings.ReplaceAll(s.Verdict, "_", " "), s.Outcome, s.Status, s.Reason)
	}
	if len(t.Headers) > 0 {
		fmt.Fprintln(w, "headers:")
		hs := append([]decision.Header(nil), t.Headers...)
		sort.Slice(hs, func(i, j int) bool { return hs[i].Name < hs[j].Name })
		for _, h := range hs {
			fmt.Fprintf(w, "  %s: %s\n", h.Name, h.Value)
		}
	}
	for _, h := range t.ResponseHeaders {
		if h.Name != "content-type" {
			fmt.Fprintf(w, "  %s: %s\n", h.Name, h.Value)
		}
	}
	if len(t.RemoveHeaders) > 0 {
		rm := append([]string(nil), t.RemoveHeaders...)
		sort.Strings(rm)
		line("removed", "%s", strings.Join(rm, ", "))
	}
}

func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
