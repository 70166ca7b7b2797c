package policy

import "testing"

// TestShadowSelection: a shadow applies where it would run if enforced:
// at its own level it takes the enforced handler's place; below a more
// specific enforced handler it never runs. Select never returns a shadow.
func TestShadowSelection(t *testing.T) {
	p := compile(t, `    - {on: "*", filters: {owner: user.identity}}
    - {on: threads}
    - {on: threads.delete, allow: "false", shadow: true}
    - {on: store, allow: "false", shadow: true}
    - {on: store, allow: "true"}
    - {on: "*", allow: "false", shadow: true}
`)
	for _, c := range []struct {
		res, act string
		enforced string
		shadow   string // "" for none
	}{
		{"threads", "delete", "threads", "threads.delete"},
		{"threads", "read", "threads", ""}, // the enforced threads handler is more specific than the shadow *
		{"store", "put", "store", "store"}, // same level: the shadow takes its place
		{"assistants", "read", "*", "*"},   // the global shadow replaces the global handler
		{"crons", "create", "*", "*"},
	} {
		h := p.Select(c.res, c.act)
		if h == nil || h.Key != c.enforced || h.Shadow {
			t.Errorf("%s:%s: Select = %v, want the enforced %q", c.res, c.act, h, c.enforced)
		}
		sh := p.SelectShadow(c.res, c.act)
		switch {
		case c.shadow == "" && sh != nil:
			t.Errorf("%s:%s: shadow %q applies, want none", c.res, c.act, sh.Key)
		case c.shadow != "" && (sh == nil || sh.Key != c.shadow || !sh.Shadow):
			t.Errorf("%s:%s: shadow %v, want %q", c.res, c.act, sh, c.shadow)
		}
	}
	// Without any shadow nothing applies.
	if sh := compile(t, "    - {on: \"*\"}\n").SelectShadow("threads", "read"); sh != nil {
		t.Fatalf("shadow %q without shadows", sh.Key)
	}
}
