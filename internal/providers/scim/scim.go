// Package scim writes users to any SCIM 2.0 service provider (RFC 7643 /
// 7644): Slack, GitHub Enterprise, Zoom, Atlassian, AWS IAM Identity
// Center, HCP Terraform, IBM Verify, Webex and others. An emulator of a SCIM
// server, with the profiles of real ones, is the package scim/emulator.
//
// Authentication. Every request carries "Authorization: Bearer <token>"
// with the token the provider's credentialsRef selects. 401 and 403 are
// reported as a *providers.AuthError; the token never appears in an error.
//
// Identity. A user's key is its externalId; userName is its email (or the
// key, with UserName Key) and is unique on the server without case, so
// Identity is the userName, lower-cased. The server's id is the record's
// ExternalID.
//
// Mapping. email → userName and emails[{value, type: work, primary:
// true}]; firstName/lastName → name.givenName/familyName and displayName;
// attributes named like a singular core attribute (displayName, nickName,
// title, userType, preferredLanguage, locale, timezone, profileUrl, active;
// without case) go to the core, "enterprise.<name>" (employeeNumber,
// costCenter, organization, division, department) to the enterprise
// extension, and, with Options.ExtensionSchema, any other attribute named
// like a SCIM attribute to that extension, keeping its JSON type. Without
// it such an attribute fails its record permanently with reason
// InvalidSpec, naming it. A user is active unless its active attribute is
// false.
//
// Capabilities. GET /ServiceProviderConfig is read by Verify (whenever the
// engine checks the provider) and before the first write; a server that
// answers none (a 4xx, 501, or no JSON) offers nothing optional.
// Capabilities reports it for the provider's status.capabilities.
//
// Writes with Bulk (offered and Options.Bulk Auto): POST /Bulk in requests
// of at most min(maxOperations, batch size) operations and maxPayloadSize
// bytes, measured on the encoded body, packed greedily in order. Every
// operation carries a bulkId ("w<n>", no user data), and results are
// matched by bulkId, never by position; failOnErrors is unset. Per
// operation: 2xx is success (the id from location or the response); 400
// and other 4xx fail the record permanently with the server's detail and
// scimType; 409 on a create looks the user up (by externalId, then
// userName) and adopts it; 429, 5xx, an unreadable status, or an operation
// the answer leaves out are sent again, those operations only, up to three
// sends, 1 s and 2 s apart, a create that may have been carried out (5xx,
// unanswered) being looked up first. A 413 the configuration did not
// predict (a proxy's limit) settles the operations its body reports, if
// any, sends the others again in halves, and halves the later requests of
// this client. A lost answer (no answer, a 5xx for the whole request) is
// never resent: its records are uncertain, and the engine sends them again
// with Change.Retry, which looks each create up first.
//
// Writes without Bulk: POST /Users; an update reads the user (GET
// /Users/{id}, unless a lookup just did: the client stores no ETag) and
// PATCHes one replace per declared attribute that differs (minimal
// operations) when patch is offered, or PUTs the user as read with the
// declared attributes laid over it, and writes nothing when the user is as
// declared; with ETags offered the write carries If-Match with the version
// read, and a 412 reads again and retries once. Deletions are DELETE or
// PATCH active=false (PUT of the user as read without patch). Four calls
// in flight under the engine's rate limit.
//
// Creates are not idempotent. A create with Change.Retry is looked up by
// externalId eq "<key>" first (by userName where the server refuses that
// filter) and updated (adopted) when found. Updates and deletions without
// a known id are looked up the same way; an update whose user is gone
// (404) creates it again.
//
// Deletion. With Deprovision Deactivate (the default) a removed user is
// PATCHed active=false; with Delete it is DELETEd. A 404 is a success.
package scim

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
)

const (
	// MaxBatch is the default number of operations of one Bulk call, the
	// maxOperations of the servers we know (Webex).
	MaxBatch = 100
	// MaxBatchLimit caps providers.Config.BatchSize (IBM Verify takes
	// 1,000).
	MaxBatchLimit = 1000
)

// BulkMode says whether /Bulk is used.
type BulkMode string

// UserNameSource says what goes into userName.
type UserNameSource string

// Deprovision says what a removed user becomes.
type Deprovision string

// Values of the options (spec.scim).
const (
	BulkAuto  BulkMode = "Auto"
	BulkNever BulkMode = "Never"

	UserNameEmail UserNameSource = "Email"
	UserNameKey   UserNameSource = "Key"

	DeprovisionDeactivate Deprovision = "Deactivate"
	DeprovisionDelete     Deprovision = "Delete"
)

// Options are the provider's spec.scim. The zero value means the defaults:
// Bulk Auto, UserName Email, Deprovision Deactivate.
type Options struct {
	// Bulk Auto uses /Bulk when the server offers it; Never always sends
	// one call per user.
	Bulk BulkMode
	// UserName Email puts the email into userName (the key when a user has
	// no email); Key puts the key.
	UserName UserNameSource
	// Deprovision Deactivate PATCHes active=false on a removed user; Delete
	// DELETEs it.
	Deprovision Deprovision
	// ExtensionSchema, when set, is the URN of the custom User extension
	// that receives the attributes that are neither core nor enterprise.
	ExtensionSchema string
}

