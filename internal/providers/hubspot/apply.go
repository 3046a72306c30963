package hubspot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

// Paths under /crm/v3/objects/users.
const (
	pathCreate  = "/batch/create"
	pathUpdate  = "/batch/update"
	pathUpsert  = "/batch/upsert"
	pathArchive = "/batch/archive"
	pathRead    = "/batch/read"
	pathSearch  = "/search"
)

// outcome is what one call said about one change.
type outcome struct {
	obj *object               // written (or, for an archive, gone)
	rej *errorBody            // refused by HubSpot
	err *vendorhttp.CallError // the call failed as a whole
}

// applier holds the results of one Apply.
type applier struct {
	c   *Client
	res map[string]providers.Result
	// notes are remarks for the records of changes that succeed (Note).
	notes map[string]string
}

// Apply implements providers.Client. Deletions go first, so that a user who
// moves from one key to another is archived under the old id before it is
// created under the new one.
func (c *Client) Apply(ctx context.Context, changes []providers.Change) ([]providers.Result, error) {
	a := &applier{c: c, res: make(map[string]providers.Result, len(changes))}
	if err := a.run(ctx, changes); err != nil {
		return nil, err
	}
	out := make([]providers.Result, 0, len(changes))
	for _, ch := range changes {
		if r, ok := a.res[ch.ID]; ok {
			out = append(out, r)
		}
	}
	return out, nil
}

func (a *applier) run(ctx context.Context, changes []providers.Change) error {
	c := a.c
	var deletes, upserts, updates, creates, lookups []providers.Change
	for _, ch := range changes {
		switch {
		case ch.Op == providers.OpDelete:
			deletes = append(deletes, ch)
		case c.idProperty != "":
			if c.idValue(ch.User) == "" {
				a.fail(ch, true, "NoIdentity", fmt.Sprintf("the user has no email, which the provider's hubspot.idValueFrom: Email needs for %s", c.idProperty))
				continue
			}
			upserts = append(upserts, ch)
		case ch.ExternalID != "":
			updates = append(updates, ch)
		case ch.User.Email == "":
			a.fail(ch, true, "NoIdentity", "HubSpot needs the user's email, or a hubspot.idProperty on the provider, to find the user again")
		case ch.Retry || c.adopt:
			lookups = append(lookups, ch)
		default:
			creates = append(creates, ch)
		}
	}

	if err := a.delete(ctx, deletes); err != nil {
		return err
	}
	if err := a.upsert(ctx, upserts); err != nil {
		return err
	}
	gone, err := a.update(ctx, updates, providers.ActionUpdated)
	if err != nil {
		return err
	}
	// A user deleted at HubSpot behind the operator's back is found again by
	// email or created anew.
	adopt, fresh, err := a.lookup(ctx, append(lookups, gone...))
	if err != nil {
		return err
	}
	conflicts, err := a.create(ctx, append(creates, fresh...))
	if err != nil {
		return err
	}
	_, err = a.update(ctx, append(adopt, conflicts...), providers.ActionAdopted)
	return err
}

func (a *applier) set(ch providers.Change, r providers.Result) {
	r.ID = ch.ID
	if r.Err == nil {
		r.Note = a.notes[ch.ID]
	}
	a.res[ch.ID] = r
}

// note keeps a remark for the record of ch, shown if its write succeeds.
func (a *applier) note(ch providers.Change, msg string) {
	if a.notes == nil {
		a.notes = map[string]string{}
	}
	a.notes[ch.ID] = msg
}

func (a *applier) fail(ch providers.Change, permanent bool, code, msg string) {
	a.set(ch, providers.Result{Err: &providers.RecordError{Permanent: permanent, Code: code, Message: msg}})
}

