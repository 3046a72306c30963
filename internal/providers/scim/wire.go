package scim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/usersync/usersync-operator/internal/providers"
)

// Schema URNs.
const (
	schemaUser       = "urn:ietf:params:scim:schemas:core:2.0:User"
	schemaEnterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	schemaPatchOp    = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	schemaBulkReq    = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
)

// ReasonInvalidSpec is the code of a record whose spec cannot be mapped.
const ReasonInvalidSpec = "InvalidSpec"

// coreAttrs are the singular core attributes an attribute may set, by
// lower-cased name.
var coreAttrs = canonicalNames("displayName", "nickName", "title", "userType", "preferredLanguage", "locale",
	"timezone", "profileUrl", "active")

// enterpriseAttrs are the enterprise extension's simple attributes.
var enterpriseAttrs = canonicalNames("employeeNumber", "costCenter", "organization", "division", "department")

func canonicalNames(names ...string) map[string]string {
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[strings.ToLower(n)] = n
	}
	return m
}

// attrName is the grammar of a SCIM attribute name (RFC 7643 section 2.1).
var attrName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)

// resource is a user as the client writes it: the JSON of a SCIM User.
type resource map[string]any

// toResource maps a user; the error names the attribute it cannot map.
func (c *Client) toResource(u providers.User) (resource, error) {
	r := resource{"externalId": u.Key, "userName": c.userName(u), "active": true}
	if u.Email != "" {
		r["emails"] = []any{map[string]any{"value": u.Email, "type": "work", "primary": true}}
	}
	if u.FirstName != "" || u.LastName != "" {
		name := map[string]any{}
		if u.FirstName != "" {
			name["givenName"] = u.FirstName
		}
		if u.LastName != "" {
			name["familyName"] = u.LastName
		}
		r["name"] = name
		r["displayName"] = strings.TrimSpace(u.FirstName + " " + u.LastName)
	}
	ent, ext := map[string]any{}, map[string]any{}
	for k, v := range u.Attributes {
		lk := strings.ToLower(k)
		if n, ok := coreAttrs[lk]; ok {
			if n == "active" {
				b, ok := boolValue(v)
				if !ok {
					return nil, fmt.Errorf("attribute %q must be true or false", k)
				}
				r[n] = b
				continue
			}
			r[n] = providers.Scalar(v)
			continue
		}
		if sub, ok := strings.CutPrefix(lk, "enterprise."); ok {
			if n, ok := enterpriseAttrs[sub]; ok {
				ent[n] = providers.Scalar(v)
				continue
			}
		}
		if c.opts.ExtensionSchema != "" && attrName.MatchString(k) {
			// The extension's own attribute types are unknown: the value
			// keeps its JSON type.
			ext[k] = v
			continue
		}
		if c.opts.ExtensionSchema != "" {
			return nil, fmt.Errorf("attribute %q is not a SCIM attribute name (a letter, then letters, digits, '-' or '_') "+
				"for the extension schema %s, nor a singular core SCIM attribute or enterprise.<name>", k, c.opts.ExtensionSchema)
		}
		return nil, fmt.Errorf("attribute %q needs spec.scim.extensionSchema: it is neither a singular core SCIM attribute (displayName, "+
			"nickName, title, userType, preferredLanguage, locale, timezone, profileUrl, active) nor "+
			"enterprise.<employeeNumber|costCenter|organization|division|department>", k)
	}
	schemas := []any{schemaUser}
	if len(ent) > 0 {
		r[schemaEnterprise] = ent
		schemas = append(schemas, schemaEnterprise)
	}
	if len(ext) > 0 {
		r[c.opts.ExtensionSchema] = ext
		schemas = append(schemas, c.opts.ExtensionSchema)
	}
	r["schemas"] = schemas
	return r, nil
}

// userName is what goes into userName.
func (c *Client) userName(u providers.User) string {
	if c.opts.UserName == UserNameEmail && u.Email != "" {
		return u.Email
	}
	return u.Key
}

