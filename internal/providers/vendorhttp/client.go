// Package vendorhttp is the one HTTP client every vendor package sends its
// calls with. It owns what is the same for every vendor: the credentials on
// each request, JSON bodies, a cap on what is read of an answer, reporting
// each call to the engine's metrics, and the retry rules:
//
//   - 401 and 403 end the call with a *providers.AuthError (401 once renews
//     credentials that can be renewed, such as an OAuth access token);
//   - 429, and the statuses a vendor's Throttle hook names (HubSpot's 423
//     and 477), are waited out: the vendor refused the call before doing
//     anything, so resending it is always safe;
//   - 5xx answers and transport errors are resent only when the request is
//     idempotent; otherwise the call may have been applied and the error is
//     Uncertain, so the engine looks before it writes again;
//   - waits follow Retry-After (or the hook's vendor headers), else an
//     exponential k8s.io/apimachinery wait.Backoff.
//
// A vendor package keeps only its wire types, its packing and the mapping of
// its error bodies; it describes itself to the client with a Vendor.
package vendorhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/usersync/usersync-operator/internal/providers"
)

// Codes of the errors the client reports.
const (
	CodeRateLimited = "RateLimited"
	// CodeUnavailable: the vendor answered 5xx.
	CodeUnavailable = "VendorUnavailable"
	// CodeUnreachable: no answer (connection refused or reset, timeout).
	CodeUnreachable = "VendorUnreachable"
	CodeCancelled   = "Cancelled"
	CodeBadRequest  = "InvalidRequest"
)

// DefaultMaxBody bounds what is read of an answer when Policy.MaxBody is 0.
const DefaultMaxBody = 16 << 20

// Policy bounds the retries of one call.
type Policy struct {
	// MaxAttempts bounds the sends of one call, whatever the answers.
	MaxAttempts int
	// MaxServerAttempts bounds the sends of an idempotent call the vendor
	// answers with 5xx or not at all: past a short blip the engine's
	// per-record backoff takes over, so one outage does not hold the loop.
	// 0 means such a call is not resent.
	MaxServerAttempts int
	// Backoff is the wait before each resend that no answer header sets:
	// Step() is taken once per resend.
	Backoff wait.Backoff
	// MaxWait is the longest wait the client sits out itself; a vendor that
	// asks for more ends the call (the engine retries the records later).
	// 0 means no bound.
	MaxWait time.Duration
	// MaxBody bounds what is read of an answer; 0 means DefaultMaxBody.
	MaxBody int64
	// ExactRetryAfter follows a Retry-After on a 429 or 5xx even when it
	// asks for no wait (0, or a date past): the call is resent at once.
	// False reads such a header as absent, and the backoff applies.
	ExactRetryAfter bool
}

// DefaultPolicy is what the vendors of this operator use: six sends, three
// of them after a 5xx or no answer, waits of 1 s, 2 s, 4 s, ... up to 30 s.
func DefaultPolicy() Policy {
	return Policy{
		MaxAttempts:       6,
		MaxServerAttempts: 3,
		Backoff:           wait.Backoff{Duration: time.Second, Factor: 2, Cap: 30 * time.Second, Steps: 1 << 30},
	}
}

// Throttle is a vendor's reading of an answer that refused the call for now
// (429, or a vendor-specific status such as HubSpot's 423).
type Throttle struct {
	// Code and Message describe it, for the records if the client gives up.
	Code    string
	Message string
	// Wait is how long the vendor asks to wait; 0 means the Policy's backoff
	// unless Exact is set.
	Wait time.Duration
	// Exact: Wait is the vendor's own wait even when it is 0 (a Retry-After
	// of 0): the call is resent without the Policy's backoff.
	Exact bool
	// Final: waiting will not help now (a daily limit); do not resend.
	Final bool
}

// Vendor describes a vendor's conventions to the client. Only Name is
// required.
type Vendor struct {
	// Name is how messages name the vendor: "HubSpot answered HTTP 503".
	Name string
	// Credential names what a 401 refused, "the token" by default.
	Credential string
	// ErrorText renders an error answer's body for a message; nil shows the
	// status alone. It must never return a credential.
	ErrorText func(status int, body []byte) string
	// Throttle reads an answer other than 2xx, 401 and 403: ok is true when
	// it refused the call for now. Nil, or ok false for a 429, means a 429
	// is read with its Retry-After alone.
	Throttle func(r *Response) (t Throttle, ok bool)
	// Forbidden is the message of a 403; nil uses ErrorText.
	Forbidden func(r *Response) string
}

