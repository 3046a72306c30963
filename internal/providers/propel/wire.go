package propel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/usersync/usersync-operator/internal/providers"
)

// Wire types of Propel's REST v2 API. Answers are decoded loosely: ids and
// keys may come as strings or numbers, and a field Propel leaves out is
// simply empty.

// userFields are the Propel user fields an attribute of the same name is
// written to; every other attribute becomes a Propel user attribute.
var userFields = map[string]bool{
	"debtorId": true, "middleName": true, "fullName": true, "title": true,
	"dateOfBirth": true, "gender": true, "login": true, "phone": true,
	"mobile": true, "company": true, "taxNumber": true, "cocNumber": true,
	"primaryLanguage": true, "language": true, "abbreviation": true,
}

// Attribute types of Propel user attributes. Propel documents no boolean
// type, so booleans are written as text "true" or "false".
const (
	attrText    = "text"
	attrInteger = "integer"
	attrDecimal = "decimal"
)

// attribute is one entry of a user's attributes.
type attribute struct {
	Name  string `json:"name"`
	Value string `json:"value"`
	Type  string `json:"type"`
}

// bulkRequest is the body of the bulk user endpoints. A user is a map so
// that attributes named like a Propel field sit at the top level.
type bulkRequest struct {
	Users []map[string]any `json:"users"`
}

// bulkItem is one entry of a bulk answer's data.
type bulkItem struct {
	Action    string      `json:"action"`
	ID        flexString  `json:"id"`
	Key       flexString  `json:"key"`
	LookupKey string      `json:"lookupKey"`
	Success   *bool       `json:"success"`
	Messages  flexStrings `json:"messages"`
}

// bulkResponse is the 2xx answer of the bulk user endpoints. Its messages
// and total say nothing about single users and are not read.
type bulkResponse struct {
	Data []bulkItem `json:"data"`
}

// apiError is Propel's error object, {"error":{"code","status","type",
// "messages","moreInfo"}}, or an OAuth error, {"error","error_description"}.
type apiError struct {
	Code     string
	Type     string
	Messages []string
}

// decodeError reads an error answer; a body it cannot read gives an empty
// apiError.
func decodeError(body []byte) apiError {
	var env struct {
		Error       json.RawMessage `json:"error"`
		Description string          `json:"error_description"`
		Message     string          `json:"message"`
	}
	if json.Unmarshal(body, &env) != nil {
		return apiError{}
	}
	var e apiError
	var propel struct {
		Code     flexString  `json:"code"`
		Type     string      `json:"type"`
		Messages flexStrings `json:"messages"`
	}
	var oauth string
	switch {
	case json.Unmarshal(env.Error, &propel) == nil:
		e = apiError{Code: string(propel.Code), Type: propel.Type, Messages: propel.Messages}
	case json.Unmarshal(env.Error, &oauth) == nil:
		e.Type = oauth
		if env.Description != "" {
			e.Messages = []string{env.Description}
		}
	}
	if len(e.Messages) == 0 && env.Message != "" {
		e.Messages = []string{env.Message}
	}
	return e
}

// text explains the error: its messages, else its type, else the status.
func (e apiError) text(status int) string {
	switch {
	case len(e.Messages) > 0:
		return strings.Join(e.Messages, "; ")
	case e.Type != "":
		return e.Type
	default:
		return fmt.Sprintf("HTTP %d", status)
	}
}

// recordCode is the RecordError code of a record Propel refused with this
// error.
func (e apiError) recordCode(status int) string {
	switch {
	case e.Code == "10007" || e.Type == "SchemaValidationException":
		return "SchemaValidation"
	case strings.TrimSuffix(e.Type, "Exception") != "":
		return strings.TrimSuffix(e.Type, "Exception")
	default:
		return statusCode(status)
	}
}

// statusCode turns an HTTP status into a code: 404 gives "NotFound".
func statusCode(status int) string {
	if s := strings.ReplaceAll(http.StatusText(status), " ", ""); s != "" {
		return s
	}
	return "HTTP" + strconv.Itoa(status)
}

// pointerRE finds the record a schema message is about: "#/users/3",
// "/users/3" or "users[3]".
var pointerRE = regexp.MustCompile(`(?:^|[^\w])users(?:/(\d+)|\[(\d+)\])`)

// pointerIndex returns the index of the record msg points at.
func pointerIndex(msg string) (int, bool) {
	m := pointerRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, false
	}
	i, err := strconv.Atoi(m[1] + m[2])
	return i, err == nil
}

// flexString decodes a JSON string, or the text of any other scalar (a
// number keeps its literal digits); null gives "".
type flexString string

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) == 0 || string(b) == "null":
		*f = ""
	case b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
	case b[0] == '{' || b[0] == '[':
		// Not a scalar: no id or key can be read from it.
		*f = ""
	default:
		*f = flexString(b)
	}
	return nil
}

// flexStrings decodes an array of scalars, or a single scalar, as strings.
type flexStrings []string

// UnmarshalJSON implements json.Unmarshaler.
func (f *flexStrings) UnmarshalJSON(b []byte) error {
	var list []flexString
	if err := json.Unmarshal(b, &list); err != nil {
		var one flexString
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		list = []flexString{one}
	}
	out := make([]string, 0, len(list))
	for _, s := range list {
		if s != "" {
			out = append(out, string(s))
		}
	}
	*f = out
	return nil
}

// normalizeKey is the form in which keys are compared: a decimal number
// loses its leading zeros, since Propel may echo a numeric sourceId as a
// JSON number.
func normalizeKey(k string) string {
	if k == "" || strings.TrimLeft(k, "0123456789") != "" {
		return k
	}
	if t := strings.TrimLeft(k, "0"); t != "" {
		return t
	}
	return "0"
}

// wireUser is the bulk/sourceId entry of a user.
func (c *Client) wireUser(u providers.User) map[string]any {
	w := map[string]any{"source": c.source, "sourceId": u.Key}
	set := func(name, v string) {
		if v != "" {
			w[name] = v
		}
	}
	set("email", u.Email)
	set("firstName", u.FirstName)
	set("lastName", u.LastName)
	attrs := make([]attribute, 0, len(u.Attributes))
	for name, v := range u.Attributes {
		if userFields[name] {
			set(name, providers.Scalar(v))
			continue
		}
		attrs = append(attrs, attributeOf(name, v))
	}
	if len(attrs) > 0 {
		sort.Slice(attrs, func(i, j int) bool { return attrs[i].Name < attrs[j].Name })
		w["attributes"] = attrs
	}
	return w
}

// attributeOf types an attribute value: whole numbers are integers, other
// numbers decimals, the rest text.
func attributeOf(name string, v any) attribute {
	a := attribute{Name: name, Value: providers.Scalar(v), Type: attrText}
	if f, ok := v.(float64); ok {
		a.Type = attrDecimal
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			a.Type = attrInteger
		}
	}
	return a
}
