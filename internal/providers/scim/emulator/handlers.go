package emulator

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/usersync/usersync-operator/internal/providers/emulation"
)

// maxBody bounds what is read of a call that is not a Bulk.
const maxBody = 4 << 20

func (e *Emulator) handle(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, BasePath)
	if !ok {
		e.writeError(w, &scimError{http.StatusNotFound, "", "no SCIM endpoint at " + r.URL.Path})
		return
	}
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || !e.tokens[tok] {
		e.writeError(w, &scimError{http.StatusUnauthorized, "", "the bearer token is missing or invalid"})
		return
	}
	if _, ok := e.Admit(); !ok {
		w.Header().Set("Retry-After", emulation.RetryAfterSeconds(e.window))
		e.writeError(w, &scimError{http.StatusTooManyRequests, "", "too many requests: the rate limit is exceeded"})
		return
	}
	switch {
	case path == "/ServiceProviderConfig" && r.Method == http.MethodGet:
		e.Serve(w, r, EndpointConfig, -1, e.serveConfig)
	case path == "/Bulk" && r.Method == http.MethodPost:
		e.serveBulk(w, r)
	case path == "/Users" && r.Method == http.MethodPost:
		e.Serve(w, r, EndpointCreate, -1, func(w http.ResponseWriter, r *http.Request) {
			res, se := readResource(r)
			if se == nil {
				e.mu.Lock()
				var u *User
				if u, se = e.create(res); se == nil {
					e.writeUser(w, r, http.StatusCreated, u)
				}
				e.mu.Unlock()
			}
			if se != nil {
				e.writeError(w, se)
			}
		})
	case path == "/Users" && r.Method == http.MethodGet:
		endpoint := EndpointList
		if r.URL.Query().Has("filter") {
			endpoint = EndpointLookup
		}
		e.Serve(w, r, endpoint, -1, e.serveList)
	case strings.HasPrefix(path, "/Users/"):
		e.serveUser(w, r, strings.TrimPrefix(path, "/Users/"))
	default:
		e.writeError(w, &scimError{http.StatusNotFound, "", fmt.Sprintf("no endpoint %s %s", r.Method, path)})
	}
}

func readResource(r *http.Request) (map[string]any, *scimError) {
	var res map[string]any
	if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&res); err != nil {
		return nil, &scimError{http.StatusBadRequest, "invalidSyntax", "the body is not a JSON object: " + err.Error()}
	}
	return res, nil
}

func (e *Emulator) serveUser(w http.ResponseWriter, r *http.Request, id string) {
	ifMatch := r.Header.Get("If-Match")
	var endpoint string
	var do func() (*User, *scimError)
	switch r.Method {
	case http.MethodGet:
		endpoint = EndpointGet
		do = func() (*User, *scimError) { return e.find(id, "") }
	case http.MethodPut:
		endpoint = EndpointPut
		do = func() (*User, *scimError) {
			res, se := readResource(r)
			if se != nil {
				return nil, se
			}
			return e.replace(id, ifMatch, res)
		}
	case http.MethodPatch:
		endpoint = EndpointPatch
		do = func() (*User, *scimError) {
			var body struct {
				Operations []patchOp `json:"Operations"`
			}
			if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&body); err != nil {
				return nil, &scimError{http.StatusBadRequest, "invalidSyntax", "the body is not a PatchOp: " + err.Error()}
			}
			return e.patch(id, ifMatch, body.Operations)
		}
	case http.MethodDelete:
		e.Serve(w, r, EndpointDelete, -1, func(w http.ResponseWriter, _ *http.Request) {
			e.mu.Lock()
			defer e.mu.Unlock()
			if se := e.remove(id, ifMatch); se != nil {
				e.writeError(w, se)
				return
			}
			w.WriteHeader(http.StatusNoContent)
		})
		return
	default:
		e.writeError(w, &scimError{http.StatusMethodNotAllowed, "", r.Method + " is not allowed on a user"})
		return
	}
	e.Serve(w, r, endpoint, -1, func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		defer e.mu.Unlock()
		u, se := do()
		if se != nil {
			e.writeError(w, se)
			return
		}
		e.writeUser(w, r, http.StatusOK, u)
	})
}

// body is a user as the server answers it.
func (e *Emulator) body(r *http.Request, u *User) map[string]any {
	out := emulation.DeepCopy(u.Resource).(map[string]any)
	out["id"] = u.ID
	schemas := []any{SchemaUser}
	if _, ok := out[SchemaEnterprise]; ok {
		schemas = append(schemas, SchemaEnterprise)
	}
	out["schemas"] = schemas
	meta := map[string]any{"resourceType": "User", "location": e.location(r, u.ID)}
	if e.profile.ETag {
		meta["version"] = u.version()
	}
	out["meta"] = meta
	return out
}

func (e *Emulator) location(r *http.Request, id string) string {
	return "http://" + r.Host + BasePath + "/Users/" + id
}

func (e *Emulator) writeUser(w http.ResponseWriter, r *http.Request, status int, u *User) {
	if e.profile.ETag {
		w.Header().Set("ETag", u.version())
	}
	w.Header().Set("Location", e.location(r, u.ID))
	e.WriteJSON(w, status, e.body(r, u))
}

func (e *Emulator) serveList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var terms []term
	if f := q.Get("filter"); f != "" {
		var se *scimError
		if terms, se = e.parseFilter(f); se != nil {
			e.writeError(w, se)
			return
		}
	}
	start, count := 1, e.profile.MaxResults
	if v, err := strconv.Atoi(q.Get("startIndex")); err == nil && v > 1 {
		start = v
	}
	if v, err := strconv.Atoi(q.Get("count")); err == nil && v >= 0 {
		count = min(v, e.profile.MaxResults)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var found []map[string]any
	for _, id := range slices.Sorted(maps.Keys(e.users)) {
		if u := e.users[id]; u.matches(terms) {
			found = append(found, e.body(r, u))
		}
	}
	page := found[min(start-1, len(found)):]
	page = page[:min(count, len(page))]
	e.WriteJSON(w, http.StatusOK, map[string]any{"schemas": []string{SchemaList}, "totalResults": len(found),
		"startIndex": start, "itemsPerPage": len(page), "Resources": page})
}

func (e *Emulator) serveConfig(w http.ResponseWriter, _ *http.Request) {
	p := e.profile
	e.WriteJSON(w, http.StatusOK, map[string]any{
		"schemas":        []string{SchemaSPConfig},
		"patch":          map[string]any{"supported": p.Patch},
		"bulk":           map[string]any{"supported": p.Bulk, "maxOperations": p.MaxOperations, "maxPayloadSize": p.MaxPayloadSize},
		"filter":         map[string]any{"supported": true, "maxResults": p.MaxResults},
		"etag":           map[string]any{"supported": p.ETag},
		"sort":           map[string]any{"supported": false},
		"changePassword": map[string]any{"supported": false},
		"authenticationSchemes": []any{map[string]any{"type": "oauthbearertoken", "name": "OAuth Bearer Token",
			"description": "a bearer token in the Authorization header"}},
	})
}
