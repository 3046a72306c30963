// Package hubspot writes users to HubSpot's CRM v3 `users` object through its
// batch endpoints. An emulator of that API, for tests and the demo, is in
// package hubspot/emulator.
//
// Packing. A call carries at most 100 inputs (HubSpot's batch limit). With an
// idProperty every create and update goes to batch/upsert keyed on it, which
// is idempotent and safe to retry. Without one, known users (an externalID)
// go to batch/update by record id, new users to batch/create, and deletions
// to batch/archive.
//
// Adoption. Without an idProperty a create is not idempotent, and the
// status that remembers which users were created can be lost (a UserSync
// deleted under Orphan and applied again, a cluster rebuilt from Git). So,
// unless spec.hubspot.adoption is Never, users without an external id are
// first looked up by email, 100 to a call: the users found are adopted
// (updated to the declared values by id, action Adopted; of several with
// one email, the oldest) and only the others are created. A first sync of N
// users costs ⌈N/100⌉ lookups + ⌈new/100⌉ creates + ⌈adopted/100⌉ updates.
//
// Lookups. Where the portal's hs_email has unique values, HubSpot reads
// users by it (batch/read with idProperty hs_email), from the record store:
// a user it does not return does not exist. Otherwise (the read is refused
// with 400, learnt once per client) lookups search, 4 a second (HubSpot's
// search budget, apart from spec.rateLimit), and search trails creates: after
// a create whose answer was lost, a search that finds nothing is trusted only
// once spec.hubspot.searchIndexDelay has passed since the create may have
// been sent (Change.RetrySince); until then the record waits, Pending with
// reason AwaitingIndex, and nothing is created.
//
// Correlation. Every input carries objectWriteTraceId = Change.ID; results and
// errors are matched back by it and never by array order. Where HubSpot
// leaves the trace id out, a result is matched by its id, its idProperty
// value or its email, and a change with no match is reported as uncertain so
// the engine retries it with a lookup first.
//
// Retries. A create is never repeated blindly: after a lost response the
// engine resends the change with Retry set, and the client then looks it up by
// email before creating. Calls are sent with vendorhttp: 429, 423 and 477
// are waited out on every endpoint (Retry-After, the rate-limit headers, or
// HubSpot's documented pauses; the daily limit is not waited for), 5xx and
// lost answers are resent on the idempotent endpoints only (upsert, update,
// archive, read, search, list); on batch/create they are reported as
// uncertain instead.
//
// Bad records. A per-record error in a 207 fails that record only. A whole
// call refused with 400 is split in halves until the bad records are alone,
// so k bad records among n cost O(k·log n) extra calls.
package hubspot

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"golang.org/x/time/rate"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

const (
	// DefaultEndpoint is HubSpot's public API.
	DefaultEndpoint = "https://api.hubapi.com"
	// MaxBatch is the inputs HubSpot accepts in one batch call.
	MaxBatch = 100

	// Properties the standard user fields are written to.
	PropEmail     = "hs_email"
	PropFirstName = "hs_given_name"
	PropLastName  = "hs_family_name"

	// Values of spec.hubspot.idValueFrom.
	IDFromKey   = "Key"
	IDFromEmail = "Email"

	// DefaultSearchIndexDelay is how long HubSpot's search may trail a
	// create unless spec.hubspot.searchIndexDelay says otherwise. HubSpot
	// publishes no figure: integrators report "several seconds" (e.g. the
	// Locoia connector's notes on HubSpot search propagation); a minute
	// leaves a wide margin and only delays the recovery of an uncertain
	// create, which is rare.
	DefaultSearchIndexDelay = time.Minute
	// SearchRate is HubSpot's budget for the CRM search endpoints: 4
	// requests a second per token (developer changelog, "CRM Search API
	// Rate Limit Increase"), apart from the ten-second limit.
	SearchRate = 4

	// Scopes the operator needs.
	ScopeRead  = "crm.objects.users.read"
	ScopeWrite = "crm.objects.users.write"
)

// DefaultScopes are the scopes a private app needs for the operator.
var DefaultScopes = []string{ScopeRead, ScopeWrite}

// Factory builds HubSpot clients.
type Factory struct{}

var _ providers.Factory = Factory{}

// DefaultEndpoint implements providers.Factory.
func (Factory) DefaultEndpoint() string { return DefaultEndpoint }

// MaxBatchSize implements providers.Factory.
func (Factory) MaxBatchSize() int { return MaxBatch }

// DefaultRateLimit is the Free/Starter budget, the lowest documented one:
// 100 requests per 10 seconds.
func (Factory) DefaultRateLimit() (int, time.Duration) { return 100, 10 * time.Second }

