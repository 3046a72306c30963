package scim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

// Endpoint names, for the metrics.
const (
	EndpointBulk   = "Bulk"
	EndpointCreate = "POST Users"
	EndpointUpdate = "PATCH/PUT Users/{id}"
	EndpointDelete = "DELETE Users/{id}"
	EndpointLookup = "GET Users?filter"
	EndpointRead   = "GET Users/{id}"
	EndpointConfig = "GET ServiceProviderConfig"
)

// inFlight bounds the single calls of one Apply or Read in flight at once.
const inFlight = 4

// vendor describes SCIM servers to the HTTP client.
var vendor = vendorhttp.Vendor{Name: "the SCIM server", ErrorText: errorText}

// policy is how calls are retried: 429s are waited out (Retry-After, else
// 1 s, 2 s, 4 s, ...) for up to six sends, never longer than a minute at a
// time; 5xx and network errors end a call after three sends (an idempotent
// one) or at once (a create).
var policy = vendorhttp.Policy{
	MaxAttempts:       6,
	MaxServerAttempts: 3,
	Backoff:           wait.Backoff{Duration: time.Second, Factor: 2, Cap: 30 * time.Second, Steps: math.MaxInt32},
	MaxWait:           time.Minute,
	MaxBody:           16 << 20,
}

// Client writes users to one SCIM server. It is safe for concurrent use.
type Client struct {
	api   *vendorhttp.Client
	batch int
	opts  Options

	mu sync.Mutex
	// cfg is what the server offers, once read.
	cfg *spConfig
}

var (
	_ providers.Client       = (*Client)(nil)
	_ providers.CreateSafety = (*Client)(nil)
	_ providers.Reader       = (*Client)(nil)
)

func newClient(base, token string, batch int, o Options, cfg providers.Config) *Client {
	return &Client{
		api: &vendorhttp.Client{Base: base, Vendor: vendor, Creds: vendorhttp.Bearer(token), HTTP: cfg.HTTPClient,
			Policy: policy, Header: http.Header{"Accept": {"application/scim+json, application/json"}}, Sleep: cfg.Sleep},
		batch: batch,
		opts:  o,
	}
}

// IdempotentCreates implements providers.CreateSafety.
func (c *Client) IdempotentCreates() (bool, string) {
	return false, "SCIM creates (POST /Users, or POST in /Bulk) are not idempotent: a create whose answer was lost " +
		`is looked up by externalId eq "<key>" before it is sent again, and a 409 uniqueness adopts the existing user`
}

// Identity implements providers.Client: the userName, lower-cased, which
// the server keeps unique without case.
func (c *Client) Identity(u providers.User) string { return strings.ToLower(c.userName(u)) }

// Verify implements providers.Client with a list of one user.
func (c *Client) Verify(ctx context.Context) error {
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodGet, Path: "/Users?startIndex=1&count=1",
		Idempotent: true, Endpoint: EndpointLookup})
	if err != nil {
		return err
	}
	if !resp.OK() {
		return errors.New(c.clean(fmt.Sprintf("the SCIM server answered a list of users with %s; is spec.endpoint the SCIM base URL (…/scim/v2)?",
			errorText(resp.Status, resp.Body))))
	}
	return nil
}

// capabilities reads GET /ServiceProviderConfig once. A server that
// answers none (4xx, or no JSON) offers nothing optional; a failed call
// is not remembered.
func (c *Client) capabilities(ctx context.Context) (spConfig, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg != nil {
		return *c.cfg, nil
	}
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodGet, Path: "/ServiceProviderConfig",
		Idempotent: true, Endpoint: EndpointConfig})
	if err != nil {
		return spConfig{}, err
	}
	var sc spConfig
	if resp.OK() {
		if json.Unmarshal(resp.Body, &sc) != nil {
			sc = spConfig{}
		}
	}
	c.cfg = &sc
	return sc, nil
}

// useBulk reports whether writes go through /Bulk, and its chunk bounds.
func (c *Client) useBulk(sc spConfig) (ops, size int, ok bool) {
	if c.opts.Bulk == BulkNever || !bool(sc.Bulk.Supported) {
		return 0, 0, false
	}
	ops = c.batch
	if sc.Bulk.MaxOperations > 0 {
		ops = min(ops, sc.Bulk.MaxOperations)
	}
	size = sc.Bulk.MaxPayloadSize
	if size <= 0 {
		size = math.MaxInt
	}
	return ops, size, true
}

// noBulk remembers that the server refused /Bulk (501) although its
// configuration offered it.
func (c *Client) noBulk() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg != nil {
		c.cfg.Bulk.Supported = false
	}
}

// lookup finds a user by filter attr eq value: its id, or "" when the
// server answers it holds none (totalResults 0, Resources missing or
// null).
func (c *Client) lookup(ctx context.Context, attr, value string) (string, error) {
	q := url.Values{"filter": {fmt.Sprintf(`%s eq "%s"`, attr, quote(value))}, "startIndex": {"1"}, "count": {"2"}}
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodGet, Path: "/Users?" + q.Encode(),
		Idempotent: true, Endpoint: EndpointLookup})
	if err != nil {
		return "", err
	}
	if !resp.OK() {
		return "", &providers.RecordError{Code: "LookupFailed",
			Message: c.clean(fmt.Sprintf("looking the user up by %s: %s", attr, errorText(resp.Status, resp.Body)))}
	}
	l, err := decodeList(resp.Body)
	if err != nil {
		return "", &providers.RecordError{Code: "LookupFailed", Message: c.clean("reading the lookup's answer: " + err.Error())}
	}
	if l.TotalResults == 0 || len(l.Resources) == 0 {
		return "", nil
	}
	id := idOf(l.Resources[0])
	if id == "" {
		return "", &providers.RecordError{Code: "LookupFailed", Message: "the lookup's answer has a user without id"}
	}
	return id, nil
}

// quote escapes a value for a filter's string literal.
func quote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// clean removes the token from msg and bounds it.
func (c *Client) clean(msg string) string {
	return providers.Truncate(c.api.Creds.Scrub(msg), providers.MaxMessageLength)
}
