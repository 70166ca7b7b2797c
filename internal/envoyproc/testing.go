package envoyproc

import (
	"testing"
)

// StartT starts Envoy for a test: the binary from Find (the test fails,
// never skips, when it is missing), its files in a directory of the test's,
// stopped at cleanup, with its log and stdout in the test's output when the
// test failed.
func StartT(tb testing.TB, cfg *Config, opts Options) *Envoy {
	tb.Helper()
	bin, err := Find()
	if err != nil {
		tb.Fatal(err)
	}
	if opts.Bootstrap == nil {
		opts.Bootstrap = cfg.Bytes()
	}
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	e, err := Start(bin, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := e.Stop(); err != nil {
			tb.Error(err)
		}
		if tb.Failed() {
			tb.Logf("envoy.log (%s):\n%s", e.Dir, e.Log())
			tb.Logf("envoy stdout (access log):\n%s", e.Stdout())
		}
	})
	return e
}

// BinaryT is Find for a test: it fails the test when Envoy is missing.
func BinaryT(tb testing.TB) string {
	tb.Helper()
	bin, err := Find()
	if err != nil {
		tb.Fatal(err)
	}
	return bin
}