// New implements providers.Factory. It makes no network call.
func (Factory) New(cfg providers.Config) (providers.Client, error) {
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("%w: endpoint %q is not an absolute URL", providers.ErrInvalidConfig, endpoint)
	}
	token := strings.TrimSpace(string(cfg.Credentials["token"]))
	if token == "" {
		return nil, fmt.Errorf("%w: the token in the Secret is empty", providers.ErrInvalidConfig)
	}
	var opts usersv1.HubSpotOptions
	if cfg.Spec.HubSpot != nil {
		opts = *cfg.Spec.HubSpot
	}
	c := &Client{
		api: &vendorhttp.Client{
			Base:   strings.TrimRight(u.String(), "/") + "/crm/v3/objects/users",
			Vendor: vendor,
			Creds:  vendorhttp.Bearer(token),
			HTTP:   cfg.HTTPClient,
			Policy: policy(),
			Sleep:  cfg.Sleep,
		},
		batch:      cfg.BatchSize,
		idProperty: opts.IDProperty,
		idFrom:     opts.IDValueFrom,
		adopt:      opts.Adoption != usersv1.HubSpotAdoptNever,
		indexDelay: DefaultSearchIndexDelay,
		now:        cfg.Now,
		searches:   rate.NewLimiter(SearchRate, 1),
	}
	if opts.SearchIndexDelay != nil {
		if opts.SearchIndexDelay.Duration < 0 {
			return nil, fmt.Errorf("%w: hubspot.searchIndexDelay must not be negative", providers.ErrInvalidConfig)
		}
		c.indexDelay = opts.SearchIndexDelay.Duration
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.batch <= 0 || c.batch > MaxBatch {
		c.batch = MaxBatch
	}
	switch c.idFrom {
	case "":
		c.idFrom = IDFromKey
	case IDFromKey, IDFromEmail:
	default:
		return nil, fmt.Errorf("%w: hubspot.idValueFrom must be Key or Email, not %q", providers.ErrInvalidConfig, c.idFrom)
	}
	switch opts.Adoption {
	case "", usersv1.HubSpotAdoptByEmail, usersv1.HubSpotAdoptNever:
	default:
		return nil, fmt.Errorf("%w: hubspot.adoption must be Email or Never, not %q", providers.ErrInvalidConfig, opts.Adoption)
	}
	if c.idProperty == "" && opts.IDValueFrom != "" {
		return nil, fmt.Errorf("%w: hubspot.idValueFrom needs hubspot.idProperty", providers.ErrInvalidConfig)
	}
	return c, nil
}

// IdempotentCreates implements providers.CreateSafety: with an idProperty
// every write is an upsert on it; without one batch/create is not idempotent.
func (c *Client) IdempotentCreates() (bool, string) {
	if c.idProperty != "" {
		return true, "users are written with batch/upsert on the unique property " + c.idProperty
	}
	why := "without hubspot.idProperty HubSpot's batch/create is not idempotent: a create whose answer is lost, " +
		"or a lost status, could make a user twice; "
	if c.adopt {
		why += "the operator looks users up by email before creating them (adoption: Email), and after an uncertain create. "
	} else {
		why += "adoption is Never, so users are created without looking: a lost status creates every user again. "
	}
	return false, why + "Create a HubSpot user property with unique values and set it as spec.hubspot.idProperty to make every write an upsert."
}

// Identity implements providers.Client: the idProperty value, or the
// lower-cased email without an idProperty.
func (c *Client) Identity(u providers.User) string {
	if c.idProperty != "" && c.idFrom == IDFromKey {
		return u.Key
	}
	return strings.ToLower(u.Email)
}

// idValue is the value written to the idProperty.
func (c *Client) idValue(u providers.User) string {
	if c.idFrom == IDFromEmail {
		return strings.ToLower(u.Email)
	}
	return u.Key
}

// properties maps a user to HubSpot properties. Attributes are written to
// the property of the same name; HubSpot takes every value as a string.
// Empty names are sent as "" so that a name removed from the spec is cleared
// (HubSpot: "an empty string clears a property").
func (c *Client) properties(u providers.User) map[string]string {
	p := make(map[string]string, len(u.Attributes)+4)
	for k, v := range u.Attributes {
		p[k] = providers.Scalar(v)
	}
	if u.Email != "" {
		p[PropEmail] = u.Email
	}
	p[PropFirstName] = u.FirstName
	p[PropLastName] = u.LastName
	if c.idProperty != "" {
		if v := c.idValue(u); v != "" {
			p[c.idProperty] = v
		}
	}
	return p
}
