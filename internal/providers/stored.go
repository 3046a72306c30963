package providers

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
)

// Comparing what a vendor stores with what was declared (drift detection,
// providers.Reader): shared by the vendors that answer JSON values whose
// types they may have changed (user.com, Propel).

// SameEmail compares emails without case or surrounding spaces: vendors
// may store them lower-cased.
func SameEmail(want, got any) bool {
	w, wok := StoredText(want)
	g, gok := StoredText(got)
	return wok && gok && strings.EqualFold(strings.TrimSpace(w), strings.TrimSpace(g))
}

// SameStored reports whether a declared value, as the client writes it,
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
func SameStored(want, got any) bool {
	w, wok := StoredText(want)
	g, gok := StoredText(got)
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

// StoredText renders a JSON scalar as text; ok is false for objects and lists.
func StoredText(v any) (string, bool) {
	switch x := v.(type) {
	case nil:
		return "", true
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool, float64, float32, int, int32, int64:
		return Scalar(v), true
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
