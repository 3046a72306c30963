package usercom

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

// entry is what the client last wrote successfully for one custom_id.
type entry struct {
	// id is the user's user.com id.
	id int64
	// std holds the standard fields, wire-encoded.
	std map[string]any
	// attrs holds the custom attributes, wire-encoded.
	attrs map[string]any
}

// record is one change on its way to user.com.
type record struct {
	ch providers.Change
	// std and attrs are the desired standard fields and custom attributes,
	// wire-encoded.
	std   map[string]any
	attrs map[string]any
	// id is the user.com id the attribute calls write to.
	id int64
	// planned is set once the record's calls are known; open counts those
	// not answered yet.
	planned bool
	open    int
	// action and externalID are the outcome of an upsert or delete.
	action     providers.Action
	externalID string
	// err is the worst failure of the record's calls.
	err *providers.RecordError
}

// fail records a failure, keeping the worst: a permanent one over an
// uncertain one over any other.
func (r *record) fail(err *providers.RecordError) {
	rank := func(e *providers.RecordError) int {
		switch {
		case e == nil:
			return 0
		case e.Permanent:
			return 3
		case e.Uncertain:
			return 2
		default:
			return 1
		}
	}
	if rank(err) > rank(r.err) {
		cp := *err
		r.err = &cp
	}
}

// result is the record's Result; stop is the failure of a record the Apply
// stopped before finishing.
func (r *record) result(stop error) providers.Result {
	res := providers.Result{ID: r.ch.ID, ExternalID: r.ch.ExternalID}
	switch {
	case r.err != nil:
		res.Err = r.err
	case !r.planned || r.open > 0:
		res.Err = stop
	default:
		res.ExternalID, res.Action = r.externalID, r.action
	}
	return res
}

// applier runs one Apply.
type applier struct {
	c *Client
	// answered is set once user.com answered a call with something other
	// than a refusal of the credentials.
	answered bool
}

// Apply implements providers.Client. Changes of one key are applied in
// their order; the results are in the order of the changes.
//
// Per round of distinct keys, deletions go first, then the upserts, then
// the attribute calls Pack plans for the users that need no upsert.
func (c *Client) Apply(ctx context.Context, changes []providers.Change) ([]providers.Result, error) {
	recs := make([]*record, len(changes))
	for i, ch := range changes {
		recs[i] = &record{ch: ch}
	}
	a := &applier{c: c}
	var authErr *providers.AuthError
	for _, round := range rounds(recs) {
		if authErr = a.round(ctx, round); authErr != nil {
			break
		}
	}
	if authErr != nil && !a.answered {
		return nil, authErr
	}
	var stop error
	if authErr != nil {
		stop = authErr
	}
	results := make([]providers.Result, len(recs))
	for i, r := range recs {
		results[i] = r.result(stop)
	}
	return results, nil
}

// rounds splits the records so that a key appears at most once per round,
// keeping the order of the changes of one key.
func rounds(recs []*record) [][]*record {
	var out [][]*record
	seen := map[string]int{}
	for _, r := range recs {
		i := seen[r.ch.User.Key]
		seen[r.ch.User.Key] = i + 1
		if i == len(out) {
			out = append(out, nil)
		}
		out[i] = append(out[i], r)
	}
	return out
}

