package usercom

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

// Wire types and encodings of user.com's public API. Answers are decoded
// loosely: an id may come as a number or a string, and user.com (a Django
// REST Framework app) words errors either as {"detail": "..."} or as field
// errors, {"field": ["message", ...]}.

// Paths below the endpoint. User.com requires the trailing slashes.
const (
	pathUpsert  = "users/update_or_create/"
	pathMass    = "users/mass_update_custom_attributes/"
	pathList    = "users/?limit=1"
	pathPerUser = "users/%d/set_multiple_attributes/"
	pathDelete  = "users-by-id/%s/"
	pathRead    = "users-by-id/%s/"
)

// Standard fields of a user.com user, as update_or_create takes them.
const (
	fieldCustomID  = "custom_id"
	fieldEmail     = "email"
	fieldFirstName = "first_name"
	fieldLastName  = "last_name"
)

// standardAttrs are user.com's standard user fields besides the ones above
// (the fields of mass_update_standard_attributes). An attribute of these
// names is written with the upsert, since the custom attribute calls do not
// take it.
var standardAttrs = map[string]bool{
	"assigned_to": true, "city": true, "company_id": true, "country": true,
	"facebook_url": true, "gender": true, "google_url": true, "gravatar_url": true,
	"linkedin_url": true, "notifications": true, "phone_number": true, "region": true,
	"score": true, "status": true, "timezone": true, "twitter_url": true,
	"unsubscribed": true,
}

// reservedAttrs may not be set as attributes: they are the user's identity
// or its fields.
var reservedAttrs = map[string]bool{
	fieldCustomID: true, fieldEmail: true, fieldFirstName: true, fieldLastName: true,
	"id": true, "key": true, "user_id": true,
}

// maxSafeInteger bounds the floats sent as JSON integers: beyond it a
// float64 no longer holds every integer.
const maxSafeInteger = 1 << 53

// wireValue is the JSON value an attribute value is sent as: bool, int64
// for whole numbers, float64 for other numbers, string, or nil. ok is false
// for a value JSON cannot carry (NaN, an infinity, a non-scalar).
func wireValue(v any) (w any, ok bool) {
	switch x := v.(type) {
	case nil, string, bool:
		return x, true
	case float64:
		return wireNumber(x)
	case float32:
		return wireNumber(float64(x))
	case int:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i, true
		}
		f, err := x.Float64()
		if err != nil {
			return nil, false
		}
		return wireNumber(f)
	default:
		return nil, false
	}
}

func wireNumber(f float64) (any, bool) {
	switch {
	case math.IsNaN(f) || math.IsInf(f, 0):
		return nil, false
	case f == math.Trunc(f) && math.Abs(f) <= maxSafeInteger:
		return int64(f), true
	default:
		return f, true
	}
}

// upsertResponse is the answer of update_or_create, {"created":true,
// "id":5577}. Both fields are optional.
type upsertResponse struct {
	Created *bool  `json:"created"`
	ID      flexID `json:"id"`
}

// decodeUpsert reads the answer of update_or_create; an empty body is an
// answer without fields.
func decodeUpsert(body []byte) (upsertResponse, error) {
	var ur upsertResponse
	if len(bytes.TrimSpace(body)) == 0 {
		return ur, nil
	}
	err := json.Unmarshal(body, &ur)
	return ur, err
}

// flexID decodes a user.com id given as a JSON number or string; null or
// absent gives 0.
type flexID int64

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if string(b) == "null" {
		*f = 0
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		b = []byte(strings.TrimSpace(s))
	}
	id, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		fl, ferr := strconv.ParseFloat(string(b), 64)
		if ferr != nil || fl != math.Trunc(fl) || math.Abs(fl) > maxSafeInteger {
			return fmt.Errorf("id %s is not an integer", b)
		}
		id = int64(fl)
	}
	*f = flexID(id)
	return nil
}

// apiError is an error answer of user.com.
type apiError struct {
	// detail is the "detail" message.
	detail string
	// fields maps a field to its messages, joined.
	fields map[string]string
	// raw is the body, for the ids a 404 names.
	raw string
}