// Credentials put a vendor account's credentials on a request.
type Credentials interface {
	// Authorize sets the credentials on req. An error ends the call as is
	// (an *providers.AuthError when the vendor refused to issue a token).
	Authorize(ctx context.Context, req *http.Request) error
	// Renew is called when the vendor answered req with 401; true sends req
	// once more with new credentials.
	Renew(req *http.Request) bool
	// Scrub removes every credential value from s.
	Scrub(s string) string
}

// StaticHeader is a credential sent as a header on every request, such as
// "Authorization: Bearer <token>".
type StaticHeader struct {
	Header, Prefix, Value string
}

// Authorize implements Credentials.
func (s StaticHeader) Authorize(_ context.Context, req *http.Request) error {
	req.Header.Set(s.Header, s.Prefix+s.Value)
	return nil
}

// Renew implements Credentials: a static credential cannot be renewed.
func (StaticHeader) Renew(*http.Request) bool { return false }

// Scrub implements Credentials.
func (s StaticHeader) Scrub(msg string) string {
	if s.Value == "" {
		return msg
	}
	return strings.ReplaceAll(msg, s.Value, "[redacted]")
}

// Bearer is "Authorization: Bearer <token>".
func Bearer(token string) StaticHeader {
	return StaticHeader{Header: "Authorization", Prefix: "Bearer ", Value: token}
}

// Client sends the calls of one vendor account. It is safe for concurrent
// use.
type Client struct {
	// Base is prefixed to every Request.Path.
	Base   string
	Vendor Vendor
	Creds  Credentials
	// HTTP sends the requests; the engine's client is rate limited and
	// carries its timeouts and metrics. Nil means a client with a 30 s
	// timeout.
	HTTP   *http.Client
	Policy Policy
	// Header is set on every request (Accept, API versions).
	Header http.Header
	// Sleep waits between sends; nil means providers.SleepContext. Tests
	// replace it to record the waits.
	Sleep func(ctx context.Context, d time.Duration) error
}

var defaultHTTP = &http.Client{Timeout: 30 * time.Second}

// Request is one vendor call.
type Request struct {
	Method string
	// Path is appended to Client.Base; it may carry a query.
	Path string
	// Body is encoded as JSON when not nil; RawBody is sent as it is.
	Body    any
	RawBody []byte
	// ContentType is the Content-Type of a body; "" means application/json
	// (a form-encoded RawBody, such as an OAuth token request, sets it).
	ContentType string
	// Idempotent: sending the call twice has the effect of sending it once,
	// so a 5xx or lost answer may be resent. Reads are idempotent.
	Idempotent bool
	// Endpoint names the call in the metrics (a fixed name, never user
	// data). Records, when > 0, reports the call as one write of that many
	// records; 0 names the endpoint only (a lookup, a token request).
	Endpoint string
	Records  int
}

// Response is an answer the client does not retry.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// OK reports a 2xx status.
func (r *Response) OK() bool { return r.Status >= 200 && r.Status <= 299 }

// Decode decodes the body as JSON into v.
func (r *Response) Decode(v any) error { return json.Unmarshal(r.Body, v) }

// CallError is the failure of a whole call: every record it carried failed
// with it, transiently.
type CallError struct {
	// Status is the vendor's last HTTP status, 0 when it did not answer.
	Status  int
	Code    string
	Message string
	// Uncertain: the vendor may have applied the call.
	Uncertain bool
}

func (e *CallError) Error() string { return e.Code + ": " + e.Message }

// Record is the error as the failure of one of the call's records.
func (e *CallError) Record() *providers.RecordError {
	return &providers.RecordError{Code: e.Code, Message: e.Message, Uncertain: e.Uncertain}
}