// withDefaults fills the unset options and checks the others.
func (o Options) withDefaults() (Options, error) {
	if o.Bulk == "" {
		o.Bulk = BulkAuto
	}
	if o.UserName == "" {
		o.UserName = UserNameEmail
	}
	if o.Deprovision == "" {
		o.Deprovision = DeprovisionDeactivate
	}
	switch {
	case o.Bulk != BulkAuto && o.Bulk != BulkNever:
		return o, fmt.Errorf("%w: spec.scim.bulk %q is not Auto or Never", providers.ErrInvalidConfig, o.Bulk)
	case o.UserName != UserNameEmail && o.UserName != UserNameKey:
		return o, fmt.Errorf("%w: spec.scim.userName %q is not Email or Key", providers.ErrInvalidConfig, o.UserName)
	case o.Deprovision != DeprovisionDeactivate && o.Deprovision != DeprovisionDelete:
		return o, fmt.Errorf("%w: spec.scim.deprovision %q is not Delete or Deactivate", providers.ErrInvalidConfig, o.Deprovision)
	case o.ExtensionSchema != "" && !extensionURN.MatchString(o.ExtensionSchema):
		return o, fmt.Errorf("%w: spec.scim.extensionSchema %q is not a URN such as urn:example:params:scim:schemas:extension:acme:2.0:User",
			providers.ErrInvalidConfig, o.ExtensionSchema)
	case strings.EqualFold(o.ExtensionSchema, schemaUser) || strings.EqualFold(o.ExtensionSchema, schemaEnterprise):
		return o, fmt.Errorf("%w: spec.scim.extensionSchema must be a custom extension's URN, not %s", providers.ErrInvalidConfig, o.ExtensionSchema)
	}
	return o, nil
}

// extensionURN is what spec.scim.extensionSchema must look like (the CRD
// checks the same): urn:<namespace id>:<specific string>.
var extensionURN = regexp.MustCompile(`^(?i:urn):[A-Za-z0-9][A-Za-z0-9-]{0,31}:\S+$`)

// Factory builds SCIM clients.
type Factory struct {
	// Options, when not nil, replaces the options read from the provider's
	// spec (SpecOptions): tests set it.
	Options *Options
}

var _ providers.Factory = Factory{}

// DefaultEndpoint implements providers.Factory: every SCIM server has its
// own base URL, so spec.endpoint is required.
func (Factory) DefaultEndpoint() string { return "" }

// MaxBatchSize implements providers.Factory: operations of one Bulk call.
func (Factory) MaxBatchSize() int { return MaxBatch }

// DefaultRateLimit implements providers.Factory: Slack's SCIM write budget,
// 600 a minute, the tightest documented; the client waits out 429s
// whatever the budget.
func (Factory) DefaultRateLimit() (int, time.Duration) { return 600, time.Minute }

// New implements providers.Factory. It makes no network call.
func (f Factory) New(cfg providers.Config) (providers.Client, error) {
	base, err := normalizeEndpoint(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	token := strings.TrimSpace(string(cfg.Credentials["token"]))
	if token == "" {
		return nil, fmt.Errorf("%w: the bearer token in the Secret (the key credentialsRef selects) is empty", providers.ErrInvalidConfig)
	}
	o := SpecOptions(cfg)
	if f.Options != nil {
		o = *f.Options
	}
	if o, err = o.withDefaults(); err != nil {
		return nil, err
	}
	batch := cfg.BatchSize
	if batch <= 0 {
		batch = MaxBatch
	}
	return newClient(base, token, min(batch, MaxBatchLimit), o, cfg), nil
}

// SpecOptions reads the options from the provider's spec.scim (absent:
// the defaults).
func SpecOptions(cfg providers.Config) Options {
	o := cfg.Spec.SCIM
	if o == nil {
		return Options{}
	}
	return Options{Bulk: BulkMode(o.Bulk), UserName: UserNameSource(o.UserName), Deprovision: Deprovision(o.Deprovision),
		ExtensionSchema: o.ExtensionSchema}
}

// normalizeEndpoint checks the SCIM base URL and returns it without a
// trailing slash.
func normalizeEndpoint(endpoint string) (string, error) {
	endpoint = strings.TrimSpace(endpoint)
	if endpoint == "" {
		return "", fmt.Errorf("%w: spec.endpoint is required for SCIM: the server's SCIM base URL, such as https://example.com/scim/v2", providers.ErrInvalidConfig)
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", fmt.Errorf("%w: endpoint %q is not an absolute URL such as https://example.com/scim/v2", providers.ErrInvalidConfig, endpoint)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%w: endpoint %q must not carry a query, fragment or user info", providers.ErrInvalidConfig, u.Redacted())
	}
	return strings.TrimRight(u.String(), "/"), nil
}
