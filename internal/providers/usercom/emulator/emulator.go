// Package emulator is an in-memory user.com public API for tests,
// benchmarks and the demo, built on the emulation harness. It implements
// user.com's documented contract on its own: it does not import the
// operator's user.com client.
package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/usersync/usersync-operator/internal/providers/emulation"
)

// Options configures an Emulator.
type Options struct {
	// Tokens are the API keys the emulator accepts.
	Tokens []string
	// Attributes are the custom attributes defined in the app: name to
	// type, one of the Type constants. A value for another name is
	// refused.
	Attributes map[string]string
	// MaxIDs is the most ids one mass call may carry; 0 means 100. A
	// larger call is refused with 400.
	MaxIDs int
	// Latency delays every answer.
	Latency time.Duration
}

// Types of custom attributes, as Options.Attributes takes them.
const (
	TypeString   = "string"
	TypeInteger  = "integer"
	TypeFloat    = "float"
	TypeBoolean  = "boolean"
	TypeDate     = "date"
	TypeDatetime = "datetime"
)

// Endpoint names, as Calls, Inputs and Inject take them.
const (
	EndpointUpsert  = "users/update_or_create/"
	EndpointMass    = "users/mass_update_custom_attributes/"
	EndpointPerUser = "users/{id}/set_multiple_attributes/"
	EndpointDelete  = "users-by-id/{custom_id}/"
	EndpointList    = "users/"
	// EndpointRead is GET users-by-id/{custom_id}/, the read of one user.
	EndpointRead = "GET users-by-id/{custom_id}/"
)

// User is a user stored by the emulator.
type User struct {
	ID        int64
	CustomID  string
	Email     string
	FirstName string
	LastName  string
	// Fields holds the other standard fields (phone_number, city, ...)
	// update_or_create set, as sent.
	Fields map[string]any
	// Attributes holds the custom attributes with their typed values:
	// string (also for date and datetime), int64, float64 or bool.
	Attributes map[string]any
}

// Fault is an injected answer (see emulation.Fault); a status is answered
// with {"detail": "Injected fault: ..."}. A 429 carries Retry-After only
// when the fault sets RetryAfter.
type Fault = emulation.Fault

// Body faults, as Fault.Body takes them.
const (
	Malformed = emulation.Malformed
	Truncated = emulation.Truncated
)

// user.com's contract.
const (
	// APIPath is where user.com serves its public API on the app's host.
	APIPath = "/api/public/"
	// defaultMaxIDs is the most ids of one mass call.
	defaultMaxIDs = 100
	// maxBody bounds what is read of a call.
	maxBody = 8 << 20

	fieldCustomID  = "custom_id"
	fieldEmail     = "email"
	fieldFirstName = "first_name"
	fieldLastName  = "last_name"
)

// standardAttrs are user.com's standard user fields besides the ones above.
var standardAttrs = map[string]bool{
	"assigned_to": true, "city": true, "company_id": true, "country": true,
	"facebook_url": true, "gender": true, "google_url": true, "gravatar_url": true,
	"linkedin_url": true, "notifications": true, "phone_number": true, "region": true,
	"score": true, "status": true, "timezone": true, "twitter_url": true,
	"unsubscribed": true,
}

// Emulator is an in-memory user.com public API for tests and the demo, a
// real HTTP server under /api/public/. It is safe for concurrent use.
//
// It serves update_or_create (keyed on custom_id, with standard fields and
// typed custom attributes as top-level keys), mass_update_custom_attributes
// (PUT or POST), users/{id}/set_multiple_attributes/, GET and DELETE
// users-by-id/{custom_id}/ and GET users/ (paged by limit and offset). A
// user is answered with its standard fields at the top level and its
// custom attributes under "attributes", an object of name to value; an
// unknown custom_id gets 404 {"detail":"Not found."}.
// Every request needs "Authorization: Token <key>" with a key of
// Options.Tokens; others get 401 {"detail":"Invalid token."}.
//
// Where user.com documents nothing, it makes these choices, in the style of
// the Django REST Framework app user.com is: a path without its trailing
// slash gets 404 with a message saying so (no redirect); errors are
// {"detail": "..."} or field errors {"field": ["..."]}; a custom attribute
// the app does not define gets 400 {"detail":"Attribute 'x' does not
// exist"}; a value of the wrong type gets a 400 field error; a mass call
// naming ids of users that do not exist writes nothing and gets 404
// {"detail":"Users with ids 12, 15 do not exist."}; a mass call with more
// than MaxIDs ids gets 400 {"ids":["Ensure this field has no more than N
// elements."]}; null clears an attribute. It is stricter about types than
// user.com may be: a string attribute takes only strings, an integer one
// only JSON integers.
//
// The harness (emulation.Server) gives it StartOn, Close, Inject, Calls, Inputs,
// Log and ResetCounters. Calls counts the authenticated requests to an
// endpoint (an Endpoint constant), refused and faulted ones included;
// Inputs lists, per call, the ids of a mass call or the attributes of a
// set_multiple_attributes call. ResetCounters keeps users and queued
// faults.
type Emulator struct {
	*emulation.Server
	opts Options

	mu       sync.Mutex
	users    map[int64]*User
	byCustom map[string]int64
	nextID   int64
}

