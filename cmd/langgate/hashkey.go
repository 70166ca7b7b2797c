package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/langgate/langgate/pkg/authn"
)

// hashKey prints the hash an api_keys file stores for a key: the key is
// read from stdin (never from the command line, where it would land in
// shell history and process listings), or generated with --generate.
func hashKey(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hash-key", flag.ContinueOnError)
	fs.SetOutput(stderr)
	generate := fs.Bool("generate", false, "generate a new random key; print the key, then its hash")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"hash-key: the key is read from stdin, not from arguments"}
	}
	if *generate {
		key, hash, err := authn.GenerateAPIKey()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "key:  %s\nhash: %s\n", key, hash)
		return nil
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 64<<10)).ReadString('\n')
	if err != nil && err != io.EOF {
		return fmt.Errorf("hash-key: reading stdin: %w", err)
	}
	key := strings.TrimRight(line, "\r\n")
	if key == "" {
		return usageError{"hash-key: give the key on stdin, e.g. printf %s \"$KEY\" | langgate hash-key"}
	}
	fmt.Fprintln(stdout, authn.HashAPIKey(key))
	return nil
}
