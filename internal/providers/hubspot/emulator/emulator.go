// Package emulator is an in-memory HubSpot CRM v3 `users` API for tests,
// benchmarks and the demo, built on the emulation harness. It implements
// HubSpot's documented contract on its own: it does not import the
// operator's HubSpot client.
package emulator

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/usersync/usersync-operator/internal/providers/emulation"
)

// Emulator is an in-memory HubSpot CRM v3 `users` API that follows the
// documented contract: bearer tokens with scopes, at most MaxBatch inputs a
// call, unique properties, per-record errors in 207 answers when the inputs
// carry objectWriteTraceId (a 400 for the whole call otherwise), a rolling
// rate limit answered with 429 and the X-HubSpot-RateLimit-* headers, and
// injectable latency and faults. It counts calls per endpoint so tests can
// assert exactly what was sent. The demo runs the operator against it.
//
// The harness (emulation.Server) gives it Start, StartOn, URL, Close,
// Inject, Calls, Inputs, Throttled, MaxInWindow, Log and ResetCounters;
// ResetCounters zeroes the counters, not the users.
type Emulator struct {
	*emulation.Server
	opts Options

	mu     sync.Mutex
	users  map[string]*User // by id
	nextID int
	// byEmail indexes the users by lower-cased email, oldest first: a
	// search or a uniqueness check over 100,000 users stays cheap.
	byEmail map[string][]*User
}

// Options configure an Emulator. Zero values are HubSpot's defaults.
type Options struct {
	// Tokens maps each valid bearer token to its scopes.
	Tokens map[string][]string
	// UniqueProperties have unique values (hasUniqueValue); hs_email always
	// has, unless DuplicateEmails. Upserts and updates by idProperty accept only these.
	UniqueProperties []string
	// DuplicateEmails lets two users share an email, so that a test can
	// tell whether the operator itself never creates a user twice.
	DuplicateEmails bool
	// RateLimit is the number of requests per RateWindow (default 100 per
	// 10 s); negative disables it. Search is exempt, as HubSpot documents.
	RateLimit  int
	RateWindow time.Duration
	// MaxBatch is the most inputs one batch call takes (default 100).
	MaxBatch int
	// Latency delays every answer.
	Latency time.Duration
	// Reject refuses a record's properties with a category and message
	// (e.g. "VALIDATION_ERROR", "Property values were not valid").
	Reject func(props map[string]string) (category, message string, bad bool)
	// ShuffleResults returns batch results in reverse order, and
	// OmitTraceIDs leaves objectWriteTraceId out of them: HubSpot promises
	// neither order nor echo, so clients must not depend on them.
	ShuffleResults bool
	OmitTraceIDs   bool
	// WholeCallErrors refuses a whole call with 400 (or 409) at its first
	// bad input even when the inputs are traced, as some HubSpot batch
	// endpoints do; clients must then find the bad inputs themselves.
	WholeCallErrors bool
	// SearchIndexDelay is how long a created user stays out of search
	// results: HubSpot serves search from an index that trails writes.
	// Batch reads by id or by a unique property are current at once.
	SearchIndexDelay time.Duration
	// Now tells the time of creates and of the search index; nil means
	// time.Now. Tests move it to age the index without sleeping.
	Now func() time.Time
}