// Do sends the call until the vendor gives an answer that is not retried
// (see the package comment), and returns it. The error is an
// *providers.AuthError when the vendor refused the credentials, a
// *CallError when the call could not be completed, or what
// Credentials.Authorize returned.
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	payload := req.RawBody
	if payload == nil && req.Body != nil {
		var err error
		if payload, err = json.Marshal(req.Body); err != nil {
			return nil, &CallError{Code: CodeBadRequest, Message: "encoding the request: " + err.Error()}
		}
	}
	if ctx.Err() != nil {
		// Not sent: not reported to the metrics either.
		return nil, c.cancelled(false, nil)
	}
	if req.Records > 0 {
		ctx = providers.ObserveCall(ctx, req.Endpoint, req.Records)
	} else if req.Endpoint != "" {
		ctx = providers.NameEndpoint(ctx, req.Endpoint)
	}
	backoff := c.Policy.Backoff
	var (
		last *CallError
		// sent: an attempt may have reached the vendor with the payload.
		sent, renewed bool
		failures      int
	)
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			return nil, c.cancelled(sent, last)
		}
		out := c.attempt(ctx, req, payload, renewed)
		switch {
		case out.err != nil:
			// Credentials that failed (a token endpoint that is down) after
			// an attempt that may have been applied leave the call uncertain.
			var ce *CallError
			if sent && errors.As(out.err, &ce) {
				ce.Uncertain = true
			}
			return nil, out.err
		case out.resp != nil:
			return out.resp, nil
		case out.renew:
			renewed = true
			attempt--
			continue
		}
		last = out.fail
		sent = sent || out.fail.Uncertain
		// An earlier attempt that may have been applied leaves the call
		// uncertain whatever the last answer (a 429 after a 503).
		last.Uncertain = sent
		if out.server {
			failures++
		}
		step := backoff.Step()
		if out.stop || attempt >= c.maxAttempts() || failures >= c.Policy.MaxServerAttempts && out.server {
			return nil, last
		}
		wait := out.wait
		if wait <= 0 && !out.exact {
			wait = step
		}
		if c.Policy.MaxWait > 0 && wait > c.Policy.MaxWait {
			last.Message = c.clean(fmt.Sprintf("%s (%s asked to wait %s)", last.Message, c.Vendor.Name, wait))
			return nil, last
		}
		if err := c.sleep(ctx, wait); err != nil {
			return nil, c.cancelled(sent, last)
		}
	}
}

func (c *Client) maxAttempts() int {
	if c.Policy.MaxAttempts > 0 {
		return c.Policy.MaxAttempts
	}
	return 1
}

// outcome is what one attempt learned: a final answer or error, a renewal,
// or a failure that may be retried.
type outcome struct {
	resp  *Response
	err   error
	renew bool
	fail  *CallError
	// wait is what the vendor asked for (0: backoff, unless exact); stop: do
	// not resend; server: a 5xx or no answer, counted against
	// MaxServerAttempts.
	wait                time.Duration
	exact, stop, server bool
}

// attempt sends the call once and classifies the answer.
func (c *Client) attempt(ctx context.Context, req Request, payload []byte, renewed bool) outcome {
	resp, err := c.send(ctx, req, payload)
	if err != nil {
		var ae *providers.AuthError
		if errors.As(err, &ae) || !isTransport(err) {
			return outcome{err: err}
		}
		if ctx.Err() != nil {
			return outcome{fail: c.cancelled(!isUnsent(err) && mayApply(req.Method, payload), nil), stop: true}
		}
		fail := &CallError{Code: CodeUnreachable, Message: c.transportMessage(err), Uncertain: mayApply(req.Method, payload)}
		return outcome{fail: fail, server: true, stop: !req.Idempotent}
	}
	switch s := resp.Status; s {
	case http.StatusUnauthorized:
		if !renewed && c.Creds != nil && c.Creds.Renew(resp.request) {
			return outcome{renew: true}
		}
		return outcome{err: &providers.AuthError{StatusCode: s, Reason: "Unauthorized",
			Message: c.clean(c.Vendor.Name + " refused " + c.credential() + ": " + c.errorText(resp))}}
	case http.StatusForbidden:
		msg := c.Vendor.Name + " refused the call: " + c.errorText(resp)
		if c.Vendor.Forbidden != nil {
			msg = c.Vendor.Forbidden(&resp.Response)
		}
		return outcome{err: &providers.AuthError{StatusCode: s, Reason: "Forbidden", Message: c.clean(msg)}}
	}
	if c.Vendor.Throttle != nil && !resp.OK() {
		if t, ok := c.Vendor.Throttle(&resp.Response); ok {
			return outcome{fail: &CallError{Status: resp.Status, Code: t.Code, Message: c.clean(t.Message)},
				wait: t.Wait, exact: t.Exact, stop: t.Final}
		}
	}
	switch s := resp.Status; {
	case s == http.StatusTooManyRequests:
		wait, ok := providers.RetryAfter(resp.Header)
		return outcome{fail: &CallError{Status: s, Code: CodeRateLimited,
			Message: c.clean(c.Vendor.Name + " is rate limiting: " + c.errorText(resp))},
			wait: wait, exact: ok && c.Policy.ExactRetryAfter}
	case s >= 500:
		wait, ok := providers.RetryAfter(resp.Header)
		fail := &CallError{Status: s, Code: CodeUnavailable, Uncertain: true,
			Message: c.clean(fmt.Sprintf("%s answered HTTP %d: %s", c.Vendor.Name, s, c.errorText(resp)))}
		return outcome{fail: fail, wait: wait, exact: ok && c.Policy.ExactRetryAfter, server: true, stop: !req.Idempotent}
	case resp.readErr != nil:
		// A 2xx whose body was cut: the call was applied, its answer lost.
		fail := &CallError{Status: s, Code: CodeUnreachable, Uncertain: true,
			Message: c.clean("reading " + c.Vendor.Name + "'s answer: " + resp.readErr.Error())}
		return outcome{fail: fail, server: true, stop: !req.Idempotent}
	}
	return outcome{resp: &resp.Response}
}

