package policy

import (
	"reflect"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"

	"github.com/langgate/langgate/pkg/authn"
)

// userValue is the user as expressions read it: a CEL map over the
// authn.User itself. A field read (user.identity, has(user.role)) goes to
// the user's fields, so a cached user holds no map for CEL (the map it
// held was a third of its heap). The rarer operations (iteration,
// equality, conversion) build the map once for the call, through
// User.Attributes. A struct of one pointer: boxing it into a ref.Val
// allocates nothing.
type userValue struct{ u *authn.User }

var _ traits.Mapper = userValue{}

// Find returns the attribute named key.
func (v userValue) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return v.native().Find(key) // the map's own error for a non-string key
	}
	u := v.u
	switch k {
	case "identity":
		return types.String(u.Identity), true
	case "display_name":
		return types.String(u.DisplayName), true
	case "is_authenticated":
		return types.Bool(u.IsAuthenticated), true
	case "permissions":
		return types.NewStringList(types.DefaultTypeAdapter, u.Permissions), true
	case "is_studio_user":
		return types.False, true // a Studio request sees StudioView instead
	}
	if f, ok := u.Fields[string(k)]; ok {
		return types.DefaultTypeAdapter.NativeToValue(f), true
	}
	return nil, false
}

// Get returns the attribute named key, or CEL's no-such-key error.
func (v userValue) Get(key ref.Val) ref.Val {
	if val, ok := v.Find(key); ok {
		return val
	} else if val != nil {
		return val
	}
	return types.NewErr("no such key: %v", key)
}

// Contains reports whether the user has the attribute.
func (v userValue) Contains(key ref.Val) ref.Val {
	val, ok := v.Find(key)
	if !ok && types.IsError(val) {
		return val
	}
	return types.Bool(ok)
}

// Size is the number of attributes.
func (v userValue) Size() ref.Val { return types.Int(authn.StandardAttributes + len(v.u.Fields)) }

// Iterator, Equal, ConvertToNative, ConvertToType and Value act on the
// attributes as a map.
func (v userValue) Iterator() traits.Iterator { return v.native().Iterator() }

// Equal implements ref.Val.
func (v userValue) Equal(other ref.Val) ref.Val { return v.native().Equal(other) }

// ConvertToNative implements ref.Val.
func (v userValue) ConvertToNative(t reflect.Type) (any, error) {
	return v.native().ConvertToNative(t)
}

// ConvertToType implements ref.Val.
func (v userValue) ConvertToType(t ref.Type) ref.Val { return v.native().ConvertToType(t) }

// Type implements ref.Val: a map.
func (v userValue) Type() ref.Type { return types.MapType }

// Value implements ref.Val: the attributes as a map[string]any.
func (v userValue) Value() any { return v.u.Attributes() }

func (v userValue) native() traits.Mapper {
	return types.DefaultTypeAdapter.NativeToValue(v.u.Attributes()).(traits.Mapper) //nolint:forcetypeassert // a map[string]any is a Mapper
}