// User is one user object.
type User struct {
	ID         string
	Properties map[string]string
	Archived   bool
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Fault is an injected answer (see emulation.Fault): a 429 is answered
// with HubSpot's rate-limit body, any other status with its error body.
type Fault = emulation.Fault

// Body faults, as Fault.Body takes them.
const (
	Malformed = emulation.Malformed
	Truncated = emulation.Truncated
)

// Endpoint names, as Calls, Inputs and Inject take them.
const (
	EndpointCreate  = "batch/create"
	EndpointUpdate  = "batch/update"
	EndpointUpsert  = "batch/upsert"
	EndpointArchive = "batch/archive"
	EndpointRead    = "batch/read"
	EndpointSearch  = "search"
	EndpointList    = "list"
	EndpointGet     = "get"
)

// HubSpot's contract.
const (
	usersPrefix = "/crm/v3/objects/users"
	// defaultMaxBatch is the inputs HubSpot accepts in one batch call.
	defaultMaxBatch = 100
	// propEmail is the user's email, unique unless DuplicateEmails.
	propEmail = "hs_email"
	// Scopes of the read and the write endpoints.
	scopeRead  = "crm.objects.users.read"
	scopeWrite = "crm.objects.users.write"
	// Rate-limit headers.
	hdrMax       = "X-HubSpot-RateLimit-Max"
	hdrInterval  = "X-HubSpot-RateLimit-Interval-Milliseconds"
	hdrRemaining = "X-HubSpot-RateLimit-Remaining"
	contentType  = "application/json;charset=utf-8"
)

// New returns an emulator that is not yet listening.
func New(o Options) *Emulator {
	if o.RateLimit == 0 {
		o.RateLimit = 100
	}
	if o.RateWindow <= 0 {
		o.RateWindow = 10 * time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = defaultMaxBatch
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if !o.DuplicateEmails && !slices.Contains(o.UniqueProperties, propEmail) {
		o.UniqueProperties = append(slices.Clone(o.UniqueProperties), propEmail)
	}
	e := &Emulator{opts: o, users: map[string]*User{}, nextID: 1000}
	e.Server = &emulation.Server{Handler: http.HandlerFunc(e.route), ErrorBody: faultBody,
		ContentType: contentType, Latency: o.Latency}
	if o.RateLimit > 0 {
		e.Limit = &emulation.RateLimit{Limit: o.RateLimit, Window: o.RateWindow}
	}
	return e
}

// Users returns a copy of the users that are not archived, by id.
func (e *Emulator) Users() []User {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]User, 0, len(e.users))
	for _, u := range e.sortedUsers() {
		if !u.Archived {
			out = append(out, copyUser(u))
		}
	}
	return out
}

// UserByID returns a copy of a user, archived or not.
func (e *Emulator) UserByID(id string) (User, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	u, ok := e.users[id]
	if !ok {
		return User{}, false
	}
	return copyUser(u), true
}

// Put adds a user as if made outside the operator and returns its id.
func (e *Emulator) Put(props map[string]string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.create(props).ID
}

// Edit sets properties of a user as if changed outside the operator (in
// HubSpot's UI, by an import); an empty value clears the property. It
// reports whether the user exists.
func (e *Emulator) Edit(id string, props map[string]string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	u, ok := e.users[id]
	if !ok || u.Archived {
		return false
	}
	for k, v := range props {
		if v == "" {
			delete(u.Properties, k)
			continue
		}
		e.setProp(u, k, v)
	}
	u.UpdatedAt = e.opts.Now().UTC()
	return true
}

// Archive archives a user as if removed outside the operator.
func (e *Emulator) Archive(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if u, ok := e.users[id]; ok {
		u.Archived = true
	}
}

func copyUser(u *User) User {
	c := *u
	c.Properties = make(map[string]string, len(u.Properties))
	for k, v := range u.Properties {
		c.Properties[k] = v
	}
	return c
}

func (e *Emulator) sortedUsers() []*User {
	out := make([]*User, 0, len(e.users))
	for _, u := range e.users {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return lessID(out[i].ID, out[j].ID) })
	return out
}

