package declared

import (
	"reflect"

	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// userVal is the variable user as CEL sees it: a map of key, email,
// firstName, lastName and attributes. Reading a field by name (all a
// mapping usually does) converts that field only; anything else (iterating,
// comparing the whole map) builds the whole map once. Building the map for
// every user was half of the cost of an expression.
type userVal struct {
	u     *usersv1.User
	attrs map[string]any
	whole traits.Mapper
}

var _ traits.Mapper = (*userVal)(nil)

func (v *userVal) asMap() traits.Mapper {
	if v.whole == nil {
		v.whole = types.DefaultTypeAdapter.NativeToValue(map[string]any{"key": v.u.Key, "email": v.u.Email,
			"firstName": v.u.FirstName, "lastName": v.u.LastName, "attributes": orEmpty(v.attrs)}).(traits.Mapper)
	}
	return v.whole
}

// Find reads one field.
func (v *userVal) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return v.asMap().Find(key)
	}
	switch k {
	case "key":
		return types.String(v.u.Key), true
	case "email":
		return types.String(v.u.Email), true
	case "firstName":
		return types.String(v.u.FirstName), true
	case "lastName":
		return types.String(v.u.LastName), true
	case "attributes":
		return types.DefaultTypeAdapter.NativeToValue(orEmpty(v.attrs)), true
	}
	return nil, false
}

func (v *userVal) Get(key ref.Val) ref.Val {
	if val, ok := v.Find(key); ok {
		return val
	}
	return v.asMap().Get(key)
}

func (v *userVal) Contains(key ref.Val) ref.Val {
	_, ok := v.Find(key)
	return types.Bool(ok)
}

func (v *userVal) ConvertToNative(t reflect.Type) (any, error) { return v.asMap().ConvertToNative(t) }
func (v *userVal) ConvertToType(t ref.Type) ref.Val            { return v.asMap().ConvertToType(t) }
func (v *userVal) Equal(other ref.Val) ref.Val                 { return v.asMap().Equal(other) }
func (v *userVal) Type() ref.Type                              { return types.MapType }
func (v *userVal) Value() any                                  { return v.asMap().Value() }
func (v *userVal) Iterator() traits.Iterator                   { return v.asMap().Iterator() }
func (v *userVal) Size() ref.Val                               { return types.Int(5) }
