package hubspot

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Emulator is an in-memory HubSpot CRM v3 `users` API that follows the
// documented contract: bearer tokens with scopes, at most MaxBatch inputs a
// call, unique properties, per-record errors in 207 answers when the inputs
// carry objectWriteTraceId (a 400 for the whole call otherwise), a rolling
// rate limit answered with 429 and the X-HubSpot-RateLimit-* headers, and
// injectable latency and faults. It counts calls per endpoint so tests can
// assert exactly what was sent. The demo runs the operator against it.
type Emulator struct {
	opts EmulatorOptions

	mu       sync.Mutex
	users    map[string]*EmulatedUser // by id
	nextID   int
	calls    map[string]int
	inputs   map[string][]int
	window   []time.Time // accepted rate-limited requests
	maxIn    int
	throttle int
	faults   map[string][]Fault

	srv *http.Server
	url string
}

// EmulatorOptions configure an Emulator. Zero values are HubSpot's defaults.
type EmulatorOptions struct {
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
}

// EmulatedUser is one user object.
type EmulatedUser struct {
	ID         string
	Properties map[string]string
	Archived   bool
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Fault makes the next Count calls to an endpoint answer Status. With
// AfterApply the call is carried out first and its answer lost, as when a
// response times out.
type Fault struct {
	Status     int
	Count      int
	AfterApply bool
	// RetryAfter is sent as the Retry-After header when not empty.
	RetryAfter string
}

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

const usersPrefix = "/crm/v3/objects/users"

// NewEmulator returns an emulator that is not yet listening.
func NewEmulator(o EmulatorOptions) *Emulator {
	if o.RateLimit == 0 {
		o.RateLimit = 100
	}
	if o.RateWindow <= 0 {
		o.RateWindow = 10 * time.Second
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = MaxBatch
	}
	if !o.DuplicateEmails && !slices.Contains(o.UniqueProperties, PropEmail) {
		o.UniqueProperties = append(slices.Clone(o.UniqueProperties), PropEmail)
	}
	return &Emulator{opts: o, users: map[string]*EmulatedUser{}, nextID: 1000,
		calls: map[string]int{}, inputs: map[string][]int{}, faults: map[string][]Fault{}}
}

// Start listens on a free local port and returns the base URL.
func (e *Emulator) Start() string {
	if err := e.StartOn("127.0.0.1:0"); err != nil {
		panic(fmt.Sprintf("hubspot emulator: %v", err))
	}
	return e.url
}

// StartOn listens on addr.
func (e *Emulator) StartOn(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	e.url = "http://" + l.Addr().String()
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = e.srv.Serve(l) }()
	return nil
}

// URL is the base URL once started.
func (e *Emulator) URL() string { return e.url }

// Close stops the server.
func (e *Emulator) Close() {
	if e.srv != nil {
		_ = e.srv.Close()
	}
}

// Calls is the number of calls that reached an endpoint past auth and the
// rate limit.
func (e *Emulator) Calls(endpoint string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[endpoint]
}

// Inputs lists the number of inputs of each call to a batch endpoint.
func (e *Emulator) Inputs(endpoint string) []int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.inputs[endpoint])
}

// Throttled is the number of calls answered 429.
func (e *Emulator) Throttled() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.throttle
}

// MaxInWindow is the most calls accepted within any rate window.
func (e *Emulator) MaxInWindow() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.maxIn
}

// ResetCounters zeroes the call counters (not the users).
func (e *Emulator) ResetCounters() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls, e.inputs, e.throttle, e.maxIn = map[string]int{}, map[string][]int{}, 0, 0
}

// Inject queues a fault for an endpoint.
func (e *Emulator) Inject(endpoint string, f Fault) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults[endpoint] = append(e.faults[endpoint], f)
}

// Users returns a copy of the users that are not archived, by id.
func (e *Emulator) Users() []EmulatedUser {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]EmulatedUser, 0, len(e.users))
	for _, u := range e.sortedUsers() {
		if !u.Archived {
			out = append(out, copyUser(u))
		}
	}
	return out
}

// UserByID returns a copy of a user, archived or not.
func (e *Emulator) UserByID(id string) (EmulatedUser, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	u, ok := e.users[id]
	if !ok {
		return EmulatedUser{}, false
	}
	return copyUser(u), true
}

// Put adds a user as if made outside the operator and returns its id.
func (e *Emulator) Put(props map[string]string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.create(props).ID
}

