// Package emulator is an in-memory Propel REST v2 API for tests,
// benchmarks and the demo, built on the emulation harness. It implements
// Propel's documented contract on its own: it does not import the
// operator's Propel client.
package emulator

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	mrand "math/rand/v2"
	"net/http"
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
	// Clients maps the client ids the token endpoint accepts to their
	// secrets.
	Clients map[string]string
	// TokenTTL is the lifetime of an access token; 0 means Propel's 30
	// minutes.
	TokenTTL time.Duration
	// MaxBatch is the most users one bulk call may carry; 0 means 100. A
	// larger call is refused with a SchemaValidationException.
	MaxBatch int
	// Latency delays every answer.
	Latency time.Duration
	// Validate is an extra rule for every user of a bulk call: i is the
	// user's index in the call. A bad user is refused with message.
	Validate func(i int, u map[string]any) (message string, bad bool)
	// AnonymousErrors leaves the pointer ("#/users/3: ") out of schema
	// messages, so that a client cannot tell which user was bad.
	AnonymousErrors bool
	// ShuffleResults answers a bulk call's items in an order other than the
	// request's.
	ShuffleResults bool
	// RefuseReads makes the account one whose API client may not read
	// users: every GET /users/{lookupKey}/{lookupValue} with a valid token
	// gets 403 (see SetRefuseReads).
	RefuseReads bool
}

// Emulator is an in-memory Propel REST v2 API for tests and the demo. It
// serves the token endpoint, the bulk user upserts and the user lookup, at
// the root and under /v2. It is safe for concurrent use.
//
// Its fidelity: Propel's documented request and answer shapes and error
// codes. The lookup answers {"data": user, "messages": [...]} with the
// user as stored (its attributes a list of {name, value, type}), or 404
// with error code 10008 NotFound; by sourceId it needs the source query
// parameter, and matches the language parameter when given (else the
// user of that sourceId with the lowest id). Where Propel documents
// nothing, it makes these choices: an account that refuses reads
// (RefuseReads) answers a lookup 403 {"error":{"code":"10003","type":
// "AuthorizationException",...}}; a bulk
// call is checked against the schema as a whole and refused with one 400
// that lists every bad user; /users/bulk/id creates a user under a new id
// when it does not know the id it is given; a numeric sourceId is echoed as
// a JSON number, as in Propel's documented example answer.
//
// The harness (emulation.Server) gives it Start, StartOn, URL, Close,
// Inject, Calls, Inputs, Log and ResetCounters. Calls and Inject take a
// request path without /v2 (PathToken, PathBulkSource, PathBulkID, or a
// lookup such as "/users/sourceId/42"); Calls counts the requests to it
// that passed authentication, refused and faulted ones included, and
// token requests. Inputs lists the users of every bulk call. ResetCounters
// keeps users, tokens and queued faults.
type Emulator struct {
	*emulation.Server
	opts Options
	api  *http.ServeMux

	mu          sync.Mutex
	tokens      map[string]time.Time
	users       map[int64]map[string]any
	bySource    map[sourceKey]int64
	nextID      int64
	refuseReads bool
}

// Fault is an injected answer (see emulation.Fault); a status is answered
// with Propel's error object. A 429 carries Retry-After only when the
// fault sets RetryAfter (Propel sends "1").
type Fault = emulation.Fault

// Body faults, as Fault.Body takes them.
const (
	Malformed = emulation.Malformed
	Truncated = emulation.Truncated
)

// sourceKey is the natural key Propel matches bulk/sourceId users on.
type sourceKey struct{ source, sourceID, language string }

// Paths the emulator serves, as Calls, Inputs and Inject take them.
const (
	PathToken      = "/oauth2/token"
	PathBulkSource = "/users/bulk/sourceId"
	PathBulkID     = "/users/bulk/id"
)

// Propel's contract.
const (
	// defaultTokenTTL is the lifetime Propel documents for its tokens.
	defaultTokenTTL = 30 * time.Minute
	// defaultMaxBatch is the most users of one bulk call.
	defaultMaxBatch = 100
	// maxBody bounds what is read of a bulk call.
	maxBody = 8 << 20
)

