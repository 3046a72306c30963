package usercom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

// readInFlight bounds the reads of one Read in flight at once: the
// engine's HTTP client paces them to the rate limit, and one at a time
// would leave the budget unused at a vendor latency of tens of
// milliseconds.
const readInFlight = 4

var _ providers.Reader = (*Client)(nil)

// ReadBatch implements providers.Reader: user.com reads one user a call.
func (c *Client) ReadBatch() int { return 1 }

// Read implements providers.Reader with GET users-by-id/{custom_id}/, one
// call a user (one per distinct key when requests repeat a key), up to
// four in flight. A user is Found when user.com answers it, with Differs
// as differs compares it; Missing only when user.com answers 404 with its
// not-found error ({"detail": ...}). Anything else leaves the user
// Unknown with an Err: a failed, throttled or timed-out call (after
// vendorhttp's retries), an answer that cannot be read or that is about
// another custom_id, a 404 that is not user.com's (an HTML page: a wrong
// endpoint), and a refusal of the API key, after which the remaining
// users are not read. A user without a key cannot be read. When ctx ends,
// the users not read yet are Unknown. The error is always nil: every
// failure is an Observation's.
func (c *Client) Read(ctx context.Context, reqs []providers.ReadRequest) ([]providers.Observation, error) {
	obs := make([]providers.Observation, len(reqs))
	byKey := map[string][]int{}
	var keys []string
	for i, r := range reqs {
		obs[i].ID = r.ID
		k := r.User.Key
		if k == "" {
			obs[i].Err = errors.New("the user has no key, the custom_id to read it by")
			continue
		}
		if _, seen := byKey[k]; !seen {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], i)
	}
	reads := c.readAll(ctx, keys)
	for j, k := range keys {
		for _, i := range byKey[k] {
			obs[i].Presence, obs[i].Err = reads[j].presence, reads[j].err
			if reads[j].presence == providers.Found {
				obs[i].Differs = differs(reqs[i].User, reads[j].got)
			}
		}
	}
	return obs, nil
}

// read is what the read of one custom_id learnt.
type read struct {
	presence providers.Presence
	got      stored
	err      error
}

// readAll reads keys, readInFlight at a time. Once user.com refuses the
// API key, the keys not read yet are not sent.
func (c *Client) readAll(ctx context.Context, keys []string) []read {
	out := make([]read, len(keys))
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		next    int
		refused error
	)
	for range min(readInFlight, len(keys)) {
		wg.Go(func() {
			for {
				mu.Lock()
				j, stop := next, refused
				next++
				mu.Unlock()
				if j >= len(keys) {
					return
				}
				if stop != nil {
					out[j] = read{err: stop}
					continue
				}
				out[j] = c.readUser(ctx, keys[j])
				var ae *providers.AuthError
				if errors.As(out[j].err, &ae) {
					mu.Lock()
					refused = ae
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return out
}

// readUser reads the user with custom_id key.
func (c *Client) readUser(ctx context.Context, key string) read {
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodGet, Path: fmt.Sprintf(pathRead, url.PathEscape(key)),
		Idempotent: true, Endpoint: EndpointRead})
	if err != nil {
		// An *AuthError or a *vendorhttp.CallError, scrubbed.
		return read{err: err}
	}
	switch {
	case resp.Status == http.StatusNotFound && isNotFound(resp.Body):
		return read{presence: providers.Missing}
	case resp.Status == http.StatusNotFound:
		return read{err: errors.New(c.clean("user.com answered a read of a user with HTTP 404 but not its not-found error: " +
			errorText(resp.Status, resp.Body) + "; is spec.endpoint the app's API base, https://<app>.user.com/api/public/?"))}
	case !resp.OK():
		return read{err: errors.New(c.clean(fmt.Sprintf("user.com answered HTTP %d to a read of a user: %s",
			resp.Status, errorText(resp.Status, resp.Body))))}
	}
	got, err := decodeStored(resp.Body)
	switch {
	case err != nil:
		return read{err: errors.New(c.clean("user.com's answer to a read of a user could not be read: " + err.Error()))}
	case got.customID != "" && got.customID != key:
		return read{err: errors.New("the answer to a read of a user was about another user (its custom_id differs)")}
	}
	return read{presence: providers.Found, got: got}
}

// isNotFound reports whether a 404's body is user.com's not-found error,
// {"detail": "Not found."} as Django REST Framework words it (any
// detail), rather than a page of a server that is not user.com's API.
func isNotFound(body []byte) bool {
	var e struct {
		Detail string `json:"detail"`
	}
	return json.Unmarshal(body, &e) == nil && e.Detail != ""
}
