package usercom

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"

	"github.com/usersync/usersync-operator/internal/providers"
)

// stored is a user as user.com's read answers it. Its values are decoded
// JSON, numbers as json.Number.
type stored struct {
	// customID is the custom_id (or the older user_id) the answer names,
	// "" when it names none.
	customID string
	// fields are the answer's top-level keys: the standard fields.
	fields map[string]any
	// attrs are the custom attributes; nil when the answer has no
	// "attributes", and user.com is then taken to answer them at the top
	// level, as update_or_create takes them.
	attrs map[string]any
}

// attr is the stored value of a custom attribute, nil when absent.
func (s stored) attr(name string) any {
	if s.attrs == nil {
		return s.fields[name]
	}
	return s.attrs[name]
}

// decodeStored reads a user object. Custom attributes come as an object
// of name to value, or as a list of {"name_std" (or "name"), "value"}.
func decodeStored(body []byte) (stored, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var top map[string]any
	if err := dec.Decode(&top); err != nil {
		return stored{}, err
	}
	if top == nil {
		return stored{}, errors.New("the answer is not a user object")
	}
	s := stored{fields: top}
	for _, k := range []string{fieldCustomID, "user_id"} {
		if v, ok := top[k]; ok && v != nil {
			s.customID, _ = text(v)
			break
		}
	}
	switch a := top["attributes"].(type) {
	case nil:
	case map[string]any:
		s.attrs = a
	case []any:
		s.attrs = make(map[string]any, len(a))
		for _, it := range a {
			m, ok := it.(map[string]any)
			if !ok {
				return stored{}, errors.New("an attribute is not an object")
			}
			name, _ := m["name_std"].(string)
			if name == "" {
				name, _ = m["name"].(string)
			}
			s.attrs[name] = m["value"]
		}
	default:
		return stored{}, errors.New("the attributes are neither an object nor a list")
	}
	return s, nil
}

// differs names, sorted, the fields of u that user.com holds with another
// value than the client writes: email, first_name, last_name, the
// standard fields set as attributes (phone_number, ...) and the custom
// attributes, by their user.com names. Only what the client writes is
// compared: an email left empty is not written and not compared, nor is an
// attribute that cannot be written; attributes u does not declare, and
// fields user.com adds, are ignored. Values compare as sameStored says.
func differs(u providers.User, got stored) []string {
	std, attrs, _, _ := wireUser(u)
	var out []string
	for name, want := range std {
		same := sameStored(want, got.fields[name])
		if name == fieldEmail {
			same = sameEmail(want, got.fields[name])
		}
		if !same {
			out = append(out, name)
		}
	}
	for name, want := range attrs {
		if !sameStored(want, got.attr(name)) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// The comparison rules are the shared ones (providers.SameStored).
var (
	sameEmail  = providers.SameEmail
	sameStored = providers.SameStored
	text       = providers.StoredText
)
