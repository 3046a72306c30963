package propel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
)

const (
	// maxAttempts is how often one call is sent before its records are
	// reported as transient failures.
	maxAttempts = 5
	// maxServerAttempts bounds the sends of a call Propel answers with 5xx
	// or not at all: past a short blip the engine's per-record backoff takes
	// over, so that one outage does not hold the provider's loop.
	maxServerAttempts = 3
	// firstBackoff is the wait after the first failed attempt; it doubles
	// with every further one.
	firstBackoff = time.Second
	// maxWait is the longest Retry-After the client waits out itself; a
	// longer one ends the attempts and the engine retries later.
	maxWait = time.Minute
	// maxBody bounds what is read of an API answer.
	maxBody = 8 << 20

	// Codes of the RecordErrors this client reports.
	codeRateLimited       = "RateLimited"
	codeVendorUnavailable = "VendorUnavailable"
	codeCancelled         = "Cancelled"
	codeNoResult          = "NoResult"
	codeBadResponse       = "BadResponse"
	codeRejected          = "Rejected"
	codeUnsupported       = "Unsupported"
	codeInvalidRecord     = "InvalidRecord"
)

// Client writes users to one Propel account. It is safe for concurrent use.
type Client struct {
	endpoint string
	source   string
	batch    int
	http     *http.Client
	sleep    func(ctx context.Context, d time.Duration) error
	tokens   *tokenSource
}

var _ providers.Client = (*Client)(nil)

// noDelete says why a Propel user cannot be deleted by the operator.
const noDelete = "Propel offers no API to delete users; remove the user in Propel by hand or use deletionPolicy: Orphan"

// CanDelete implements providers.DeleteSupport: Propel documents no user
// delete, so the engine forgets removed users and says they were left.
func (c *Client) CanDelete() (bool, string) { return false, noDelete }

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
	if ctx.Err() != nil {
		failAll(batch, cancelled(false))
		return nil
	}
	req := bulkRequest{Users: make([]map[string]any, len(batch))}
	for i, p := range batch {
		req.Users[i] = p.user
	}
	body, err := json.Marshal(req)
	if err != nil {
		failAll(batch, &providers.RecordError{Permanent: true, Code: codeInvalidRecord, Message: err.Error()})
		return nil
	}
	resp, err := c.post(providers.ObserveCall(ctx, "users/bulk/sourceId", len(batch)), pathBulkSourceID, body)
	var ae *providers.AuthError
	switch {
	case errors.As(err, &ae):
		return ae
	case err != nil:
		failAll(batch, err)
	case resp.status >= 200 && resp.status <= 299:
		c.settle(batch, resp.body)
	case resp.status == http.StatusBadRequest || resp.status == http.StatusRequestEntityTooLarge ||
		resp.status == http.StatusUnprocessableEntity:
		return c.rejected(ctx, batch, resp)
	default:
		failAll(batch, &providers.RecordError{Code: statusCode(resp.status),
			Message: truncate(c.tokens.scrub(fmt.Sprintf("Propel answered HTTP %d: %s",
				resp.status, decodeError(resp.body).text(resp.status))))})
	}
	return nil
}

// settle resolves the records of a successful call from its answer's items,
// matched by key (or by id where Propel answers by id), never by position.
func (c *Client) settle(batch []*pending, body []byte) {
	var r bulkResponse
	if err := json.Unmarshal(body, &r); err != nil {
		failAll(batch, &providers.RecordError{Uncertain: true, Code: codeBadResponse,
			Message: truncate("Propel's answer could not be read: " + err.Error())})
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
			p.fail(&providers.RecordError{Permanent: true, Code: codeRejected, Message: truncate(c.tokens.scrub(msg))})
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
func (c *Client) rejected(ctx context.Context, batch []*pending, resp *response) *providers.AuthError {
	e := decodeError(resp.body)
	code := e.recordCode(resp.status)
	if len(batch) == 1 {
		batch[0].fail(&providers.RecordError{Permanent: true, Code: code,
			Message: truncate(c.tokens.scrub(e.text(resp.status)))})
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
			Message: truncate(c.tokens.scrub(strings.Join(msgs, "; ")))})
	}
	if len(rest) == 0 {
		return nil
	}
	return c.write(ctx, rest)
}