// decodeError reads an error answer; a body that is not a JSON object
// gives an apiError with only raw set.
func decodeError(body []byte) apiError {
	e := apiError{raw: string(body)}
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) != nil {
		return e
	}
	for k, v := range m {
		msg := messages(v)
		if msg == "" {
			continue
		}
		if k == "detail" || k == "message" || k == "error" {
			if e.detail == "" {
				e.detail = msg
			}
			continue
		}
		if e.fields == nil {
			e.fields = map[string]string{}
		}
		e.fields[k] = msg
	}
	return e
}

// messages renders a field error: a string, a list of strings, or
// anything else as its JSON.
func messages(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		parts := make([]string, 0, len(list))
		for _, it := range list {
			if m := messages(it); m != "" {
				parts = append(parts, m)
			}
		}
		return strings.Join(parts, " ")
	}
	return string(bytes.TrimSpace(raw))
}

// text explains the error: its detail, then its field errors by field name.
func (e apiError) text(status int) string {
	parts := make([]string, 0, len(e.fields)+1)
	if e.detail != "" {
		parts = append(parts, e.detail)
	}
	keys := make([]string, 0, len(e.fields))
	for k := range e.fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if k == "non_field_errors" {
			parts = append(parts, e.fields[k])
			continue
		}
		parts = append(parts, k+": "+e.fields[k])
	}
	if len(parts) == 0 {
		return fmt.Sprintf("HTTP %d", status)
	}
	return strings.Join(parts, "; ")
}

var (
	// unknownAttrRE finds the attribute a message says is not defined:
	// "Attribute 'plan' does not exist", "Unknown attribute: plan".
	unknownAttrRE = regexp.MustCompile(`(?i)(?:attribute\s+['"“‘]?([^'"”’\s]+)['"”’]?\s+(?:does not exist|is not defined|not found|is unknown))|(?:(?:unknown|undefined|no such)\s+(?:custom\s+)?attribute:?\s+['"“‘]?([^'"”’\s,;.]+))`)
	// unknownRE says a field error is about an unknown name.
	unknownRE = regexp.MustCompile(`(?i)does not exist|is not defined|not found|unknown|undefined|no such`)
)

// unknownAttribute returns the attribute the error says is not defined in
// the app.
func (e apiError) unknownAttribute() (string, bool) {
	if m := unknownAttrRE.FindStringSubmatch(e.detail); m != nil {
		return m[1] + m[2], true
	}
	keys := make([]string, 0, len(e.fields))
	for k := range e.fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		msg := e.fields[k]
		if m := unknownAttrRE.FindStringSubmatch(msg); m != nil {
			return m[1] + m[2], true
		}
		switch k {
		case "non_field_errors", "ids", "value", fieldCustomID, fieldEmail, fieldFirstName, fieldLastName:
		default:
			// A field error keyed by the attribute: {"plan": ["does not exist"]}.
			if unknownRE.MatchString(msg) {
				return k, true
			}
		}
	}
	return "", false
}

// idsNamed returns those of ids that the error's body mentions as numbers.
func (e apiError) idsNamed(ids []int64) []int64 {
	named := map[int64]bool{}
	for _, tok := range numberRE.FindAllString(e.raw, -1) {
		if n, err := strconv.ParseInt(tok, 10, 64); err == nil {
			named[n] = true
		}
	}
	var out []int64
	for _, id := range ids {
		if named[id] {
			out = append(out, id)
		}
	}
	return out
}

var numberRE = regexp.MustCompile(`\d+`)

// statusCode turns an HTTP status into a code: 404 gives "NotFound".
func statusCode(status int) string {
	if s := strings.ReplaceAll(http.StatusText(status), " ", ""); s != "" {
		return s
	}
	return "HTTP" + strconv.Itoa(status)
}

// Codes of the RecordErrors this client reports. The first three are
// vendorhttp's, which reports the failures of whole calls (rate limits,
// 5xx, no answer, cancellation).
const (
	codeRateLimited       = vendorhttp.CodeRateLimited
	codeVendorUnavailable = vendorhttp.CodeUnavailable
	codeCancelled         = vendorhttp.CodeCancelled
	codeBadResponse       = "BadResponse"
	codeUnknownAttribute  = "UnknownAttribute"
	codeValidation        = "ValidationError"
	codeNotFound          = "NotFound"
	codeInvalidRecord     = "InvalidRecord"
	codeReservedAttribute = "ReservedAttribute"
	codeUnsupported       = "Unsupported"
)
