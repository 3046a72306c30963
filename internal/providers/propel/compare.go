package propel

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"

	"github.com/usersync/usersync-operator/internal/providers"
)

// stored is a user as Propel's lookup answers it. Its values are decoded
// JSON, numbers as json.Number.
type stored struct {
	// fields are the user's top-level fields.
	fields map[string]any
	// attrs maps an attribute's name to its value.
	attrs map[string]any
}

// decodeStored reads the answer of GET /users/{lookupKey}/{lookupValue}:
// {"data": {user}} (a list of one user is taken too, and a user object
// without the envelope). A user's attributes are a list of {"name",
// "value"} (or an object of name to value); an answer without them holds
// none.
func decodeStored(body []byte) (stored, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		return stored{}, err
	}
	user := top
	if data, ok := top["data"]; ok {
		if list, isList := data.([]any); isList && len(list) == 1 {
			data = list[0]
		}
		user, _ = data.(map[string]any)
	}
	if user == nil {
		return stored{}, errors.New("the answer holds no user object")
	}
	s := stored{fields: user, attrs: map[string]any{}}
	switch a := user["attributes"].(type) {
	case nil:
	case map[string]any:
		s.attrs = a
	case []any:
		for _, it := range a {
			m, ok := it.(map[string]any)
			if !ok {
				return stored{}, errors.New("an attribute is not an object")
			}
			name, _ := m["name"].(string)
			s.attrs[name] = m["value"]
		}
	default:
		return stored{}, errors.New("the attributes are neither a list nor an object")
	}
	return s, nil
}

// differs names, sorted, what Propel holds with another value than want,
// a user as the client writes it (wireUser): its fields (email,
// firstName, lastName, and the attributes written to a Propel field, such
// as phone) by their Propel names, and its Propel attributes by name.
// Only what the client writes is compared: fields left empty are not
// written, so not compared; source and sourceId are the identity the user
// was read by; attributes the user does not declare, an attribute's type
// and fields Propel adds are ignored. Values compare as sameStored says,
// emails without case.
func differs(want map[string]any, got stored) []string {
	var out []string
	for name, v := range want {
		switch name {
		case "source", "sourceId":
		case "attributes":
			for _, a := range v.([]attribute) {
				if !sameStored(a.Value, got.attrs[a.Name]) {
					out = append(out, a.Name)
				}
			}
		case "email":
			if !sameEmail(v, got.fields[name]) {
				out = append(out, name)
			}
		default:
			if !sameStored(v, got.fields[name]) {
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// The comparison rules are the shared ones (providers.SameStored).
var (
	sameEmail  = providers.SameEmail
	sameStored = providers.SameStored
	text       = providers.StoredText
)