// New returns an Emulator that is not listening yet.
func New(o Options) *Emulator {
	if o.TokenTTL <= 0 {
		o.TokenTTL = defaultTokenTTL
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = defaultMaxBatch
	}
	e := &Emulator{
		opts:     o,
		tokens:   map[string]time.Time{},
		users:    map[int64]map[string]any{},
		bySource: map[sourceKey]int64{},
		nextID:   1000,

		refuseReads: o.RefuseReads,
	}
	e.api = http.NewServeMux()
	e.api.HandleFunc("POST "+PathBulkSource, func(w http.ResponseWriter, r *http.Request) { e.bulk(w, r, "sourceId") })
	e.api.HandleFunc("POST "+PathBulkID, func(w http.ResponseWriter, r *http.Request) { e.bulk(w, r, "id") })
	e.api.HandleFunc("GET /users/{lookupKey}/{lookupValue}", e.getUser)
	e.Server = &emulation.Server{Handler: http.HandlerFunc(e.route), ErrorBody: faultBody, Latency: o.Latency}
	return e
}

// ExpireTokens makes every access token issued so far invalid.
func (e *Emulator) ExpireTokens() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.tokens)
}

// Users returns a copy of every stored user, ordered by id. A user's "id"
// is an int64; numbers it was sent with are json.Number.
func (e *Emulator) Users() []map[string]any {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := slices.Sorted(maps.Keys(e.users))
	out := make([]map[string]any, len(ids))
	for i, id := range ids {
		out[i] = emulation.DeepCopy(e.users[id]).(map[string]any)
	}
	return out
}

// UserBySourceID returns a copy of the user with this source and sourceId;
// of several (one per language) the one with the lowest id.
func (e *Emulator) UserBySourceID(source, sourceID string) (map[string]any, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	u := e.findBySource(source, sourceID, nil)
	if u == nil {
		return nil, false
	}
	return emulation.DeepCopy(u).(map[string]any), true
}

// EditUser changes the user with this source and sourceId (of several, the
// one UserBySourceID returns) as someone editing it in Propel's back
// office would, and reports whether there was one. fields maps a user
// field (email, firstName, phone, language, ...) to its new value, stored
// as given, without the schema's checks; nil removes the field. The
// attributes are changed with EditAttributes.
func (e *Emulator) EditUser(source, sourceID string, fields map[string]any) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	u := e.findBySource(source, sourceID, nil)
	if u == nil {
		return false
	}
	id, _ := u["id"].(int64)
	delete(e.bySource, keyOf(u))
	for k, v := range fields {
		switch {
		case k == "id" || k == "attributes":
		case v == nil:
			delete(u, k)
		default:
			u[k] = v
		}
	}
	if _, ok := u["sourceId"]; ok {
		e.bySource[keyOf(u)] = id
	}
	return true
}

// EditAttributes changes the attributes of the user with this source and
// sourceId (as EditUser finds it) and reports whether there was one. attrs
// maps an attribute's name to its new value, stored as given (Propel's API
// takes text, but a test may store 3 for "3"); nil removes the attribute.
// A new attribute is of type text.
func (e *Emulator) EditAttributes(source, sourceID string, attrs map[string]any) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	u := e.findBySource(source, sourceID, nil)
	if u == nil {
		return false
	}
	list, _ := u["attributes"].([]any)
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		i := slices.IndexFunc(list, func(a any) bool { return a.(map[string]any)["name"] == name })
		switch v := attrs[name]; {
		case v == nil && i >= 0:
			list = slices.Delete(list, i, i+1)
		case v == nil:
		case i >= 0:
			list[i].(map[string]any)["value"] = v
		default:
			list = append(list, map[string]any{"name": name, "value": v, "type": "text"})
		}
	}
	u["attributes"] = list
	return true
}

// DeleteUser removes every user with this source and sourceId (one per
// language), as someone deleting them in Propel's back office would, and
// reports whether there was one.
func (e *Emulator) DeleteUser(source, sourceID string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	found := false
	for k, id := range e.bySource {
		if k.source == source && k.sourceID == sourceID {
			delete(e.bySource, k)
			delete(e.users, id)
			found = true
		}
	}
	return found
}

// SetRefuseReads makes the account refuse reads (403 on every lookup), or
// allow them again, from the next request on.
func (e *Emulator) SetRefuseReads(refuse bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.refuseReads = refuse
}