// lessID orders numeric ids numerically.
func lessID(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// route finds the endpoint, checks the token and the rate limit, and
// serves the call through the harness (faults, counters).
func (e *Emulator) route(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, usersPrefix) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Unknown path "+r.URL.Path, nil)
		return
	}
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, usersPrefix), "/")
	endpoint, scope := "", scopeRead
	switch {
	case r.Method == http.MethodGet && rest == "":
		endpoint = EndpointList
	case r.Method == http.MethodGet && !strings.Contains(rest, "/"):
		endpoint = EndpointGet
	case r.Method == http.MethodPost && rest == EndpointRead, r.Method == http.MethodPost && rest == EndpointSearch:
		endpoint = rest
	case r.Method == http.MethodPost && slices.Contains([]string{EndpointCreate, EndpointUpdate, EndpointUpsert, EndpointArchive}, rest):
		endpoint, scope = rest, scopeWrite
	default:
		writeError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("No route for %s %s", r.Method, r.URL.Path), nil)
		return
	}
	if !e.authorize(w, r, scope) {
		return
	}
	if endpoint != EndpointSearch && !e.admit(w) {
		return
	}

	switch endpoint {
	case EndpointList:
		e.Serve(w, r, endpoint, -1, e.list)
		return
	case EndpointGet:
		e.Serve(w, r, endpoint, -1, func(w http.ResponseWriter, r *http.Request) { e.get(w, r, rest) })
		return
	case EndpointSearch:
		var req searchRequest
		if err := decode(r, &req); err != nil {
			e.Serve(w, r, endpoint, -1, badJSON(err))
			return
		}
		e.Serve(w, r, endpoint, -1, func(w http.ResponseWriter, _ *http.Request) { e.search(w, req) })
		return
	}
	var req batchRequest
	if err := decode(r, &req); err != nil {
		e.Serve(w, r, endpoint, -1, badJSON(err))
		return
	}
	e.Serve(w, r, endpoint, len(req.Inputs), func(w http.ResponseWriter, _ *http.Request) { e.batch(w, endpoint, req) })
}

// decode reads the whole body (so that the server notices a client that
// gives up while a fault holds the answer back) and decodes it.
func decode(r *http.Request, v any) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func badJSON(err error) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Invalid input JSON: "+err.Error(), nil)
	}
}

// batchRequest is the body of the batch endpoints.
type batchRequest struct {
	Inputs     []json.RawMessage `json:"inputs"`
	IDProperty string            `json:"idProperty"`
	Properties []string          `json:"properties"`
}

// input is one input of a batch call.
type input struct {
	ID                 flexString        `json:"id"`
	IDProperty         string            `json:"idProperty"`
	Properties         map[string]string `json:"properties"`
	ObjectWriteTraceID string            `json:"objectWriteTraceId"`
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

// searchRequest is the body of search.
type searchRequest struct {
	FilterGroups []struct {
		Filters []searchFilter `json:"filters"`
	} `json:"filterGroups"`
	Properties []string `json:"properties"`
	Limit      int      `json:"limit"`
	After      string   `json:"after"`
}

type searchFilter struct {
	PropertyName string   `json:"propertyName"`
	Operator     string   `json:"operator"`
	Value        string   `json:"value"`
	Values       []string `json:"values"`
}

// batch serves the batch endpoints.
func (e *Emulator) batch(w http.ResponseWriter, endpoint string, req batchRequest) {
	if len(req.Inputs) == 0 {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "inputs must not be empty", nil)
		return
	}
	if len(req.Inputs) > e.opts.MaxBatch {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR",
			fmt.Sprintf("Batch input size of %d is greater than the maximum of %d", len(req.Inputs), e.opts.MaxBatch), nil)
		return
	}
	ins := make([]input, len(req.Inputs))
	for i, raw := range req.Inputs {
		if err := json.Unmarshal(raw, &ins[i]); err != nil {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("inputs[%d] is invalid: %v", i, err), nil)
			return
		}
	}
	switch endpoint {
	case EndpointRead:
		e.batchRead(w, ins, req.IDProperty, req.Properties)
	case EndpointArchive:
		e.mu.Lock()
		for _, in := range ins {
			if u, ok := e.users[string(in.ID)]; ok {
				u.Archived, u.UpdatedAt = true, e.opts.Now().UTC()
			}
		}
		e.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		e.batchWrite(w, endpoint, ins)
	}
}

// recordErr is the refusal of one input.
type recordErr struct {
	status   int
	category string
	message  string
}

