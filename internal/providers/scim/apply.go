package scim

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

// kind is what a write does at the server.
type kind int

const (
	kCreate kind = iota
	kUpdate
	kDelete
	kDeactivate
	// kAdopt looks up a user a create conflicted with, then updates it.
	kAdopt
)

// write is one call's worth of a change.
type write struct {
	i      int
	kind   kind
	id     string
	res    resource
	action providers.Action
	// followUp: a second write of the change (after a conflict or a 404):
	// it gets no third.
	followUp bool
	// cur is the user as a lookup found it, when one did: an update
	// without Bulk starts from it instead of reading the user again.
	cur *stored
	// key and userName find the user again (its externalId and userName).
	key, userName string
	// uncertain: an earlier send of this create may have been carried out
	// (a Bulk operation answered 5xx, or left unanswered).
	uncertain bool
}

// answer is what the server said about one write: an HTTP status (0: not
// processed) with its body, or the error of the whole call.
type answer struct {
	status int
	id     string
	body   []byte
	err    error
	// bulk: the answer of a Bulk operation (a single call retries a 412
	// itself).
	bulk bool
}

// Apply implements providers.Client; see the package comment.
func (c *Client) Apply(ctx context.Context, changes []providers.Change) ([]providers.Result, error) {
	results := make([]providers.Result, len(changes))
	for i, ch := range changes {
		results[i].ID = ch.ID
	}
	writes, err := c.resolve(ctx, changes, results)
	if err != nil {
		return nil, err
	}
	var answers []answer
	if len(writes) > 0 {
		sc, err := c.capabilities(ctx)
		if err != nil {
			return nil, err
		}
		if ops, size, learnt, ok := c.useBulk(sc); ok {
			answers, err = c.bulk(ctx, writes, limits{ops: ops, size: size, learnt: learnt})
		} else {
			answers, err = c.singles(ctx, writes)
		}
		if err != nil {
			return nil, err
		}
	}
	var follow []*write
	for j, w := range writes {
		if f := c.settle(w, answers[j], &results[w.i]); f != nil {
			follow = append(follow, f)
		}
	}
	if len(follow) > 0 {
		answers, err := c.singles(ctx, follow)
		if err != nil {
			return nil, err
		}
		for j, w := range follow {
			if f := c.settle(w, answers[j], &results[w.i]); f != nil {
				results[w.i].Err = &providers.RecordError{Code: "Conflict",
					Message: "the user changed at the server while it was written; it is tried again"}
			}
		}
	}
	return results, nil
}

// resolve maps the changes to writes, failing those that cannot be mapped,
// and looks up the users whose id is unknown (and the retried creates).
func (c *Client) resolve(ctx context.Context, changes []providers.Change, results []providers.Result) ([]*write, error) {
	var writes, looks []*write
	for i, ch := range changes {
		w := &write{i: i, id: ch.ExternalID, key: ch.User.Key, userName: c.userName(ch.User)}
		res, err := c.toResource(ch.User)
		switch {
		case ch.Op == providers.OpDelete:
			w.kind, w.action = kDeactivate, providers.ActionDeleted
			if c.opts.Deprovision == DeprovisionDelete {
				w.kind = kDelete
			}
			if err != nil {
				res = resource{"schemas": []any{schemaUser}, "externalId": ch.User.Key, "userName": c.userName(ch.User)}
			}
			w.res = res
		case err != nil:
			results[i].Err = &providers.RecordError{Permanent: true, Code: ReasonInvalidSpec, Message: c.clean(err.Error())}
			continue
		case ch.Op == providers.OpCreate:
			w.kind, w.action, w.res = kCreate, providers.ActionCreated, res
		default:
			w.kind, w.action, w.res = kUpdate, providers.ActionUpdated, res
		}
		if w.id == "" && (w.kind != kCreate || ch.Retry) {
			looks = append(looks, w)
		}
		writes = append(writes, w)
	}
	errs := make([]error, len(looks))
	c.parallel(len(looks), func(j int) {
		w := looks[j]
		u, err := c.find(ctx, w.key, w.userName, false)
		errs[j] = err
		if u != nil {
			w.id, w.cur = u.id, u
		}
	})
	drop := map[*write]bool{}
	for j, w := range looks {
		var ae *providers.AuthError
		switch err := errs[j]; {
		case errors.As(err, &ae):
			return nil, err
		case err != nil:
			results[w.i].Err = recordErr(err)
			drop[w] = true
		case w.id == "" && (w.kind == kDelete || w.kind == kDeactivate):
			// Nothing to delete.
			results[w.i].Action = providers.ActionDeleted
			drop[w] = true
		case w.id == "":
			w.kind, w.action = kCreate, providers.ActionCreated
		case w.kind == kCreate:
			w.kind, w.action = kUpdate, providers.ActionAdopted
		}
	}
	out := writes[:0]
	for _, w := range writes {
		if !drop[w] {
			out = append(out, w)
		}
	}
	return out, nil
}