// round writes records of distinct keys. It returns an AuthError when
// user.com refuses the credentials, leaving the records not answered yet
// open.
func (a *applier) round(ctx context.Context, recs []*record) *providers.AuthError {
	c := a.c
	var deletes, upserts []*record
	var writes []AttrWrite
	byID := map[int64]*record{}
	for _, r := range recs {
		r.planned = true
		switch r.ch.Op {
		case providers.OpDelete:
			if r.ch.User.Key == "" {
				r.fail(c.recordError(true, false, codeInvalidRecord, "the user has no key, the custom_id to delete it by"))
				continue
			}
			deletes = append(deletes, r)
		case providers.OpCreate, providers.OpUpdate:
			if err := c.encode(r); err != nil {
				r.fail(err)
				continue
			}
			pending, upsert := c.diff(r)
			if upsert || byID[r.id] != nil {
				upserts = append(upserts, r)
				continue
			}
			byID[r.id] = r
			r.externalID, r.action = strconv.FormatInt(r.id, 10), providers.ActionUpdated
			writes = append(writes, pending...)
		default:
			r.fail(c.recordError(true, false, codeUnsupported, fmt.Sprintf("unknown operation %q", r.ch.Op)))
		}
	}
	plan := Pack(writes, c.batch)
	for _, r := range deletes {
		r.open++
	}
	for _, r := range upserts {
		r.open++
	}
	for _, call := range plan {
		switch call := call.(type) {
		case Mass:
			for _, id := range call.IDs {
				byID[id].open++
			}
		case PerUser:
			byID[call.UserID].open++
		}
	}

	for _, r := range deletes {
		if ae := a.delete(ctx, r); ae != nil {
			return ae
		}
	}
	for _, r := range upserts {
		if ae := a.upsert(ctx, r); ae != nil {
			return ae
		}
	}
	for _, call := range plan {
		var ae *providers.AuthError
		switch call := call.(type) {
		case Mass:
			recs := make([]*record, len(call.IDs))
			for i, id := range call.IDs {
				recs[i] = byID[id]
			}
			ae = a.mass(ctx, call.Attr, call.Value, recs)
		case PerUser:
			ae = a.perUser(ctx, byID[call.UserID], call.Attrs)
		}
		if ae != nil {
			return ae
		}
	}
	return nil
}

// encode fills the record's wire-encoded fields, or returns why the user
// cannot be written.
func (c *Client) encode(r *record) *providers.RecordError {
	if r.ch.User.Key == "" {
		return c.recordError(true, false, codeInvalidRecord, "the user has no key to write as its user.com custom_id")
	}
	std, attrs, code, msg := wireUser(r.ch.User)
	if code != "" {
		return c.recordError(true, false, code, msg)
	}
	r.std, r.attrs = std, attrs
	return nil
}

// wireUser is the user as the client writes it: its standard fields and
// its custom attributes, wire-encoded. An attribute that cannot be written
// (a reserved name, a value JSON cannot carry) is left out, and the first
// of them, by name, is reported as a code and a message; code is "" when
// the whole user can be written. Pure: Read compares what it returns with
// what user.com holds.
func wireUser(u providers.User) (std, attrs map[string]any, code, msg string) {
	std = map[string]any{fieldFirstName: u.FirstName, fieldLastName: u.LastName}
	if u.Email != "" {
		std[fieldEmail] = u.Email
	}
	attrs = make(map[string]any, len(u.Attributes))
	fail := func(c, m string) {
		if code == "" {
			code, msg = c, m
		}
	}
	for _, name := range slices.Sorted(maps.Keys(u.Attributes)) {
		v, ok := wireValue(u.Attributes[name])
		switch {
		case reservedAttrs[name]:
			fail(codeReservedAttribute, fmt.Sprintf("attribute %q is reserved: set the user's key, email or names instead", name))
		case !ok:
			fail(codeInvalidRecord, fmt.Sprintf("attribute %q has a value JSON cannot carry: %v", name, u.Attributes[name]))
		case v == nil:
			// A null attribute is an absent one.
		case standardAttrs[name]:
			std[name] = v
		default:
			attrs[name] = v
		}
	}
	return std, attrs, code, msg
}