func boolValue(v any) (bool, bool) {
	switch x := v.(type) {
	case bool:
		return x, true
	case string:
		b, err := strconv.ParseBool(strings.ToLower(x))
		return b, err == nil
	}
	return false, false
}

// patchReplace is a PatchOp replacing the resource's declared attributes
// (one path-less replace: servers merge the value into the resource).
func patchReplace(r resource) map[string]any {
	v := make(map[string]any, len(r))
	for k, x := range r {
		if k != "schemas" {
			v[k] = x
		}
	}
	return map[string]any{"schemas": []string{schemaPatchOp},
		"Operations": []any{map[string]any{"op": "replace", "value": v}}}
}

// minimalPatch is the PatchOp that brings the declared attributes of r to
// a user stored as got (keys lower-cased): one replace per attribute that
// differs (RFC 7644 section 3.5.2.3; a replace of an absent attribute adds
// it). Nil when none differs.
func minimalPatch(r resource, got map[string]any) map[string]any {
	ds := diffs(r, got)
	if len(ds) == 0 {
		return nil
	}
	ops := make([]any, len(ds))
	for i, d := range ds {
		ops[i] = map[string]any{"op": "replace", "path": d.path, "value": d.value}
	}
	return map[string]any{"schemas": []string{schemaPatchOp}, "Operations": ops}
}

// overlay is the user stored as cur with the declared attributes of r laid
// over it, for a PUT: name and the extensions are merged attribute by
// attribute, the other declared attributes replaced, the undeclared ones
// kept; attribute names compared without case; id and meta dropped.
func overlay(cur map[string]any, r resource) resource {
	out := resource{}
	for k, v := range cur {
		if lk := strings.ToLower(k); lk != "id" && lk != "meta" {
			out[k] = v
		}
	}
	keyOf := func(m map[string]any, k string) string {
		for mk := range m {
			if strings.EqualFold(mk, k) {
				return mk
			}
		}
		return k
	}
	for k, v := range r {
		ck := keyOf(out, k)
		if k == "schemas" {
			have, _ := out[ck].([]any)
			for _, s := range v.([]any) {
				if !slices.ContainsFunc(have, func(h any) bool { hs, _ := h.(string); return strings.EqualFold(hs, s.(string)) }) {
					have = append(have, s)
				}
			}
			out[ck] = have
			continue
		}
		sub, isMap := v.(map[string]any)
		old, wasMap := out[ck].(map[string]any)
		if !isMap || !wasMap {
			out[ck] = v
			continue
		}
		merged := make(map[string]any, len(old)+len(sub))
		maps.Copy(merged, old)
		for sk, sv := range sub {
			merged[keyOf(old, sk)] = sv
		}
		out[ck] = merged
	}
	return out
}

// patchDeactivate is a PatchOp setting active to false.
func patchDeactivate() map[string]any {
	return map[string]any{"schemas": []string{schemaPatchOp},
		"Operations": []any{map[string]any{"op": "replace", "path": "active", "value": false}}}
}

// scimErr is a SCIM error body.
type scimErr struct {
	Status   flexStatus `json:"status"`
	ScimType string     `json:"scimType"`
	Detail   string     `json:"detail"`
}

// decodeError reads a SCIM error body, tolerantly.
func decodeError(body []byte) scimErr {
	var e scimErr
	_ = json.Unmarshal(body, &e)
	return e
}

func (e scimErr) text(status int) string {
	msg := strings.TrimSpace(e.Detail)
	if msg == "" {
		msg = http.StatusText(status)
	}
	if e.ScimType != "" {
		msg = fmt.Sprintf("%s (scimType %s)", msg, e.ScimType)
	}
	return fmt.Sprintf("HTTP %d: %s", status, msg)
}

// errorText renders an error answer for a message.
func errorText(status int, body []byte) string { return decodeError(body).text(status) }