// Lookups is the number of GET /users/{lookupKey}/{lookupValue} requests
// that passed authentication since the last ResetCounters, refused and
// faulted ones included.
func (e *Emulator) Lookups() int {
	n := 0
	for _, c := range e.Log() {
		if strings.HasPrefix(c.Endpoint, "/users/") && !strings.HasPrefix(c.Endpoint, "/users/bulk/") {
			n++
		}
	}
	return n
}

// findBySource finds a user by source and sourceId, and by language unless
// language is nil. Callers hold e.mu.
func (e *Emulator) findBySource(source, sourceID string, language *string) map[string]any {
	if language != nil {
		if id, ok := e.bySource[sourceKey{source, sourceID, *language}]; ok {
			return e.users[id]
		}
		return nil
	}
	best := int64(-1)
	for k, id := range e.bySource {
		if k.source == source && k.sourceID == sourceID && (best < 0 || id < best) {
			best = id
		}
	}
	if best < 0 {
		return nil
	}
	return e.users[best]
}

// route serves a request: the token endpoint, or with a valid access
// token the API, through the harness (faults, counters).
func (e *Emulator) route(w http.ResponseWriter, r *http.Request) {
	if p, ok := strings.CutPrefix(r.URL.Path, "/v2/"); ok {
		r.URL.Path = "/" + p
		r.URL.RawPath = ""
	}
	path := r.URL.Path
	if path == PathToken {
		e.Serve(w, r, path, -1, e.token)
		return
	}
	if !e.authorized(r) {
		writeError(w, http.StatusUnauthorized, "10001", "AuthenticationException", "invalid or expired access token")
		return
	}
	users := -1
	if strings.HasPrefix(path, "/users/bulk/") {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeError(w, http.StatusBadRequest, "10005", "InvalidJSONPayload", "the body could not be read")
			return
		}
		var req struct {
			Users []json.RawMessage `json:"users"`
		}
		_ = json.Unmarshal(body, &req)
		users = len(req.Users)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	e.Serve(w, r, path, users, e.api.ServeHTTP)
}

// faultBody is Propel's error object for an injected status.
func faultBody(status int) any {
	return errorBody(status, strconv.Itoa(status), strings.ReplaceAll(http.StatusText(status), " ", ""), "injected fault")
}

// errorBody is Propel's error object.
func errorBody(status int, code, typ string, messages ...string) any {
	return map[string]any{"error": map[string]any{
		"code":     code,
		"status":   status,
		"type":     typ,
		"messages": messages,
		"moreInfo": "https://www.propel.us/docs/errors/" + code,
	}}
}

// writeError writes Propel's error object.
func writeError(w http.ResponseWriter, status int, code, typ string, messages ...string) {
	emulation.WriteJSON(w, status, errorBody(status, code, typ, messages...))
}

// token serves the client-credentials grant, with the credentials in the
// form or in basic auth.
func (e *Emulator) token(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, http.StatusMethodNotAllowed, "10000", "MethodNotAllowed", "use POST")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "10005", "InvalidRequest", "the form could not be read")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		writeError(w, http.StatusBadRequest, "10005", "InvalidRequest", fmt.Sprintf("unsupported grant_type %q", gt))
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	want, known := e.opts.Clients[id]
	if !known || id == "" || secret != want {
		writeError(w, http.StatusUnauthorized, "10001", "AuthenticationException", "invalid client credentials")
		return
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	e.mu.Lock()
	e.tokens[tok] = time.Now().Add(e.opts.TokenTTL)
	e.mu.Unlock()
	emulation.WriteJSON(w, http.StatusOK, map[string]string{
		"access_token": tok,
		"token_type":   "BearerToken",
		"expires_in":   strconv.Itoa(int(e.opts.TokenTTL / time.Second)),
	})
}

// authorized reports whether r carries a valid access token.
func (e *Emulator) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	exp, ok := e.tokens[tok]
	return ok && time.Now().Before(exp)
}

// problem is one schema violation of a bulk call.
type problem struct {
	index int    // the user's index; -1 for the call itself
	path  string // JSON pointer below the user, e.g. "/gender"
	text  string
}

