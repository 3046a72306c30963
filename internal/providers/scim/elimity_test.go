package scim

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	escim "github.com/elimity-com/scim"
	eerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"

	"github.com/usersync/usersync-operator/internal/providers"
)

// memUsers is an in-memory ResourceHandler for github.com/elimity-com/scim,
// a SCIM server library this project did not write.
type memUsers struct {
	mu    sync.Mutex
	next  int
	users map[string]escim.ResourceAttributes
}

func (m *memUsers) resource(id string, a escim.ResourceAttributes) escim.Resource {
	r := escim.Resource{ID: id, Attributes: a}
	if ext, ok := a["externalId"].(string); ok {
		r.ExternalID = optional.NewString(ext)
	}
	return r
}

// taken reports whether another user than id holds a's userName.
func (m *memUsers) taken(id string, a escim.ResourceAttributes) bool {
	name, _ := a["userName"].(string)
	for oid, o := range m.users {
		if on, _ := o["userName"].(string); oid != id && strings.EqualFold(on, name) {
			return true
		}
	}
	return false
}

func (m *memUsers) Create(_ *http.Request, a escim.ResourceAttributes) (escim.Resource, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.taken("", a) {
		return escim.Resource{}, eerrors.ScimErrorUniqueness
	}
	m.next++
	id := fmt.Sprint(m.next)
	m.users[id] = a
	return m.resource(id, a), nil
}

func (m *memUsers) Get(_ *http.Request, id string) (escim.Resource, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.users[id]
	if !ok {
		return escim.Resource{}, eerrors.ScimErrorResourceNotFound(id)
	}
	return m.resource(id, a), nil
}

func (m *memUsers) GetAll(_ *http.Request, p escim.ListRequestParams) (escim.Page, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	page := escim.Page{Resources: []escim.Resource{}}
	for id, a := range m.users {
		if p.FilterValidator != nil && p.FilterValidator.PassesFilter(a) != nil {
			continue
		}
		page.TotalResults++
		if len(page.Resources) < p.Count {
			page.Resources = append(page.Resources, m.resource(id, a))
		}
	}
	return page, nil
}

func (m *memUsers) Replace(_ *http.Request, id string, a escim.ResourceAttributes) (escim.Resource, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.users[id]; !ok {
		return escim.Resource{}, eerrors.ScimErrorResourceNotFound(id)
	}
	if m.taken(id, a) {
		return escim.Resource{}, eerrors.ScimErrorUniqueness
	}
	m.users[id] = a
	return m.resource(id, a), nil
}

func (m *memUsers) Delete(_ *http.Request, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.users[id]; !ok {
		return eerrors.ScimErrorResourceNotFound(id)
	}
	delete(m.users, id)
	return nil
}

// Patch applies add and replace operations on singular attributes, with
// and without path.
func (m *memUsers) Patch(_ *http.Request, id string, ops []escim.PatchOperation) (escim.Resource, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.users[id]
	if !ok {
		return escim.Resource{}, eerrors.ScimErrorResourceNotFound(id)
	}
	for _, op := range ops {
		switch strings.ToLower(op.Op) {
		case "add", "replace":
		default:
			return escim.Resource{}, eerrors.ScimErrorInvalidSyntax
		}
		if op.Path == nil {
			vals, ok := op.Value.(map[string]any)
			if !ok {
				return escim.Resource{}, eerrors.ScimErrorInvalidValue
			}
			for k, v := range vals {
				a[k] = v
			}
			continue
		}
		ap := op.Path.AttributePath
		target := map[string]any(a)
		if ap.URIPrefix != nil {
			target = child(a, *ap.URIPrefix)
		}
		if ap.SubAttribute != nil {
			child(target, ap.AttributeName)[*ap.SubAttribute] = op.Value
			continue
		}
		target[ap.AttributeName] = op.Value
	}
	return m.resource(id, a), nil
}

// child returns the object m holds at key, adding an empty one.
func child(m map[string]any, key string) map[string]any {
	sub, _ := m[key].(map[string]any)
	if sub == nil {
		sub = map[string]any{}
		m[key] = sub
	}
	return sub
}

