package decision_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/langgate/langgate/examples/langgraph"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/decision"
)

// FuzzBuild: the whole configuration loader, from bytes to an engine —
// parse, ${ENV} expansion, validation, route tables, every CEL expression
// compiled — never panics, and what it refuses is a config.ErrorList (each
// with a file and a line), never another kind of error. Seeded with every
// shipped configuration.
func FuzzBuild(f *testing.F) {
	f.Add(langgraph.Policy)
	files, err := filepath.Glob("../../examples/policies/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	lookup := func(name string) (string, bool) {
		switch name {
		case "OIDC_ISSUER":
			return "https://idp.example.com", true
		case "OIDC_AUDIENCE":
			return "langgraph", true
		}
		return "", false
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse("fuzz.yaml", data, lookup)
		if err != nil {
			return
		}
		eng, err := decision.Build(cfg, decision.Options{})
		if err != nil {
			var list config.ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Fatalf("Build refused with %T, not a config.ErrorList: %v", err, err)
			}
			for _, e := range list {
				if e.File == "" {
					t.Fatalf("an error without its file: %v", e)
				}
			}
			return
		}
		if len(eng.Policies()) == 0 {
			t.Fatal("an engine without a policy")
		}
	})
}