// diff compares the record with what the client remembers of the user. It
// reports whether the user needs an upsert, and otherwise the attribute
// values to write, with r.id set.
func (c *Client) diff(r *record) (writes []AttrWrite, upsert bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.cache[r.ch.User.Key]
	if e == nil || r.ch.ExternalID == "" || !sameFields(e.std, r.std) {
		return nil, true
	}
	if id, err := strconv.ParseInt(r.ch.ExternalID, 10, 64); err != nil || id != e.id {
		return nil, true
	}
	r.id = e.id
	add := func(name string, v any) {
		writes = append(writes, AttrWrite{UserID: e.id, Key: r.ch.User.Key, Attr: name, Value: v})
	}
	for _, name := range slices.Sorted(maps.Keys(r.attrs)) {
		if old, ok := e.attrs[name]; !ok || !sameValue(old, r.attrs[name]) {
			add(name, r.attrs[name])
		}
	}
	for _, name := range slices.Sorted(maps.Keys(e.attrs)) {
		if _, ok := r.attrs[name]; !ok {
			add(name, nil)
		}
	}
	return writes, false
}

// sameFields reports whether two sets of standard fields are equal.
func sameFields(a, b map[string]any) bool {
	return maps.EqualFunc(a, b, sameValue)
}

// remember stores what an upsert wrote.
func (c *Client) remember(key string, e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cache[key] = e
}

// rememberAttrs stores attribute values written to user id; a nil value
// was cleared. Nothing is stored when the client no longer remembers the
// user under that id.
func (c *Client) rememberAttrs(key string, id int64, attrs map[string]any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.cache[key]
	if e == nil || e.id != id {
		return
	}
	for name, v := range attrs {
		if v == nil {
			delete(e.attrs, name)
		} else {
			e.attrs[name] = v
		}
	}
}

// forget drops what the client remembers of a user, so that its next
// change upserts it in full.
func (c *Client) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cache, key)
}

// failed reports a failed call of r: an uncertain failure makes the client
// forget the user, whose state at user.com is then unknown.
func (a *applier) failed(r *record, err *providers.RecordError) {
	if err.Uncertain {
		a.c.forget(r.ch.User.Key)
	}
	r.fail(err)
	r.open--
}

// send makes a call and sorts its outcome: an AuthError, a transient
// failure of the call, or user.com's answer.
func (a *applier) send(ctx context.Context, req vendorhttp.Request) (*vendorhttp.Response, *providers.RecordError, *providers.AuthError) {
	resp, err := a.c.api.Do(ctx, req)
	var ae *providers.AuthError
	if errors.As(err, &ae) {
		return nil, nil, ae
	}
	a.answered = true
	if err != nil {
		var ce *vendorhttp.CallError
		if errors.As(err, &ce) {
			return nil, ce.Record(), nil
		}
		return nil, a.c.recordError(false, true, codeVendorUnavailable, err.Error()), nil
	}
	return resp, nil, nil
}

// upsert writes a user in full with update_or_create.
func (a *applier) upsert(ctx context.Context, r *record) *providers.AuthError {
	c := a.c
	key := r.ch.User.Key
	body := map[string]any{fieldCustomID: key}
	maps.Copy(body, r.std)
	maps.Copy(body, r.attrs)
	c.mu.Lock()
	if e := c.cache[key]; e != nil {
		// Clear what the client wrote before and the user no longer has.
		for name := range e.attrs {
			if _, ok := r.attrs[name]; !ok {
				body[name] = nil
			}
		}
		for name := range e.std {
			if _, ok := r.std[name]; !ok && name != fieldEmail {
				body[name] = nil
			}
		}
	}
	c.mu.Unlock()

	resp, fail, ae := a.send(ctx, vendorhttp.Request{Method: http.MethodPost, Path: pathUpsert, Body: body,
		Idempotent: true, Endpoint: EndpointUpsert, Records: 1})
	switch {
	case ae != nil:
		return ae
	case fail != nil:
		a.failed(r, fail)
	case resp.OK():
		a.upserted(r, resp.Body)
	case resp.Status == http.StatusBadRequest || resp.Status == http.StatusUnprocessableEntity:
		a.failed(r, c.rejection(decodeError(resp.Body), resp.Status, ""))
	default:
		msg := fmt.Sprintf("user.com answered HTTP %d to update_or_create: %s", resp.Status, errorText(resp.Status, resp.Body))
		if resp.Status == http.StatusNotFound {
			msg += "; is spec.endpoint the app's API base, https://<app>.user.com/api/public/?"
		}
		a.failed(r, c.recordError(false, false, statusCode(resp.Status), msg))
	}
	return nil
}