// Archive archives a user as if removed outside the operator.
func (e *Emulator) Archive(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if u, ok := e.users[id]; ok {
		u.Archived = true
	}
}

func copyUser(u *EmulatedUser) EmulatedUser {
	c := *u
	c.Properties = make(map[string]string, len(u.Properties))
	for k, v := range u.Properties {
		c.Properties[k] = v
	}
	return c
}

func (e *Emulator) sortedUsers() []*EmulatedUser {
	out := make([]*EmulatedUser, 0, len(e.users))
	for _, u := range e.users {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return lessID(out[i].ID, out[j].ID) })
	return out
}

// ServeHTTP implements http.Handler.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.URL.Path, usersPrefix) {
		writeError(w, http.StatusNotFound, "NOT_FOUND", "Unknown path "+r.URL.Path, nil)
		return
	}
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, usersPrefix), "/")
	endpoint, scope := "", ScopeRead
	switch {
	case r.Method == http.MethodGet && rest == "":
		endpoint = EndpointList
	case r.Method == http.MethodGet && !strings.Contains(rest, "/"):
		endpoint = EndpointGet
	case r.Method == http.MethodPost && rest == EndpointRead, r.Method == http.MethodPost && rest == EndpointSearch:
		endpoint = rest
	case r.Method == http.MethodPost && slices.Contains([]string{EndpointCreate, EndpointUpdate, EndpointUpsert, EndpointArchive}, rest):
		endpoint, scope = rest, ScopeWrite
	default:
		writeError(w, http.StatusNotFound, "NOT_FOUND", fmt.Sprintf("No route for %s %s", r.Method, r.URL.Path), nil)
		return
	}

	if e.opts.Latency > 0 {
		select {
		case <-time.After(e.opts.Latency):
		case <-r.Context().Done():
			return
		}
	}
	if !e.authorize(w, r, scope) {
		return
	}
	if endpoint != EndpointSearch && !e.admit(w) {
		return
	}
	fault, faulty := e.takeFault(endpoint)
	if faulty && !fault.AfterApply {
		writeFault(w, fault)
		return
	}
	rec := w
	if faulty {
		rec = &discard{h: http.Header{}}
	}
	e.serve(rec, r, endpoint, rest)
	if faulty {
		writeFault(w, fault)
	}
}

func (e *Emulator) serve(w http.ResponseWriter, r *http.Request, endpoint, rest string) {
	switch endpoint {
	case EndpointList:
		e.list(w, r)
		return
	case EndpointGet:
		e.get(w, r, rest)
		return
	}
	var req struct {
		Inputs     []json.RawMessage `json:"inputs"`
		IDProperty string            `json:"idProperty"`
		Properties []string          `json:"properties"`
	}
	if endpoint == EndpointSearch {
		e.search(w, r)
		return
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Invalid input JSON: "+err.Error(), nil)
		return
	}
	e.mu.Lock()
	e.calls[endpoint]++
	e.inputs[endpoint] = append(e.inputs[endpoint], len(req.Inputs))
	e.mu.Unlock()
	if len(req.Inputs) == 0 {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "inputs must not be empty", nil)
		return
	}
	if len(req.Inputs) > e.opts.MaxBatch {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR",
			fmt.Sprintf("Batch input size of %d is greater than the maximum of %d", len(req.Inputs), e.opts.MaxBatch), nil)
		return
	}
	ins := make([]emInput, len(req.Inputs))
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
				u.Archived, u.UpdatedAt = true, time.Now().UTC()
			}
		}
		e.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		e.batchWrite(w, endpoint, ins)
	}
}