// settle reports what a call said about a change that needs no follow-up.
func (a *applier) settle(ch providers.Change, o outcome, ok bool, action providers.Action) {
	switch {
	case !ok:
		a.set(ch, providers.Result{Err: &providers.RecordError{Uncertain: true, Code: "NoResult",
			Message: "HubSpot's answer did not mention the record; it will be looked up and retried"}})
	case o.err != nil:
		a.set(ch, providers.Result{Err: o.err.Record()})
	case o.rej != nil:
		a.set(ch, providers.Result{Err: refusal(*o.rej)})
	case o.obj.ID == "" && action != providers.ActionDeleted:
		// Written, but HubSpot did not say under which id: the retry
		// looks the user up instead of creating it again.
		a.set(ch, providers.Result{Err: &providers.RecordError{Uncertain: true, Code: "NoResult",
			Message: "HubSpot's answer did not give the user's id; it will be looked up"}})
	default:
		a.set(ch, providers.Result{ExternalID: string(o.obj.ID), Action: action})
	}
}

// refusal turns a per-record error into a record error: permanent unless
// HubSpot says it is about load, not data.
func refusal(e errorBody) *providers.RecordError {
	code := e.code()
	switch strings.ToUpper(code) {
	case "RATE_LIMIT", "RATE_LIMITS", "LOCKED", "INTERNAL_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT", "UNKNOWN":
		return &providers.RecordError{Code: code, Message: e.text()}
	}
	return &providers.RecordError{Permanent: true, Code: code, Message: e.text()}
}

func notFound(e *errorBody) bool {
	if e == nil {
		return false
	}
	switch strings.ToUpper(e.Category) {
	case "OBJECT_NOT_FOUND", "NOT_FOUND":
		return true
	}
	return false
}

func conflict(e *errorBody) bool {
	return e != nil && strings.EqualFold(e.Category, "CONFLICT")
}

// upsert writes by the idProperty: idempotent, so every failure is simply
// retried by the engine.
func (a *applier) upsert(ctx context.Context, chs []providers.Change) error {
	c := a.c
	out, err := a.write(ctx, pathUpsert, chs, true, func(ch providers.Change) input {
		return input{ID: c.idValue(ch.User), IDProperty: c.idProperty, Properties: c.properties(ch.User)}
	})
	if err != nil {
		return err
	}
	for _, ch := range chs {
		o, ok := out[ch.ID]
		action := providers.ActionUpdated
		if ok && o.obj != nil && o.obj.New != nil && *o.obj.New {
			action = providers.ActionCreated
		}
		a.settle(ch, o, ok, action)
	}
	return nil
}

// update writes users by record id. With ActionUpdated it returns the
// changes whose user HubSpot no longer has, their ExternalID cleared.
func (a *applier) update(ctx context.Context, chs []providers.Change, action providers.Action) ([]providers.Change, error) {
	c := a.c
	out, err := a.write(ctx, pathUpdate, chs, true, func(ch providers.Change) input {
		return input{ID: ch.ExternalID, Properties: c.properties(ch.User)}
	})
	if err != nil {
		return nil, err
	}
	var gone []providers.Change
	for _, ch := range chs {
		o, ok := out[ch.ID]
		if ok && notFound(o.rej) {
			if action == providers.ActionUpdated {
				ch.ExternalID = ""
				gone = append(gone, ch)
				continue
			}
			a.fail(ch, false, "NotFound", fmt.Sprintf("HubSpot user %s vanished while being taken over; it will be looked up again", ch.ExternalID))
			continue
		}
		a.settle(ch, o, ok, action)
	}
	return gone, nil
}

// create creates users. It returns the changes HubSpot refused as conflicts
// with an existing user whose id it named, with that ExternalID, for
// adoption.
func (a *applier) create(ctx context.Context, chs []providers.Change) ([]providers.Change, error) {
	c := a.c
	out, err := a.write(ctx, pathCreate, chs, false, func(ch providers.Change) input {
		return input{Properties: c.properties(ch.User)}
	})
	if err != nil {
		return nil, err
	}
	var adopt []providers.Change
	for _, ch := range chs {
		o, ok := out[ch.ID]
		if ok && conflict(o.rej) {
			if id := o.rej.existingID(); id != "" {
				ch.ExternalID = id
				adopt = append(adopt, ch)
				continue
			}
			// It exists but HubSpot did not say which it is: the retry
			// looks it up by email.
			a.set(ch, providers.Result{Err: &providers.RecordError{Uncertain: true, Code: "Conflict", Message: o.rej.text()}})
			continue
		}
		a.settle(ch, o, ok, providers.ActionCreated)
	}
	return adopt, nil
}

