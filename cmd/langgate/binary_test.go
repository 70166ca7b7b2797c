package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestShippedBinaryHasNoTestHooks builds langgate as it ships and reads
// its symbol table: the dev issuer's fault injection, counters and raw
// signer (devissuertest), its embedding-only API and the test helpers
// must not be linked in.
func TestShippedBinaryHasNoTestHooks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "langgate")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(goTool, "tool", "nm", bin).Output()
	if err != nil {
		t.Fatalf("go tool nm: %v", err)
	}
	syms := string(out)
	if !strings.Contains(syms, "pkg/devissuer.Start") {
		t.Fatal("the symbol table does not list the dev issuer at all: the check below would prove nothing")
	}
	for _, hook := range []string{
		"pkg/devissuer/devissuertest.",
		"internal/testengine.",
		"internal/testproc.",
		"devissuer.(*Issuer).SetFailure",
		"devissuer.(*Issuer).SetDelay",
		"devissuer.(*Issuer).SetJWKSCacheControl",
		"devissuer.(*Issuer).JWKSRequests",
		"devissuer.(*Issuer).IntrospectionRequests",
		"(*Issuer).faulty",
		"devissuer.SignRaw",
		"devissuer.(*Issuer).SetKeys",
		"devissuer.(*Issuer).OpaqueToken",
		"devissuer.(*Issuer).Revoke",
	} {
		if strings.Contains(syms, hook) {
			t.Errorf("the shipped binary links %s", hook)
		}
	}
}
