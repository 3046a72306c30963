package hubspot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
)

// Client talks to one HubSpot account.
type Client struct {
	base       string // .../crm/v3/objects/users
	token      string
	batch      int
	idProperty string
	idFrom     string
	http       *http.Client
	sleep      func(ctx context.Context, d time.Duration) error
}

var _ providers.Client = (*Client)(nil)

var defaultHTTPClient = &http.Client{Timeout: 30 * time.Second}

const (
	// maxAttempts bounds the sends of one request that HubSpot answered with
	// a retryable status.
	maxAttempts = 6
	// maxServerAttempts bounds the sends of an idempotent request HubSpot
	// answers with 5xx or not at all: past a short blip the engine's
	// per-record backoff takes over, so one outage does not hold the loop.
	maxServerAttempts = 3
	// maxBody bounds what is read of a response.
	maxBody = 16 << 20

	// Header names of HubSpot's rate limit answers.
	hdrInterval  = "X-HubSpot-RateLimit-Interval-Milliseconds"
	hdrRemaining = "X-HubSpot-RateLimit-Remaining"
)

// Waits HubSpot documents, used when its answer carries no Retry-After.
var (
	lockedWait    = 2 * time.Second  // 423: "Locks will last for 2 seconds"
	rateLimitWait = 10 * time.Second // 429: the ten-second window
	migrationWait = 5 * time.Second  // 477 without Retry-After
	serverWait    = time.Second      // first 5xx pause, doubled per attempt
)

// callError is the failure of a whole call: every change it carried gets it.
type callError struct {
	// Status is the HTTP status, 0 for a transport error.
	Status  int
	Code    string
	Message string
	// Uncertain is true when HubSpot may have applied the call.
	Uncertain bool
}

func (e *callError) Error() string { return e.Code + ": " + e.Message }

func (e *callError) record() *providers.RecordError {
	return &providers.RecordError{Code: e.Code, Message: e.Message, Uncertain: e.Uncertain}
}

// response is an answer HubSpot gave to a call, retryable statuses excepted.
type response struct {
	Status int
	Body   []byte
}

// errorBody decodes the body as an Error object; an unreadable body becomes
// a message naming the status.
func (r response) errorBody() errorBody {
	var e errorBody
	if json.Unmarshal(r.Body, &e) != nil || (e.Message == "" && len(e.Errors) == 0) {
		e.Message = fmt.Sprintf("HubSpot answered HTTP %d", r.Status)
	}
	return e
}

// Verify implements providers.Client with the cheapest authenticated read.
func (c *Client) Verify(ctx context.Context) error {
	resp, err := c.do(providers.NameEndpoint(ctx, "list"), http.MethodGet, "?limit=1&archived=false", nil, true)
	if err != nil {
		return err
	}
	if resp.Status != http.StatusOK {
		e := resp.errorBody()
		return fmt.Errorf("HubSpot answered HTTP %d to a read of users: %s", resp.Status, e.text())
	}
	return nil
}

// do sends one request and waits out the answers HubSpot documents as
// retryable: 429, 423 and 477 always (HubSpot refused the call before doing
// anything), 5xx and transport errors only when idempotent (otherwise the
// call may have been applied, and the caller must look before resending).
// It returns an *providers.AuthError for 401/403, a *callError when the call
// could not be completed, and the response otherwise.
func (c *Client) do(ctx context.Context, method, path string, body any, idempotent bool) (response, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return response{}, fmt.Errorf("encoding the request: %w", err)
		}
	}
	var last *callError
	failures := 0
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			if last == nil {
				last = &callError{Code: "Cancelled", Message: "the sync loop ran out of time before the call was sent"}
			}
			return response{}, last
		}
		resp, wait, cerr := c.send(ctx, method, path, payload, idempotent, attempt)
		if cerr == nil {
			return resp, nil
		}
		var auth *providers.AuthError
		if errors.As(cerr, &auth) {
			return response{}, auth
		}
		last = cerr.(*callError)
		if last.Status == 0 || last.Status >= 500 {
			failures++
		}
		if wait < 0 || attempt >= maxAttempts || failures >= maxServerAttempts {
			return response{}, last
		}
		if err := c.sleep(ctx, wait); err != nil {
			return response{}, last
		}
	}
}

