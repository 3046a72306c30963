// Package usercom writes users to the public REST API of a User.com app
// (https://<app>.user.com/api/public/). An emulator of that API, for tests
// and the demo, is the package usercom/emulator.
//
// Authentication. Every request carries "Authorization: Token <key>" with
// the key the provider's credentialsRef selects, and "Accept: */*;
// version=2". An answer of 401 or 403 is reported as a
// *providers.AuthError; the key never appears in an error.
//
// Identity. A user is found again by its custom_id, which is the user's
// key. User.com's own integer id is the record's ExternalID.
//
// Writes. User.com has no bulk upsert. POST users/update_or_create/ upserts
// one user keyed on custom_id, which makes it safe to repeat, and takes the
// standard fields and (assumed: user.com documents the standard fields
// only) the custom attributes as top-level keys. POST
// users/mass_update_custom_attributes/ sets one attribute to one value for
// many users by user.com id (user.com's reference names PUT, its example
// POST; the client uses POST), and POST users/{id}/set_multiple_attributes/
// sets several attributes of one user.
//
// Memory. The engine sends every changed user with its full desired state
// but not its previous one, so the client keeps in memory, per custom_id,
// what it last wrote successfully: the user.com id, the standard fields and
// the custom attribute values. A change needs an upsert when the client has
// no entry for the user, the engine knows no ExternalID or another one than
// the entry's, or a standard field differs (email, first_name, last_name,
// and the other user.com standard fields such as phone_number when they are
// set as attributes). Otherwise only the attributes that differ from the
// entry are written, and Pack packs those of all users into as few mass and
// per-user calls as it can find. After an operator restart, or with a new
// Client, the memory is empty and the first change of every user upserts it
// in full: correctness never depends on the memory, only the number of
// calls does. An entry is dropped whenever a write may or may not have been
// applied, when user.com no longer knows the user, and when the user is
// deleted; the memory holds one small entry per user written. The client
// trusts it: a value changed by hand in user.com is overwritten only when
// the spec changes that attribute, or after a restart.
//
// Values. Attribute values are sent with their JSON type: booleans as
// booleans, whole numbers as integers (5, never 5.0), other numbers as
// floats, strings as strings. A date or datetime stays a string
// ("2024-05-01", RFC 3339), which user.com is taken to parse for date and
// datetime attributes. An attribute removed from a user's spec is cleared
// by writing null (assumed to clear it), when the client remembers writing
// it; after a restart it is left at user.com. An email removed from the
// spec is left too: the upsert leaves out an empty email. Custom
// attributes must be defined in the user.com app: a value for an undefined
// one fails the records that carry it permanently, with reason
// UnknownAttribute.
//
// Correlation. Every upsert and per-user call carries one user, and a mass
// call's outcome applies to all its ids, so results are matched by
// construction, never by the order of an answer. A record succeeds only
// when every call that carried a piece of it succeeded. A mass call that
// user.com refuses for some of its ids (more than it takes, or users it no
// longer knows) is sent again without them, or in halves.
//
// Retries. The calls go through vendorhttp with user.com's policy. User.com
// documents no rate limits. A 429 is waited out (Retry-After, else 1 s,
// 2 s, 4 s, ...) for up to five attempts; 5xx answers and network errors
// end a call after three attempts, which every call the client makes
// tolerates, and are then reported as transient, and as uncertain when the
// request may have been applied. A sync whose context ends reports the
// changes it did not finish as transient, reason Cancelled.
//
// Deletes. DELETE users-by-id/{custom_id}/ deletes a user; a 404 means it is
// already gone and counts as deleted.
//
// Reads. For drift detection (providers.Reader) GET
// users-by-id/{custom_id}/ reads one user a call, four in flight, and
// compares what the client writes with what user.com holds: emails without
// case, numbers by value whether stored as numbers or numeric strings,
// booleans with "true"/"false", dates and datetimes as instants, an absent
// value like an empty one; an email the spec leaves empty, undeclared
// attributes and fields user.com adds are not compared. Only user.com's
// 404 ({"detail": ...}) makes a user Missing.
package usercom

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
)

const (
	// MaxBatch is the default number of ids of one mass call. User.com
	// documents no maximum; 100 matches its page size and is a safe
	// default.
	MaxBatch = 100
	// MaxBatchLimit caps providers.Config.BatchSize.
	MaxBatchLimit = 1000
	// apiPath is where user.com serves its public API on the app's host.
	apiPath = "/api/public/"
)

// Factory builds User.com clients.
type Factory struct{}

var _ providers.Factory = Factory{}

// DefaultEndpoint implements providers.Factory: user.com has no shared
// endpoint, every app has its own, so spec.endpoint is required.
func (Factory) DefaultEndpoint() string { return "" }

// MaxBatchSize implements providers.Factory: the ids of one mass call.
func (Factory) MaxBatchSize() int { return MaxBatch }

// DefaultRateLimit implements providers.Factory. User.com documents no rate
// limit; 10 requests per second is an assumption, and the client backs off
// on 429 answers whatever the budget.
func (Factory) DefaultRateLimit() (int, time.Duration) { return 10, time.Second }

// New implements providers.Factory. It makes no network call.
//
// The endpoint is the app's API base, https://<app>.user.com/api/public/;
// its trailing slash, which user.com requires, is added when missing, and
// a bare https://<app>.user.com gets the /api/public/ path. BatchSize
// overrides the ids per mass call, up to MaxBatchLimit.
func (Factory) New(cfg providers.Config) (providers.Client, error) {
	base, err := normalizeEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	token := strings.TrimSpace(string(cfg.Credentials["token"]))
	if token == "" {
		return nil, fmt.Errorf("%w: the API key in the Secret (the key credentialsRef selects) is empty", providers.ErrInvalidConfig)
	}
	batch := cfg.BatchSize
	if batch <= 0 {
		batch = MaxBatch
	}
	batch = min(batch, MaxBatchLimit)
	return &Client{
		api:   newAPI(base, token, cfg),
		batch: batch,
		cache: map[string]*entry{},
	}, nil
}

// normalizeEndpoint checks the endpoint and returns it ending in exactly
// one slash.
func normalizeEndpoint(endpoint string) (string, error) {
	endpoint = strings.TrimSpace(endpoint)
	if endpoint == "" {
		return "", fmt.Errorf("%w: spec.endpoint is required for UserCom: https://<app>.user.com/api/public/", providers.ErrInvalidConfig)
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("%w: endpoint %q is not an absolute URL such as https://<app>.user.com/api/public/", providers.ErrInvalidConfig, endpoint)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%w: endpoint %q must not carry a query, fragment or user info", providers.ErrInvalidConfig, u.Redacted())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	if u.Path == "" {
		u.Path = apiPath
	} else {
		u.Path += "/"
	}
	u.RawPath = ""
	return u.String(), nil
}