// lookup finds by email the users an earlier create may have made, or that
// HubSpot held before (adoption). It returns those found (ExternalID set, to
// be adopted) and those not found (to be created). A user whose earlier
// create is uncertain and that only a lagging search failed to find is
// neither: it waits for the index (ReasonAwaitingIndex).
func (a *applier) lookup(ctx context.Context, chs []providers.Change) (found, missing []providers.Change, err error) {
	for start := 0; start < len(chs); start += a.c.batch {
		part := chs[start:min(start+a.c.batch, len(chs))]
		emails := make([]string, 0, len(part))
		for _, ch := range part {
			emails = append(emails, strings.ToLower(ch.User.Email))
		}
		slices.Sort(emails)
		ids, matches, current, err := a.c.findByEmail(ctx, slices.Compact(emails))
		if err != nil {
			var ce *vendorhttp.CallError
			if errors.As(err, &ce) {
				for _, ch := range part {
					// After an uncertain create the user may exist: the
					// next attempt must look again. Before a first create
					// nothing was written.
					msg := "looking the user up before creating it: "
					if ch.Retry {
						msg = "looking the user up before creating it again: "
					}
					a.set(ch, providers.Result{Err: &providers.RecordError{Uncertain: ch.Retry, Code: ce.Code,
						Message: msg + ce.Message}})
				}
				continue
			}
			return nil, nil, err
		}
		for _, ch := range part {
			email := strings.ToLower(ch.User.Email)
			switch id := ids[email]; {
			case id != "":
				ch.ExternalID = id
				found = append(found, ch)
				if n := matches[email]; n > 1 {
					a.note(ch, fmt.Sprintf("HubSpot holds %d users with this email; the oldest (id %s) was adopted, the others are left as they are", n, id))
				}
			case !current && a.c.awaitIndex(ch):
				a.set(ch, providers.Result{Err: a.c.awaitingIndex(ch)})
			default:
				missing = append(missing, ch)
			}
		}
	}
	return found, missing, nil
}

// findByEmail looks users up by email (lower-cased). Where HubSpot reads
// users by email (hs_email has unique values) it uses batch/read, which is
// current: current is true and a user it does not return does not exist.
// Otherwise it searches, and search trails recent creates. Whether HubSpot
// reads by email is learnt from the first answer: a 400 refuses it (a
// property without unique values) and the client searches from then on.
func (c *Client) findByEmail(ctx context.Context, emails []string) (ids map[string]string, matches map[string]int, current bool, err error) {
	if c.emailReads.Load() != emailSearchOnly {
		read, err := c.readByProperty(ctx, PropEmail, emails)
		var ce *vendorhttp.CallError
		switch {
		case err == nil:
			c.emailReads.Store(emailReadable)
			ids = make(map[string]string, len(read))
			for v, id := range read {
				ids[strings.ToLower(v)] = id
			}
			return ids, nil, true, nil
		case errors.As(err, &ce) && ce.Status == http.StatusBadRequest:
			c.emailReads.Store(emailSearchOnly)
		default:
			return nil, nil, false, err
		}
	}
	ids, matches, err = c.searchByProperty(ctx, PropEmail, emails)
	return ids, matches, false, err
}

// awaitIndex reports whether a search that did not find ch's user may
// still be behind an earlier, uncertain create of it.
func (c *Client) awaitIndex(ch providers.Change) bool {
	return ch.Retry && c.indexDelay > 0 && !ch.RetrySince.IsZero() && c.now().Before(ch.RetrySince.Add(c.indexDelay))
}

func (c *Client) awaitingIndex(ch providers.Change) *providers.RecordError {
	until := ch.RetrySince.Add(c.indexDelay).UTC().Format(time.RFC3339)
	return &providers.RecordError{Uncertain: true, Code: providers.ReasonAwaitingIndex, Message: fmt.Sprintf(
		"HubSpot's search does not show this user, but an earlier create may have reached HubSpot at %s and search trails "+
			"creates by up to %s (spec.hubspot.searchIndexDelay): it is looked up again, and created only if still not found after %s",
		ch.RetrySince.UTC().Format(time.RFC3339), c.indexDelay, until)}
}