// upserted settles a successful upsert from its answer.
func (a *applier) upserted(r *record, body []byte) {
	ur, err := decodeUpsert(body)
	if err != nil {
		a.failed(r, a.c.recordError(false, true, codeBadResponse, "user.com's answer to update_or_create could not be read: "+err.Error()))
		return
	}
	id := int64(ur.ID)
	if id == 0 {
		// Without an id in the answer, the one the engine knows will do.
		id, _ = strconv.ParseInt(r.ch.ExternalID, 10, 64)
	}
	if id <= 0 {
		a.failed(r, a.c.recordError(false, true, codeBadResponse, "user.com's answer to update_or_create holds no user id"))
		return
	}
	switch {
	case ur.Created != nil && *ur.Created:
		r.action = providers.ActionCreated
	case ur.Created != nil && r.ch.Op == providers.OpCreate:
		// The user already existed: a restart, or an earlier lost answer.
		r.action = providers.ActionAdopted
	case ur.Created == nil && r.ch.Op == providers.OpCreate:
		r.action = providers.ActionCreated
	default:
		r.action = providers.ActionUpdated
	}
	r.externalID = strconv.FormatInt(id, 10)
	a.c.remember(r.ch.User.Key, &entry{id: id, std: maps.Clone(r.std), attrs: maps.Clone(r.attrs)})
	r.open--
}

// rejection is the permanent failure of a record user.com refused with
// 400. attr names the attribute a mass call was about.
func (c *Client) rejection(e apiError, status int, attr string) *providers.RecordError {
	msg := e.text(status)
	if name, ok := e.unknownAttribute(); ok {
		if name == "" {
			name = attr
		}
		if !strings.Contains(msg, name) {
			msg = fmt.Sprintf("attribute %q: %s", name, msg)
		}
		return c.recordError(true, false, codeUnknownAttribute, msg+" (define the attribute in the user.com app)")
	}
	if attr != "" && !strings.Contains(msg, attr) {
		msg = fmt.Sprintf("attribute %q: %s", attr, msg)
	}
	return c.recordError(true, false, codeValidation, msg)
}

// mass sets attr to value for recs with one mass call. A refusal that is
// about some ids only (too many, or users user.com does not know) fails
// those and sends the call again for the others.
func (a *applier) mass(ctx context.Context, attr string, value any, recs []*record) *providers.AuthError {
	c := a.c
	ids := make([]int64, len(recs))
	for i, r := range recs {
		ids[i] = r.id
	}
	resp, fail, ae := a.send(ctx, vendorhttp.Request{Method: http.MethodPost, Path: pathMass,
		Body:       map[string]any{"ids": ids, "attribute": attr, "value": value},
		Idempotent: true, Endpoint: EndpointMass, Records: len(ids)})
	switch {
	case ae != nil:
		return ae
	case fail != nil:
		for _, r := range recs {
			a.failed(r, fail)
		}
	case resp.OK():
		for _, r := range recs {
			c.rememberAttrs(r.ch.User.Key, r.id, map[string]any{attr: value})
			r.open--
		}
	case resp.Status == http.StatusBadRequest || resp.Status == http.StatusUnprocessableEntity ||
		resp.Status == http.StatusRequestEntityTooLarge:
		e := decodeError(resp.Body)
		if _, aboutIDs := e.fields["ids"]; (aboutIDs || resp.Status == http.StatusRequestEntityTooLarge) && len(recs) > 1 {
			return a.split(ctx, attr, value, recs)
		}
		err := c.rejection(e, resp.Status, attr)
		for _, r := range recs {
			a.failed(r, err)
		}
	case resp.Status == http.StatusNotFound:
		e := decodeError(resp.Body)
		missing := e.idsNamed(ids)
		if len(missing) == 0 && len(recs) > 1 {
			return a.split(ctx, attr, value, recs)
		}
		var rest []*record
		for _, r := range recs {
			if len(missing) > 0 && !slices.Contains(missing, r.id) {
				rest = append(rest, r)
				continue
			}
			a.vanished(r, e.text(resp.Status))
		}
		if len(rest) > 0 {
			return a.mass(ctx, attr, value, rest)
		}
	default:
		err := c.recordError(false, false, statusCode(resp.Status),
			fmt.Sprintf("user.com answered HTTP %d to a mass update of attribute %q: %s", resp.Status, attr, errorText(resp.Status, resp.Body)))
		for _, r := range recs {
			a.failed(r, err)
		}
	}
	return nil
}

