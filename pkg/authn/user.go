package authn

import (
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
)

// User is the authenticated caller: who the credential names, what it may
// do, and the verified claims it was built from. Authorization reads it;
// it never depends on authorization.
type User struct {
	Identity        string
	DisplayName     string
	IsAuthenticated bool
	Permissions     []string
	// Claims are the claims the user was built from, when they were given
	// as a map (API keys, introspection, `langgate check --claims`). A
	// token's user keeps its verified payload instead, a third of the
	// memory of the decoded map, and decodes it on first use: read claims
	// with ClaimsMap.
	Claims map[string]any
	// Fields are the extra fields of the user mapping (role, org, ...);
	// nil when it has none.
	Fields map[string]any

	// JSON forms for the upstream headers, encoded once per user (the
	// permissions' once per permission set).
	jsonOnce sync.Once
	userJSON string
	jsonErr  error

	perms      *permissionSet // Permissions (interned unless the table is full); nil when none
	rawClaims  []byte         // a token's verified payload (JSON), when Claims is nil
	claimsOnce sync.Once

	memo atomic.Pointer[memo] // see Memo; allocated on first use
}

// ClaimsMap returns the user's claims: Claims, or the token payload's,
// decoded on the first call and kept. Callers must not modify it.
func (u *User) ClaimsMap() map[string]any {
	if u.rawClaims == nil {
		return u.Claims
	}
	u.claimsOnce.Do(func() {
		var m map[string]any
		if json.Unmarshal(u.rawClaims, &m) == nil { // verified and decoded once already
			u.Claims = m
		}
	})
	return u.Claims
}

// compactClaims replaces a token user's decoded claims by the payload
// they were decoded from, once the user mapping has read them.
func (u *User) compactClaims(payload []byte) {
	u.rawClaims, u.Claims = payload, nil
}

// HeaderJSON returns the user object and the permissions as JSON, encoded
// once per user by enc (which must escape non-ASCII), so a cached user
// costs no encoding per request.
func (u *User) HeaderJSON(enc func(any) (string, error)) (user, perms string, err error) {
	u.jsonOnce.Do(func() {
		obj := make(map[string]any, 4+len(u.Fields))
		for k, v := range u.Fields {
			obj[k] = v
		}
		obj["identity"], obj["display_name"] = u.Identity, u.DisplayName
		obj["is_authenticated"], obj["permissions"] = u.IsAuthenticated, u.Permissions
		u.userJSON, u.jsonErr = enc(obj)
	})
	perms, err = "[]", u.jsonErr
	if u.perms != nil {
		var e2 error
		perms, e2 = u.perms.encoded(enc)
		err = errors.Join(err, e2)
	}
	return u.userJSON, perms, err
}

// NewUser builds a user.
func NewUser(identity, displayName string, permissions []string, claims map[string]any) *User {
	return NewUserWithFields(identity, displayName, permissions, claims, nil)
}

// NewUserWithFields is NewUser with the extra fields of a user mapping
// (which never replace the four standard ones). The permissions are
// interned: users with the same list share one (which nobody may modify),
// and the caller must not modify permissions after the call.
func NewUserWithFields(identity, displayName string, permissions []string, claims, fields map[string]any) *User {
	if displayName == "" {
		displayName = identity
	}
	if permissions == nil {
		permissions = []string{}
	}
	u := &User{Identity: identity, DisplayName: displayName, IsAuthenticated: true, Permissions: permissions, Claims: claims, Fields: fields}
	if len(permissions) > 0 {
		if u.perms = internPermissions(permissions); u.perms == nil {
			u.perms = &permissionSet{list: permissions} // the table is full: the user's own
		}
		u.Permissions = u.perms.list
	}
	return u
}

// StandardAttributes is the number of attributes every user has in
// expressions: identity, display_name, is_authenticated, permissions and
// is_studio_user.
const StandardAttributes = 5

// Attributes is the user as expressions see it (identity, display_name,
// is_authenticated, permissions, is_studio_user and the mapping's
// fields), as a new map on each call: expressions read the user's fields
// directly (policy's CEL value for it) and need the map only to iterate or
// compare it, so a cached user does not hold one.
func (u *User) Attributes() map[string]any {
	attrs := make(map[string]any, StandardAttributes+len(u.Fields))
	for k, v := range u.Fields {
		attrs[k] = v
	}
	perms := make([]any, len(u.Permissions))
	for i, p := range u.Permissions {
		perms[i] = p
	}
	attrs["identity"], attrs["display_name"] = u.Identity, u.DisplayName
	attrs["is_authenticated"], attrs["permissions"] = u.IsAuthenticated, perms
	attrs["is_studio_user"] = false // true only on a Studio request (authorize.studio)
	return attrs
}
