// Package providers defines the contract between the sync engine and the
// vendor packages (hubspot, propel, usercom, ...), and the registry that maps
// a provider's spec.type to the vendor package that implements it.
//
// The shape follows external-secrets: a Factory validates a provider's
// configuration and builds a Client from its credentials; a Client talks to
// one vendor account. The engine never sees vendor wire types, and a vendor
// package never sees Kubernetes objects.
package providers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// Op is what the engine asks a vendor to do with one record.
type Op string

const (
	// OpCreate asks for a user the engine has no vendor id for. A Client that
	// can upsert by a unique property does so; otherwise it creates.
	OpCreate Op = "Create"
	// OpUpdate asks to overwrite the fields of a user whose vendor id is known
	// (Change.ExternalID), or which the vendor can find by its unique property.
	OpUpdate Op = "Update"
	// OpDelete asks to delete (or archive, where the vendor only archives) a
	// user. Deleting a user that does not exist is a success.
	OpDelete Op = "Delete"
)

// User is the desired state of one user, as declared in a UserSync.
type User struct {
	// Key is the stable identity of the user inside its UserSync.
	Key string
	// Email, FirstName and LastName are empty when not declared.
	Email     string
	FirstName string
	LastName  string
	// Attributes maps an attribute name to a JSON scalar: string, float64
	// (every JSON number), or bool.
	Attributes map[string]any
}

// Change is one record the engine wants written.
type Change struct {
	// ID correlates the Change with its Result. It is unique within one call
	// and safe to send to the vendor as a correlation id (HubSpot
	// objectWriteTraceId, SCIM bulkId): it holds no user data.
	ID string
	Op Op
	// ExternalID is the vendor's id of the user when the engine knows it.
	ExternalID string
	User       User
	// Retry is set when an earlier write of this record may have reached the
	// vendor without the engine learning the outcome (a timeout, a lost
	// response, a crash). A Client whose create is not idempotent must look
	// the user up before creating it again, so that a retry never duplicates.
	Retry bool
	// RetrySince, with Retry, is the latest moment at which the earlier write
	// may have been sent. A Client whose lookup can lag behind writes (a
	// search index) trusts a lookup that finds nothing only once the vendor's
	// index delay has passed since then; until then it answers a RecordError
	// with Uncertain set and Code ReasonAwaitingIndex. Zero means unknown
	// and long past.
	RetrySince time.Time
}

// ReasonAwaitingIndex is the RecordError code of a create held back because
// the vendor's lookup may not show an earlier, uncertain create yet.
const ReasonAwaitingIndex = "AwaitingIndex"

// Action is what the vendor reports it did with a record.
type Action string

const (
	ActionCreated Action = "Created"
	ActionUpdated Action = "Updated"
	ActionDeleted Action = "Deleted"
	// ActionAdopted: the user already existed at the vendor (found by a
	// lookup after an uncertain create, or reported by a conflict) and was
	// taken over and brought to the declared state.
	ActionAdopted Action = "Adopted"
)

// Result is the outcome of one Change.
type Result struct {
	// ID is the Change.ID this result is for.
	ID string
	// ExternalID is the vendor's id of the user after the write; empty for a
	// failed create and for deletions.
	ExternalID string
	Action     Action
	// Note, on success, is a remark for the record's message (e.g. that
	// the vendor held several users with this email and the oldest was
	// adopted); usually empty. It never holds a credential.
	Note string
	// Err is nil on success. Otherwise it is a *RecordError, or any error,
	// which the engine treats as transient (the record is retried with
	// backoff).
	Err error
}

// RecordError is a failure of one record.
type RecordError struct {
	// Permanent is true when resending the same record cannot succeed (the
	// vendor rejected its data). The engine marks the record Failed and does
	// not resend it until its spec changes. When false the record is retried
	// with backoff.
	Permanent bool
	// Uncertain is true when the write may have been applied at the vendor
	// (timeout, lost response, 5xx after the request was sent). The engine
	// then sends the record again with Change.Retry set.
	Uncertain bool
	// Code is a short machine-readable reason, e.g. "VALIDATION_ERROR",
	// "RateLimited", "Conflict".
	Code string
	// Message is the vendor's explanation, fit for a status message. It never
	// holds a credential.
	Message string
}

