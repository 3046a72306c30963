package emulator

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/usersync/usersync-operator/internal/providers/emulation"
)

// canonical are the attribute names the emulator stores with their RFC
// spelling, whatever case a client sends.
var canonical = map[string]string{}

func init() {
	for _, n := range []string{"userName", "externalId", "name", "displayName", "nickName", "profileUrl", "title",
		"userType", "preferredLanguage", "locale", "timezone", "active", "emails", "phoneNumbers", "addresses",
		"schemas", "givenName", "familyName", "formatted", "middleName", "value", "type", "primary",
		"employeeNumber", "costCenter", "organization", "division", "department", "manager", SchemaEnterprise} {
		canonical[strings.ToLower(n)] = n
	}
}

func canon(name string) string {
	if c, ok := canonical[strings.ToLower(name)]; ok {
		return c
	}
	return name
}

// normalize returns v with the keys of its objects spelt canonically.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, vv := range x {
			m[canon(k)] = normalize(vv)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, vv := range x {
			s[i] = normalize(vv)
		}
		return s
	}
	return v
}

// boolOf reads a boolean sent as a bool or a string ("False").
func boolOf(v any, def bool) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		if b, err := strconv.ParseBool(strings.ToLower(x)); err == nil {
			return b
		}
	}
	return def
}

// validate checks a resource as the server would store it.
func (e *Emulator) validate(res map[string]any, self string) *scimError {
	name, _ := res["userName"].(string)
	if strings.TrimSpace(name) == "" {
		return &scimError{http.StatusBadRequest, "invalidValue", "userName is required"}
	}
	if emails, ok := res["emails"].([]any); ok {
		for _, em := range emails {
			m, _ := em.(map[string]any)
			if v, _ := m["value"].(string); !strings.Contains(v, "@") {
				return &scimError{http.StatusBadRequest, "invalidValue", fmt.Sprintf("emails.value %q is not an email address", v)}
			}
		}
	}
	if v, ok := res["profileUrl"]; ok {
		// A reference to an absolute URI (RFC 7643 section 4.1.1).
		s, _ := v.(string)
		if u, err := url.Parse(s); err != nil || !u.IsAbs() || u.Host == "" {
			return &scimError{http.StatusBadRequest, "invalidValue", fmt.Sprintf("profileUrl %q is not an absolute URI", s)}
		}
	}
	if emails, _ := res["emails"].([]any); e.profile.SingleEmails && len(emails) > 1 {
		return &scimError{http.StatusBadRequest, "invalidValue", "only one email is supported"}
	}
	if id, ok := e.names[strings.ToLower(name)]; ok && id != self {
		return &scimError{http.StatusConflict, "uniqueness", fmt.Sprintf("userName %q is already taken", name)}
	}
	return nil
}

// store sets a user's resource and its indexed fields. Callers hold e.mu.
func (e *Emulator) store(u *User, res map[string]any) {
	delete(res, "id")
	delete(res, "meta")
	u.Resource = res
	e.touch(u)
}

// touch refreshes the indexed fields and the version after a change.
func (e *Emulator) touch(u *User) {
	if e.names[strings.ToLower(u.UserName)] == u.ID {
		delete(e.names, strings.ToLower(u.UserName))
	}
	u.UserName, _ = u.Resource["userName"].(string)
	e.names[strings.ToLower(u.UserName)] = u.ID
	u.ExternalID, _ = u.Resource["externalId"].(string)
	u.Active = boolOf(u.Resource["active"], true)
	u.Version++
}

// create stores a new user. Callers hold e.mu.
func (e *Emulator) create(res map[string]any) (*User, *scimError) {
	res = normalize(res).(map[string]any)
	if se := e.validate(res, ""); se != nil {
		return nil, se
	}
	e.nextID++
	u := &User{ID: fmt.Sprintf("u%06d", e.nextID)}
	e.store(u, res)
	e.users[u.ID] = u
	return u, nil
}

// version is a user's ETag.
func (u *User) version() string { return fmt.Sprintf(`W/"%d"`, u.Version) }