// recordErr is err as a record's error.
func recordErr(err error) error {
	var ce *vendorhttp.CallError
	if errors.As(err, &ce) {
		return ce.Record()
	}
	return err
}

// settle turns a write's answer into its change's result, or returns the
// write that must follow (an adoption after a conflict, a create after a
// 404 of an update).
func (c *Client) settle(w *write, a answer, r *providers.Result) *write {
	if a.err != nil {
		r.Err = recordErr(a.err)
		return nil
	}
	se := decodeError(a.body)
	switch s := a.status; {
	case s >= 200 && s <= 299:
		r.Err = nil
		r.Action = w.action
		if w.kind != kDelete && w.kind != kDeactivate {
			r.ExternalID = providers.Truncate(firstNonEmpty(a.id, w.id), providers.MaxExternalIDLength)
		}
		return nil
	case s == http.StatusNotFound && (w.kind == kDelete || w.kind == kDeactivate):
		r.Err, r.Action = nil, providers.ActionDeleted
		return nil
	case s == http.StatusNotFound && w.kind == kUpdate && !w.followUp:
		return &write{i: w.i, kind: kCreate, res: w.res, action: providers.ActionCreated, followUp: true, key: w.key, userName: w.userName}
	case s == http.StatusConflict && w.kind == kCreate && !w.followUp:
		return &write{i: w.i, kind: kAdopt, res: w.res, action: providers.ActionAdopted, followUp: true, key: w.key, userName: w.userName}
	case s == http.StatusPreconditionFailed && a.bulk && w.kind != kCreate && !w.followUp:
		// A Bulk operation found the user changed: once more, alone,
		// after reading it.
		return &write{i: w.i, kind: w.kind, id: w.id, res: w.res, action: w.action, followUp: true, key: w.key, userName: w.userName}
	case s <= 0:
		r.Err = &providers.RecordError{Code: "NotProcessed", Uncertain: w.kind == kCreate,
			Message: "the SCIM server's Bulk answer did not report this operation, or not with a readable status"}
	case s == http.StatusTooManyRequests:
		r.Err = &providers.RecordError{Code: vendorhttp.CodeRateLimited, Message: c.clean(se.text(s))}
	case s >= 500:
		r.Err = &providers.RecordError{Code: vendorhttp.CodeUnavailable, Uncertain: w.kind != kDelete, Message: c.clean(se.text(s))}
	case s == http.StatusPreconditionFailed:
		r.Err = &providers.RecordError{Code: "VersionMismatch", Message: c.clean(se.text(s))}
	default:
		code := se.ScimType
		if code == "" {
			code = fmt.Sprintf("HTTP%d", s)
		}
		if s == http.StatusConflict {
			code = "Conflict"
		}
		r.Err = &providers.RecordError{Permanent: true, Code: code, Message: c.clean(se.text(s))}
	}
	return nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// singles sends one call per write, inFlight at a time. It returns an
// *AuthError when the server refused the token.
func (c *Client) singles(ctx context.Context, writes []*write) ([]answer, error) {
	sc, err := c.capabilities(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]answer, len(writes))
	c.parallel(len(writes), func(j int) { out[j] = c.single(ctx, writes[j], sc) })
	for _, a := range out {
		var ae *providers.AuthError
		if errors.As(a.err, &ae) {
			return nil, a.err
		}
	}
	return out, nil
}

