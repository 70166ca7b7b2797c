package authn

import (
	"errors"
	"sync"
)

// User is the authenticated caller: who the credential names, what it may
// do, and the verified claims it was built from. Authorization reads it;
// it never depends on authorization.
type User struct {
	Identity        string
	DisplayName     string
	IsAuthenticated bool
	Permissions     []string
	// Claims are the verified token claims the user was built from.
	Claims map[string]any

	attrs map[string]any // the user as expressions see it, built once

	// JSON forms for the upstream headers, encoded once per user.
	jsonOnce  sync.Once
	userJSON  string
	permsJSON string
	jsonErr   error
}

// HeaderJSON returns the user object and the permissions as JSON, encoded
// once per user by enc (which must escape non-ASCII), so a cached user
// costs no encoding per request.
func (u *User) HeaderJSON(enc func(any) (string, error)) (user, perms string, err error) {
	u.jsonOnce.Do(func() {
		var e1, e2 error
		u.userJSON, e1 = enc(map[string]any{
			"identity":         u.Identity,
			"display_name":     u.DisplayName,
			"is_authenticated": u.IsAuthenticated,
			"permissions":      u.Permissions,
		})
		u.permsJSON, e2 = enc(u.Permissions)
		u.jsonErr = errors.Join(e1, e2)
	})
	return u.userJSON, u.permsJSON, u.jsonErr
}

// NewUser builds a user and its CEL view once, so that a cached user costs
// nothing to hand to handlers again.
func NewUser(identity, displayName string, permissions []string, claims map[string]any) *User {
	if displayName == "" {
		displayName = identity
	}
	if permissions == nil {
		permissions = []string{}
	}
	u := &User{Identity: identity, DisplayName: displayName, IsAuthenticated: true, Permissions: permissions, Claims: claims}
	perms := make([]any, len(permissions))
	for i, p := range permissions {
		perms[i] = p
	}
	u.attrs = map[string]any{
		"identity":         identity,
		"display_name":     displayName,
		"is_authenticated": true,
		"permissions":      perms,
	}
	return u
}

// Attributes is the user as expressions see it (identity, display_name,
// is_authenticated, permissions), built once per user. Callers must not
// modify it.
func (u *User) Attributes() map[string]any { return u.attrs }
