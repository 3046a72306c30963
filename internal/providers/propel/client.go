package propel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

// Codes of the RecordErrors this client reports.
const (
	codeRateLimited       = vendorhttp.CodeRateLimited
	codeVendorUnavailable = vendorhttp.CodeUnavailable
	codeCancelled         = vendorhttp.CodeCancelled
	codeNoResult          = "NoResult"
	codeBadResponse       = "BadResponse"
	codeRejected          = "Rejected"
	codeUnsupported       = "Unsupported"
	codeInvalidRecord     = "InvalidRecord"
)

// policy is how often and how long a Propel call is retried: five sends,
// three of them after a 5xx or no answer (past a short blip the engine's
// per-record backoff takes over, so that one outage does not hold the
// provider's loop), waits of 1 s doubling with every send unless Retry-After
// says otherwise, and a Retry-After over a minute ends the call (the engine
// retries later).
var policy = vendorhttp.Policy{
	MaxAttempts:       5,
	MaxServerAttempts: 3,
	Backoff:           wait.Backoff{Duration: time.Second, Factor: 2, Steps: 5},
	MaxWait:           time.Minute,
	MaxBody:           8 << 20,
}

// apiVendor is how Propel's API answers errors.
var apiVendor = vendorhttp.Vendor{
	Name:       "Propel",
	Credential: "the access token",
	ErrorText:  errorText,
	Forbidden: func(r *vendorhttp.Response) string {
		return "Propel refused the access token: " + errorText(r.Status, r.Body)
	},
}

// errorText renders an error answer of Propel for a message.
func errorText(status int, body []byte) string { return decodeError(body).text(status) }

// Client writes users to one Propel account. It is safe for concurrent use.
type Client struct {
	// api sends the calls to the REST API, with a token of tokens.
	api    *vendorhttp.Client
	source string
	batch  int
	tokens *tokenSource
	// reads remembers a refusal of reads (Read, ReadsRefused).
	reads readRefusal
}

var (
	_ providers.Client       = (*Client)(nil)
	_ providers.CreateSafety = (*Client)(nil)
)

// noDelete says why a Propel user cannot be deleted by the operator.
const noDelete = "Propel offers no API to delete users; remove the user in Propel by hand or use deletionPolicy: Orphan"

// CanDelete implements providers.DeleteSupport: Propel documents no user
// delete, so the engine forgets removed users and says they were left.
func (c *Client) CanDelete() (bool, string) { return false, noDelete }

// IdempotentCreates implements providers.CreateSafety: every write is an
// upsert on (source, sourceId).
func (c *Client) IdempotentCreates() (bool, string) {
	return true, "users are upserted by (source, sourceId); sourceId is the user's key"
}

// Identity implements providers.Client: Propel finds a user again by its
// sourceId, which is the user's key.
func (c *Client) Identity(u providers.User) string { return u.Key }

// Verify implements providers.Client. It fetches a new token, so refused
// credentials give a *providers.AuthError.
func (c *Client) Verify(ctx context.Context) error {
	_, err := c.tokens.refresh(ctx)
	return err
}

// pending is a create or update on its way to Propel.
type pending struct {
	// index is the change's position in Apply's argument.
	index  int
	change providers.Change
	// key is the normalized sourceId the answer is correlated by.
	key  string
	user map[string]any
	// result is set once the outcome is known.
	result *providers.Result
}

func (p *pending) resolve(externalID string, action providers.Action) {
	p.result = &providers.Result{ID: p.change.ID, ExternalID: externalID, Action: action}
}

func (p *pending) fail(err error) {
	if re, ok := err.(*providers.RecordError); ok {
		cp := *re
		err = &cp
	}
	p.result = &providers.Result{ID: p.change.ID, ExternalID: p.change.ExternalID, Err: err}
}

func failAll(batch []*pending, err error) {
	for _, p := range batch {
		p.fail(err)
	}
}

