package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"

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
	f, err := config.LoadFile(*path)
	if err != nil {
		return err
	}
	if _, err := decision.Build(f, decision.Options{Logger: slog.New(slog.DiscardHandler)}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return nil
}
