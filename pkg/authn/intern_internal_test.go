package authn

import (
	"encoding/json"
	"testing"
)

// TestPermissionsInterned: users with the same permissions share one list
// and one JSON; lists that only concatenate alike stay apart; a full
// table interns nothing new and loses nothing.
func TestPermissionsInterned(t *testing.T) {
	enc := func(v any) (string, error) { b, err := json.Marshal(v); return string(b), err }
	a := NewUser("a", "", []string{"read", "write"}, nil)
	b := NewUser("b", "", []string{"read", "write"}, nil)
	if &a.Permissions[0] != &b.Permissions[0] {
		t.Errorf("two users with [read write] hold two lists")
	}
	_, pa, _ := a.HeaderJSON(enc)
	_, pb, _ := b.HeaderJSON(enc)
	if pa != `["read","write"]` || pb != pa || a.perms != b.perms {
		t.Errorf("permissions JSON %s and %s, sets %p %p: want one shared", pa, pb, a.perms, b.perms)
	}
	tab := newPermissionTable(2)
	x, y := tab.intern([]string{"ab", "c"}), tab.intern([]string{"a", "bc"})
	if x == nil || y == nil || x == y {
		t.Errorf("[ab c] and [a bc] interned as %p and %p: want two sets", x, y)
	}
	if z := tab.intern([]string{"new"}); z != nil {
		t.Errorf("a full table interned a third list")
	}
	if again := tab.intern([]string{"ab", "c"}); again != x {
		t.Errorf("a full table lost [ab c]")
	}
	u := NewUser("c", "", []string{"only", "mine", "x"}, nil)
	if len(u.Permissions) != 3 || u.Permissions[2] != "x" {
		t.Errorf("permissions %v", u.Permissions)
	}
}