// batchWrite creates, updates or upserts. With every input traced, refused
// inputs are reported in a 207 beside the written ones; otherwise the first
// refusal fails the whole call and nothing is written.
func (e *Emulator) batchWrite(w http.ResponseWriter, endpoint string, ins []input) {
	e.mu.Lock()
	defer e.mu.Unlock()

	traced := true
	for _, in := range ins {
		traced = traced && in.ObjectWriteTraceID != ""
	}
	// Validate everything against the state plus the batch before writing.
	type plan struct {
		target *User // nil: create
		props  map[string]string
		err    *recordErr
	}
	plans := make([]plan, len(ins))
	claimed := map[string]string{} // "prop\x00value" -> id or "#i"
	for i, in := range ins {
		p := plan{props: in.Properties}
		if p.props == nil {
			p.props = map[string]string{}
		}
		switch endpoint {
		case EndpointUpdate:
			if in.IDProperty != "" && !slices.Contains(e.opts.UniqueProperties, in.IDProperty) {
				writeError(w, http.StatusBadRequest, "VALIDATION_ERROR",
					fmt.Sprintf("Unable to perform update by non-unique %s property", in.IDProperty), nil)
				return
			}
			p.target = e.find(in.IDProperty, string(in.ID))
			if p.target == nil {
				p.err = &recordErr{http.StatusNotFound, "OBJECT_NOT_FOUND", fmt.Sprintf("Object not found. objectId are usually numeric. id: %s", in.ID)}
			}
		case EndpointUpsert:
			if in.IDProperty == "" || !slices.Contains(e.opts.UniqueProperties, in.IDProperty) {
				writeError(w, http.StatusBadRequest, "VALIDATION_ERROR",
					fmt.Sprintf("Unable to perform upsert by non-unique %q property", in.IDProperty), nil)
				return
			}
			p.target = e.find(in.IDProperty, string(in.ID))
			p.props = mergeProps(p.props, map[string]string{in.IDProperty: string(in.ID)})
		}
		if p.err == nil {
			p.err = e.validate(p.target, p.props, claimed, i)
		}
		plans[i] = p
		if (!traced || e.opts.WholeCallErrors) && p.err != nil {
			status := http.StatusBadRequest
			if p.err.category == "CONFLICT" {
				status = http.StatusConflict
			} else if p.err.status == http.StatusNotFound {
				status = http.StatusNotFound
			}
			writeError(w, status, p.err.category, p.err.message, nil)
			return
		}
	}

	var results []map[string]any
	var errs []map[string]any
	for i, p := range plans {
		in := ins[i]
		if p.err != nil {
			errs = append(errs, map[string]any{
				"status": "error", "category": p.err.category, "message": p.err.message,
				"context": map[string][]string{"objectWriteTraceId": {in.ObjectWriteTraceID}},
			})
			continue
		}
		isNew := p.target == nil
		u := p.target
		if isNew {
			u = e.create(p.props)
		} else {
			for k, v := range p.props {
				e.setProp(u, k, v)
			}
			u.UpdatedAt = e.opts.Now().UTC()
		}
		res := objectJSON(u, nil)
		if endpoint == EndpointUpsert {
			res["new"] = isNew
		}
		if !e.opts.OmitTraceIDs && in.ObjectWriteTraceID != "" {
			res["objectWriteTraceId"] = in.ObjectWriteTraceID
		}
		results = append(results, res)
	}
	if e.opts.ShuffleResults {
		slices.Reverse(results)
		slices.Reverse(errs)
	}
	status := http.StatusOK
	if endpoint == EndpointCreate {
		status = http.StatusCreated
	}
	body := map[string]any{"status": "COMPLETE", "results": results,
		"startedAt": e.opts.Now().UTC(), "completedAt": e.opts.Now().UTC()}
	if results == nil {
		body["results"] = []any{}
	}
	if len(errs) > 0 {
		status = http.StatusMultiStatus
		body["errors"], body["numErrors"] = errs, len(errs)
	}
	writeJSON(w, status, body)
}

