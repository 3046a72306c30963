package hubspot

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

var _ providers.Reader = (*Client)(nil)

// ReadBatch implements providers.Reader: batch/read takes 100 inputs.
func (c *Client) ReadBatch() int { return c.batch }

// Read implements providers.Reader with batch/read, 100 users a call, from
// HubSpot's record store (current, unlike search): by the idProperty value
// when the provider has one, else by the record id, asking only for the
// properties the operator writes. A user HubSpot names in the answer's
// OBJECT_NOT_FOUND error is Missing; a user the answer does not mention,
// and every user of a call that failed, is Unknown.
func (c *Client) Read(ctx context.Context, reqs []providers.ReadRequest) ([]providers.Observation, error) {
	out := make([]providers.Observation, 0, len(reqs))
	for start := 0; start < len(reqs); start += c.batch {
		part := reqs[start:min(start+c.batch, len(reqs))]
		obs, err := c.readPart(ctx, part)
		if err != nil {
			return nil, err
		}
		out = append(out, obs...)
	}
	return out, nil
}

// readKey is the value a request is read by.
func (c *Client) readKey(r providers.ReadRequest) string {
	if c.idProperty != "" {
		return c.idValue(r.User)
	}
	return r.ExternalID
}

func (c *Client) readPart(ctx context.Context, part []providers.ReadRequest) ([]providers.Observation, error) {
	obs := make([]providers.Observation, len(part))
	req := batchRequest{IDProperty: c.idProperty}
	props := map[string]bool{}
	byKey := map[string][]int{}
	for i, r := range part {
		obs[i] = providers.Observation{ID: r.ID}
		k := c.readKey(r)
		if k == "" {
			obs[i].Err = fmt.Errorf("the user has no HubSpot id to read it by")
			continue
		}
		if len(byKey[k]) == 0 {
			req.Inputs = append(req.Inputs, input{ID: k})
		}
		byKey[k] = append(byKey[k], i)
		for p := range c.properties(r.User) {
			props[p] = true
		}
	}
	if len(req.Inputs) == 0 {
		return obs, nil
	}
	req.Properties = slices.Sorted(func(yield func(string) bool) {
		for p := range props {
			if !yield(p) {
				return
			}
		}
	})
	unknown := func(err error) []providers.Observation {
		for i := range obs {
			if obs[i].Err == nil {
				obs[i].Err = err
			}
		}
		return obs
	}
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodPost, Path: pathRead + "?archived=false", Body: req,
		Idempotent: true, Endpoint: "batch/read", Records: len(req.Inputs)})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return unknown(err), nil
	}
	if resp.Status != http.StatusOK && resp.Status != http.StatusMultiStatus {
		e := errorOf(resp.Status, resp.Body)
		return unknown(fmt.Errorf("HubSpot answered HTTP %d to a read: %s", resp.Status, e.text())), nil
	}
	var br batchResponse
	if err := json.Unmarshal(resp.Body, &br); err != nil {
		return unknown(fmt.Errorf("HubSpot's read answer could not be read")), nil
	}
	for _, o := range br.Results {
		k := string(o.ID)
		if c.idProperty != "" {
			k = o.prop(c.idProperty)
		}
		if o.Archived {
			continue
		}
		for _, i := range byKey[k] {
			obs[i].Presence = providers.Found
			obs[i].Differs = c.differs(part[i].User, o)
		}
	}
	for _, e := range br.Errors {
		if !notFound(&e) {
			continue
		}
		for _, k := range e.contextValues("ids") {
			for _, i := range byKey[k] {
				if obs[i].Presence == providers.Unknown {
					obs[i].Presence = providers.Missing
				}
			}
		}
	}
	for i := range obs {
		if obs[i].Presence == providers.Unknown && obs[i].Err == nil {
			obs[i].Err = fmt.Errorf("HubSpot's read answer did not mention the user")
		}
	}
	return obs, nil
}

// differs names the properties the operator writes whose stored value is
// not the declared one, sorted.
func (c *Client) differs(u providers.User, o object) []string {
	var out []string
	for p, want := range c.properties(u) {
		if !sameValue(p, want, o.prop(p)) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// sameValue compares a declared property value with the stored one as
// HubSpot keeps them: every value is a string; emails compare without case;
// numbers by value ("3" and "3.0"); booleans without case; an empty value
// and an absent property are the same (HubSpot clears a property set to "").
func sameValue(prop, want, got string) bool {
	if want == got {
		return true
	}
	if prop == PropEmail {
		return strings.EqualFold(want, got)
	}
	if a, err := strconv.ParseFloat(want, 64); err == nil {
		if b, err := strconv.ParseFloat(got, 64); err == nil {
			return a == b
		}
	}
	if a, err := strconv.ParseBool(want); err == nil {
		if b, err := strconv.ParseBool(got); err == nil {
			return a == b
		}
	}
	return false
}

var _ providers.OrphanCounter = (*Client)(nil)

// CountOrphans implements providers.OrphanCounter: with an idProperty it
// pages through the users (GET, 100 a page, only that property) and counts
// those that carry a value no UserSync declares. Without one HubSpot users
// carry nothing of this provider's: ok is false.
func (c *Client) CountOrphans(ctx context.Context, declared map[string]bool) (int, bool, error) {
	if c.idProperty == "" {
		return 0, false, nil
	}
	n, after := 0, ""
	for {
		path := "?limit=100&archived=false&properties=" + url.QueryEscape(c.idProperty)
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodGet, Path: path, Idempotent: true, Endpoint: "list"})
		if err != nil {
			return 0, false, err
		}
		if resp.Status != http.StatusOK {
			e := errorOf(resp.Status, resp.Body)
			return 0, false, fmt.Errorf("HubSpot answered HTTP %d to a list of users: %s", resp.Status, e.text())
		}
		var page searchResponse
		if err := json.Unmarshal(resp.Body, &page); err != nil {
			return 0, false, fmt.Errorf("HubSpot's list of users could not be read")
		}
		for _, o := range page.Results {
			v := o.prop(c.idProperty)
			if c.idFrom == IDFromEmail {
				v = strings.ToLower(v)
			}
			if v != "" && !declared[v] {
				n++
			}
		}
		if page.Paging == nil || page.Paging.Next == nil || page.Paging.Next.After == "" || string(page.Paging.Next.After) == after {
			return n, true, nil
		}
		after = string(page.Paging.Next.After)
	}
}

var _ providers.CallPlanner = (*Client)(nil)

// PlanCalls implements providers.CallPlanner with the packing of Apply:
// with an idProperty, every create and update is one upsert batch; without
// one, updates by id, and creates preceded by a lookup batch (adoption, or
// a retry) — a user the lookup finds is updated instead of created, in as
// many calls. Deletions are archive batches.
func (c *Client) PlanCalls(chs []providers.Change) int {
	batches := func(n int) int { return (n + c.batch - 1) / c.batch }
	var writes, updates, creates, lookups, deletes int
	for _, ch := range chs {
		switch {
		case ch.Op == providers.OpDelete:
			deletes++
		case c.idProperty != "":
			writes++
		case ch.ExternalID != "":
			updates++
		default:
			creates++
			if ch.Retry || c.adopt {
				lookups++
			}
		}
	}
	return batches(writes) + batches(updates) + batches(creates) + batches(lookups) + batches(deletes)
}