// delete archives users. A user without a known id is looked up by the
// idProperty when the key is its value; one that cannot be found is already
// gone.
func (a *applier) delete(ctx context.Context, chs []providers.Change) error {
	c := a.c
	var byID, byKey []providers.Change
	for _, ch := range chs {
		switch {
		case ch.ExternalID != "":
			byID = append(byID, ch)
		case c.idProperty != "" && c.idFrom == IDFromKey && ch.User.Key != "":
			byKey = append(byKey, ch)
		default:
			// No id and no value HubSpot could find it by: nothing known
			// was created, so there is nothing to archive.
			a.set(ch, providers.Result{Action: providers.ActionDeleted})
		}
	}
	for start := 0; start < len(byKey); start += c.batch {
		part := byKey[start:min(start+c.batch, len(byKey))]
		keys := make([]string, 0, len(part))
		for _, ch := range part {
			keys = append(keys, ch.User.Key)
		}
		ids, err := c.readByProperty(ctx, c.idProperty, keys)
		if err != nil {
			var ce *vendorhttp.CallError
			if !errors.As(err, &ce) {
				return err
			}
			for _, ch := range part {
				a.set(ch, providers.Result{Err: ce.Record()})
			}
			continue
		}
		for _, ch := range part {
			if id := ids[ch.User.Key]; id != "" {
				ch.ExternalID = id
				byID = append(byID, ch)
			} else {
				a.set(ch, providers.Result{Action: providers.ActionDeleted})
			}
		}
	}
	out, err := a.write(ctx, pathArchive, byID, true, func(ch providers.Change) input {
		return input{ID: ch.ExternalID}
	})
	if err != nil {
		return err
	}
	for _, ch := range byID {
		o, ok := out[ch.ID]
		if ok && notFound(o.rej) {
			a.set(ch, providers.Result{Action: providers.ActionDeleted})
			continue
		}
		if ok && o.obj != nil {
			a.set(ch, providers.Result{Action: providers.ActionDeleted})
			continue
		}
		a.settle(ch, o, ok, providers.ActionDeleted)
	}
	return nil
}

