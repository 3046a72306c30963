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

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
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
	sleep func(ctx context.Context, d time.Duration) error

	mu sync.Mutex
	// cfg is what the server offers, once read.
	cfg *spConfig
	// learntOps and learntBytes bound the Bulk requests after a 413 that
	// the ServiceProviderConfig did not predict (a proxy's body limit):
	// half the operations of the refused request, and fewer bytes than
	// it; 0 while none was refused.
	learntOps, learntBytes int
}

var (
	_ providers.Client             = (*Client)(nil)
	_ providers.CreateSafety       = (*Client)(nil)
	_ providers.Reader             = (*Client)(nil)
	_ providers.CapabilityReporter = (*Client)(nil)
)

func newClient(base, token string, batch int, o Options, cfg providers.Config) *Client {
	sleep := cfg.Sleep
	if sleep == nil {
		sleep = providers.SleepContext
	}
	return &Client{
		api: &vendorhttp.Client{Base: base, Vendor: vendor, Creds: vendorhttp.Bearer(token), HTTP: cfg.HTTPClient,
			Policy: policy, Header: http.Header{"Accept": {"application/scim+json, application/json"}}, Sleep: cfg.Sleep},
		batch: batch,
		opts:  o,
		sleep: sleep,
	}
}

// ifMatch returns the HTTP client with an If-Match header for version
// (RFC 7644 section 3.14), or the plain one when version is empty.
func (c *Client) ifMatch(version string) *vendorhttp.Client {
	if version == "" {
		return c.api
	}
	api := *c.api
	api.Header = c.api.Header.Clone()
	api.Header.Set("If-Match", version)
	return &api
}

// IdempotentCreates implements providers.CreateSafety.
func (c *Client) IdempotentCreates() (bool, string) {
	return false, "SCIM creates (POST /Users, or POST in /Bulk) are not idempotent: a create whose answer was lost " +
		`is looked up by externalId eq "<key>" before it is sent again, and a 409 uniqueness adopts the existing user`
}

// Identity implements providers.Client: the userName, lower-cased, which
// the server keeps unique without case.
func (c *Client) Identity(u providers.User) string { return strings.ToLower(c.userName(u)) }