// flexStatus is a status (or a count) sent as a string ("201") or an
// integer. A value that is neither (an object, "abc", 2.5) reads as 0,
// unknown, rather than failing the whole answer it is part of.
type flexStatus int

// UnmarshalJSON implements json.Unmarshaler.
func (s *flexStatus) UnmarshalJSON(b []byte) error {
	*s = 0
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var str string
		if json.Unmarshal(b, &str) != nil {
			return nil
		}
		b = []byte(strings.TrimSpace(str))
	}
	if n, err := strconv.Atoi(string(b)); err == nil {
		*s = flexStatus(n)
	}
	return nil
}

// spConfig is what a ServiceProviderConfig tells the client.
type spConfig struct {
	Bulk struct {
		Supported      flexBool `json:"supported"`
		MaxOperations  int      `json:"maxOperations"`
		MaxPayloadSize int      `json:"maxPayloadSize"`
	} `json:"bulk"`
	Patch struct {
		Supported flexBool `json:"supported"`
	} `json:"patch"`
	ETag struct {
		Supported flexBool `json:"supported"`
	} `json:"etag"`
	Filter struct {
		Supported  flexBool `json:"supported"`
		MaxResults int      `json:"maxResults"`
	} `json:"filter"`
}

// flexBool is a boolean sent as a bool or a string ("True").
type flexBool bool

// UnmarshalJSON implements json.Unmarshaler.
func (b *flexBool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	x, _ := boolValue(v)
	*b = flexBool(x)
	return nil
}

// bulkOp is one operation of a BulkRequest.
type bulkOp struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	BulkID string `json:"bulkId,omitempty"`
	Data   any    `json:"data,omitempty"`
}

// bulkResult is one operation of a BulkResponse.
type bulkResult struct {
	Method   string          `json:"method"`
	BulkID   string          `json:"bulkId"`
	Location string          `json:"location"`
	Status   flexStatus      `json:"status"`
	Response json.RawMessage `json:"response"`
}

// bulkResponse is a BulkResponse; Operations missing or null is empty.
type bulkResponse struct {
	Operations []bulkResult `json:"Operations"`
}

// listResponse is a ListResponse; Resources missing or null is empty.
type listResponse struct {
	TotalResults int
	Resources    []json.RawMessage
}

// decodeList reads a ListResponse tolerantly: attribute names without
// case (the RFC spelling wins over another one in the same answer),
// totalResults as a number or a string, Resources missing or null as
// empty.
func decodeList(body []byte) (listResponse, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return listResponse{}, err
	}
	var out listResponse
	if v, ok := member(raw, "totalResults"); ok {
		var n flexStatus
		if err := json.Unmarshal(v, &n); err != nil {
			return out, fmt.Errorf("totalResults: %w", err)
		}
		out.TotalResults = int(n)
	}
	if v, ok := member(raw, "Resources"); ok {
		if err := json.Unmarshal(v, &out.Resources); err != nil {
			return out, fmt.Errorf("resources: %w", err)
		}
	}
	return out, nil
}

// member is the member name of an object, matched without case: the
// exact spelling first, else the first other spelling in sorted order.
func member(m map[string]json.RawMessage, name string) (json.RawMessage, bool) {
	if v, ok := m[name]; ok {
		return v, true
	}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if strings.EqualFold(k, name) {
			return m[k], true
		}
	}
	return nil, false
}

// idOf reads the id of a user answer.
func idOf(body []byte) string {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	for k, v := range m {
		if strings.EqualFold(k, "id") {
			s, _ := v.(string)
			return s
		}
	}
	return ""
}

// idFromLocation is the last path segment of a location URL.
func idFromLocation(loc string) string {
	loc = strings.TrimRight(loc, "/")
	if i := strings.LastIndexByte(loc, '/'); i >= 0 && i < len(loc)-1 {
		return loc[i+1:]
	}
	return ""
}