// response is an API answer that is not retried.
type response struct {
	status int
	body   []byte
}

// post sends body to path until Propel answers something other than 401,
// 429 or 5xx. A 401 is retried once with a new token; 429, 5xx and network
// errors up to maxAttempts times with backoff, which is safe because every
// call the client makes is an idempotent upsert. The error is a
// *providers.AuthError when Propel refuses the credentials, else a transient
// *providers.RecordError.
func (c *Client) post(ctx context.Context, path string, body []byte) (*response, error) {
	var (
		// applied is set once an attempt may have been written by Propel.
		applied   bool
		refreshed bool
		failures  int // 5xx answers and network errors
		last      *providers.RecordError
	)
	for attempt := 1; ; {
		var wait time.Duration
		token, err := c.tokens.get(ctx)
		if err != nil {
			var ae *providers.AuthError
			if errors.As(err, &ae) {
				return nil, ae
			}
			if ctx.Err() != nil {
				return nil, cancelled(applied)
			}
			last = &providers.RecordError{Code: codeVendorUnavailable, Uncertain: applied, Message: truncate(err.Error())}
		} else {
			status, header, respBody, err := c.do(ctx, path, token, body)
			switch {
			case err != nil:
				if ctx.Err() != nil {
					return nil, cancelled(true)
				}
				applied = true
				failures++
				last = &providers.RecordError{Code: codeVendorUnavailable, Uncertain: true,
					Message: truncate(c.tokens.scrub("Propel did not answer: " + err.Error()))}
			case status == http.StatusUnauthorized && !refreshed:
				c.tokens.invalidate(token)
				refreshed = true
				continue
			case status == http.StatusUnauthorized || status == http.StatusForbidden:
				reason := "Unauthorized"
				if status == http.StatusForbidden {
					reason = "Forbidden"
				}
				return nil, &providers.AuthError{StatusCode: status, Reason: reason,
					Message: truncate(c.tokens.scrub("Propel refused the access token: " + decodeError(respBody).text(status)))}
			case status == http.StatusTooManyRequests:
				last = &providers.RecordError{Code: codeRateLimited, Uncertain: applied,
					Message: truncate(c.tokens.scrub("Propel is rate limiting: " + decodeError(respBody).text(status)))}
				wait = retryAfter(header)
			case status >= 500:
				applied = true
				failures++
				last = &providers.RecordError{Code: codeVendorUnavailable, Uncertain: true,
					Message: truncate(c.tokens.scrub(fmt.Sprintf("Propel answered HTTP %d: %s", status, decodeError(respBody).text(status))))}
				wait = retryAfter(header)
			default:
				return &response{status: status, body: respBody}, nil
			}
		}
		if attempt == maxAttempts || failures >= maxServerAttempts {
			return nil, last
		}
		if wait == 0 {
			wait = firstBackoff << (attempt - 1)
		}
		if wait > maxWait {
			last.Message = truncate(fmt.Sprintf("%s (Propel asked to wait %s)", last.Message, wait))
			return nil, last
		}
		if err := c.sleep(ctx, wait); err != nil {
			return nil, cancelled(applied)
		}
		attempt++
	}
}

// do sends one request and reads its answer.
func (c *Client) do(ctx context.Context, path, token string, body []byte) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, b, nil
}

// retryAfter is the wait Retry-After asks for, 0 without one.
func retryAfter(h http.Header) time.Duration {
	d, _ := providers.RetryAfter(h)
	return d
}

// cancelled is the failure of a record whose call ctx ended; uncertain when
// the call may have reached Propel.
func cancelled(sent bool) *providers.RecordError {
	msg := "the sync ended before the user was sent to Propel"
	if sent {
		msg = "the sync ended before Propel answered"
	}
	return &providers.RecordError{Code: codeCancelled, Uncertain: sent, Message: msg}
}

// ChunkSize implements providers.Chunked: one call's worth of changes, so
// the engine stores each call's UserSyncs as soon as it is answered.
func (c *Client) ChunkSize() int { return c.batch }