// split sends a mass call as two halves.
func (a *applier) split(ctx context.Context, attr string, value any, recs []*record) *providers.AuthError {
	mid := len(recs) / 2
	if ae := a.mass(ctx, attr, value, recs[:mid]); ae != nil {
		return ae
	}
	return a.mass(ctx, attr, value, recs[mid:])
}

// vanished fails a record whose user user.com no longer knows by its id:
// the client forgets the user, and the engine's next attempt upserts it.
func (a *applier) vanished(r *record, detail string) {
	a.failed(r, a.c.recordError(false, false, codeNotFound,
		fmt.Sprintf("user.com no longer knows user id %d (%s); the next attempt creates it again", r.id, detail)))
	a.c.forget(r.ch.User.Key)
}

// perUser sets several attributes of one user.
func (a *applier) perUser(ctx context.Context, r *record, attrs map[string]any) *providers.AuthError {
	c := a.c
	resp, fail, ae := a.send(ctx, vendorhttp.Request{Method: http.MethodPost, Path: fmt.Sprintf(pathPerUser, r.id), Body: attrs,
		Idempotent: true, Endpoint: EndpointPerUser, Records: 1})
	switch {
	case ae != nil:
		return ae
	case fail != nil:
		a.failed(r, fail)
	case resp.OK():
		c.rememberAttrs(r.ch.User.Key, r.id, attrs)
		r.open--
	case resp.Status == http.StatusNotFound:
		a.vanished(r, errorText(resp.Status, resp.Body))
	case resp.Status == http.StatusBadRequest || resp.Status == http.StatusUnprocessableEntity:
		a.failed(r, c.rejection(decodeError(resp.Body), resp.Status, ""))
	default:
		a.failed(r, c.recordError(false, false, statusCode(resp.Status),
			fmt.Sprintf("user.com answered HTTP %d to set_multiple_attributes: %s", resp.Status, errorText(resp.Status, resp.Body))))
	}
	return nil
}

// delete deletes a user by custom_id; a user user.com does not know is
// already deleted.
func (a *applier) delete(ctx context.Context, r *record) *providers.AuthError {
	c := a.c
	key := r.ch.User.Key
	resp, fail, ae := a.send(ctx, vendorhttp.Request{Method: http.MethodDelete, Path: fmt.Sprintf(pathDelete, url.PathEscape(key)),
		Idempotent: true, Endpoint: EndpointDelete, Records: 1})
	switch {
	case ae != nil:
		return ae
	case fail != nil:
		a.failed(r, fail)
	case resp.OK() || resp.Status == http.StatusNotFound:
		c.forget(key)
		r.action = providers.ActionDeleted
		r.open--
	default:
		refused := resp.Status == http.StatusBadRequest || resp.Status == http.StatusUnprocessableEntity
		a.failed(r, c.recordError(refused, false, statusCode(resp.Status),
			fmt.Sprintf("user.com answered HTTP %d to the deletion: %s", resp.Status, errorText(resp.Status, resp.Body))))
	}
	return nil
}