// write sends the changes to a batch endpoint in calls of at most the batch
// size and returns what HubSpot said about each. Only an *AuthError is
// returned as an error.
//
// Up to maxInFlight calls are in flight at once: the rate limiter of the
// HTTP client still paces them, and with a vendor latency of tens of
// milliseconds one call at a time would leave the rate budget unused.
func (a *applier) write(ctx context.Context, path string, chs []providers.Change, idempotent bool, mk func(providers.Change) input) (map[string]outcome, error) {
	out := make(map[string]outcome, len(chs))
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
		slots    = make(chan struct{}, maxInFlight)
	)
	for start := 0; start < len(chs); start += a.c.batch {
		part := chs[start:min(start+a.c.batch, len(chs))]
		slots <- struct{}{}
		mu.Lock()
		stop := firstErr != nil
		mu.Unlock()
		if stop {
			<-slots
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			got := make(map[string]outcome, len(part))
			err := a.c.writeCall(ctx, path, part, idempotent, mk, got)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			for k, v := range got {
				out[k] = v
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// maxInFlight bounds the concurrent calls of one write.
const maxInFlight = 4

// ChunkSize implements providers.Chunked: as many changes as one round of
// calls in flight carries.
func (c *Client) ChunkSize() int { return c.batch * maxInFlight }

// writeCall makes one batch call. A call HubSpot refuses as a whole (400,
// 409) is split in halves until each refused record is alone, so that one
// bad record never blocks the others.
func (c *Client) writeCall(ctx context.Context, path string, chs []providers.Change, idempotent bool, mk func(providers.Change) input, out map[string]outcome) error {
	if len(chs) == 0 {
		return nil
	}
	trace := path != pathArchive // archive inputs are {id} only
	req := batchRequest{Inputs: make([]input, len(chs))}
	for i, ch := range chs {
		in := mk(ch)
		if trace {
			in.ObjectWriteTraceID = ch.ID
		}
		req.Inputs[i] = in
	}
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodPost, Path: path, Body: req,
		Idempotent: idempotent, Endpoint: strings.TrimPrefix(path, "/"), Records: len(chs)})
	if err != nil {
		var ce *vendorhttp.CallError
		if !errors.As(err, &ce) {
			return err
		}
		for _, ch := range chs {
			out[ch.ID] = outcome{err: ce}
		}
		return nil
	}
	switch resp.Status {
	case http.StatusNoContent:
		for i, ch := range chs {
			out[ch.ID] = outcome{obj: &object{ID: flexString(req.Inputs[i].ID)}}
		}
	case http.StatusOK, http.StatusCreated, http.StatusMultiStatus:
		var br batchResponse
		if len(resp.Body) == 0 && path == pathArchive {
			br = batchResponse{}
			for i := range chs {
				br.Results = append(br.Results, object{ID: flexString(req.Inputs[i].ID)})
			}
		} else if err := json.Unmarshal(resp.Body, &br); err != nil {
			ce := &vendorhttp.CallError{Status: resp.Status, Code: "BadResponse", Uncertain: true,
				Message: fmt.Sprintf("HubSpot's answer (HTTP %d) could not be read", resp.Status)}
			for _, ch := range chs {
				out[ch.ID] = outcome{err: ce}
			}
			return nil
		}
		c.match(path, chs, req.Inputs, br, out)
	case http.StatusBadRequest, http.StatusConflict:
		e := errorOf(resp.Status, resp.Body)
		if len(chs) > 1 && splittable(e) {
			h := len(chs) / 2
			if err := c.writeCall(ctx, path, chs[:h], idempotent, mk, out); err != nil {
				return err
			}
			return c.writeCall(ctx, path, chs[h:], idempotent, mk, out)
		}
		for _, ch := range chs {
			out[ch.ID] = outcome{rej: &e}
		}
	default:
		e := errorOf(resp.Status, resp.Body)
		ce := &vendorhttp.CallError{Status: resp.Status, Code: "UnexpectedStatus",
			Message: fmt.Sprintf("HubSpot answered HTTP %d to %s: %s", resp.Status, path, e.text())}
		for _, ch := range chs {
			out[ch.ID] = outcome{err: ce}
		}
	}
	return nil
}

// splittable is false for refusals that are about the call, not a record:
// splitting would only repeat them.
func splittable(e errorBody) bool {
	t := strings.ToLower(e.text())
	return !strings.Contains(t, "non-unique") && !strings.Contains(t, "idproperty")
}

// match pairs a batch response's results and errors with the changes: by
// objectWriteTraceId, else by the input's id or idProperty value, else by
// email. Array order is never used. Unmatched changes get no outcome.
func (c *Client) match(path string, chs []providers.Change, inputs []input, br batchResponse, out map[string]outcome) {
	byTrace := make(map[string]int, len(chs))
	byInput := make(map[string]int, len(chs))
	byEmail := make(map[string]int, len(chs))
	for i, ch := range chs {
		byTrace[ch.ID] = i
		if inputs[i].ID != "" {
			byInput[inputs[i].ID] = i
		}
		if e := strings.ToLower(ch.User.Email); e != "" {
			byEmail[e] = i
		}
	}
	done := make([]bool, len(chs))
	claim := func(i int, o outcome) {
		if !done[i] {
			done[i] = true
			out[chs[i].ID] = o
		}
	}
	for k := range br.Results {
		r := br.Results[k]
		i, ok := byTrace[string(r.ObjectWriteTraceID)]
		if !ok && path == pathUpsert {
			i, ok = byInput[r.prop(c.idProperty)]
		}
		if !ok && (path == pathUpdate || path == pathArchive) {
			i, ok = byInput[string(r.ID)]
		}
		if !ok && path != pathArchive {
			i, ok = byEmail[strings.ToLower(r.prop(PropEmail))]
		}
		if ok {
			claim(i, outcome{obj: &r})
		}
	}
	for k := range br.Errors {
		e := br.Errors[k]
		for _, key := range errorKeys(e) {
			i, ok := byTrace[key]
			if !ok {
				i, ok = byInput[key]
			}
			if ok {
				claim(i, outcome{rej: &e})
			}
		}
	}
}

// errorKeys are the values by which a batch error may name its input:
// HubSpot puts the trace id or the input id in the error or its context.
func errorKeys(e errorBody) []string {
	var keys []string
	for _, v := range []flexString{e.ObjectWriteTraceID, e.ID} {
		if v != "" {
			keys = append(keys, string(v))
		}
	}
	for _, k := range []string{"objectWriteTraceId", "objectWriteTraceIds", "ids", "id"} {
		keys = append(keys, e.contextValues(k)...)
	}
	return keys
}

// searchByProperty finds users whose property is one of values (compared
// case-insensitively, as HubSpot's search does). When several users match a
// value the oldest id wins, so repeated lookups agree; matches counts the
// users found for each value.
func (c *Client) searchByProperty(ctx context.Context, prop string, values []string) (ids map[string]string, matches map[string]int, err error) {
	ids, matches = map[string]string{}, map[string]int{}
	var req searchRequest
	req.FilterGroups = append(req.FilterGroups, struct {
		Filters []searchFilter `json:"filters"`
	}{Filters: []searchFilter{{PropertyName: prop, Operator: "IN", Values: values}}})
	req.Properties = []string{prop}
	req.Limit = 100
	// One lookup is one call of the metrics, however many pages it reads.
	// Search has a budget of its own, apart from spec.rateLimit.
	ctx = providers.WithOwnBudget(providers.ObserveCall(ctx, "search", len(values)))
	for page := 0; page < 100; page++ {
		if err := c.searches.Wait(ctx); err != nil {
			return nil, nil, err
		}
		resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodPost, Path: pathSearch, Body: req,
			Idempotent: true, Endpoint: "search"})
		if err != nil {
			return nil, nil, err
		}
		if resp.Status != http.StatusOK {
			e := errorOf(resp.Status, resp.Body)
			return nil, nil, &vendorhttp.CallError{Status: resp.Status, Code: "LookupFailed", Uncertain: true,
				Message: fmt.Sprintf("HubSpot answered HTTP %d to a search: %s", resp.Status, e.text())}
		}
		var sr searchResponse
		if err := json.Unmarshal(resp.Body, &sr); err != nil {
			return nil, nil, &vendorhttp.CallError{Code: "BadResponse", Uncertain: true, Message: "HubSpot's search answer could not be read"}
		}
		for _, r := range sr.Results {
			v := strings.ToLower(r.prop(prop))
			matches[v]++
			if old, ok := ids[v]; !ok || lessID(string(r.ID), old) {
				ids[v] = string(r.ID)
			}
		}
		if sr.Paging == nil || sr.Paging.Next == nil || sr.Paging.Next.After == "" {
			break
		}
		req.After = string(sr.Paging.Next.After)
	}
	return ids, matches, nil
}

