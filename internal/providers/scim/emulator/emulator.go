// Package emulator is an in-memory SCIM 2.0 service provider (RFC 7643 /
// 7644) for tests, benchmarks and the demo, built on the emulation harness.
// It serves /Users, /ServiceProviderConfig and, when its Profile offers it,
// /Bulk. It implements the protocol on its own: it does not import the
// operator's SCIM client. Its profiles are those of real servers: Full
// (Bulk, PATCH, ETag), NoBulk (HCP Terraform), AWS (IAM Identity Center)
// and Tight (a maxPayloadSize a request of 100 users exceeds).
package emulator

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/usersync/usersync-operator/internal/providers/emulation"
)

// SCIM schema URNs the emulator knows.
const (
	SchemaUser       = "urn:ietf:params:scim:schemas:core:2.0:User"
	SchemaEnterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
	SchemaError      = "urn:ietf:params:scim:api:messages:2.0:Error"
	SchemaList       = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	SchemaPatchOp    = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	SchemaBulkReq    = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
	SchemaBulkResp   = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
	SchemaSPConfig   = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
)

// BasePath is where the emulator serves SCIM on its host.
const BasePath = "/scim/v2"

// ContentType is the media type of SCIM answers.
const ContentType = "application/scim+json"

// Endpoint names, as Calls, Inputs and Inject take them.
const (
	EndpointCreate = "POST /Users"
	EndpointGet    = "GET /Users/{id}"
	EndpointList   = "GET /Users"
	// EndpointLookup is a list with a filter.
	EndpointLookup = "GET /Users?filter"
	EndpointPut    = "PUT /Users/{id}"
	EndpointPatch  = "PATCH /Users/{id}"
	EndpointDelete = "DELETE /Users/{id}"
	EndpointBulk   = "POST /Bulk"
	EndpointConfig = "GET /ServiceProviderConfig"
)

// Profile is what a server offers, as its ServiceProviderConfig says.
type Profile struct {
	Name string
	// Bulk offers POST /Bulk with at most MaxOperations operations and
	// MaxPayloadSize bytes; a larger request gets 413.
	Bulk           bool
	MaxOperations  int
	MaxPayloadSize int
	// Patch offers PATCH /Users/{id}; without it PATCH gets 501.
	Patch bool
	// ETag answers ETag and meta.version, and honours If-Match (412).
	ETag bool
	// MaxResults caps count of a list. Filters are always offered: eq on
	// a singular attribute (userName, externalId, id, displayName, title,
	// active, name.givenName, ...), terms joined with and.
	MaxResults int
	// FilterAttrs, when set, are the only attributes a filter may test
	// (others get 400 invalidFilter); NoAnd refuses terms joined with and.
	FilterAttrs []string
	NoAnd       bool
	// SingleEmails refuses a user with more than one email (400
	// invalidValue).
	SingleEmails bool
	// ProxyLimit, when > 0, is a body limit in front of the server that
	// its ServiceProviderConfig does not announce (a reverse proxy's): a
	// larger request gets 413 with a body that is not SCIM, and is not
	// carried out.
	ProxyLimit int
}

// Profiles of real servers, chosen per test and in the demo.
var (
	// Full offers Bulk (100 operations, 1 MiB), PATCH, ETag and filters.
	Full = Profile{Name: "full", Bulk: true, MaxOperations: 100, MaxPayloadSize: 1 << 20, Patch: true, ETag: true, MaxResults: 1000}
	// NoBulk is like HCP Terraform: no Bulk, filters userName eq and
	// externalId eq only (no and), count capped at 200.
	NoBulk = Profile{Name: "nobulk", Patch: true, MaxResults: 200, FilterAttrs: []string{"userName", "externalId"}, NoAnd: true}
	// AWS is like AWS IAM Identity Center: no Bulk, no ETag, PATCH,
	// filters only eq joined with and, single-valued emails, lists of at
	// most 100.
	AWS = Profile{Name: "aws", Patch: true, MaxResults: 100, SingleEmails: true}
	// Tight offers Bulk with a maxPayloadSize of 16 KiB, which a request
	// of 100 users (about 33 KiB) exceeds: such a request gets 413.
	Tight = Profile{Name: "tight", Bulk: true, MaxOperations: 100, MaxPayloadSize: 16 << 10, Patch: true, ETag: true, MaxResults: 1000}
)

// Profiles lists the named profiles.
func Profiles() []Profile { return []Profile{Full, NoBulk, AWS, Tight} }

// ProfileByName returns the profile named name ("full", "nobulk", "aws",
// "tight").
func ProfileByName(name string) (Profile, bool) {
	for _, p := range Profiles() {
		if strings.EqualFold(p.Name, name) {
			return p, true
		}
	}
	return Profile{}, false
}

// Options configures an Emulator.
type Options struct {
	// Profile is what the server offers; the zero value means Full.
	Profile Profile
	// Tokens are the bearer tokens the emulator accepts.
	Tokens []string
	// Latency delays every answer.
	Latency time.Duration
	// RateLimit, when > 0, admits at most RateLimit calls per RateWindow
	// (default one second); the others get 429 with Retry-After and the
	// SCIM error body.
	RateLimit  int
	RateWindow time.Duration
}

// User is a user stored by the emulator.
type User struct {
	ID         string
	ExternalID string
	UserName   string
	Active     bool
	Version    int
	// Resource is the stored resource as JSON would decode it (maps,
	// slices, strings, float64, bools), without id and meta.
	Resource map[string]any
}

// Fault is an injected answer (see emulation.Fault); a status is answered
// with the SCIM error body.
type Fault = emulation.Fault