// Apply implements providers.Client. The results are in the order of the
// changes.
func (c *Client) Apply(ctx context.Context, changes []providers.Change) ([]providers.Result, error) {
	results := make([]providers.Result, len(changes))
	writes := make([]*pending, 0, len(changes))
	for i, ch := range changes {
		var err *providers.RecordError
		switch {
		case ch.Op == providers.OpDelete:
			err = &providers.RecordError{Permanent: true, Code: codeUnsupported, Message: noDelete}
		case ch.Op != providers.OpCreate && ch.Op != providers.OpUpdate:
			err = &providers.RecordError{Permanent: true, Code: codeUnsupported,
				Message: fmt.Sprintf("unknown operation %q", ch.Op)}
		case ch.User.Key == "":
			err = &providers.RecordError{Permanent: true, Code: codeInvalidRecord,
				Message: "the user has no key to write as its Propel sourceId"}
		default:
			writes = append(writes, &pending{index: i, change: ch, key: normalizeKey(ch.User.Key), user: c.wireUser(ch.User)})
			continue
		}
		results[i] = providers.Result{ID: ch.ID, ExternalID: ch.ExternalID, Err: err}
	}

	var authErr *providers.AuthError
	for _, batch := range c.chunks(writes) {
		if authErr = c.write(ctx, batch); authErr != nil {
			break
		}
	}
	learned := false
	for _, p := range writes {
		if p.result == nil {
			// Only an AuthError leaves records unresolved.
			p.fail(authErr)
		} else {
			learned = true
		}
		results[p.index] = *p.result
	}
	if authErr != nil && !learned {
		return nil, authErr
	}
	return results, nil
}

// chunks packs the writes into calls of at most c.batch users. A key never
// appears twice in one call, so that every answer item names one record; a
// repeated key starts a new call, which keeps the writes in order.
func (c *Client) chunks(writes []*pending) [][]*pending {
	var out [][]*pending
	var cur []*pending
	seen := map[string]bool{}
	for _, p := range writes {
		if len(cur) == c.batch || seen[p.key] {
			out = append(out, cur)
			cur = nil
			clear(seen)
		}
		cur = append(cur, p)
		seen[p.key] = true
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// write upserts batch with one bulk/sourceId call and resolves every record
// in it, sending the call again without the records Propel refused. It
// returns an AuthError only when Propel refuses the credentials; the records
// not resolved by then are left unresolved.
func (c *Client) write(ctx context.Context, batch []*pending) *providers.AuthError {
	req := bulkRequest{Users: make([]map[string]any, len(batch))}
	for i, p := range batch {
		req.Users[i] = p.user
	}
	body, err := json.Marshal(req)
	if err != nil {
		failAll(batch, &providers.RecordError{Permanent: true, Code: codeInvalidRecord, Message: err.Error()})
		return nil
	}
	// The upsert by sourceId is idempotent: a call sent twice writes once.
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodPost, Path: pathBulkSourceID, RawBody: body,
		Idempotent: true, Endpoint: "users/bulk/sourceId", Records: len(batch)})
	var (
		ae *providers.AuthError
		ce *vendorhttp.CallError
	)
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &ce):
		failAll(batch, ce.Record())
	case err != nil:
		failAll(batch, &providers.RecordError{Code: codeVendorUnavailable, Message: c.clean(err.Error())})
	case resp.OK():
		c.settle(batch, resp.Body)
	case resp.Status == http.StatusBadRequest || resp.Status == http.StatusRequestEntityTooLarge ||
		resp.Status == http.StatusUnprocessableEntity:
		return c.rejected(ctx, batch, resp)
	default:
		failAll(batch, &providers.RecordError{Code: statusCode(resp.Status),
			Message: c.clean(fmt.Sprintf("Propel answered HTTP %d: %s", resp.Status, errorText(resp.Status, resp.Body)))})
	}
	return nil
}

// clean removes the credentials from a message and cuts it to what a record
// holds.
func (c *Client) clean(s string) string {
	return providers.Truncate(c.tokens.scrub(s), providers.MaxMessageLength)
}

