package usercom

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
)

const (
	// maxAttempts is how often one call is sent before its records are
	// reported as transient failures.
	maxAttempts = 5
	// maxServerAttempts bounds the sends of a call user.com answers with
	// 5xx or not at all: past a short blip the engine's per-record backoff
	// takes over, so that one outage does not hold the provider's loop.
	maxServerAttempts = 3
	// firstBackoff is the wait after the first failed attempt; it doubles
	// with every further one.
	firstBackoff = time.Second
	// maxWait is the longest Retry-After the client waits out itself; a
	// longer one ends the attempts and the engine retries later.
	maxWait = time.Minute
	// maxBody bounds what is read of an answer.
	maxBody = 8 << 20
	// acceptHeader asks for version 2 of the API, as user.com's examples do.
	acceptHeader = "*/*; version=2"
)

// Client writes users to one user.com app. It is safe for concurrent use.
type Client struct {
	// base is the API base URL, ending in a slash.
	base  string
	token string
	// batch is the most ids of one mass call.
	batch int
	http  *http.Client
	sleep func(ctx context.Context, d time.Duration) error

	mu sync.Mutex
	// cache maps a custom_id to what the client last wrote for it.
	cache map[string]*entry
}

var (
	_ providers.Client        = (*Client)(nil)
	_ providers.DeleteSupport = (*Client)(nil)
)

// Identity implements providers.Client: user.com finds a user again by its
// custom_id, which is the user's key.
func (c *Client) Identity(u providers.User) string { return u.Key }

// CanDelete implements providers.DeleteSupport: user.com deletes users by
// custom_id.
func (c *Client) CanDelete() (bool, string) { return true, "" }

// Verify implements providers.Client with a read of one user.
func (c *Client) Verify(ctx context.Context) error {
	resp, err := c.call(providers.NameEndpoint(ctx, EndpointList), http.MethodGet, pathList, nil)
	if err != nil {
		return err
	}
	if resp.status >= 200 && resp.status <= 299 {
		return nil
	}
	msg := fmt.Sprintf("user.com answered HTTP %d to a read of users: %s", resp.status, decodeError(resp.body).text(resp.status))
	if resp.status == http.StatusNotFound {
		msg += "; is spec.endpoint the app's API base, https://<app>.user.com/api/public/?"
	}
	return errors.New(c.clean(msg))
}

// response is an answer that is not retried.
type response struct {
	status int
	body   []byte
}

func (r *response) ok() bool { return r.status >= 200 && r.status <= 299 }

// call sends a request to path (below the base URL) until user.com answers
// something other than 429 or 5xx, and returns that answer. 429 is retried
// up to maxAttempts times, 5xx and network errors up to maxServerAttempts
// times, with Retry-After or exponential backoff: every call the client
// makes is idempotent. The error is a *providers.AuthError for 401 and 403,
// else a transient *providers.RecordError, uncertain when the request may
// have been applied.
func (c *Client) call(ctx context.Context, method, path string, body any) (*response, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return nil, c.recordError(true, false, codeInvalidRecord, "encoding the request: "+err.Error())
		}
	}
	var (
		// applied is set once an attempt may have been carried out.
		applied  bool
		failures int // 5xx answers and network errors
		last     *providers.RecordError
	)
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			return nil, cancelled(applied)
		}
		status, header, respBody, err := c.do(ctx, method, path, payload)
		var wait time.Duration
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil, cancelled(true)
			}
			applied = true
			failures++
			last = c.recordError(false, true, codeVendorUnavailable, transportMessage(err))
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			reason := "Unauthorized"
			if status == http.StatusForbidden {
				reason = "Forbidden"
			}
			return nil, &providers.AuthError{StatusCode: status, Reason: reason,
				Message: c.clean("user.com refused the API key: " + decodeError(respBody).text(status))}
		case status == http.StatusTooManyRequests:
			last = c.recordError(false, applied, codeRateLimited, "user.com is rate limiting: "+decodeError(respBody).text(status))
			wait = retryAfter(header)
		case status >= 500:
			applied = true
			failures++
			last = c.recordError(false, true, codeVendorUnavailable,
				fmt.Sprintf("user.com answered HTTP %d: %s", status, decodeError(respBody).text(status)))
			wait = retryAfter(header)
		default:
			return &response{status: status, body: respBody}, nil
		}
		if attempt == maxAttempts || failures >= maxServerAttempts {
			return nil, last
		}
		if wait == 0 {
			wait = firstBackoff << (attempt - 1)
		}
		if wait > maxWait {
			last.Message = c.clean(fmt.Sprintf("%s (user.com asked to wait %s)", last.Message, wait))
			return nil, last
		}
		if err := c.sleep(ctx, wait); err != nil {
			return nil, cancelled(applied)
		}
	}
}

// do sends one request and reads its answer.
func (c *Client) do(ctx context.Context, method, path string, payload []byte) (int, http.Header, []byte, error) {
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Token "+c.token)
	req.Header.Set("Accept", acceptHeader)
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
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

// transportMessage describes a network error. The URL it may name never
// holds the API key, which travels in a header.
func transportMessage(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "user.com did not answer in time"
	}
	return "user.com did not answer: " + err.Error()
}

// cancelled is the failure of a record whose call ctx ended; uncertain when
// the call may have reached user.com.
func cancelled(sent bool) *providers.RecordError {
	msg := "the sync ended before the user was sent to user.com"
	if sent {
		msg = "the sync ended before user.com answered"
	}
	return &providers.RecordError{Code: codeCancelled, Uncertain: sent, Message: msg}
}