func (e *Emulator) render(ps []problem) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		switch {
		case e.opts.AnonymousErrors:
			out[i] = p.text
		case p.index < 0:
			out[i] = "#/users" + p.path + ": " + p.text
		default:
			out[i] = fmt.Sprintf("#/users/%d%s: %s", p.index, p.path, p.text)
		}
	}
	return out
}

// bulk serves /users/bulk/sourceId and /users/bulk/id.
func (e *Emulator) bulk(w http.ResponseWriter, r *http.Request, lookupKey string) {
	dec := json.NewDecoder(r.Body)
	dec.UseNumber()
	var body any
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "10005", "InvalidJSONPayload", "the body is not valid JSON")
		return
	}
	top, ok := body.(map[string]any)
	if !ok {
		writeError(w, http.StatusBadRequest, "10007", "SchemaValidationException", "#: expected type: JSONObject")
		return
	}
	raw, ok := top["users"]
	if !ok {
		writeError(w, http.StatusBadRequest, "10016", "LookupKeyNotFound", "#: required key [users] not found")
		return
	}
	list, ok := raw.([]any)
	if !ok {
		writeError(w, http.StatusBadRequest, "10007", "SchemaValidationException", "#/users: expected type: JSONArray")
		return
	}
	if len(list) > e.opts.MaxBatch {
		writeError(w, http.StatusBadRequest, "10007", "SchemaValidationException",
			e.render([]problem{{index: -1, text: fmt.Sprintf("too many items (%d, maximum %d)", len(list), e.opts.MaxBatch)}})...)
		return
	}
	var problems []problem
	users := make([]map[string]any, len(list))
	for i, item := range list {
		u, ok := item.(map[string]any)
		if !ok {
			problems = append(problems, problem{i, "", "expected type: JSONObject, found: " + jsonType(item)})
			continue
		}
		users[i] = u
		problems = append(problems, validateUser(i, u, lookupKey)...)
		if e.opts.Validate != nil {
			if msg, bad := e.opts.Validate(i, u); bad {
				problems = append(problems, problem{i, "", msg})
			}
		}
	}
	if len(problems) > 0 {
		writeError(w, http.StatusBadRequest, "10007", "SchemaValidationException", e.render(problems)...)
		return
	}

	e.mu.Lock()
	items := make([]map[string]any, len(users))
	for i, u := range users {
		if lookupKey == "sourceId" {
			items[i] = e.upsertBySource(u)
		} else {
			items[i] = e.upsertByID(u)
		}
	}
	e.mu.Unlock()
	if e.opts.ShuffleResults {
		shuffle(items)
	}
	emulation.WriteJSON(w, http.StatusOK, map[string]any{"data": items, "messages": []string{"Completed"}, "total": len(items)})
}

// shuffle reorders items at random; should that leave them in order, it
// reverses them.
func shuffle(items []map[string]any) {
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = fmt.Sprint(it["key"])
	}
	mrand.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	for i, it := range items {
		if fmt.Sprint(it["key"]) != keys[i] {
			return
		}
	}
	slices.Reverse(items)
}

// upsertBySource writes u matched on source, sourceId and language. Callers
// hold e.mu.
func (e *Emulator) upsertBySource(u map[string]any) map[string]any {
	k := keyOf(u)
	item := map[string]any{"lookupKey": "sourceId", "key": echoKey(k.sourceID), "success": true}
	if id, ok := e.bySource[k]; ok {
		merge(e.users[id], u)
		item["action"], item["id"] = "update", id
		return item
	}
	id := e.create(u)
	item["action"], item["id"] = "create", id
	return item
}

// upsertByID writes u matched on its id; an unknown id creates a user under
// a new id. A source and sourceId another user has fail the item. Callers
// hold e.mu.
func (e *Emulator) upsertByID(u map[string]any) map[string]any {
	given, _ := u["id"].(json.Number).Int64()
	item := map[string]any{"lookupKey": "id", "key": given, "success": true}
	var k *sourceKey
	if _, ok := u["sourceId"]; ok {
		sk := keyOf(u)
		k = &sk
	}
	existing, found := e.users[given]
	if k != nil {
		if other, taken := e.bySource[*k]; taken && (!found || other != given) {
			item["success"], item["action"] = false, "update"
			item["messages"] = []string{fmt.Sprintf("UserExists: source %q sourceId %q belongs to user %d", k.source, k.sourceID, other)}
			return item
		}
	}
	if !found {
		item["action"], item["id"] = "create", e.create(u)
		return item
	}
	if _, ok := existing["sourceId"]; ok {
		delete(e.bySource, keyOf(existing))
	}
	merge(existing, u)
	existing["id"] = given
	if _, ok := existing["sourceId"]; ok {
		e.bySource[keyOf(existing)] = given
	}
	item["action"], item["id"] = "update", given
	return item
}