// newElimity serves the library's server, with the core User schema and
// the enterprise extension, under /scim/v2, behind a bearer token.
func newElimity(t *testing.T) (*memUsers, string) {
	t.Helper()
	h := &memUsers{users: map[string]escim.ResourceAttributes{}}
	srv, err := escim.NewServer(&escim.ServerArgs{
		ServiceProviderConfig: &escim.ServiceProviderConfig{SupportFiltering: true, SupportPatch: true, MaxResults: 100},
		ResourceTypes: []escim.ResourceType{{
			ID: optional.NewString("User"), Name: "User", Endpoint: "/Users",
			Description: optional.NewString("User Account"), Schema: schema.CoreUserSchema(),
			SchemaExtensions: []escim.SchemaExtension{{Schema: schema.ExtensionEnterpriseUser()}},
			Handler:          h,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/scim/", http.StripPrefix("/scim", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"401","detail":"unauthorized"}`))
			return
		}
		srv.ServeHTTP(w, r)
	})))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return h, ts.URL + "/scim/v2"
}

// TestElimity runs the single-call path (the library has no /Bulk) against
// github.com/elimity-com/scim: create, update, read, adoption after a lost
// create and after a conflict, deactivate and delete.
func TestElimity(t *testing.T) {
	h, url := newElimity(t)
	cfg := providers.Config{Endpoint: url, Credentials: map[string][]byte{"token": []byte(testToken)}}
	c, err := Factory{}.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	us := users(5)
	us[4].Attributes["active"] = true
	us[4].Attributes["enterprise.employeeNumber"] = float64(42)
	res := apply(t, c, changes(providers.OpCreate, us))
	expectOK(t, res, providers.ActionCreated)
	if len(h.users) != 5 {
		t.Fatalf("%d users", len(h.users))
	}
	a := h.users[res["c-u-004"].ExternalID]
	if a["externalId"] != "u-004" || a["userName"] != "u-004@example.com" || a["title"] != "Engineer" {
		t.Fatalf("stored %v", a)
	}

	for i := range us {
		us[i].Attributes["title"] = "Manager"
		us[i].Attributes["enterprise.department"] = "Ops"
	}
	res = apply(t, c, withIDs(changes(providers.OpUpdate, us), res))
	expectOK(t, res, providers.ActionUpdated)
	if a := h.users[res["c-u-003"].ExternalID]; a["title"] != "Manager" {
		t.Fatalf("not updated: %v", a)
	}

	reqs := make([]providers.ReadRequest, len(us))
	for i, u := range us {
		reqs[i] = providers.ReadRequest{ID: u.Key, ExternalID: res["c-"+u.Key].ExternalID, User: u}
	}
	reqs[1].ExternalID = "" // by externalId eq
	obs, _ := c.(providers.Reader).Read(t.Context(), reqs)
	for _, o := range obs {
		if o.Presence != providers.Found || len(o.Differs) != 0 || o.Err != nil {
			t.Fatalf("%s: %v %v %v", o.ID, o.Presence, o.Differs, o.Err)
		}
	}

	// A retried create of a user that exists is adopted.
	retry := changes(providers.OpCreate, us[:1])
	retry[0].Retry = true
	expectOK(t, apply(t, c, retry), providers.ActionAdopted)
	// A conflicting userName is adopted through a lookup by userName.
	other := providers.User{Key: "other", Email: "U-002@example.com"}
	r := apply(t, c, changes(providers.OpCreate, []providers.User{other}))["c-other"]
	if r.Err != nil || r.Action != providers.ActionAdopted || r.ExternalID != res["c-u-002"].ExternalID {
		t.Fatalf("conflict: %+v", r)
	}

	dels := withIDs(changes(providers.OpDelete, us[:2]), res)
	expectOK(t, apply(t, c, dels), providers.ActionDeleted)
	if act := h.users[res["c-u-000"].ExternalID]["active"]; act != false {
		t.Fatalf("u-000 active %v after deactivation", act)
	}
	del, _ := Factory{Options: &Options{Deprovision: DeprovisionDelete}}.New(cfg)
	expectOK(t, apply(t, del, dels), providers.ActionDeleted)
	expectOK(t, apply(t, del, dels), providers.ActionDeleted) // already gone
	if len(h.users) != 3 {
		t.Fatalf("%d users after deletion", len(h.users))
	}
	obs, _ = c.(providers.Reader).Read(t.Context(), reqs[:1])
	if obs[0].Presence != providers.Missing {
		t.Fatalf("deleted user read as %v %v", obs[0].Presence, obs[0].Err)
	}

	bad, _ := Factory{}.New(providers.Config{Endpoint: url, Credentials: map[string][]byte{"token": []byte("nope")}})
	if err := bad.Verify(t.Context()); !errors.Is(err, providers.ErrAuth) {
		t.Fatalf("Verify with a wrong token: %v", err)
	}
}
