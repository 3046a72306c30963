package propel

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

const (
	// pathLookupSourceID is the lookup of one user by sourceId.
	pathLookupSourceID = "/users/sourceId/"
	// EndpointRead names the lookup by sourceId in the metrics.
	EndpointRead = "users/sourceId/{sourceId}"
	// readInFlight bounds the reads of one Read in flight at once: the
	// engine's HTTP client paces them to the rate limit, and one at a time
	// would leave the budget unused at a vendor latency of tens of
	// milliseconds.
	readInFlight = 4
)

var (
	_ providers.Reader      = (*Client)(nil)
	_ providers.ReadRefusal = (*Client)(nil)
)

// readRefusal remembers that the account refused a read.
type readRefusal struct {
	mu  sync.Mutex
	why string
}

// ReadsRefused implements providers.ReadRefusal: true once Propel answered
// a read of a user with 403 (an API client without read access to users).
// It stays true for the Client's life: new credentials make a new Client.
func (c *Client) ReadsRefused() (bool, string) {
	c.reads.mu.Lock()
	defer c.reads.mu.Unlock()
	return c.reads.why != "", c.reads.why
}

// refuse records the 403 that refused a read, and returns the refusal.
func (c *Client) refuse(ae *providers.AuthError) error {
	c.reads.mu.Lock()
	defer c.reads.mu.Unlock()
	if c.reads.why == "" {
		said := strings.TrimPrefix(ae.Message, "Propel refused the access token: ")
		c.reads.why = c.clean("Propel refuses to read users with these credentials (HTTP 403): grant the API client " +
			"read access to users to verify them; writes are not affected. Propel said: " + said)
	}
	return errors.New(c.reads.why)
}

// ReadBatch implements providers.Reader: Propel reads one user a call.
func (c *Client) ReadBatch() int { return 1 }

// lookup is what a user is read by: its sourceId (the key) and, when the
// user declares one, its language, which Propel matches users on too.
type lookup struct{ key, language string }

// Read implements providers.Reader with GET
// /users/sourceId/{sourceId}?source={source} (and &language= when the user
// declares a language), one call a user (one per distinct lookup when
// requests repeat one), up to four in flight. A user is Found when Propel
// answers it, with Differs as differs compares it; Missing only when
// Propel answers 404 with its NotFound error (code 10008). Anything else
// leaves the user Unknown with an Err: a failed, throttled or timed-out
// call (after vendorhttp's retries), an answer that cannot be read or that
// is about another sourceId or source, a 404 that is not Propel's (a wrong
// endpoint), refused credentials, after which the remaining users are not
// read. A 403 means the account refuses reads: ReadsRefused says so from
// then on, and this Read and every later one answer Unknown without a
// call. When ctx ends, the users not read yet are Unknown. The error is
// always nil: every failure is an Observation's.
func (c *Client) Read(ctx context.Context, reqs []providers.ReadRequest) ([]providers.Observation, error) {
	obs := make([]providers.Observation, len(reqs))
	wants := make([]map[string]any, len(reqs))
	byLookup := map[lookup][]int{}
	var lookups []lookup
	refused, why := c.ReadsRefused()
	for i, r := range reqs {
		obs[i].ID = r.ID
		switch {
		case refused:
			obs[i].Err = errors.New(why)
			continue
		case r.User.Key == "":
			obs[i].Err = errors.New("the user has no key, the sourceId to read it by")
			continue
		}
		wants[i] = c.wireUser(r.User)
		l := lookup{key: r.User.Key}
		l.language, _ = wants[i]["language"].(string)
		if _, seen := byLookup[l]; !seen {
			lookups = append(lookups, l)
		}
		byLookup[l] = append(byLookup[l], i)
	}
	reads := c.readAll(ctx, lookups)
	for j, l := range lookups {
		for _, i := range byLookup[l] {
			obs[i].Presence, obs[i].Err = reads[j].presence, reads[j].err
			if reads[j].presence == providers.Found {
				obs[i].Differs = differs(wants[i], reads[j].got)
			}
		}
	}
	return obs, nil
}

// read is what the read of one lookup learnt.
type read struct {
	presence providers.Presence
	got      stored
	err      error
}

// readAll reads lookups, readInFlight at a time. Once Propel refuses the
// credentials or reads, the lookups not read yet are not sent.
func (c *Client) readAll(ctx context.Context, lookups []lookup) []read {
	out := make([]read, len(lookups))
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		next int
		stop error
	)
	for range min(readInFlight, len(lookups)) {
		wg.Go(func() {
			for {
				mu.Lock()
				j, halt := next, stop
				next++
				mu.Unlock()
				if j >= len(lookups) {
					return
				}
				if halt != nil {
					out[j] = read{err: halt}
					continue
				}
				out[j] = c.readUser(ctx, lookups[j])
				var ae *providers.AuthError
				if !errors.As(out[j].err, &ae) {
					continue
				}
				halt = ae
				if ae.StatusCode == http.StatusForbidden && !strings.HasPrefix(ae.Message, tokenVendor) {
					// The API, not the token endpoint, refused: the
					// account may not read users.
					halt = c.refuse(ae)
					out[j].err = halt
				}
				mu.Lock()
				stop = halt
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// readUser reads one user by sourceId.
func (c *Client) readUser(ctx context.Context, l lookup) read {
	q := url.Values{"source": {c.source}}
	if l.language != "" {
		q.Set("language", l.language)
	}
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodGet,
		Path:       pathLookupSourceID + url.PathEscape(l.key) + "?" + q.Encode(),
		Idempotent: true, Endpoint: EndpointRead})
	if err != nil {
		// An *AuthError or a *vendorhttp.CallError, scrubbed.
		return read{err: err}
	}
	if resp.Status == http.StatusNotFound {
		if e := decodeError(resp.Body); e.Code == "10008" || strings.TrimSuffix(e.Type, "Exception") == "NotFound" {
			return read{presence: providers.Missing}
		}
		return read{err: errors.New(c.clean("Propel answered a read of a user with HTTP 404 but not its NotFound error: " +
			errorText(resp.Status, resp.Body) + "; is spec.endpoint Propel's API base, such as " + DefaultEndpoint + "?"))}
	}
	if !resp.OK() {
		return read{err: errors.New(c.clean(fmt.Sprintf("Propel answered HTTP %d to a read of a user: %s",
			resp.Status, errorText(resp.Status, resp.Body))))}
	}
	got, err := decodeStored(resp.Body)
	if err != nil {
		return read{err: errors.New(c.clean("Propel's answer to a read of a user could not be read: " + err.Error()))}
	}
	if !c.sameIdentity(l, got) {
		return read{err: errors.New("the answer to a read of a user was about another user (its sourceId, source or language differs)")}
	}
	return read{presence: providers.Found, got: got}
}

// sameIdentity reports whether the user Propel answered is the one looked
// up: its sourceId (a number echoed as one), source and language, where
// the answer names them.
func (c *Client) sameIdentity(l lookup, got stored) bool {
	if v, ok := got.fields["sourceId"]; ok && v != nil {
		if s, _ := text(v); normalizeKey(s) != normalizeKey(l.key) {
			return false
		}
	}
	if s, ok := got.fields["source"].(string); ok && s != "" && s != c.source {
		return false
	}
	if s, ok := got.fields["language"].(string); ok && l.language != "" && !strings.EqualFold(s, l.language) {
		return false
	}
	return true
}
