package v1alpha1

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"testing"
)

// scalarOfJSON is ScalarOf as it was before its fast path: encoding/json
// alone. ScalarOf must answer exactly as it does.
func scalarOfJSON(v AttributeValue) (any, error) {
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

func sameScalar(t *testing.T, raw []byte) {
	t.Helper()
	got, gerr := ScalarOf(AttributeValue{Raw: raw})
	want, werr := scalarOfJSON(AttributeValue{Raw: raw})
	if fmt.Sprint(gerr) != fmt.Sprint(werr) {
		t.Fatalf("ScalarOf(%q): error %v, want %v", raw, gerr, werr)
	}
	if f, ok := want.(float64); ok && math.Signbit(f) != math.Signbit(got.(float64)) {
		t.Fatalf("ScalarOf(%q) = %v, want %v", raw, got, want)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ScalarOf(%q) = %#v, want %#v", raw, got, want)
	}
}

func TestScalarOf(t *testing.T) {
	cases := map[string]struct {
		raw  string
		want any // nil: an error
	}{
		"string":                     {`"core"`, "core"},
		"empty string":               {`""`, ""},
		"string with spaces":         {`"a b  c"`, "a b  c"},
		"UTF-8":                      {`"Zoë 東京 🎉"`, "Zoë 東京 🎉"},
		"escaped quote":              {`"a\"b"`, `a"b`},
		"escaped unicode":            {`"\u00e9\u2028"`, "é\u2028"},
		"escaped surrogate pair":     {`"\ud83c\udf89"`, "🎉"},
		"escaped newline":            {`"a\nb"`, "a\nb"},
		"lone surrogate escape":      {`"\ud800"`, "\ufffd"},
		"invalid UTF-8":              {"\"a\xffb\"", "a\ufffdb"},
		"raw control character":      {"\"a\tb\"", nil},
		"unterminated string":        {`"abc`, nil},
		"quote inside":               {`"a"b"`, nil},
		"lone quote":                 {`"`, nil},
		"true":                       {`true`, true},
		"false":                      {`false`, false},
		"truthy typo":                {`tru`, nil},
		"true and more":              {`trueish`, nil},
		"zero":                       {`0`, 0.0},
		"negative zero":              {`-0`, math.Copysign(0, -1)},
		"integer":                    {`42`, 42.0},
		"negative":                   {`-17`, -17.0},
		"fraction":                   {`3.25`, 3.25},
		"exponent":                   {`1e3`, 1000.0},
		"exponent signs":             {`-2.5E-3`, -0.0025},
		"exponent plus":              {`6E+2`, 600.0},
		"largest float":              {`1.7976931348623157e308`, math.MaxFloat64},
		"rounds to the nearest":      {`0.1`, 0.1},
		"long integer":               {`123456789012345678901234567890`, 123456789012345678901234567890.0},
		"smallest subnormal":         {`5e-324`, 5e-324},
		"underflow to zero":          {`1e-400`, 0.0},
		"overflow":                   {`1e400`, nil},
		"leading zero":               {`01`, nil},
		"leading plus":               {`+1`, nil},
		"bare dot":                   {`1.`, nil},
		"dot first":                  {`.5`, nil},
		"hex":                        {`0x10`, nil},
		"underscore":                 {`1_000`, nil},
		"infinity":                   {`Infinity`, nil},
		"NaN":                        {`NaN`, nil},
		"exponent without digits":    {`1e`, nil},
		"minus alone":                {`-`, nil},
		"null":                       {`null`, nil},
		"object":                     {`{"a":1}`, nil},
		"array":                      {`[1]`, nil},
		"empty":                      {``, nil},
		"surrounding whitespace":     {` "core" `, "core"},
		"number with whitespace":     {"\t7\n", 7.0},
		"two values":                 {`1 2`, nil},
		"string then garbage":        {`"a"x`, nil},
		"escaped backslash at end":   {`"a\\"`, `a\`},
		"escaped slash":              {`"a\/b"`, "a/b"},
		"invalid escape":             {`"\x41"`, nil},
		"number string stays string": {`"3"`, "3"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ScalarOf(AttributeValue{Raw: []byte(tc.raw)})
			if tc.want == nil {
				if err == nil {
					t.Fatalf("ScalarOf(%q) = %#v, want an error", tc.raw, got)
				}
			} else if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ScalarOf(%q) = %#v, %v, want %#v", tc.raw, got, err, tc.want)
			}
			sameScalar(t, []byte(tc.raw))
		})
	}
	for _, v := range []AttributeValue{StringValue("x"), StringValue(`q"uote`), NumberValue(1.5), NumberValue(-3e-9),
		NumberValue(math.MaxFloat64), BoolValue(true), BoolValue(false)} {
		sameScalar(t, v.Raw)
	}
}

// FuzzScalarOf: on any bytes ScalarOf answers as encoding/json does.
func FuzzScalarOf(f *testing.F) {
	for _, s := range []string{`"core"`, `"a\"b"`, "\"a\xffb\"", `true`, `false`, `-0`, `1e400`, `01`, `3.25e-2`,
		`null`, `{}`, `[]`, ` 1 `, `"\u00e9"`, `1.`, `-`, `"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { sameScalar(t, raw) })
}