type emInput struct {
	ID                 flexString        `json:"id"`
	IDProperty         string            `json:"idProperty"`
	Properties         map[string]string `json:"properties"`
	ObjectWriteTraceID string            `json:"objectWriteTraceId"`
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
func (e *Emulator) batchWrite(w http.ResponseWriter, endpoint string, ins []emInput) {
	e.mu.Lock()
	defer e.mu.Unlock()

	traced := true
	for _, in := range ins {
		traced = traced && in.ObjectWriteTraceID != ""
	}
	// Validate everything against the state plus the batch before writing.
	type plan struct {
		target *EmulatedUser // nil: create
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
				u.Properties[k] = v
			}
			u.UpdatedAt = time.Now().UTC()
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
		"startedAt": time.Now().UTC(), "completedAt": time.Now().UTC()}
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
func (e *Emulator) validate(target *EmulatedUser, props map[string]string, claimed map[string]string, i int) *recordErr {
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
func (e *Emulator) find(prop, value string) *EmulatedUser {
	if prop == "" || prop == "hs_object_id" {
		if u, ok := e.users[value]; ok && !u.Archived {
			return u
		}
		return nil
	}
	for _, u := range e.users {
		if u.Archived {
			continue
		}
		if v := u.Properties[prop]; v == value || (prop == PropEmail && strings.EqualFold(v, value)) {
			return u
		}
	}
	return nil
}

func (e *Emulator) create(props map[string]string) *EmulatedUser {
	e.nextID++
	now := time.Now().UTC()
	u := &EmulatedUser{ID: strconv.Itoa(e.nextID), Properties: map[string]string{}, CreatedAt: now, UpdatedAt: now}
	for k, v := range props {
		u.Properties[k] = v
	}
	u.Properties["hs_object_id"] = u.ID
	e.users[u.ID] = u
	return u
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

func objectJSON(u *EmulatedUser, only []string) map[string]any {
	props := map[string]string{}
	for k, v := range u.Properties {
		if len(only) == 0 || slices.Contains(only, k) || k == "hs_object_id" {
			props[k] = v
		}
	}
	return map[string]any{"id": u.ID, "properties": props, "archived": u.Archived,
		"createdAt": u.CreatedAt, "updatedAt": u.UpdatedAt}
}

func (e *Emulator) batchRead(w http.ResponseWriter, ins []emInput, idProperty string, props []string) {
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

func (e *Emulator) search(w http.ResponseWriter, r *http.Request) {
	var req searchRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Invalid input JSON: "+err.Error(), nil)
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls[EndpointSearch]++
	limit := req.Limit
	if limit <= 0 {
		limit = 10
	}
	if limit > 200 {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "limit must be at most 200", nil)
		return
	}
	var hits []*EmulatedUser
	for _, u := range e.sortedUsers() {
		if u.Archived {
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

func matches(u *EmulatedUser, f searchFilter) bool {
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
	e.calls[EndpointList]++
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
	e.calls[EndpointGet]++
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

// admit applies the rolling rate limit.
func (e *Emulator) admit(w http.ResponseWriter) bool {
	if e.opts.RateLimit < 0 {
		return true
	}
	e.mu.Lock()
	now := time.Now()
	cut := now.Add(-e.opts.RateWindow)
	i := 0
	for i < len(e.window) && !e.window[i].After(cut) {
		i++
	}
	e.window = e.window[i:]
	h := w.Header()
	h.Set("X-HubSpot-RateLimit-Max", strconv.Itoa(e.opts.RateLimit))
	h.Set(hdrInterval, strconv.FormatInt(e.opts.RateWindow.Milliseconds(), 10))
	if len(e.window) >= e.opts.RateLimit {
		e.throttle++
		e.mu.Unlock()
		h.Set(hdrRemaining, "0")
		writeJSON(w, http.StatusTooManyRequests, map[string]any{
			"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
			"errorType": "RATE_LIMIT", "correlationId": correlationID(), "policyName": "TEN_SECONDLY_ROLLING"})
		return false
	}
	e.window = append(e.window, now)
	e.maxIn = max(e.maxIn, len(e.window))
	h.Set(hdrRemaining, strconv.Itoa(e.opts.RateLimit-len(e.window)))
	e.mu.Unlock()
	return true
}

func (e *Emulator) takeFault(endpoint string) (Fault, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	q := e.faults[endpoint]
	if len(q) == 0 {
		return Fault{}, false
	}
	f := q[0]
	if q[0].Count--; q[0].Count <= 0 {
		e.faults[endpoint] = q[1:]
	}
	if f.AfterApply {
		return f, true
	}
	e.calls[endpoint]++
	return f, true
}

func writeFault(w http.ResponseWriter, f Fault) {
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	switch f.Status {
	case http.StatusTooManyRequests:
		writeJSON(w, f.Status, map[string]any{"status": "error", "message": "You have reached your secondly limit.",
			"errorType": "RATE_LIMIT", "correlationId": correlationID(), "policyName": "SECONDLY"})
	default:
		writeError(w, f.Status, "INTERNAL_ERROR", fmt.Sprintf("injected fault: HTTP %d", f.Status), nil)
	}
}

func writeError(w http.ResponseWriter, status int, category, msg string, ctx map[string][]string) {
	body := map[string]any{"status": "error", "message": msg, "correlationId": correlationID(), "category": category}
	if ctx != nil {
		body["context"] = ctx
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
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

// discard swallows the answer of a call whose response a fault loses.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}