// New returns an Emulator that is not listening yet.
func New(o Options) *Emulator {
	if o.MaxIDs <= 0 {
		o.MaxIDs = defaultMaxIDs
	}
	e := &Emulator{
		opts:     o,
		users:    map[int64]*User{},
		byCustom: map[string]int64{},
		nextID:   5000,
	}
	e.Server = &emulation.Server{Handler: http.HandlerFunc(e.handle), ErrorBody: faultBody, Latency: o.Latency}
	return e
}

// Start serves on a free port of 127.0.0.1 and returns the API base URL,
// which ends in /api/public/. It panics when no port can be opened, as
// httptest.NewServer does.
func (e *Emulator) Start() string {
	e.Server.Start()
	return e.URL()
}

// URL is the API base URL the emulator serves on, ending in /api/public/.
func (e *Emulator) URL() string {
	if e.Server.URL() == "" {
		return ""
	}
	return e.Server.URL() + APIPath
}

// Users returns a copy of every user, ordered by id.
func (e *Emulator) Users() []User {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]User, 0, len(e.users))
	for _, id := range slices.Sorted(maps.Keys(e.users)) {
		out = append(out, copyUser(e.users[id]))
	}
	return out
}

// UserByCustomID returns a copy of the user with this custom_id.
func (e *Emulator) UserByCustomID(customID string) (User, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.byCustom[customID]
	if !ok {
		return User{}, false
	}
	return copyUser(e.users[id]), true
}

// DeleteUser removes the user with this custom_id, as someone deleting it
// in user.com's panel would; it reports whether there was one.
func (e *Emulator) DeleteUser(customID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.remove(customID)
}

// EditUser changes the user with this custom_id as someone editing it in
// user.com's panel would, and reports whether there was one. fields maps
// email, first_name, last_name, a standard field (phone_number, ...) or a
// custom attribute to its new value, stored as given, without the checks
// of the API (an integer attribute may be given "3"); nil removes a
// standard field or an attribute and empties email and the names.
func (e *Emulator) EditUser(customID string, fields map[string]any) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	id, ok := e.byCustom[customID]
	if !ok {
		return false
	}
	u := e.users[id]
	for name, v := range fields {
		s, _ := v.(string)
		switch {
		case name == fieldEmail:
			u.Email = s
		case name == fieldFirstName:
			u.FirstName = s
		case name == fieldLastName:
			u.LastName = s
		case standardAttrs[name]:
			setAll(u.Fields, map[string]any{name: v})
		default:
			setAll(u.Attributes, map[string]any{name: v})
		}
	}
	return true
}

// remove deletes a user by custom_id. Callers hold e.mu.
func (e *Emulator) remove(customID string) bool {
	id, ok := e.byCustom[customID]
	if ok {
		delete(e.byCustom, customID)
		delete(e.users, id)
	}
	return ok
}

func copyUser(u *User) User {
	c := *u
	c.Fields = maps.Clone(u.Fields)
	c.Attributes = maps.Clone(u.Attributes)
	return c
}

// handle checks the path, the method and the API key, then serves the call
// through the harness (faults, counters).
func (e *Emulator) handle(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.EscapedPath(), APIPath)
	if !ok {
		emulation.WriteJSON(w, http.StatusNotFound, detail("Not found."))
		return
	}
	if !strings.HasSuffix(rest, "/") {
		emulation.WriteJSON(w, http.StatusNotFound, detail(fmt.Sprintf(
			"Not found. user.com API paths end with a slash: %s%s/", APIPath, rest)))
		return
	}
	endpoint, param, methods := route(r.Method, rest)
	if endpoint == "" {
		emulation.WriteJSON(w, http.StatusNotFound, detail("Not found."))
		return
	}
	if !slices.Contains(methods, r.Method) {
		emulation.WriteJSON(w, http.StatusMethodNotAllowed, detail(fmt.Sprintf("Method %q not allowed.", r.Method)))
		return
	}
	if msg, ok := e.authorized(r); !ok {
		emulation.WriteJSON(w, http.StatusUnauthorized, detail(msg))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		emulation.WriteJSON(w, http.StatusBadRequest, detail("The body could not be read."))
		return
	}
	inputs, counted := countInputs(endpoint, body)
	if !counted {
		inputs = -1
	}
	e.Serve(w, r, endpoint, inputs, func(w http.ResponseWriter, r *http.Request) { e.serve(w, r, endpoint, param, body) })
}

