// Package propel writes users to Propeller's REST v2 API ("Propel",
// api.helice.cloud), and holds an emulator of that API for tests and the
// demo.
//
// Authentication. The client runs the OAuth 2.0 client-credentials grant
// against the token URL with the client secret (the Secret key the
// provider's credentialsRef selects) and the client id (the key named by
// propel.clientIDKey, "clientId" by default), sent as form fields. The token is cached until shortly
// before it expires; an API answer of 401 drops it, and the request is sent
// once more with a fresh one. A token endpoint that refuses the credentials
// is reported as a *providers.AuthError.
//
// Writes. Creates and updates go to POST /users/bulk/sourceId, an upsert on
// the natural key (source, sourceId, language): source is the provider's
// "source" option and sourceId the user's key. Even when the engine knows the
// Propel id, the client does not use /users/bulk/id: for an id Propel does
// not know, that endpoint creates a user whose id is undocumented, so a
// retried call could duplicate the user, while an upsert by sourceId is safe
// to repeat. Attributes named like a Propel user field (debtorId, gender,
// phone, ...) are written to that field; the others become Propel user
// attributes. Fields left empty are not sent, so Propel keeps what it has.
// Since Propel matches on language too, changing a user's "language"
// attribute makes Propel create a second user with that sourceId. As every
// write is an upsert, a change sent again with Retry set needs no lookup.
//
// Correlation. Every item of a bulk answer is matched to its record by its
// key (the sourceId, which Propel may echo as a number), never by its
// position. A record Propel's answer does not mention is reported as
// uncertain, and the engine sends it again.
//
// Bad records. Propel refuses a whole call with 400 when one record breaks
// its schema, and is taken to write none of it. Messages that point at a
// record ("#/users/3: ...") fail that record, and the rest of the call is
// sent again; without pointers the call is split in halves until the bad
// records are alone, so k bad records among n cost O(k·log n) extra calls.
//
// Retries. The calls go through vendorhttp, with Propel's policy. Propel
// documents no rate limits. 429 answers are retried with exponential backoff
// (or Retry-After) up to five sends, 5xx answers and network errors up to
// three, which the upsert makes safe; a call that still fails reports its
// records as transient, and as uncertain when it may have been applied.
//
// Deletes. Propel documents no endpoint that deletes or archives a user, so
// a delete is failed permanently with the reason "Unsupported" rather than
// pretending it happened: the user must be removed in Propel by hand, or the
// UserSync must use deletionPolicy: Orphan.
//
// Reads. For drift detection (providers.Reader) GET
// /users/sourceId/{sourceId}?source={source} (with &language= for a user
// that declares a language) reads one user a call, four in flight, and
// compares what the client writes with what Propel holds: emails without
// case, numbers by value whether stored as numbers or numeric strings,
// booleans with "true"/"false", dates as instants, an absent value like an
// empty one; fields left empty (which are not written), undeclared
// attributes and fields Propel adds are not compared. Only Propel's 404
// NotFound (code 10008) makes a user Missing. An account that answers a
// read with 403 refuses reads (providers.ReadRefusal): verification is
// then off for the provider, and the client reads no more.
package propel

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

const (
	// DefaultEndpoint is Propel's public REST v2 base URL.
	DefaultEndpoint = "https://api.helice.cloud/v2"
	// MaxBatch is the largest number of users the client sends in one bulk
	// call. Propel documents no maximum; 100 is a safe default.
	MaxBatch = 100
	// DefaultSource is the source written with every user when the provider
	// sets no "source" option.
	DefaultSource = "usersync-operator"

	// Credential keys of the provider's Secret.
	CredClientID     = "clientId"
	CredClientSecret = "clientSecret"

	// tokenPath is the token endpoint on the endpoint's host.
	tokenPath = "/oauth2/token"
	// pathBulkSourceID is the bulk upsert by source and sourceId.
	pathBulkSourceID = "/users/bulk/sourceId"
)

// Factory builds Propel clients.
type Factory struct{}

var _ providers.Factory = Factory{}

// DefaultEndpoint implements providers.Factory.
func (Factory) DefaultEndpoint() string { return DefaultEndpoint }

// MaxBatchSize implements providers.Factory. Propel documents no maximum;
// 100 is the safe default.
func (Factory) MaxBatchSize() int { return MaxBatch }

// DefaultRateLimit implements providers.Factory. Propel documents no rate
// limit; 10 requests per second is an assumption, and the client backs off
// on 429 answers whatever the budget.
func (Factory) DefaultRateLimit() (int, time.Duration) { return 10, time.Second }

// New implements providers.Factory. It makes no network call.
func (Factory) New(cfg providers.Config) (providers.Client, error) {
	endpoint := cfg.Endpoint
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	base, err := absoluteURL(endpoint)
	if err != nil {
		return nil, fmt.Errorf("%w: endpoint %q is not an absolute URL", providers.ErrInvalidConfig, endpoint)
	}
	var opts usersv1.PropelOptions
	if cfg.Spec.Propel != nil {
		opts = *cfg.Spec.Propel
	}
	idKey := opts.ClientIDKey
	if idKey == "" {
		idKey = CredClientID
	}
	id := strings.TrimSpace(string(cfg.Credentials[idKey]))
	if id == "" {
		return nil, fmt.Errorf("%w: the Secret has no %s key (the client id), or it is empty", providers.ErrInvalidConfig, idKey)
	}
	// The key credentialsRef selects holds the client secret.
	secret := strings.TrimSpace(string(cfg.Credentials["token"]))
	if secret == "" {
		secret = strings.TrimSpace(string(cfg.Credentials[CredClientSecret]))
	}
	if secret == "" {
		return nil, fmt.Errorf("%w: the Secret key credentialsRef selects (the client secret) is empty", providers.ErrInvalidConfig)
	}
	source := opts.Source
	if source == "" {
		source = DefaultSource
	}
	tokenURL := opts.TokenURL
	if tokenURL == "" {
		tokenURL = base.Scheme + "://" + base.Host + tokenPath
	} else if _, err := absoluteURL(tokenURL); err != nil {
		return nil, fmt.Errorf("%w: propel.tokenURL %q is not an absolute URL", providers.ErrInvalidConfig, tokenURL)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	batch := cfg.BatchSize
	if batch <= 0 || batch > MaxBatch {
		batch = MaxBatch
	}
	tokens := newTokenSource(tokenURL, id, secret, hc, cfg.Sleep)
	return &Client{
		api: &vendorhttp.Client{
			Base:   strings.TrimRight(base.String(), "/"),
			Vendor: apiVendor,
			Creds:  tokens,
			HTTP:   hc,
			Policy: policy,
			Sleep:  cfg.Sleep,
		},
		source: source,
		batch:  batch,
		tokens: tokens,
	}, nil
}

// absoluteURL parses s and requires a scheme and a host.
func absoluteURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("%q has no scheme or host", s)
	}
	return u, nil
}
