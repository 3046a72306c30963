package hubspot

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/usersync/usersync-operator/internal/providers"
)

// Wire types of the CRM v3 batch API. HubSpot asks clients to treat every
// response field as optional, so responses are decoded loosely: ids may come
// as strings or numbers, and a field HubSpot leaves out is simply empty.

type input struct {
	ID                 string            `json:"id,omitempty"`
	IDProperty         string            `json:"idProperty,omitempty"`
	Properties         map[string]string `json:"properties,omitempty"`
	ObjectWriteTraceID string            `json:"objectWriteTraceId,omitempty"`
}

type batchRequest struct {
	Inputs     []input  `json:"inputs"`
	IDProperty string   `json:"idProperty,omitempty"`
	Properties []string `json:"properties,omitempty"`
}

type object struct {
	ID                 flexString     `json:"id"`
	Properties         map[string]any `json:"properties"`
	Archived           bool           `json:"archived"`
	New                *bool          `json:"new"`
	ObjectWriteTraceID flexString     `json:"objectWriteTraceId"`
	CreatedAt          string         `json:"createdAt"`
	UpdatedAt          string         `json:"updatedAt"`
}

// prop returns a property as a string, whatever JSON type HubSpot used.
func (o object) prop(name string) string {
	v, ok := o.Properties[name]
	if !ok || v == nil {
		return ""
	}
	return providers.Scalar(v)
}

type batchResponse struct {
	Status    string      `json:"status"`
	Results   []object    `json:"results"`
	NumErrors int         `json:"numErrors"`
	Errors    []errorBody `json:"errors"`
}

// errorBody is HubSpot's Error object, top-level or inside a batch response.
type errorBody struct {
	Status             string          `json:"status"`
	Message            string          `json:"message"`
	Category           string          `json:"category"`
	ErrorType          string          `json:"errorType"`
	PolicyName         string          `json:"policyName"`
	CorrelationID      string          `json:"correlationId"`
	ID                 flexString      `json:"id"`
	ObjectWriteTraceID flexString      `json:"objectWriteTraceId"`
	Context            json.RawMessage `json:"context"`
	Errors             []detail        `json:"errors"`
}

// errorOf decodes an answer's body as an Error object; an unreadable body
// becomes a message naming the status.
func errorOf(status int, body []byte) errorBody {
	var e errorBody
	if json.Unmarshal(body, &e) != nil || (e.Message == "" && len(e.Errors) == 0) {
		e.Message = fmt.Sprintf("HubSpot answered HTTP %d", status)
	}
	return e
}

type detail struct {
	Message string          `json:"message"`
	Code    string          `json:"code"`
	In      string          `json:"in"`
	Context json.RawMessage `json:"context"`
}

// contextValues returns the strings under a key of the error's context,
// which HubSpot documents as a map of name to list of strings; a single
// string is accepted too.
func (e errorBody) contextValues(key string) []string {
	return stringsUnder(e.Context, key)
}

func stringsUnder(raw json.RawMessage, key string) []string {
	if len(raw) == 0 {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	v, ok := m[key]
	if !ok {
		return nil
	}
	var list []flexString
	if json.Unmarshal(v, &list) == nil {
		out := make([]string, 0, len(list))
		for _, s := range list {
			out = append(out, string(s))
		}
		return out
	}
	var one flexString
	if json.Unmarshal(v, &one) == nil && one != "" {
		return []string{string(one)}
	}
	return nil
}

// missingScopes collects context.missingScopes from the error and its
// details.
func (e errorBody) missingScopes() []string {
	out := e.contextValues("missingScopes")
	for _, d := range e.Errors {
		out = append(out, stringsUnder(d.Context, "missingScopes")...)
		out = append(out, stringsUnder(d.Context, "requiredGranularScopes")...)
	}
	return out
}

// text is the most specific message of an error.
func (e errorBody) text() string {
	msg := e.Message
	var parts []string
	for _, d := range e.Errors {
		if d.Message != "" && d.Message != msg {
			parts = append(parts, d.Message)
		}
	}
	if len(parts) > 0 {
		if msg != "" {
			msg += ": "
		}
		msg += strings.Join(parts, "; ")
	}
	return msg
}

// code is a short reason for a record error.
func (e errorBody) code() string {
	switch {
	case e.Category != "":
		return e.Category
	case e.ErrorType != "":
		return e.ErrorType
	default:
		return "Rejected"
	}
}

var existingID = regexp.MustCompile(`(?i)existing id:?\s*"?([0-9]+)`)

// existingID is the record id a CONFLICT error names ("... already exists.
// Existing ID: 123"), or "".
func (e errorBody) existingID() string {
	if ids := e.contextValues("existingId"); len(ids) == 1 && isDigits(ids[0]) {
		return ids[0]
	}
	if m := existingID.FindStringSubmatch(e.Message); m != nil {
		return m[1]
	}
	return ""
}

// flexString decodes a JSON string or number into a string.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	}
	if string(b) == "null" {
		*f = ""
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*f = flexString(n.String())
	return nil
}

type searchFilter struct {
	PropertyName string   `json:"propertyName"`
	Operator     string   `json:"operator"`
	Value        string   `json:"value,omitempty"`
	Values       []string `json:"values,omitempty"`
}

type searchRequest struct {
	FilterGroups []struct {
		Filters []searchFilter `json:"filters"`
	} `json:"filterGroups"`
	Properties []string `json:"properties,omitempty"`
	Limit      int      `json:"limit,omitempty"`
	After      string   `json:"after,omitempty"`
}

type searchResponse struct {
	Total   int      `json:"total"`
	Results []object `json:"results"`
	Paging  *struct {
		Next *struct {
			After flexString `json:"after"`
		} `json:"next"`
	} `json:"paging"`
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
