package usercom

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

// sameEmail compares emails without case: user.com may store them
// lower-cased.
func sameEmail(want, got any) bool {
	w, wok := text(want)
	g, gok := text(got)
	return wok && gok && strings.EqualFold(strings.TrimSpace(w), strings.TrimSpace(g))
}

// sameStored reports whether a declared value, as the client writes it,
// and the value the vendor answered are the same once both are read the
// way the vendor may store them:
//   - an absent value, null and "" are the same (a vendor may drop empty
//     values);
//   - strings compare without surrounding spaces;
//   - numbers compare by value, whether sent or answered as JSON numbers
//     or as numeric strings (3, 3.0 and "3");
//   - booleans compare with the strings "true" and "false", in any case;
//   - dates and datetimes compare as instants ("2024-05-01" and
//     "2024-05-01T00:00:00Z"; "...Z" and "...+00:00").
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