// create stores a new user under the next id. Callers hold e.mu.
func (e *Emulator) create(u map[string]any) int64 {
	id := e.nextID
	e.nextID++
	stored := emulation.DeepCopy(u).(map[string]any)
	stored["id"] = id
	e.users[id] = stored
	if _, ok := stored["sourceId"]; ok {
		e.bySource[keyOf(stored)] = id
	}
	return id
}

// merge writes the fields of u over dst; attributes are merged by name.
func merge(dst, u map[string]any) {
	for k, v := range u {
		if k == "id" {
			continue
		}
		if k != "attributes" {
			dst[k] = emulation.DeepCopy(v)
			continue
		}
		old, _ := dst["attributes"].([]any)
		for _, a := range v.([]any) {
			name := a.(map[string]any)["name"]
			i := slices.IndexFunc(old, func(o any) bool { return o.(map[string]any)["name"] == name })
			if i >= 0 {
				old[i] = emulation.DeepCopy(a)
			} else {
				old = append(old, emulation.DeepCopy(a))
			}
		}
		dst["attributes"] = old
	}
}

func keyOf(u map[string]any) sourceKey {
	s, _ := u["source"].(string)
	id, _ := u["sourceId"].(string)
	lang, _ := u["language"].(string)
	return sourceKey{s, id, lang}
}

// echoKey is a sourceId as Propel echoes it: a number when it is one.
func echoKey(s string) any {
	if s != "" && (s == "0" || s[0] != '0') && strings.TrimLeft(s, "0123456789") == "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	return s
}

// Fields of a Propel user the emulator accepts in a bulk call.
var (
	emuStringFields = []string{
		"debtorId", "firstName", "middleName", "lastName", "fullName", "title",
		"dateOfBirth", "gender", "login", "phone", "mobile", "email", "company",
		"taxNumber", "cocNumber", "primaryLanguage", "language", "abbreviation",
		"sourceId", "source",
	}
	emuOtherFields = []string{"id", "parent", "pricelistAmount", "pricelistPercentage", "attributes", "pricing", "addresses"}
	emuAttrTypes   = []string{"text", "integer", "decimal", "enum", "list", "date", "datetime", "color"}
	emuEmailRE     = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
)

// validateUser checks one user of a bulk call against Propel's schema.
func validateUser(i int, u map[string]any, lookupKey string) []problem {
	var ps []problem
	add := func(path, text string) { ps = append(ps, problem{i, path, text}) }

	for _, k := range slices.Sorted(maps.Keys(u)) {
		if !slices.Contains(emuStringFields, k) && !slices.Contains(emuOtherFields, k) {
			add("", fmt.Sprintf("extraneous key [%s] is not permitted", k))
		}
	}
	for _, f := range emuStringFields {
		if v, ok := u[f]; ok {
			if _, isString := v.(string); !isString {
				add("/"+f, "expected type: String, found: "+jsonType(v))
			}
		}
	}
	if lookupKey == "sourceId" {
		for _, f := range []string{"source", "sourceId"} {
			if _, ok := u[f]; !ok {
				add("", fmt.Sprintf("required key [%s] not found", f))
			}
		}
	} else {
		if _, ok := u["id"]; !ok {
			add("", "required key [id] not found")
		}
		if _, ok := u["sourceId"]; ok {
			if _, ok := u["source"]; !ok {
				add("", "required key [source] not found")
			}
		}
	}
	if v, ok := u["id"]; ok {
		if t := jsonType(v); t != "Integer" {
			add("/id", "expected type: Integer, found: "+t)
		}
	}
	for _, f := range []string{"source", "sourceId"} {
		if s, ok := u[f].(string); ok && s == "" {
			add("/"+f, "expected minLength: 1, actual: 0")
		}
	}
	if g, ok := u["gender"].(string); ok && g != "m" && g != "f" && g != "u" {
		add("/gender", g+" is not a valid enum value")
	}
	if m, ok := u["email"].(string); ok && !emuEmailRE.MatchString(m) {
		add("/email", fmt.Sprintf("[%s] is not a valid email address", m))
	}
	if d, ok := u["dateOfBirth"].(string); ok {
		if _, err := time.Parse(time.DateOnly, d); err != nil {
			add("/dateOfBirth", fmt.Sprintf("[%s] is not a valid date. Expected [yyyy-MM-dd]", d))
		}
	}
	if v, ok := u["parent"]; ok {
		if _, isObj := v.(map[string]any); !isObj {
			add("/parent", "expected type: JSONObject, found: "+jsonType(v))
		}
	}
	if v, ok := u["attributes"]; ok {
		ps = append(ps, validateAttributes(i, v)...)
	}
	return ps
}

