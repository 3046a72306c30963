package usercom

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

// acceptHeader asks for version 2 of the API, as user.com's examples do.
const acceptHeader = "*/*; version=2"

// vendor describes user.com's conventions to the HTTP client: it names the
// credential "the API key", renders error answers with decodeError, and
// words a 403 like a 401, a refusal of the key.
var vendor = vendorhttp.Vendor{
	Name:       "user.com",
	Credential: "the API key",
	ErrorText:  errorText,
	Forbidden: func(r *vendorhttp.Response) string {
		return "user.com refused the API key: " + errorText(r.Status, r.Body)
	},
}

// policy is how user.com's calls are retried. User.com documents no rate
// limits: a 429 is waited out (Retry-After, else 1 s, 2 s, 4 s, ...) for up
// to five sends, but never longer than a minute at a time; 5xx answers and
// network errors end the call after three sends, and the engine's
// per-record backoff takes over, so that one outage does not hold the
// provider's loop.
var policy = vendorhttp.Policy{
	MaxAttempts:       5,
	MaxServerAttempts: 3,
	Backoff:           wait.Backoff{Duration: time.Second, Factor: 2, Steps: math.MaxInt32},
	MaxWait:           time.Minute,
	MaxBody:           8 << 20,
}

// errorText renders an error answer of user.com for a message.
func errorText(status int, body []byte) string { return decodeError(body).text(status) }

// Client writes users to one user.com app. It is safe for concurrent use.
type Client struct {
	// api sends the calls to the app's API base URL, with the API key.
	// Every call the client makes is idempotent (an upsert by custom_id,
	// attribute writes, a delete by custom_id), so vendorhttp resends it
	// after a 5xx or a lost answer.
	api *vendorhttp.Client
	// batch is the most ids of one mass call.
	batch int

	mu sync.Mutex
	// cache maps a custom_id to what the client last wrote for it.
	cache map[string]*entry
}

var (
	_ providers.Client        = (*Client)(nil)
	_ providers.CreateSafety  = (*Client)(nil)
	_ providers.DeleteSupport = (*Client)(nil)
)

// newAPI is the HTTP client of the app whose API base is base (ending in a
// slash), authorized by "Authorization: Token <token>".
func newAPI(base, token string, cfg providers.Config) *vendorhttp.Client {
	return &vendorhttp.Client{
		Base:   base,
		Vendor: vendor,
		Creds:  vendorhttp.StaticHeader{Header: "Authorization", Prefix: "Token ", Value: token},
		HTTP:   cfg.HTTPClient,
		Policy: policy,
		Header: http.Header{"Accept": {acceptHeader}},
		Sleep:  cfg.Sleep,
	}
}

// IdempotentCreates implements providers.CreateSafety: users are written with
// update_or_create on custom_id.
func (c *Client) IdempotentCreates() (bool, string) {
	return true, "users are written with update_or_create on custom_id, the user's key"
}

// Identity implements providers.Client: user.com finds a user again by its
// custom_id, which is the user's key.
func (c *Client) Identity(u providers.User) string { return u.Key }

// CanDelete implements providers.DeleteSupport: user.com deletes users by
// custom_id.
func (c *Client) CanDelete() (bool, string) { return true, "" }

// Verify implements providers.Client with a read of one user.
func (c *Client) Verify(ctx context.Context) error {
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodGet, Path: pathList, Idempotent: true, Endpoint: EndpointList})
	if err != nil {
		return err
	}
	if resp.OK() {
		return nil
	}
	msg := fmt.Sprintf("user.com answered HTTP %d to a read of users: %s", resp.Status, errorText(resp.Status, resp.Body))
	if resp.Status == http.StatusNotFound {
		msg += "; is spec.endpoint the app's API base, https://<app>.user.com/api/public/?"
	}
	return errors.New(c.clean(msg))
}

// recordError builds a RecordError with a scrubbed, bounded message: the
// messages the client builds itself quote user.com's answers, which
// vendorhttp does not scrub.
func (c *Client) recordError(permanent, uncertain bool, code, msg string) *providers.RecordError {
	return &providers.RecordError{Permanent: permanent, Uncertain: uncertain, Code: code, Message: c.clean(msg)}
}

// clean removes the API key from msg and cuts it to what a status record
// holds.
func (c *Client) clean(msg string) string {
	return providers.Truncate(c.api.Creds.Scrub(msg), providers.MaxMessageLength)
}