func (e *RecordError) Error() string {
	if e.Code == "" {
		return e.Message
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

// ErrAuth is wrapped by errors that mean the vendor refused the credentials
// or their scopes (HTTP 401/403). The engine reports it on the provider's
// Ready condition and leaves the records Pending.
var ErrAuth = errors.New("the vendor refused the credentials")

// AuthError is an ErrAuth with the vendor's reason (e.g. missing scopes).
type AuthError struct {
	// StatusCode is the HTTP status the vendor answered.
	StatusCode int
	// Reason is a condition reason: "Unauthorized" or "Forbidden".
	Reason string
	// Message is safe to show: it never holds the token.
	Message string
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("%s (HTTP %d): %s", e.Reason, e.StatusCode, e.Message)
}

// Unwrap makes errors.Is(err, ErrAuth) true.
func (e *AuthError) Unwrap() error { return ErrAuth }

// ErrInvalidConfig is wrapped by Factory.New errors about the provider's
// spec or credentials that no retry can fix.
var ErrInvalidConfig = errors.New("invalid provider configuration")

// Client writes users to one vendor account.
//
// Apply packs the changes into the vendor's bulk calls itself (it knows the
// vendor's batch limits and which ops can share a call) and returns exactly
// one Result per Change, matched by Change.ID, in any order. All calls must be
// idempotent from the engine's point of view: applying a Change twice leaves
// one user at the vendor with the declared fields. A Client never trusts the
// order of a vendor's response array when the vendor echoes a correlation id.
//
// Apply returns a non-nil error only when nothing could be learned about any
// change (for example an *AuthError, which the engine reports on the
// provider); the Results are then ignored and every change stays Pending.
// A failure of one call (a 5xx for one batch) is reported in the Results of
// that call's changes, never in the changes of other calls.
//
// Apply waits on the shared rate limiter (Config.HTTPClient is already
// limited) and honours the vendor's rate-limit answers (429, Retry-After,
// rate-limit headers). It must return when ctx is done, reporting the changes
// it did not finish as transient (and Uncertain where a request was sent).
type Client interface {
	Apply(ctx context.Context, changes []Change) ([]Result, error)
	// Verify makes one cheap authenticated read so the provider's Ready
	// condition can say the credentials work when there is nothing to write.
	Verify(ctx context.Context) error
	// Identity returns the vendor-side unique identity of a user: the value
	// by which the vendor would find the same user again (HubSpot: the
	// idProperty value, or the email without one, lower-cased; Propel: the
	// sourceId; user.com: the custom_id). Two records of one provider with
	// the same identity would write the same vendor user; the engine lets
	// the older UserSync keep it and fails the other with reason Conflict.
	// An empty identity never conflicts. Pure: no I/O. It reads the user's
	// key, email and names only, never its attributes (the engine keeps
	// users without them, and computes identities again from those when
	// only the client changed).
	Identity(u User) string
}

// Chunked is implemented by a Client whose Apply can take a long list of
// changes as consecutive chunks of ChunkSize changes, one Apply each, at no
// more calls than one Apply of the whole list when the chunks hold one kind
// of change (a multiple of its batch size). The engine then stores the
// results of the UserSyncs a chunk completes while the next chunk is sent: a
// long sync shows its progress, and its status writes overlap the vendor's
// calls instead of following them. A Client that packs changes across the
// whole list (user.com's mass updates) does not implement it.
type Chunked interface {
	ChunkSize() int
}

// DeleteSupport is implemented by a Client whose vendor may offer no way to
// delete users. When CanDelete is false the engine never asks it to delete:
// under deletionPolicy Delete the users that leave a UserSync are forgotten
// and the UserSync's Degraded condition says they were left at the vendor,
// with why.
type DeleteSupport interface {
	CanDelete() (ok bool, why string)
}

// CreateSafety is implemented by every Client: it says whether the vendor's
// create is idempotent (sending it twice makes one user: an upsert on a
// unique key) and, when it is not, what the Client does about it and how an
// admin can make it so. The engine shows it as the provider's Idempotent
// condition. Whatever it says, the engine never resends a create whose
// outcome is unknown without Change.Retry, and a Client whose creates are not
// idempotent must look the user up with a read the vendor guarantees to be
// current before creating it again.
type CreateSafety interface {
	IdempotentCreates() (ok bool, why string)
}

// CapabilityReporter is implemented by a Client whose vendor says what it
// offers of its protocol's optional features (SCIM's
// ServiceProviderConfig). Capabilities returns what the Client last learnt,
// from Verify or a write; ok is false while it has learnt nothing. Pure: no
// I/O. The engine shows it as the provider's status.capabilities.
type CapabilityReporter interface {
	Capabilities() (caps usersv1.ProviderCapabilities, ok bool)
}

// CallPlanner is implemented by a Client that can tell how many vendor
// calls a set of changes takes, given its batch packing (for the plan of a
// UserSync in mode Plan). Without it the engine counts a call per batch of
// each operation.
type CallPlanner interface {
	PlanCalls(changes []Change) int
}

type ownBudgetKey struct{}

// WithOwnBudget marks the requests sent with ctx as counted by a budget the
// vendor keeps apart from the provider's spec.rateLimit (HubSpot's search,
// 4 a second): the engine's limiter lets them through uncounted, and the
// Client keeps to that budget itself.
func WithOwnBudget(ctx context.Context) context.Context {
	return context.WithValue(ctx, ownBudgetKey{}, true)
}

// OwnBudget reports whether ctx was marked by WithOwnBudget.
func OwnBudget(ctx context.Context) bool {
	v, _ := ctx.Value(ownBudgetKey{}).(bool)
	return v
}

// Config is what a Factory needs to build a Client.
type Config struct {
	// Endpoint is the base URL; empty means the vendor's public URL.
	Endpoint string
	// Credentials holds the Secret's data as the provider's credentialsRef
	// selects it: Credentials["token"] is the referenced key's value. Vendors
	// that need more than one value (client id and secret) read further keys
	// of the same Secret.
	Credentials map[string][]byte
	// BatchSize is the maximum number of records per bulk call; 0 means the
	// vendor's default. A Factory caps it at the vendor's maximum.
	BatchSize int
	// Spec is the provider's spec as the cluster declares it. A vendor reads
	// and validates its own options from it (spec.hubspot, spec.propel, ...);
	// the engine knows no vendor option. The zero value means defaults.
	Spec usersv1.ProviderSpec
	// HTTPClient is the client to send every request with. It is rate limited
	// by the engine and carries the operator's timeouts and metrics.
	HTTPClient *http.Client
	// Sleep waits between vendor retries; tests replace it. Nil means a
	// context-aware time.Sleep.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now tells the time (Change.RetrySince is compared with it); tests
	// replace it. Nil means time.Now.
	Now func() time.Time
}

// Factory validates a provider's configuration and builds its Client.
type Factory interface {
	// New returns ErrInvalidConfig (wrapped) for a configuration that cannot
	// work, and never makes a network call.
	New(cfg Config) (Client, error)
	// DefaultEndpoint is the vendor's public base URL.
	DefaultEndpoint() string
	// MaxBatchSize is the vendor's maximum records per bulk call.
	MaxBatchSize() int
	// DefaultRateLimit is the vendor's documented request budget: requests
	// per period.
	DefaultRateLimit() (requests int, period time.Duration)
}

// SleepContext waits for d or until ctx is done.
func SleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Observer learns what a Client sent, for the operator's metrics. The engine
// puts one in the context of Apply; a Client reports each vendor call it
// makes with ObserveCall.
type Observer interface {
	// Call reports one vendor call to endpoint (a fixed name such as
	// "batch/create", never holding user data) carrying records records.
	Call(endpoint string, records int)
}

type observerKey struct{}

// WithObserver returns a context that carries o.
func WithObserver(ctx context.Context, o Observer) context.Context {
	return context.WithValue(ctx, observerKey{}, o)
}

// ObserveCall reports a vendor call to the context's Observer, if any, and
// returns a context that names the endpoint for the HTTP request's metrics.
func ObserveCall(ctx context.Context, endpoint string, records int) context.Context {
	if o, ok := ctx.Value(observerKey{}).(Observer); ok {
		o.Call(endpoint, records)
	}
	return context.WithValue(ctx, endpointKey{}, endpoint)
}

type endpointKey struct{}

// NameEndpoint names the endpoint of the requests made with ctx, for their
// metrics, without reporting a call of records (a token request, a lookup).
func NameEndpoint(ctx context.Context, endpoint string) context.Context {
	return context.WithValue(ctx, endpointKey{}, endpoint)
}

// EndpointOf is the endpoint name ObserveCall put in ctx, or "".
func EndpointOf(ctx context.Context) string {
	s, _ := ctx.Value(endpointKey{}).(string)
	return s
}

// RetryAfter reads a Retry-After header: delay-seconds (fractions accepted)
// or an HTTP date. ok is false when the header is absent or unreadable; a
// date in the past gives 0.
func RetryAfter(h http.Header) (d time.Duration, ok bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Duration(max(s, 0) * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}
