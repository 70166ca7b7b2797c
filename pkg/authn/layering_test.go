package authn

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAuthenticationBelowAuthorization: authentication depends on no part
// of authorization or of the decision pipeline, only on the configuration
// and the expression language (authorization imports authentication for
// its User, never the reverse).
func TestAuthenticationBelowAuthorization(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var ours []string
	for _, p := range strings.Fields(string(out)) {
		if strings.HasPrefix(p, "github.com/langgate/langgate/") {
			ours = append(ours, strings.TrimPrefix(p, "github.com/langgate/langgate/"))
		}
	}
	want := map[string]bool{"pkg/config": true, "pkg/expr": true, "pkg/authn": true}
	for _, p := range ours {
		if !want[p] {
			t.Errorf("pkg/authn depends on %s", p)
		}
	}
	if len(ours) != len(want) {
		t.Errorf("langgate packages in pkg/authn's dependencies: %v, want exactly %v", ours, want)
	}
}