// route maps a method and an escaped path below /api/public/ to its
// endpoint, the path's (unescaped) parameter and the methods it allows; an
// unknown path gives "".
func route(method, rest string) (endpoint, param string, methods []string) {
	switch rest {
	case EndpointUpsert:
		return EndpointUpsert, "", []string{http.MethodPost}
	case EndpointMass:
		return EndpointMass, "", []string{http.MethodPost, http.MethodPut}
	case EndpointList:
		return EndpointList, "", []string{http.MethodGet}
	}
	parts := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	switch {
	case len(parts) == 3 && parts[0] == "users" && parts[2] == "set_multiple_attributes":
		return EndpointPerUser, parts[1], []string{http.MethodPost}
	case len(parts) == 2 && parts[0] == "users-by-id":
		customID, err := url.PathUnescape(parts[1])
		switch {
		case err != nil:
		case method == http.MethodGet:
			return EndpointRead, customID, []string{http.MethodGet, http.MethodDelete}
		default:
			return EndpointDelete, customID, []string{http.MethodGet, http.MethodDelete}
		}
	}
	return "", "", nil
}

// countInputs is what Inputs records for a call: the ids of a mass call,
// the attributes of a set_multiple_attributes call.
func countInputs(endpoint string, body []byte) (int, bool) {
	switch endpoint {
	case EndpointMass:
		var req struct {
			IDs []json.RawMessage `json:"ids"`
		}
		_ = json.Unmarshal(body, &req)
		return len(req.IDs), true
	case EndpointPerUser:
		var req map[string]json.RawMessage
		_ = json.Unmarshal(body, &req)
		return len(req), true
	}
	return 0, false
}

// authorized checks the Token header; the message says why it failed.
func (e *Emulator) authorized(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "Authentication credentials were not provided.", false
	}
	scheme, tok, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Token") || !slices.Contains(e.opts.Tokens, strings.TrimSpace(tok)) {
		return "Invalid token.", false
	}
	return "", true
}

