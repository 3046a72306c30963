package scim

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

// ReadBatch implements providers.Reader: one user a call.
func (c *Client) ReadBatch() int { return 1 }

// Read implements providers.Reader with GET /Users/{id} (by the record's
// ExternalID), or, without one, a lookup by externalId eq "<key>"; four in
// flight. A 404 with a JSON body (the server's own error, not a page of a
// wrong endpoint), or a lookup answering totalResults 0, is Missing; any
// other failure is Unknown. Differs names the SCIM attributes (userName,
// name.givenName, emails, title, <enterprise URN>:department, ...) whose
// stored value is not the declared one; userName and emails compare
// without case, attribute names always do. The error is always nil.
func (c *Client) Read(ctx context.Context, reqs []providers.ReadRequest) ([]providers.Observation, error) {
	obs := make([]providers.Observation, len(reqs))
	c.parallel(len(reqs), func(j int) { obs[j] = c.readOne(ctx, reqs[j]) })
	return obs, nil
}

func (c *Client) readOne(ctx context.Context, rq providers.ReadRequest) providers.Observation {
	o := providers.Observation{ID: rq.ID}
	want, err := c.toResource(rq.User)
	if err != nil {
		o.Err = err
		return o
	}
	id := rq.ExternalID
	if id == "" {
		u, err := c.find(ctx, rq.User.Key, c.userName(rq.User), false)
		if err != nil {
			o.Err = err
			return o
		}
		if u == nil {
			o.Presence = providers.Missing
			return o
		}
		id = u.id
	}
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodGet, Path: "/Users/" + url.PathEscape(id),
		Idempotent: true, Endpoint: EndpointRead})
	switch {
	case err != nil:
		o.Err = err
		return o
	case resp.Status == http.StatusNotFound && json.Valid(resp.Body):
		o.Presence = providers.Missing
		return o
	case !resp.OK():
		o.Err = errors.New(c.clean("the SCIM server answered a read of a user with " + errorText(resp.Status, resp.Body)))
		return o
	}
	var got map[string]any
	if err := json.Unmarshal(resp.Body, &got); err != nil {
		o.Err = errors.New(c.clean("the SCIM server's answer to a read of a user could not be read: " + err.Error()))
		return o
	}
	o.Presence = providers.Found
	o.Differs = differs(want, lowerKeys(got))
	return o
}

// diff is a declared attribute the server holds otherwise: its path
// (userName, name.givenName, <urn>:department) and declared value.
type diff struct {
	path  string
	value any
}

// differs names the declared attributes of want that got (with lower-cased
// keys) holds otherwise, sorted.
func differs(want resource, got map[string]any) []string {
	var out []string
	for _, d := range diffs(want, got) {
		out = append(out, d.path)
	}
	return out
}

// diffs lists the declared attributes of want that got (with lower-cased
// keys) holds otherwise, sorted by path. name and the schema extensions
// are compared attribute by attribute.
func diffs(want resource, got map[string]any) []diff {
	var out []diff
	for k, v := range want {
		switch {
		case k == "schemas":
		case k == "emails":
			if !strings.EqualFold(primaryEmail(v), primaryEmail(got["emails"])) {
				out = append(out, diff{"emails", v})
			}
		case k == "name" || isURN(k):
			sub := lowerKeys(asMap(got[strings.ToLower(k)]))
			sep := "."
			if isURN(k) {
				sep = ":"
			}
			for sk, sv := range asMap(v) {
				if !same(sk, sv, sub[strings.ToLower(sk)]) {
					out = append(out, diff{k + sep + sk, sv})
				}
			}
		default:
			if !same(k, v, got[strings.ToLower(k)]) {
				out = append(out, diff{k, v})
			}
		}
	}
	slices.SortFunc(out, func(a, b diff) int { return strings.Compare(a.path, b.path) })
	return out
}

// isURN reports whether an attribute name is a schema extension's URN.
func isURN(k string) bool { return len(k) > 4 && strings.EqualFold(k[:4], "urn:") }

// same compares a declared value with a stored one as servers keep them:
// userName without case, booleans also as strings, an absent active as
// true.
func same(name string, want, got any) bool {
	if b, ok := want.(bool); ok {
		if got == nil && name == "active" {
			return b
		}
		g, ok := boolValue(got)
		return ok && g == b
	}
	ws, gs := providers.Scalar(want), providers.Scalar(got)
	if name == "userName" {
		return strings.EqualFold(ws, gs)
	}
	return ws == gs
}

// primaryEmail is the value of the primary email of a list, else the
// first.
func primaryEmail(v any) string {
	list, _ := v.([]any)
	first := ""
	for _, e := range list {
		m := lowerKeys(asMap(e))
		s, _ := m["value"].(string)
		if first == "" {
			first = s
		}
		if p, _ := boolValue(m["primary"]); p {
			return s
		}
	}
	return first
}

func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// lowerKeys returns m with lower-cased keys (attribute names are
// case-insensitive).
func lowerKeys(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}
