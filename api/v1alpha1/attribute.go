package v1alpha1

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
)

// AttributeValue is the JSON encoding of a scalar: a string, a number or a
// boolean. The API server rejects any other JSON (see User.Attributes).
type AttributeValue = apiextensionsv1.JSON

// StringValue returns an AttributeValue holding s.
func StringValue(s string) AttributeValue { b, _ := json.Marshal(s); return AttributeValue{Raw: b} }

// NumberValue returns an AttributeValue holding f.
func NumberValue(f float64) AttributeValue {
	return AttributeValue{Raw: []byte(strconv.FormatFloat(f, 'g', -1, 64))}
}

// BoolValue returns an AttributeValue holding b.
func BoolValue(b bool) AttributeValue { return AttributeValue{Raw: []byte(strconv.FormatBool(b))} }

// ScalarOf decodes an attribute value: a string, a float64 or a bool. It
// returns an error for null, objects and arrays, which the API server
// rejects anyway.
func ScalarOf(v AttributeValue) (any, error) {
	// The engine decodes every attribute of every user it plans or reads
	// back (300,000 values at 100,000 users): the forms the API server
	// stores are read without encoding/json, to the same values.
	if out, ok := scalarFast(v.Raw); ok {
		return out, nil
	}
	var out any
	if err := json.Unmarshal(v.Raw, &out); err != nil {
		return nil, fmt.Errorf("decoding attribute value: %w", err)
	}
	switch out.(type) {
	case string, float64, bool:
		return out, nil
	default:
		return nil, fmt.Errorf("attribute value %s is not a string, number or boolean", v.Raw)
	}
}

// scalarFast decodes, as json.Unmarshal into an any would, a value that is
// exactly a string without escapes or control characters in valid UTF-8,
// true, false, or a number in JSON's grammar that a float64 holds. ok is
// false for anything else (whitespace, escapes, null, objects, arrays, a
// number out of range, invalid JSON): encoding/json decides those.
func scalarFast(b []byte) (any, bool) {
	n := len(b)
	if n == 0 {
		return nil, false
	}
	switch c := b[0]; {
	case c == '"':
		if n < 2 || b[n-1] != '"' {
			return nil, false
		}
		s := b[1 : n-1]
		for _, c := range s {
			if c < 0x20 || c == '"' || c == '\\' {
				return nil, false
			}
		}
		if !utf8.Valid(s) {
			// encoding/json replaces invalid bytes with U+FFFD.
			return nil, false
		}
		return string(s), true
	case c == 't':
		return true, string(b) == "true"
	case c == 'f':
		return false, string(b) == "false"
	case c == '-' || (c >= '0' && c <= '9'):
		if !isJSONNumber(b) {
			return nil, false
		}
		f, err := strconv.ParseFloat(string(b), 64)
		if err != nil {
			return nil, false
		}
		return f, true
	}
	return nil, false
}

// isJSONNumber reports whether b is exactly a number of JSON's grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(b []byte) bool {
	i, n := 0, len(b)
	digits := func() int {
		start := i
		for i < n && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - start
	}
	if i < n && b[i] == '-' {
		i++
	}
	switch {
	case i < n && b[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < n && b[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < n && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < n && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == n
}