// mayApply reports whether a request that may have reached the vendor may
// have changed something: a request with a body, or one whose method is not
// a read (a DELETE carries none).
func mayApply(method string, payload []byte) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return payload != nil
	}
	return true
}

// sent is a response with the request it answers and a failed read.
type sent struct {
	Response
	request *http.Request
	readErr error
}

// transportError marks errors of http.Client.Do, and those of a
// Credentials.Authorize that the context ended (unsent: the request was
// never sent).
type transportError struct {
	err    error
	unsent bool
}

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

func isTransport(err error) bool {
	var te *transportError
	return errors.As(err, &te)
}

func isUnsent(err error) bool {
	var te *transportError
	return errors.As(err, &te) && te.unsent
}

func (c *Client) send(ctx context.Context, req Request, payload []byte) (*sent, error) {
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	method := req.Method
	if method == "" {
		method = http.MethodPost
	}
	hr, err := http.NewRequestWithContext(ctx, method, c.Base+req.Path, body)
	if err != nil {
		return nil, &CallError{Code: CodeBadRequest, Message: c.clean(err.Error())}
	}
	for k, vs := range c.Header {
		hr.Header[k] = vs
	}
	if payload != nil {
		ct := req.ContentType
		if ct == "" {
			ct = "application/json"
		}
		hr.Header.Set("Content-Type", ct)
	}
	if hr.Header.Get("Accept") == "" {
		hr.Header.Set("Accept", "application/json")
	}
	if c.Creds != nil {
		if err := c.Creds.Authorize(ctx, hr); err != nil {
			if ctx.Err() != nil {
				return nil, &transportError{err: err, unsent: true}
			}
			return nil, err
		}
	}
	hc := c.HTTP
	if hc == nil {
		hc = defaultHTTP
	}
	res, err := hc.Do(hr)
	if err != nil {
		return nil, &transportError{err: err}
	}
	limit := c.Policy.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	data, rerr := io.ReadAll(io.LimitReader(res.Body, limit))
	_ = res.Body.Close()
	out := &sent{Response: Response{Status: res.StatusCode, Header: res.Header, Body: data}, request: hr}
	if rerr != nil && res.StatusCode < 300 {
		out.readErr = rerr
	}
	return out, nil
}

func (c *Client) sleep(ctx context.Context, d time.Duration) error {
	if c.Sleep != nil {
		return c.Sleep(ctx, d)
	}
	return providers.SleepContext(ctx, d)
}

// cancelled is the failure of a call whose context ended: uncertain when an
// attempt may have reached the vendor. The last failure, when there was one
// (the call was waiting to be resent), is named in the message.
func (c *Client) cancelled(sent bool, last *CallError) *CallError {
	msg := "the sync ended before the call was sent to " + c.Vendor.Name
	switch {
	case last != nil:
		msg = "the sync ended before the call was sent to " + c.Vendor.Name + " again: " + last.Message
	case sent:
		msg = "the sync ended before " + c.Vendor.Name + " answered"
	}
	return &CallError{Code: CodeCancelled, Message: c.clean(msg), Uncertain: sent || last != nil && last.Uncertain}
}

func (c *Client) credential() string {
	if c.Vendor.Credential != "" {
		return c.Vendor.Credential
	}
	return "the token"
}

func (c *Client) errorText(r *sent) string {
	if c.Vendor.ErrorText != nil {
		return c.Vendor.ErrorText(r.Status, r.Body)
	}
	return fmt.Sprintf("HTTP %d", r.Status)
}

// transportMessage describes a transport error without the request's URL
// query or any header.
func (c *Client) transportMessage(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return c.Vendor.Name + " did not answer in time"
	case errors.Is(err, context.Canceled):
		return "the call to " + c.Vendor.Name + " was cancelled"
	}
	return c.clean(c.Vendor.Name + " did not answer: " + err.Error())
}

// clean removes credentials from a message and cuts it to what a status
// record holds.
func (c *Client) clean(s string) string {
	if c.Creds != nil {
		s = c.Creds.Scrub(s)
	}
	return providers.Truncate(s, providers.MaxMessageLength)
}