// find returns the user id names, checking ifMatch when ETags are
// offered. Callers hold e.mu.
func (e *Emulator) find(id, ifMatch string) (*User, *scimError) {
	u := e.users[id]
	if u == nil {
		return nil, &scimError{http.StatusNotFound, "", fmt.Sprintf("resource %s not found", id)}
	}
	if e.profile.ETag && ifMatch != "" && ifMatch != "*" && ifMatch != u.version() {
		return nil, &scimError{http.StatusPreconditionFailed, "", "the resource changed: version " + u.version()}
	}
	return u, nil
}

// replace is PUT. Callers hold e.mu.
func (e *Emulator) replace(id, ifMatch string, res map[string]any) (*User, *scimError) {
	u, se := e.find(id, ifMatch)
	if se != nil {
		return nil, se
	}
	res = normalize(res).(map[string]any)
	if se := e.validate(res, id); se != nil {
		return nil, se
	}
	e.store(u, res)
	return u, nil
}

// patchOp is one operation of a PatchOp.
type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// patch applies replace, add and remove operations on singular
// attributes (paths "a", "a.b" or "<urn>:a"). Callers hold e.mu.
func (e *Emulator) patch(id, ifMatch string, ops []patchOp) (*User, *scimError) {
	if !e.profile.Patch {
		return nil, &scimError{http.StatusNotImplemented, "", "PATCH is not supported"}
	}
	u, se := e.find(id, ifMatch)
	if se != nil {
		return nil, se
	}
	res := emulation.DeepCopy(u.Resource).(map[string]any)
	for _, op := range ops {
		switch strings.ToLower(op.Op) {
		case "replace", "add":
			if op.Path == "" {
				m, ok := normalize(op.Value).(map[string]any)
				if !ok {
					return nil, &scimError{http.StatusBadRequest, "invalidSyntax", "a patch without path needs an object value"}
				}
				merge(res, m)
				continue
			}
			setPath(res, op.Path, normalize(op.Value))
		case "remove":
			if op.Path == "" {
				return nil, &scimError{http.StatusBadRequest, "noTarget", "remove needs a path"}
			}
			setPath(res, op.Path, nil)
		default:
			return nil, &scimError{http.StatusBadRequest, "invalidSyntax", fmt.Sprintf("unknown op %q", op.Op)}
		}
	}
	if se := e.validate(res, id); se != nil {
		return nil, se
	}
	e.store(u, res)
	return u, nil
}

// merge replaces the attributes of res that m names; a complex attribute
// (name, the enterprise extension) is merged one level down.
func merge(res, m map[string]any) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			if cur, ok := res[k].(map[string]any); ok {
				for sk, sv := range sub {
					cur[sk] = sv
				}
				continue
			}
		}
		res[k] = v
	}
}

// setPath sets (nil: removes) the attribute at path in res.
func setPath(res map[string]any, path string, v any) {
	obj, attr := res, path
	if i := strings.LastIndexByte(path, ':'); i > 0 && strings.HasPrefix(strings.ToLower(path), "urn:") {
		// "<schema URN>:attr": an attribute of a schema extension.
		urn := canon(path[:i])
		for k := range res {
			if strings.EqualFold(k, urn) {
				urn = k
			}
		}
		sub, _ := res[urn].(map[string]any)
		if sub == nil {
			sub = map[string]any{}
			res[urn] = sub
		}
		obj, attr = sub, path[i+1:]
	} else if i := strings.IndexByte(path, '.'); i > 0 {
		parent := canon(path[:i])
		sub, _ := res[parent].(map[string]any)
		if sub == nil {
			sub = map[string]any{}
			res[parent] = sub
		}
		obj, attr = sub, path[i+1:]
	}
	if v == nil {
		delete(obj, canon(attr))
		return
	}
	obj[canon(attr)] = v
}

// remove is DELETE. Callers hold e.mu.
func (e *Emulator) remove(id, ifMatch string) *scimError {
	if _, se := e.find(id, ifMatch); se != nil {
		return se
	}
	e.forget(id)
	return nil
}