// validateAttributes checks a user's attributes.
func validateAttributes(i int, v any) []problem {
	list, ok := v.([]any)
	if !ok {
		return []problem{{i, "/attributes", "expected type: JSONArray, found: " + jsonType(v)}}
	}
	var ps []problem
	for j, a := range list {
		path := fmt.Sprintf("/attributes/%d", j)
		add := func(sub, text string) { ps = append(ps, problem{i, path + sub, text}) }
		attr, ok := a.(map[string]any)
		if !ok {
			add("", "expected type: JSONObject, found: "+jsonType(a))
			continue
		}
		name, ok := attr["name"].(string)
		if !ok || name == "" {
			add("", "required key [name] not found")
		}
		typ, _ := attr["type"].(string)
		if typ == "" {
			typ = "text"
		} else if !slices.Contains(emuAttrTypes, typ) {
			add("/type", typ+" is not a valid enum value")
			continue
		}
		val, isString := attr["value"].(string)
		if !isString {
			if _, present := attr["value"]; present {
				add("/value", "expected type: String, found: "+jsonType(attr["value"]))
			}
			continue
		}
		switch typ {
		case "integer":
			if _, err := strconv.ParseInt(val, 10, 64); err != nil {
				add("/value", fmt.Sprintf("[%s] is not a valid integer", val))
			}
		case "decimal":
			if _, err := strconv.ParseFloat(val, 64); err != nil {
				add("/value", fmt.Sprintf("[%s] is not a valid decimal", val))
			}
		}
	}
	return ps
}

// jsonType names the JSON type of a decoded value, as Propel's messages do.
func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "String"
	case bool:
		return "Boolean"
	case json.Number:
		if _, err := x.Int64(); err == nil {
			return "Integer"
		}
		return "BigDecimal"
	case []any:
		return "JSONArray"
	case map[string]any:
		return "JSONObject"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// getUser serves GET /users/{lookupKey}/{lookupValue}.
func (e *Emulator) getUser(w http.ResponseWriter, r *http.Request) {
	key, value := r.PathValue("lookupKey"), r.PathValue("lookupValue")
	var u map[string]any
	e.mu.Lock()
	if e.refuseReads {
		e.mu.Unlock()
		writeError(w, http.StatusForbidden, "10003", "AuthorizationException", "the API client is not allowed to read users")
		return
	}
	switch key {
	case "id":
		if id, err := strconv.ParseInt(value, 10, 64); err == nil {
			u = e.users[id]
		}
	case "sourceId":
		q := r.URL.Query()
		source := q.Get("source")
		if source == "" {
			e.mu.Unlock()
			writeError(w, http.StatusBadRequest, "10006", "InvalidLookupKey", "the source parameter is required with lookupKey sourceId")
			return
		}
		var lang *string
		if q.Has("language") {
			l := q.Get("language")
			lang = &l
		}
		u = e.findBySource(source, value, lang)
	default:
		e.mu.Unlock()
		writeError(w, http.StatusBadRequest, "10006", "InvalidLookupKey", fmt.Sprintf("unknown lookup key %q", key))
		return
	}
	if u != nil {
		u = emulation.DeepCopy(u).(map[string]any)
	}
	e.mu.Unlock()
	if u == nil {
		writeError(w, http.StatusNotFound, "10008", "NotFound", "user not found")
		return
	}
	emulation.WriteJSON(w, http.StatusOK, map[string]any{"data": u, "messages": []string{"Completed"}})
}