// validate checks read-only and unique properties and the Reject hook. i
// identifies the input within the batch for uniqueness inside it.
func (e *Emulator) validate(target *User, props map[string]string, claimed map[string]string, i int) *recordErr {
	for k := range props {
		if k == "hs_object_id" || k == "hs_createdate" || k == "hs_lastmodifieddate" {
			return &recordErr{http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("Property values were not valid: %s is a read-only property", k)}
		}
	}
	if e.opts.Reject != nil {
		merged := props
		if target != nil {
			merged = mergeProps(target.Properties, props)
		}
		if cat, msg, bad := e.opts.Reject(merged); bad {
			return &recordErr{http.StatusBadRequest, cat, msg}
		}
	}
	self := "#" + strconv.Itoa(i)
	if target != nil {
		self = target.ID
	}
	for _, prop := range e.opts.UniqueProperties {
		v, ok := props[prop]
		if !ok || v == "" {
			continue
		}
		if other := e.find(prop, v); other != nil && (target == nil || other.ID != target.ID) {
			return &recordErr{http.StatusConflict, "CONFLICT",
				fmt.Sprintf("A user with %s %q already exists. Existing ID: %s", prop, v, other.ID)}
		}
		key := prop + "\x00" + strings.ToLower(v)
		if by, ok := claimed[key]; ok && by != self {
			return &recordErr{http.StatusConflict, "CONFLICT",
				fmt.Sprintf("Duplicate value %q of unique property %s in the batch", v, prop)}
		}
		claimed[key] = self
	}
	return nil
}

// find returns the live user whose property (or id, without one) has a
// value; email compares case-insensitively.
func (e *Emulator) find(prop, value string) *User {
	if prop == "" || prop == "hs_object_id" {
		if u, ok := e.users[value]; ok && !u.Archived {
			return u
		}
		return nil
	}
	if prop == propEmail {
		// The index is oldest first: the first live user is the oldest.
		for _, u := range e.byEmail[strings.ToLower(value)] {
			if !u.Archived {
				return u
			}
		}
		return nil
	}
	for _, u := range e.users {
		if u.Archived {
			continue
		}
		if u.Properties[prop] == value {
			return u
		}
	}
	return nil
}

func (e *Emulator) create(props map[string]string) *User {
	e.nextID++
	now := e.opts.Now().UTC()
	u := &User{ID: strconv.Itoa(e.nextID), Properties: map[string]string{}, CreatedAt: now, UpdatedAt: now}
	for k, v := range props {
		e.setProp(u, k, v)
	}
	u.Properties["hs_object_id"] = u.ID
	e.users[u.ID] = u
	return u
}

// setProp sets a property of u, keeping the email index.
func (e *Emulator) setProp(u *User, k, v string) {
	if k == propEmail {
		if old, ok := u.Properties[k]; ok {
			key := strings.ToLower(old)
			e.byEmail[key] = slices.DeleteFunc(e.byEmail[key], func(x *User) bool { return x == u })
		}
		if e.byEmail == nil {
			e.byEmail = map[string][]*User{}
		}
		key := strings.ToLower(v)
		i, _ := slices.BinarySearchFunc(e.byEmail[key], u, func(a, b *User) int {
			switch {
			case lessID(a.ID, b.ID):
				return -1
			case lessID(b.ID, a.ID):
				return 1
			}
			return 0
		})
		e.byEmail[key] = slices.Insert(e.byEmail[key], i, u)
	}
	u.Properties[k] = v
}

