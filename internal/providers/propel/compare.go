package propel

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

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

// sameEmail compares emails without case: Propel may store them
// lower-cased.
func sameEmail(want, got any) bool {
	w, wok := text(want)
	g, gok := text(got)
	return wok && gok && strings.EqualFold(strings.TrimSpace(w), strings.TrimSpace(g))
}

// sameStored reports whether a declared value, as the client writes it
// (Propel takes text: "3", "0.5", "true"), and the value Propel answered
// are the same once both are read the way Propel may store them:
//   - an absent value, null and "" are the same (a vendor may drop empty
//     values);
//   - strings compare without surrounding spaces;
//   - numbers compare by value, whether answered as JSON numbers or as
//     numeric strings (3, 3.0 and "3");
//   - booleans compare with the strings "true" and "false", in any case;
//   - dates and datetimes compare as instants ("1990-01-01" and
//     "1990-01-01T00:00:00Z").
//
// Objects and lists never equal a declared scalar.
func sameStored(want, got any) bool {
	w, wok := text(want)
	g, gok := text(got)
	if !wok || !gok {
		return false
	}
	w, g = strings.TrimSpace(w), strings.TrimSpace(g)
	if w == g {
		return true
	}
	if a, ok := number(w); ok {
		b, ok := number(g)
		return ok && a == b
	}
	if a, ok := boolean(w); ok {
		b, ok := boolean(g)
		return ok && a == b
	}
	if a, ok := instant(w); ok {
		b, ok := instant(g)
		return ok && a.Equal(b)
	}
	return false
}

// text renders a JSON scalar as text; ok is false for objects and lists.
func text(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool, float64, float32, int, int32, int64:
		return providers.Scalar(v), true
	}
	return "", false
}

func number(s string) (float64, bool) {
	f, err := strconv.ParseFloat(s, 64)
	return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
}

func boolean(s string) (bool, bool) {
	switch {
	case strings.EqualFold(s, "true"):
		return true, true
	case strings.EqualFold(s, "false"):
		return false, true
	}
	return false, false
}

// timeLayouts are the date and datetime forms a vendor may answer.
var timeLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999", time.DateOnly}

func instant(s string) (time.Time, bool) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}
