package providers

import (
	"fmt"
	"strconv"
	"unicode/utf8"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// Bounds of the stored record fields, as the UserSync CRD enforces them:
// every message, reason and id the engine stores is cut to these.
const (
	MaxMessageLength    = usersv1.MaxMessageLength
	MaxReasonLength     = usersv1.MaxReasonLength
	MaxExternalIDLength = usersv1.MaxExternalIDLength
)

// Truncate cuts s to at most n bytes on a rune boundary, ending with "…"
// when cut.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ell = "…"
	cut := n - len(ell)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ell
}

// Scalar renders an attribute value (a JSON scalar: string, float64, bool,
// or nil) as the text vendors that store strings keep: numbers without an
// exponent or trailing zeros, booleans as true/false, nil as "".
func Scalar(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}