// byEmailIn returns the live users whose email is one of values, by id.
func (e *Emulator) byEmailIn(values []string) []*User {
	var out []*User
	seen := map[string]bool{}
	for _, v := range values {
		key := strings.ToLower(v)
		if seen[key] {
			continue
		}
		seen[key] = true
		for _, u := range e.byEmail[key] {
			if !u.Archived {
				out = append(out, u)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return lessID(out[i].ID, out[j].ID) })
	return out
}

func mergeProps(a, b map[string]string) map[string]string {
	m := make(map[string]string, len(a)+len(b))
	for k, v := range a {
		m[k] = v
	}
	for k, v := range b {
		m[k] = v
	}
	return m
}

func objectJSON(u *User, only []string) map[string]any {
	props := map[string]string{}
	for k, v := range u.Properties {
		if len(only) == 0 || slices.Contains(only, k) || k == "hs_object_id" {
			props[k] = v
		}
	}
	return map[string]any{"id": u.ID, "properties": props, "archived": u.Archived,
		"createdAt": u.CreatedAt, "updatedAt": u.UpdatedAt}
}

func (e *Emulator) batchRead(w http.ResponseWriter, ins []input, idProperty string, props []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if idProperty != "" && !slices.Contains(e.opts.UniqueProperties, idProperty) {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR",
			fmt.Sprintf("Unable to perform read by non-unique %s property", idProperty), nil)
		return
	}
	var results []map[string]any
	var missing []string
	for _, in := range ins {
		if u := e.find(idProperty, string(in.ID)); u != nil {
			results = append(results, objectJSON(u, props))
		} else {
			missing = append(missing, string(in.ID))
		}
	}
	body := map[string]any{"status": "COMPLETE", "results": results}
	if results == nil {
		body["results"] = []any{}
	}
	status := http.StatusOK
	if len(missing) > 0 {
		status = http.StatusMultiStatus
		body["numErrors"] = 1
		body["errors"] = []map[string]any{{"status": "error", "category": "OBJECT_NOT_FOUND",
			"message": "Could not get some users objects, they may be deleted or not exist.",
			"context": map[string][]string{"ids": missing}}}
	}
	writeJSON(w, status, body)
}

func (e *Emulator) search(w http.ResponseWriter, req searchRequest) {
	e.mu.Lock()
	defer e.mu.Unlock()
	limit := req.Limit
	if limit <= 0 {
		limit = 10
	}
	if limit > 200 {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "limit must be at most 200", nil)
		return
	}
	var hits []*User
	candidates := e.sortedUsers
	if len(req.FilterGroups) == 1 && len(req.FilterGroups[0].Filters) >= 1 {
		// A search by email (what the operator sends) reads the index.
		f := req.FilterGroups[0].Filters[0]
		switch op := strings.ToUpper(f.Operator); {
		case f.PropertyName == propEmail && op == "IN":
			candidates = func() []*User { return e.byEmailIn(f.Values) }
		case f.PropertyName == propEmail && op == "EQ":
			candidates = func() []*User { return e.byEmailIn([]string{f.Value}) }
		}
	}
	indexed := e.opts.Now().Add(-e.opts.SearchIndexDelay)
	for _, u := range candidates() {
		if u.Archived || u.CreatedAt.After(indexed) {
			continue
		}
		ok := len(req.FilterGroups) == 0
		for _, g := range req.FilterGroups { // groups are ORed, filters ANDed
			all := true
			for _, f := range g.Filters {
				all = all && matches(u, f)
			}
			ok = ok || all
		}
		if ok {
			hits = append(hits, u)
		}
	}
	start, _ := strconv.Atoi(req.After)
	start = min(max(start, 0), len(hits))
	end := min(start+limit, len(hits))
	results := make([]map[string]any, 0, end-start)
	for _, u := range hits[start:end] {
		results = append(results, objectJSON(u, req.Properties))
	}
	body := map[string]any{"total": len(hits), "results": results}
	if end < len(hits) {
		body["paging"] = map[string]any{"next": map[string]any{"after": strconv.Itoa(end)}}
	}
	writeJSON(w, http.StatusOK, body)
}

func matches(u *User, f searchFilter) bool {
	v := u.Properties[f.PropertyName]
	switch strings.ToUpper(f.Operator) {
	case "EQ":
		return strings.EqualFold(v, f.Value)
	case "NEQ":
		return !strings.EqualFold(v, f.Value)
	case "IN":
		for _, x := range f.Values {
			if strings.EqualFold(v, x) {
				return true
			}
		}
		return false
	case "HAS_PROPERTY":
		return v != ""
	case "NOT_HAS_PROPERTY":
		return v == ""
	}
	return false
}