// serve carries out an authenticated call.
func (e *Emulator) serve(w http.ResponseWriter, r *http.Request, endpoint, param string, body []byte) {
	if endpoint == EndpointList {
		e.list(w, r)
		return
	}
	if endpoint == EndpointRead {
		e.mu.Lock()
		var u map[string]any
		if id, ok := e.byCustom[param]; ok {
			u = userJSON(e.users[id])
		}
		e.mu.Unlock()
		if u == nil {
			emulation.WriteJSON(w, http.StatusNotFound, detail("Not found."))
			return
		}
		emulation.WriteJSON(w, http.StatusOK, u)
		return
	}
	if endpoint == EndpointDelete {
		e.mu.Lock()
		ok := e.remove(param)
		e.mu.Unlock()
		if !ok {
			emulation.WriteJSON(w, http.StatusNotFound, detail("Not found."))
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var req map[string]any
	if err := dec.Decode(&req); err != nil || req == nil {
		emulation.WriteJSON(w, http.StatusBadRequest, detail("JSON parse error: the body must be a JSON object."))
		return
	}
	switch endpoint {
	case EndpointUpsert:
		e.upsert(w, req)
	case EndpointMass:
		e.mass(w, req)
	case EndpointPerUser:
		e.setMultiple(w, param, req)
	}
}

var emuEmailRE = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)

// upsert serves update_or_create.
func (e *Emulator) upsert(w http.ResponseWriter, req map[string]any) {
	fieldErrs := map[string][]string{}
	strField := func(name string) (string, bool) {
		v, present := req[name]
		if !present || v == nil {
			return "", present
		}
		s, ok := v.(string)
		if !ok {
			fieldErrs[name] = []string{"Not a valid string."}
		}
		return s, true
	}
	customID, _ := strField(fieldCustomID)
	if customID == "" && fieldErrs[fieldCustomID] == nil {
		fieldErrs[fieldCustomID] = []string{"This field is required."}
	}
	email, hasEmail := strField(fieldEmail)
	if email != "" && !emuEmailRE.MatchString(email) {
		fieldErrs[fieldEmail] = []string{"Enter a valid email address."}
	}
	first, hasFirst := strField(fieldFirstName)
	last, hasLast := strField(fieldLastName)
	std := map[string]any{}
	attrs := map[string]any{}
	for _, name := range slices.Sorted(maps.Keys(req)) {
		v := req[name]
		switch {
		case name == fieldCustomID || name == fieldEmail || name == fieldFirstName || name == fieldLastName || name == "id":
		case standardAttrs[name]:
			std[name] = plain(v)
		default:
			typed, msg, known := e.typed(name, v)
			if !known {
				emulation.WriteJSON(w, http.StatusBadRequest, detail(fmt.Sprintf("Attribute '%s' does not exist", name)))
				return
			}
			if msg != "" {
				fieldErrs[name] = []string{msg}
				continue
			}
			attrs[name] = typed
		}
	}
	if len(fieldErrs) > 0 {
		emulation.WriteJSON(w, http.StatusBadRequest, fieldErrs)
		return
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	u, created := e.users[e.byCustom[customID]], false
	if u == nil {
		u = &User{ID: e.nextID, CustomID: customID, Fields: map[string]any{}, Attributes: map[string]any{}}
		e.nextID++
		e.users[u.ID], e.byCustom[customID] = u, u.ID
		created = true
	}
	if hasEmail {
		u.Email = email
	}
	if hasFirst {
		u.FirstName = first
	}
	if hasLast {
		u.LastName = last
	}
	setAll(u.Fields, std)
	setAll(u.Attributes, attrs)
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	emulation.WriteJSON(w, status, map[string]any{"created": created, "id": u.ID})
}

// mass serves mass_update_custom_attributes.
func (e *Emulator) mass(w http.ResponseWriter, req map[string]any) {
	list, ok := req["ids"].([]any)
	if !ok {
		emulation.WriteJSON(w, http.StatusBadRequest, map[string][]string{"ids": {"Expected a list of items."}})
		return
	}
	if len(list) == 0 {
		emulation.WriteJSON(w, http.StatusBadRequest, map[string][]string{"ids": {"This list may not be empty."}})
		return
	}
	if len(list) > e.opts.MaxIDs {
		emulation.WriteJSON(w, http.StatusBadRequest, map[string][]string{"ids": {fmt.Sprintf("Ensure this field has no more than %d elements.", e.opts.MaxIDs)}})
		return
	}
	ids := make([]int64, len(list))
	for i, v := range list {
		n, isNum := v.(json.Number)
		id, err := n.Int64()
		if !isNum || err != nil {
			emulation.WriteJSON(w, http.StatusBadRequest, map[string][]string{"ids": {fmt.Sprintf("Item %d: a valid integer is required.", i)}})
			return
		}
		ids[i] = id
	}
	attr, _ := req["attribute"].(string)
	if attr == "" || len(attr) > 255 {
		emulation.WriteJSON(w, http.StatusBadRequest, map[string][]string{"attribute": {"Ensure this field has between 1 and 255 characters."}})
		return
	}
	value, present := req["value"]
	if !present {
		emulation.WriteJSON(w, http.StatusBadRequest, map[string][]string{"value": {"This field is required."}})
		return
	}
	typed, msg, known := e.typed(attr, value)
	if !known {
		emulation.WriteJSON(w, http.StatusBadRequest, detail(fmt.Sprintf("Attribute '%s' does not exist", attr)))
		return
	}
	if msg != "" {
		emulation.WriteJSON(w, http.StatusBadRequest, map[string][]string{"value": {msg}})
		return
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	var missing []string
	for _, id := range ids {
		if e.users[id] == nil {
			missing = append(missing, strconv.FormatInt(id, 10))
		}
	}
	if len(missing) > 0 {
		emulation.WriteJSON(w, http.StatusNotFound, detail(fmt.Sprintf("Users with ids %s do not exist.", strings.Join(missing, ", "))))
		return
	}
	for _, id := range ids {
		setAll(e.users[id].Attributes, map[string]any{attr: typed})
	}
	emulation.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// setMultiple serves users/{id}/set_multiple_attributes/.
func (e *Emulator) setMultiple(w http.ResponseWriter, param string, req map[string]any) {
	id, err := strconv.ParseInt(param, 10, 64)
	e.mu.Lock()
	exists := err == nil && e.users[id] != nil
	e.mu.Unlock()
	if !exists {
		emulation.WriteJSON(w, http.StatusNotFound, detail("Not found."))
		return
	}
	if len(req) == 0 {
		emulation.WriteJSON(w, http.StatusBadRequest, detail("No attributes given."))
		return
	}
	attrs := map[string]any{}
	fieldErrs := map[string][]string{}
	for _, name := range slices.Sorted(maps.Keys(req)) {
		typed, msg, known := e.typed(name, req[name])
		if !known {
			emulation.WriteJSON(w, http.StatusBadRequest, detail(fmt.Sprintf("Attribute '%s' does not exist", name)))
			return
		}
		if msg != "" {
			fieldErrs[name] = []string{msg}
			continue
		}
		attrs[name] = typed
	}
	if len(fieldErrs) > 0 {
		emulation.WriteJSON(w, http.StatusBadRequest, fieldErrs)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	u := e.users[id]
	if u == nil {
		emulation.WriteJSON(w, http.StatusNotFound, detail("Not found."))
		return
	}
	setAll(u.Attributes, attrs)
	emulation.WriteJSON(w, http.StatusOK, userJSON(u))
}

// list serves GET users/, paged by limit (at most 100) and offset.
func (e *Emulator) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 || limit > 100 {
		limit = 100
	}
	offset, err := strconv.Atoi(q.Get("offset"))
	if err != nil || offset < 0 {
		offset = 0
	}
	e.mu.Lock()
	ids := slices.Sorted(maps.Keys(e.users))
	page := []map[string]any{}
	for _, id := range ids[min(offset, len(ids)):min(offset+limit, len(ids))] {
		page = append(page, userJSON(e.users[id]))
	}
	e.mu.Unlock()
	var next any
	if offset+limit < len(ids) {
		next = fmt.Sprintf("http://%s%s%s?limit=%d&offset=%d", r.Host, APIPath, EndpointList, limit, offset+limit)
	}
	emulation.WriteJSON(w, http.StatusOK, map[string]any{"count": len(ids), "next": next, "previous": nil, "results": page})
}

// typed checks a custom attribute value against the attribute's type and
// returns it as stored. known is false for an attribute the app does not
// define; msg says why a value does not fit. nil clears the attribute.
func (e *Emulator) typed(name string, v any) (typed any, msg string, known bool) {
	typ, known := e.opts.Attributes[name]
	if !known || v == nil {
		return nil, "", known
	}
	bad := fmt.Sprintf("Invalid value for attribute '%s' of type %s: %s", name, typ, jsonText(v))
	switch typ {
	case TypeString:
		if s, ok := v.(string); ok {
			return s, "", true
		}
	case TypeInteger:
		if n, ok := v.(json.Number); ok {
			if i, err := n.Int64(); err == nil {
				return i, "", true
			}
		}
	case TypeFloat:
		if n, ok := v.(json.Number); ok {
			if f, err := n.Float64(); err == nil {
				return f, "", true
			}
		}
	case TypeBoolean:
		if b, ok := v.(bool); ok {
			return b, "", true
		}
	case TypeDate:
		if s, ok := v.(string); ok {
			if _, err := time.Parse(time.DateOnly, s); err == nil {
				return s, "", true
			}
		}
	case TypeDatetime:
		if s, ok := v.(string); ok {
			if _, err := time.Parse(time.RFC3339, s); err == nil {
				return s, "", true
			}
		}
	default:
		return nil, fmt.Sprintf("attribute '%s' has the unknown type %q", name, typ), true
	}
	return nil, bad, true
}

// setAll writes values over dst; nil deletes.
func setAll(dst, values map[string]any) {
	for k, v := range values {
		if v == nil {
			delete(dst, k)
		} else {
			dst[k] = v
		}
	}
}

// plain turns decoded JSON numbers into int64 or float64.
func plain(v any) any {
	n, ok := v.(json.Number)
	if !ok {
		return v
	}
	if i, err := n.Int64(); err == nil {
		return i
	}
	f, _ := n.Float64()
	return f
}

// jsonText renders a decoded value as JSON.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// userJSON is a user as the API shows it.
func userJSON(u *User) map[string]any {
	m := map[string]any{
		"id": u.ID, fieldCustomID: u.CustomID, fieldEmail: u.Email,
		fieldFirstName: u.FirstName, fieldLastName: u.LastName,
		"attributes": maps.Clone(u.Attributes),
	}
	maps.Copy(m, u.Fields)
	return m
}

func detail(msg string) map[string]string { return map[string]string{"detail": msg} }

// faultBody is the answer to an injected status.
func faultBody(status int) any {
	return detail(fmt.Sprintf("Injected fault: %s.", http.StatusText(status)))
}