// send makes one attempt. A negative wait means: do not retry.
func (c *Client) send(ctx context.Context, method, path string, payload []byte, idempotent bool, attempt int) (response, time.Duration, error) {
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return response{}, -1, &callError{Code: "InvalidRequest", Message: err.Error()}
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		// The request may have reached HubSpot. url.Error names the URL,
		// never the Authorization header.
		ce := &callError{Code: "VendorUnreachable", Message: transportMessage(err), Uncertain: payload != nil}
		if !idempotent || ctx.Err() != nil {
			return response{}, -1, ce
		}
		return response{}, backoff(attempt), ce
	}
	data, rerr := io.ReadAll(io.LimitReader(res.Body, maxBody))
	_ = res.Body.Close()
	r := response{Status: res.StatusCode, Body: data}
	if rerr != nil && res.StatusCode < 300 {
		ce := &callError{Code: "VendorUnreachable", Message: "reading HubSpot's answer: " + rerr.Error(), Uncertain: true}
		if !idempotent {
			return response{}, -1, ce
		}
		return response{}, backoff(attempt), ce
	}

	switch code := res.StatusCode; {
	case code == http.StatusUnauthorized:
		return response{}, -1, &providers.AuthError{StatusCode: code, Reason: "Unauthorized",
			Message: "HubSpot refused the token: " + r.errorBody().text()}
	case code == http.StatusForbidden:
		e := r.errorBody()
		msg := "HubSpot refused the call: " + e.text()
		if s := e.missingScopes(); len(s) > 0 {
			msg = "the token lacks the scopes " + strings.Join(s, ", ")
		}
		return response{}, -1, &providers.AuthError{StatusCode: code, Reason: "Forbidden", Message: msg}
	case code == http.StatusTooManyRequests:
		e := r.errorBody()
		ce := &callError{Status: code, Code: "RateLimited", Message: "HubSpot rate limit: " + e.text()}
		if strings.EqualFold(e.PolicyName, "DAILY") {
			// Waiting seconds will not help: the daily budget resets at
			// midnight in the account's time zone.
			return response{}, -1, ce
		}
		return response{}, rateLimitDelay(res.Header), ce
	case code == http.StatusLocked:
		return response{}, retryAfter(res.Header, lockedWait), &callError{Status: code, Code: "Locked",
			Message: "HubSpot locked the object for a high-volume sync"}
	case code == 477:
		return response{}, retryAfter(res.Header, migrationWait), &callError{Status: code, Code: "MigrationInProgress",
			Message: "HubSpot is migrating the account"}
	case code >= 500:
		ce := &callError{Status: code, Code: "VendorUnavailable", Uncertain: true,
			Message: fmt.Sprintf("HubSpot answered HTTP %d: %s", code, r.errorBody().text())}
		if !idempotent {
			return response{}, -1, ce
		}
		return response{}, retryAfter(res.Header, backoff(attempt)), ce
	}
	return r, 0, nil
}

// backoff is the pause before attempt+1 after a 5xx or transport error.
func backoff(attempt int) time.Duration {
	d := serverWait << (attempt - 1)
	if d > 30*time.Second {
		d = 30 * time.Second
	}
	return d
}

// rateLimitDelay honours Retry-After when HubSpot sends it; otherwise, with
// the window exhausted, it waits one interval (the documented advice).
func rateLimitDelay(h http.Header) time.Duration {
	if d, ok := providers.RetryAfter(h); ok {
		return d
	}
	if ms, err := strconv.Atoi(strings.TrimSpace(h.Get(hdrInterval))); err == nil && ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return rateLimitWait
}

func retryAfter(h http.Header, def time.Duration) time.Duration {
	if d, ok := providers.RetryAfter(h); ok {
		return d
	}
	return def
}

// transportMessage describes a transport error without repeating the URL's
// query (which never holds the token here, but may be long).
func transportMessage(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "HubSpot did not answer in time"
	case errors.Is(err, context.Canceled):
		return "the call to HubSpot was cancelled"
	}
	return "calling HubSpot: " + err.Error()
}