// Verify implements providers.Client: it reads the server's
// ServiceProviderConfig again (what Capabilities reports, and what the
// writes use) and lists one user.
func (c *Client) Verify(ctx context.Context) error {
	if _, err := c.readConfig(ctx); err != nil {
		return err
	}
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

// capabilities returns what the server offers, reading GET
// /ServiceProviderConfig the first time.
func (c *Client) capabilities(ctx context.Context) (spConfig, error) {
	c.mu.Lock()
	cfg := c.cfg
	c.mu.Unlock()
	if cfg != nil {
		return *cfg, nil
	}
	return c.readConfig(ctx)
}

// readConfig reads GET /ServiceProviderConfig and remembers it. A server
// that answers none (a 4xx, a 501, or no JSON) offers nothing optional; a
// call that failed (no answer, another 5xx, 429s, refused credentials) is
// not remembered.
func (c *Client) readConfig(ctx context.Context) (spConfig, error) {
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodGet, Path: "/ServiceProviderConfig",
		Idempotent: true, Endpoint: EndpointConfig})
	var ce *vendorhttp.CallError
	switch {
	case errors.As(err, &ce) && ce.Status == http.StatusNotImplemented:
		resp = &vendorhttp.Response{Status: ce.Status}
	case err != nil:
		return spConfig{}, err
	}
	var sc spConfig
	if resp.OK() {
		if json.Unmarshal(resp.Body, &sc) != nil {
			sc = spConfig{}
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cfg = &sc
	return sc, nil
}

// Capabilities implements providers.CapabilityReporter: what the last
// ServiceProviderConfig read said.
func (c *Client) Capabilities() (usersv1.ProviderCapabilities, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cfg == nil {
		return usersv1.ProviderCapabilities{}, false
	}
	sc := c.cfg
	caps := usersv1.ProviderCapabilities{Patch: bool(sc.Patch.Supported), ETag: bool(sc.ETag.Supported),
		Bulk:   usersv1.BulkCapability{Supported: bool(sc.Bulk.Supported)},
		Filter: usersv1.FilterCapability{Supported: bool(sc.Filter.Supported)}}
	if caps.Bulk.Supported {
		caps.Bulk.MaxOperations = clamp32(sc.Bulk.MaxOperations)
		caps.Bulk.MaxPayloadSize = int64(max(sc.Bulk.MaxPayloadSize, 0))
	}
	if caps.Filter.Supported {
		caps.Filter.MaxResults = clamp32(sc.Filter.MaxResults)
	}
	return caps, true
}

func clamp32(n int) int32 { return int32(min(max(n, 0), math.MaxInt32)) }

// useBulk reports whether writes go through /Bulk, and its chunk bounds:
// the server's limits, and what a 413 taught (learnt).
func (c *Client) useBulk(sc spConfig) (ops, size, learnt int, ok bool) {
	if c.opts.Bulk == BulkNever || !bool(sc.Bulk.Supported) {
		return 0, 0, 0, false
	}
	ops = c.batch
	if sc.Bulk.MaxOperations > 0 {
		ops = min(ops, sc.Bulk.MaxOperations)
	}
	size = sc.Bulk.MaxPayloadSize
	if size <= 0 {
		size = math.MaxInt
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	learnt = size
	if c.learntOps > 0 {
		ops = min(ops, c.learntOps)
	}
	if c.learntBytes > 0 {
		learnt = min(size, c.learntBytes)
	}
	return ops, size, learnt, true
}

// learn halves the Bulk requests after one of ops operations and size
// bytes got a 413: at most half the operations, and fewer bytes.
func (c *Client) learn(ops, size int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ops, size = max(ops/2, 1), max(size-1, 1)
	if c.learntOps == 0 || ops < c.learntOps {
		c.learntOps = ops
	}
	if c.learntBytes == 0 || size < c.learntBytes {
		c.learntBytes = size
	}
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

// stored is a user as the server answered it.
type stored struct {
	id string
	// body is the user's attributes, names as the server spells them.
	body map[string]any
	// version is its ETag (the ETag header, else meta.version); "" when
	// the server versions nothing.
	version string
}

// storedOf reads a user answer; ok is false without an id.
func storedOf(raw []byte, etag string) (*stored, bool) {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return nil, false
	}
	u := &stored{body: m, version: etag}
	for k, v := range m {
		switch strings.ToLower(k) {
		case "id":
			u.id, _ = v.(string)
		case "meta":
			for mk, mv := range asMap(v) {
				if s, ok := mv.(string); ok && strings.EqualFold(mk, "version") && u.version == "" {
					u.version = s
				}
			}
		}
	}
	return u, u.id != ""
}

// lookup finds a user by filter attr eq value, or nil when the server
// answers it holds none (totalResults 0, Resources missing or null). A
// server that refuses the filter answers a RecordError with Code
// invalidFilter.
func (c *Client) lookup(ctx context.Context, attr, value string) (*stored, error) {
	q := url.Values{"filter": {fmt.Sprintf(`%s eq "%s"`, attr, quote(value))}, "startIndex": {"1"}, "count": {"2"}}
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodGet, Path: "/Users?" + q.Encode(),
		Idempotent: true, Endpoint: EndpointLookup})
	if err != nil {
		return nil, err
	}
	if !resp.OK() {
		code := "LookupFailed"
		if se := decodeError(resp.Body); resp.Status == http.StatusBadRequest && strings.EqualFold(se.ScimType, "invalidFilter") {
			code = "invalidFilter"
		}
		return nil, &providers.RecordError{Code: code,
			Message: c.clean(fmt.Sprintf("looking the user up by %s: %s", attr, errorText(resp.Status, resp.Body)))}
	}
	l, err := decodeList(resp.Body)
	if err != nil {
		return nil, &providers.RecordError{Code: "LookupFailed", Message: c.clean("reading the lookup's answer: " + err.Error())}
	}
	if l.TotalResults == 0 || len(l.Resources) == 0 {
		return nil, nil
	}
	u, ok := storedOf(l.Resources[0], "")
	if !ok {
		return nil, &providers.RecordError{Code: "LookupFailed", Message: "the lookup's answer has a user without id"}
	}
	return u, nil
}

// find looks a user up by externalId eq "<key>", or by userName when the
// server refuses to filter on externalId, or when byUserName is set and
// no user has the externalId (a conflict on userName).
func (c *Client) find(ctx context.Context, key, userName string, byUserName bool) (*stored, error) {
	u, err := c.lookup(ctx, "externalId", key)
	var re *providers.RecordError
	refused := errors.As(err, &re) && re.Code == "invalidFilter"
	if (refused || (err == nil && u == nil && byUserName)) && userName != "" {
		return c.lookup(ctx, "userName", userName)
	}
	return u, err
}

// get reads a user by id: the user, or the answer to report (a 404, an
// error).
func (c *Client) get(ctx context.Context, id string) (*stored, *answer) {
	resp, err := c.api.Do(ctx, vendorhttp.Request{Method: http.MethodGet, Path: "/Users/" + url.PathEscape(id),
		Idempotent: true, Endpoint: EndpointRead})
	switch {
	case err != nil:
		return nil, &answer{err: err}
	case !resp.OK():
		return nil, &answer{status: resp.Status, body: resp.Body}
	}
	u, ok := storedOf(resp.Body, resp.Header.Get("ETag"))
	if !ok {
		return nil, &answer{err: &providers.RecordError{Code: "ReadFailed",
			Message: "the SCIM server's answer to a read of the user could not be read"}}
	}
	return u, nil
}

// quote escapes a value for a filter's string literal.
func quote(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s)
}

// clean removes the token from msg and bounds it.
func (c *Client) clean(msg string) string {
	return providers.Truncate(c.api.Creds.Scrub(msg), providers.MaxMessageLength)
}