// Emulator is an in-memory SCIM 2.0 server. It is safe for concurrent use.
//
// Every request needs "Authorization: Bearer <token>" with a token of
// Options.Tokens; others get 401 with the SCIM error body. A userName
// already held by another user (compared without case) gets 409 with
// scimType uniqueness; a user without userName, or with an email value
// without "@", gets 400 invalidValue; attribute names are matched without
// case. With Options.RateLimit, calls over it get 429 with Retry-After.
// These hold in every profile. The harness (emulation.Server) gives it Inject, Calls, Inputs, Log
// and ResetCounters; Inputs lists the operations of each Bulk call.
type Emulator struct {
	*emulation.Server
	profile Profile
	tokens  map[string]bool

	mu       sync.Mutex
	users    map[string]*User
	names    map[string]string // lower-cased userName → id
	nextID   int
	opFaults []*OpFault
	window   time.Duration
}

// New returns an Emulator that is not listening yet.
func New(o Options) *Emulator {
	if o.Profile.Name == "" {
		o.Profile = Full
	}
	e := &Emulator{profile: o.Profile, tokens: map[string]bool{}, users: map[string]*User{}, names: map[string]string{}, nextID: 1000}
	for _, t := range o.Tokens {
		e.tokens[t] = true
	}
	e.Server = &emulation.Server{Handler: http.HandlerFunc(e.handle), ErrorBody: func(status int) any {
		return errorBody(status, "", fmt.Sprintf("injected fault: HTTP %d", status))
	}, ContentType: ContentType, Latency: o.Latency}
	if o.RateLimit > 0 {
		if o.RateWindow <= 0 {
			o.RateWindow = time.Second
		}
		e.Limit = &emulation.RateLimit{Limit: o.RateLimit, Window: o.RateWindow}
		e.window = o.RateWindow
	}
	return e
}

// OpFault makes the next Count Bulk operations (of any request) answer
// Status with the SCIM error body; AfterApply carries each out first (a
// 5xx after the change was made).
type OpFault struct {
	Status     int
	Count      int
	AfterApply bool
	// BulkID, when set, limits the fault to the operations with this
	// bulkId.
	BulkID string
}

// InjectOperation queues f for the next Bulk operations.
func (e *Emulator) InjectOperation(f OpFault) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if f.Count <= 0 {
		f.Count = 1
	}
	e.opFaults = append(e.opFaults, &f)
}

// opFault takes the fault of a Bulk operation, if one is queued for it:
// the first queued fault without a BulkID or with the operation's.
// Callers hold e.mu.
func (e *Emulator) opFault(bulkID string) *OpFault {
	for i, f := range e.opFaults {
		if f.BulkID != "" && f.BulkID != bulkID {
			continue
		}
		if f.Count--; f.Count <= 0 {
			e.opFaults = append(e.opFaults[:i:i], e.opFaults[i+1:]...)
		}
		return f
	}
	return nil
}

// Profile is what the emulator offers.
func (e *Emulator) Profile() Profile { return e.profile }

// Start serves on a free port of 127.0.0.1 and returns the SCIM base URL
// (ending in /scim/v2). It panics when no port can be opened.
func (e *Emulator) Start() string {
	e.Server.Start()
	return e.URL()
}

// URL is the SCIM base URL once started.
func (e *Emulator) URL() string {
	if e.Server.URL() == "" {
		return ""
	}
	return e.Server.URL() + BasePath
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

// UserByExternalID returns a copy of the user with this externalId.
func (e *Emulator) UserByExternalID(ext string) (User, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if u := e.byExternalID(ext); u != nil {
		return copyUser(u), true
	}
	return User{}, false
}

// EditUser changes the user with this externalId behind the client's back,
// as an admin of the SaaS would: attrs maps an attribute path ("title",
// "name.givenName", "active", or "<enterprise URN>:department") to its new
// value; nil removes it. It reports whether there was such a user.
func (e *Emulator) EditUser(ext string, attrs map[string]any) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	u := e.byExternalID(ext)
	if u == nil {
		return false
	}
	for p, v := range attrs {
		setPath(u.Resource, p, v)
	}
	e.touch(u)
	return true
}

// DeleteUser removes the user with this externalId behind the client's
// back; it reports whether there was one.
func (e *Emulator) DeleteUser(ext string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if u := e.byExternalID(ext); u != nil {
		e.forget(u.ID)
		return true
	}
	return false
}

// AddUser stores a user created behind the client's back (by another
// provisioning client) and returns its id: resource holds at least
// userName.
func (e *Emulator) AddUser(resource map[string]any) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	u, serr := e.create(resource)
	if serr != nil {
		return "", fmt.Errorf("%s", serr.Detail)
	}
	return u.ID, nil
}

func (e *Emulator) byExternalID(ext string) *User {
	for _, u := range e.users {
		if u.ExternalID == ext {
			return u
		}
	}
	return nil
}

func copyUser(u *User) User {
	c := *u
	c.Resource = emulation.DeepCopy(u.Resource).(map[string]any)
	return c
}

// scimError is a SCIM error answer.
type scimError struct {
	Status   int
	ScimType string
	Detail   string
}

func errorBody(status int, scimType, detail string) map[string]any {
	b := map[string]any{"schemas": []string{SchemaError}, "status": strconv.Itoa(status), "detail": detail}
	if scimType != "" {
		b["scimType"] = scimType
	}
	return b
}

func (e *Emulator) writeError(w http.ResponseWriter, se *scimError) {
	e.WriteJSON(w, se.Status, errorBody(se.Status, se.ScimType, se.Detail))
}