// term is one "attr eq value" of a filter: path is the attribute path
// as canonically spelt ("userName", "name.givenName"); value is a string,
// or a bool for true and false.
type term struct {
	path  string
	value any
}

// parseFilter parses `attr eq "value"` terms (a string, true or false)
// joined with and, as the profile allows; names and operators without
// case. Any other operator, or, not, parentheses and value paths are
// refused with 400 invalidFilter.
func (e *Emulator) parseFilter(f string) ([]term, *scimError) {
	invalid := func(detail string) *scimError { return &scimError{http.StatusBadRequest, "invalidFilter", detail} }
	var terms []term
	rest := strings.TrimSpace(f)
	for rest != "" {
		fields := strings.SplitN(rest, " ", 3)
		if len(fields) < 3 || !strings.EqualFold(fields[1], "eq") {
			return nil, invalid("only eq is supported")
		}
		path := canonPath(fields[0])
		if !e.filterable(path) {
			return nil, invalid("filtering on " + fields[0] + " is not supported")
		}
		v := strings.TrimSpace(fields[2])
		var value any
		switch {
		case strings.HasPrefix(v, `"`):
			end := closingQuote(v)
			if end < 0 {
				return nil, invalid("unterminated string")
			}
			value = strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(v[1:end])
			rest = strings.TrimSpace(v[end+1:])
		default:
			word, after, _ := strings.Cut(v, " ")
			if !strings.EqualFold(word, "true") && !strings.EqualFold(word, "false") {
				return nil, invalid("the value must be a quoted string, true or false")
			}
			value, rest = strings.EqualFold(word, "true"), strings.TrimSpace(after)
		}
		terms = append(terms, term{path, value})
		if rest != "" {
			and, after, ok := strings.Cut(rest, " ")
			if !ok || !strings.EqualFold(and, "and") {
				return nil, invalid("terms must be joined with and")
			}
			if e.profile.NoAnd {
				return nil, invalid("terms cannot be joined: filter on userName or externalId alone")
			}
			rest = strings.TrimSpace(after)
		}
	}
	return terms, nil
}

// canonPath spells an attribute path ("name.givenname") canonically.
func canonPath(p string) string {
	if a, b, ok := strings.Cut(p, "."); ok {
		return canon(a) + "." + canon(b)
	}
	return canon(p)
}

// filterable reports whether a filter may test path: a profile's
// FilterAttrs, or any singular attribute.
func (e *Emulator) filterable(path string) bool {
	if len(e.profile.FilterAttrs) > 0 {
		return slices.Contains(e.profile.FilterAttrs, path)
	}
	switch path {
	case "emails", "phoneNumbers", "addresses", "schemas", "name":
		return false
	}
	return path == "id" || canonical[strings.ToLower(strings.Split(path, ".")[0])] != ""
}

// closingQuote is the index of the quote that ends the string literal v
// starts with, -1 when none does.
func closingQuote(v string) int {
	for i := 1; i < len(v); i++ {
		switch v[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

func (u *User) matches(terms []term) bool {
	for _, t := range terms {
		var got any
		switch t.path {
		case "id":
			got = u.ID
		case "active":
			got = u.Active
		default:
			got = u.Resource
			for _, part := range strings.Split(t.path, ".") {
				m, _ := got.(map[string]any)
				got = m[part]
			}
		}
		switch want := t.value.(type) {
		case bool:
			if b, ok := got.(bool); !ok || b != want {
				return false
			}
		case string:
			// userName is not case-exact (RFC 7643 section 4.1.1); the
			// other strings are compared as stored.
			g, _ := got.(string)
			if g != want && (t.path != "userName" || !strings.EqualFold(g, want)) {
				return false
			}
		}
	}
	return true
}

// forget removes a user. Callers hold e.mu.
func (e *Emulator) forget(id string) {
	if u := e.users[id]; u != nil && e.names[strings.ToLower(u.UserName)] == id {
		delete(e.names, strings.ToLower(u.UserName))
	}
	delete(e.users, id)
}