// readByProperty reads users by a unique property; values HubSpot does not
// know are absent from the map.
func (c *Client) readByProperty(ctx context.Context, prop string, values []string) (map[string]string, error) {
	req := batchRequest{IDProperty: prop, Properties: []string{prop}}
	for _, v := range values {
		req.Inputs = append(req.Inputs, input{ID: v})
	}
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodPost, Path: pathRead + "?archived=false", Body: req,
		Idempotent: true, Endpoint: "batch/read", Records: len(values)})
	if err != nil {
		return nil, err
	}
	switch resp.Status {
	case http.StatusOK, http.StatusMultiStatus:
	case http.StatusNotFound:
		return map[string]string{}, nil
	default:
		e := errorOf(resp.Status, resp.Body)
		return nil, &vendorhttp.CallError{Status: resp.Status, Code: "LookupFailed",
			Message: fmt.Sprintf("HubSpot answered HTTP %d to a read: %s", resp.Status, e.text())}
	}
	var br batchResponse
	if err := json.Unmarshal(resp.Body, &br); err != nil {
		return nil, &vendorhttp.CallError{Code: "BadResponse", Message: "HubSpot's read answer could not be read"}
	}
	ids := make(map[string]string, len(br.Results))
	for _, r := range br.Results {
		if v := r.prop(prop); v != "" && !r.Archived {
			ids[v] = string(r.ID)
		}
	}
	return ids, nil
}

// lessID orders numeric ids numerically.
func lessID(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}
