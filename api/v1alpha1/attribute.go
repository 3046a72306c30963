package v1alpha1

import (
	"encoding/json"
	"fmt"
	"strconv"

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
