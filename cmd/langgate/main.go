// Command langgate is the Envoy external authorization service that brings
// LangGraph's custom auth to any Envoy filter chain.
//
//	langgate serve --config FILE [--grpc-addr :9001] [--admin-addr :9090]
//	langgate serve --dev
//	langgate validate --config FILE
//	langgate check --config FILE [--token JWT | --claims JSON] METHOD PATH
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signalContext()
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// signalContext ends on SIGINT or SIGTERM: serve then shuts down gracefully.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr)
	case "validate":
		err = validate(args[1:], stdout, stderr)
	case "check":
		err = check(ctx, args[1:], stdout, stderr)
	case "test":
		err = policyTestCmd(args[1:], stdout, stderr)
	case "hash-key":
		err = hashKey(args[1:], os.Stdin, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "langgate", version())
		return exitOK
	case "help", "-h", "--help":
		usage(stdout)
		return exitOK
	default:
		fmt.Fprintf(stderr, "langgate: unknown command %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errDenied), errors.Is(err, errTestsFailed):
		return exitFail
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, "langgate:", err)
		return exitUsage
	default:
		fmt.Fprintln(stderr, "langgate:", err)
		return exitFail
	}
}

// usageError marks an error in the command line itself.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usage(w io.Writer) {
	fmt.Fprint(w, `langgate — LangGraph custom auth for Envoy (ext_authz v3)

Usage:
  langgate serve --config FILE [--grpc-addr :9001] [--admin-addr :9090]
  langgate serve --dev          built-in dev OIDC issuer + the LangGraph example policy
  langgate validate --config FILE
  langgate check --config FILE [--token JWT | --claims JSON] METHOD PATH [--body JSON]
                 [--header K=V]... [--context K=V]... [--output text|json]
  langgate test [-v] [--coverage] FILE_test.yaml|DIR...   run policy tests (docs/policy.md)
  langgate hash-key [--generate]   hash an API key from stdin (or make a new one) for an api_keys file
  langgate version

Run "langgate COMMAND -h" for a command's flags.
`)
}