func (e *Emulator) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 {
		limit = 10
	}
	limit = min(limit, 100)
	after, _ := strconv.Atoi(q.Get("after"))
	archived := q.Get("archived") == "true"
	var props []string
	if p := q.Get("properties"); p != "" {
		props = strings.Split(p, ",")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var page []map[string]any
	next := ""
	for _, u := range e.sortedUsers() {
		n, _ := strconv.Atoi(u.ID)
		if u.Archived != archived || n <= after {
			continue
		}
		if len(page) == limit {
			next = strconv.Itoa(after)
			break
		}
		page = append(page, objectJSON(u, props))
		after = n
	}
	body := map[string]any{"results": page}
	if page == nil {
		body["results"] = []any{}
	}
	if next != "" {
		body["paging"] = map[string]any{"next": map[string]any{"after": next}}
	}
	writeJSON(w, http.StatusOK, body)
}

func (e *Emulator) get(w http.ResponseWriter, r *http.Request, id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	idProp := r.URL.Query().Get("idProperty")
	u := e.find(idProp, id)
	if u == nil {
		writeError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "resource not found", nil)
		return
	}
	var props []string
	if p := r.URL.Query().Get("properties"); p != "" {
		props = strings.Split(p, ",")
	}
	writeJSON(w, http.StatusOK, objectJSON(u, props))
}

// authorize checks the bearer token and its scopes.
func (e *Emulator) authorize(w http.ResponseWriter, r *http.Request, scope string) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	scopes, known := e.opts.Tokens[strings.TrimSpace(tok)]
	if !ok || !known {
		writeError(w, http.StatusUnauthorized, "INVALID_AUTHENTICATION",
			"Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview", nil)
		return false
	}
	if !slices.Contains(scopes, scope) {
		writeError(w, http.StatusForbidden, "MISSING_SCOPES",
			"This app hasn't been granted all required scopes to make this call.",
			map[string][]string{"missingScopes": {scope}})
		return false
	}
	return true
}

// admit applies the rolling rate limit and sets HubSpot's rate-limit
// headers; a refused call gets HubSpot's 429.
func (e *Emulator) admit(w http.ResponseWriter) bool {
	if e.Limit == nil {
		return true
	}
	remaining, ok := e.Admit()
	h := w.Header()
	h.Set(hdrMax, strconv.Itoa(e.opts.RateLimit))
	h.Set(hdrInterval, strconv.FormatInt(e.opts.RateWindow.Milliseconds(), 10))
	h.Set(hdrRemaining, strconv.Itoa(remaining))
	if !ok {
		writeJSON(w, http.StatusTooManyRequests, map[string]any{
			"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
			"errorType": "RATE_LIMIT", "correlationId": correlationID(), "policyName": "TEN_SECONDLY_ROLLING"})
	}
	return ok
}

// faultBody is HubSpot's answer to an injected status.
func faultBody(status int) any {
	if status == http.StatusTooManyRequests {
		return map[string]any{"status": "error", "message": "You have reached your secondly limit.",
			"errorType": "RATE_LIMIT", "correlationId": correlationID(), "policyName": "SECONDLY"}
	}
	return errorBody("INTERNAL_ERROR", fmt.Sprintf("injected fault: HTTP %d", status), nil)
}

func errorBody(category, msg string, ctx map[string][]string) map[string]any {
	body := map[string]any{"status": "error", "message": msg, "correlationId": correlationID(), "category": category}
	if ctx != nil {
		body["context"] = ctx
	}
	return body
}

func writeError(w http.ResponseWriter, status int, category, msg string, ctx map[string][]string) {
	writeJSON(w, status, errorBody(category, msg, ctx))
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

var corr struct {
	sync.Mutex
	n int
}

func correlationID() string {
	corr.Lock()
	defer corr.Unlock()
	corr.n++
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", corr.n)
}
