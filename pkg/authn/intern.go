package authn

import (
	"strconv"
	"strings"
	"sync"
)

// maxPermissionSets bounds the permission lists interned: beyond it a
// user keeps a list of its own (correct, only larger), so tokens with
// ever new scopes cannot grow the table.
const maxPermissionSets = 4096

// permissionSets interns users' permission lists: most users of an
// identity provider share a handful of scope sets, and a list of five
// scopes is six objects and about 170 bytes per cached user (plus its
// JSON), which the collector would otherwise mark again every cycle.
var permissionSets = newPermissionTable(maxPermissionSets)

// permissionTable is a bounded table of interned permission lists.
type permissionTable struct {
	mu  sync.Mutex
	m   map[string]*permissionSet
	max int
}

func newPermissionTable(maxSets int) *permissionTable {
	return &permissionTable{m: map[string]*permissionSet{}, max: maxSets}
}

// permissionSet is one interned list and its JSON, shared by every user
// holding it; neither is ever modified.
type permissionSet struct {
	list     []string
	jsonOnce sync.Once
	json     string
	jsonErr  error
}

// internPermissions returns the interned set of perms (nil when the table
// is full and perms is not in it).
func internPermissions(perms []string) *permissionSet { return permissionSets.intern(perms) }

func (t *permissionTable) intern(perms []string) *permissionSet {
	var b strings.Builder
	for _, p := range perms {
		// Length-prefixed: no two lists share a key.
		b.WriteString(strconv.Itoa(len(p)))
		b.WriteByte(':')
		b.WriteString(p)
	}
	key := b.String()
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.m[key]; ok {
		return s
	}
	if len(t.m) >= t.max {
		return nil
	}
	s := &permissionSet{list: perms}
	t.m[key] = s
	return s
}

// encoded is the set's JSON, encoded once by enc.
func (s *permissionSet) encoded(enc func(any) (string, error)) (string, error) {
	s.jsonOnce.Do(func() { s.json, s.jsonErr = enc(s.list) })
	return s.json, s.jsonErr
}