// settle resolves the records of a successful call from its answer's items,
// matched by key (or by id where Propel answers by id), never by position.
func (c *Client) settle(batch []*pending, body []byte) {
	var r bulkResponse
	if err := json.Unmarshal(body, &r); err != nil {
		failAll(batch, &providers.RecordError{Uncertain: true, Code: codeBadResponse,
			Message: c.clean("Propel's answer could not be read: " + err.Error())})
		return
	}
	byKey := make(map[string]*pending, len(batch))
	byID := make(map[string]*pending)
	for _, p := range batch {
		byKey[p.key] = p
		if p.change.ExternalID != "" {
			byID[p.change.ExternalID] = p
		}
	}
	for _, it := range r.Data {
		var p *pending
		if strings.EqualFold(it.LookupKey, "id") {
			p = byID[string(it.Key)]
		} else if p = byKey[normalizeKey(string(it.Key))]; p == nil && it.ID != "" {
			p = byID[string(it.ID)]
		}
		if p == nil || p.result != nil {
			continue
		}
		if it.Success != nil && !*it.Success {
			msg := strings.Join(it.Messages, "; ")
			if msg == "" {
				msg = "rejected by Propel"
			}
			p.fail(&providers.RecordError{Permanent: true, Code: codeRejected, Message: c.clean(msg)})
			continue
		}
		id := string(it.ID)
		if id == "" {
			id = p.change.ExternalID
		}
		if id == "" {
			// Written, but without the Propel id the record must carry;
			// the upsert is idempotent, so the next attempt reads it.
			p.fail(&providers.RecordError{Uncertain: true, Code: codeNoResult,
				Message: "Propel's answer did not give this user's id"})
			continue
		}
		p.resolve(id, action(it.Action, p.change.Op))
	}
	for _, p := range batch {
		if p.result == nil {
			p.fail(&providers.RecordError{Uncertain: true, Code: codeNoResult,
				Message: "Propel's answer did not mention this user"})
		}
	}
}

// action maps Propel's action, falling back on the operation asked for.
func action(a string, op providers.Op) providers.Action {
	switch strings.ToLower(a) {
	case "create":
		return providers.ActionCreated
	case "update":
		return providers.ActionUpdated
	}
	if op == providers.OpCreate {
		return providers.ActionCreated
	}
	return providers.ActionUpdated
}

// rejected handles a call Propel refused as a whole. Propel writes nothing
// then, so the records Propel's messages point at are failed and the others
// sent again; without pointers the call is split in halves.
func (c *Client) rejected(ctx context.Context, batch []*pending, resp *vendorhttp.Response) *providers.AuthError {
	e := decodeError(resp.Body)
	code := e.recordCode(resp.Status)
	if len(batch) == 1 {
		batch[0].fail(&providers.RecordError{Permanent: true, Code: code,
			Message: c.clean(e.text(resp.Status))})
		return nil
	}
	bad := map[int][]string{}
	for _, m := range e.Messages {
		if i, ok := pointerIndex(m); ok && i < len(batch) {
			bad[i] = append(bad[i], m)
		}
	}
	if len(bad) == 0 {
		mid := len(batch) / 2
		if ae := c.write(ctx, batch[:mid]); ae != nil {
			return ae
		}
		return c.write(ctx, batch[mid:])
	}
	rest := make([]*pending, 0, len(batch)-len(bad))
	for i, p := range batch {
		msgs, ok := bad[i]
		if !ok {
			rest = append(rest, p)
			continue
		}
		p.fail(&providers.RecordError{Permanent: true, Code: code,
			Message: c.clean(strings.Join(msgs, "; "))})
	}
	if len(rest) == 0 {
		return nil
	}
	return c.write(ctx, rest)
}

// ChunkSize implements providers.Chunked: one call's worth of changes, so
// the engine stores each call's UserSyncs as soon as it is answered.
func (c *Client) ChunkSize() int { return c.batch }
