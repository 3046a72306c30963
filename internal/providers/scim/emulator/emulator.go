// Package emulator is an in-memory SCIM 2.0 service provider (RFC 7643 /
// 7644) for tests, benchmarks and the demo, built on the emulation harness.
// It serves /Users, /ServiceProviderConfig and, when its Profile offers it,
// /Bulk. It implements the protocol on its own: it does not import the
// operator's SCIM client.
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
	// MaxResults caps count of a list; filters are always offered
	// (userName eq / externalId eq, joined with and).
	MaxResults int
}

// Profiles of real servers, chosen per test and in the demo.
var (
	// Full offers Bulk (100 operations, 1 MiB), PATCH, ETag and filters.
	Full = Profile{Name: "full", Bulk: true, MaxOperations: 100, MaxPayloadSize: 1 << 20, Patch: true, ETag: true, MaxResults: 1000}
	// NoBulk is like HCP Terraform: no Bulk, filters userName eq and
	// externalId eq only, count capped at 200.
	NoBulk = Profile{Name: "nobulk", Patch: true, MaxResults: 200}
)

// ProfileByName returns the profile named name ("full", "nobulk").
func ProfileByName(name string) (Profile, bool) {
	for _, p := range []Profile{Full, NoBulk} {
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
// case. The harness (emulation.Server) gives it Inject, Calls, Inputs, Log
// and ResetCounters; Inputs lists the operations of each Bulk call.
type Emulator struct {
	*emulation.Server
	profile Profile
	tokens  map[string]bool

	mu     sync.Mutex
	users  map[string]*User
	nextID int
}

// New returns an Emulator that is not listening yet.
func New(o Options) *Emulator {
	if o.Profile.Name == "" {
		o.Profile = Full
	}
	e := &Emulator{profile: o.Profile, tokens: map[string]bool{}, users: map[string]*User{}, nextID: 1000}
	for _, t := range o.Tokens {
		e.tokens[t] = true
	}
	e.Server = &emulation.Server{Handler: http.HandlerFunc(e.handle), ErrorBody: func(status int) any {
		return errorBody(status, "", fmt.Sprintf("injected fault: HTTP %d", status))
	}, ContentType: ContentType, Latency: o.Latency}
	return e
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
		delete(e.users, u.ID)
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
	c.Resource = deepCopy(u.Resource).(map[string]any)
	return c
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, vv := range x {
			m[k] = deepCopy(vv)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, vv := range x {
			s[i] = deepCopy(vv)
		}
		return s
	}
	return v
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