// single sends one write (an adoption: its lookups, then its update).
func (c *Client) single(ctx context.Context, w *write, sc spConfig) answer {
	patch := bool(sc.Patch.Supported)
	switch w.kind {
	case kAdopt:
		u, err := c.find(ctx, w.key, w.userName, true)
		switch {
		case err != nil:
			return answer{err: err}
		case u == nil:
			return answer{status: http.StatusConflict, body: []byte(`{"scimType":"uniqueness","detail":"the user conflicts with one ` +
				`at the SCIM server, but none with its userName or externalId could be found to adopt"}`)}
		}
		return c.update(ctx, u.id, w.res, u, sc)
	case kCreate:
		return c.send(ctx, c.api, w.id, vendorhttp.Request{Method: http.MethodPost, Path: "/Users", Body: w.res,
			Endpoint: EndpointCreate, Records: 1})
	case kUpdate:
		return c.update(ctx, w.id, w.res, w.cur, sc)
	case kDelete:
		return c.send(ctx, c.api, w.id, vendorhttp.Request{Method: http.MethodDelete, Path: "/Users/" + url.PathEscape(w.id),
			Idempotent: true, Endpoint: EndpointDelete, Records: 1})
	}
	// kDeactivate: a PATCH of active alone needs no read; a PUT replaces
	// the user as read, with active false.
	if patch {
		return c.send(ctx, c.api, w.id, vendorhttp.Request{Method: http.MethodPatch, Path: "/Users/" + url.PathEscape(w.id),
			Body: patchDeactivate(), Idempotent: true, Endpoint: EndpointUpdate, Records: 1})
	}
	return c.update(ctx, w.id, resource{"active": false}, w.cur, sc)
}

// update brings the declared attributes of want to the user id without
// Bulk. The client stores no ETag (a record's status holds only the
// server's id, and one vendor's versions are not worth a field of every
// record), so it reads the user first (GET /Users/{id}, unless a lookup
// just did), and the read decides the write:
//   - PATCH (when offered) with one replace per declared attribute whose
//     stored value differs: minimal operations, nothing undeclared
//     touched; PUT otherwise, of the user as read with the declared
//     attributes laid over it, so that a replace clears nothing that was
//     not declared;
//   - no write at all when the user is already as declared;
//   - If-Match with the version read, when the server offers ETags: the
//     write was computed from that read. A 412 (changed since) reads the
//     user again and retries once.
//
// Reading first costs a GET per update; the Bulk path (one PATCH per
// user, no read) is what keeps large syncs cheap.
func (c *Client) update(ctx context.Context, id string, want resource, cur *stored, sc spConfig) answer {
	for attempt := 0; ; attempt++ {
		if cur == nil {
			var a *answer
			if cur, a = c.get(ctx, id); a != nil {
				return *a
			}
		}
		got := lowerKeys(cur.body)
		req := vendorhttp.Request{Path: "/Users/" + url.PathEscape(cur.id), Idempotent: true, Endpoint: EndpointUpdate, Records: 1}
		if bool(sc.Patch.Supported) {
			body := minimalPatch(want, got)
			if body == nil {
				return answer{status: http.StatusOK, id: cur.id}
			}
			req.Method, req.Body = http.MethodPatch, body
		} else {
			if len(diffs(want, got)) == 0 {
				return answer{status: http.StatusOK, id: cur.id}
			}
			req.Method, req.Body = http.MethodPut, overlay(cur.body, want)
		}
		api := c.api
		if bool(sc.ETag.Supported) {
			api = c.ifMatch(cur.version)
		}
		a := c.send(ctx, api, cur.id, req)
		if a.status != http.StatusPreconditionFailed || attempt > 0 {
			return a
		}
		cur = nil
	}
}

// send makes one call and reads its answer; id is the user's id when
// known.
func (c *Client) send(ctx context.Context, api *vendorhttp.Client, id string, req vendorhttp.Request) answer {
	resp, err := api.Do(ctx, req)
	if err != nil {
		return answer{err: err}
	}
	a := answer{status: resp.Status, body: resp.Body}
	if resp.OK() {
		a.id = firstNonEmpty(idOf(resp.Body), id, idFromLocation(resp.Header.Get("Location")))
	}
	return a
}

// parallel runs f(0..n-1), inFlight at a time.
func (c *Client) parallel(n int, f func(j int)) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next int
	)
	for range min(inFlight, n) {
		wg.Go(func() {
			for {
				mu.Lock()
				j := next
				next++
				mu.Unlock()
				if j >= n {
					return
				}
				f(j)
			}
		})
	}
	wg.Wait()
}
