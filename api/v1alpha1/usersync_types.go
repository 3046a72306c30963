package v1alpha1

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Size limits of a UserSync. They are chosen so that a UserSync at every
// limit, with every record Failed and carrying the longest message, still
// fits in one etcd object (1.5 MiB); internal/controller's status budget test
// proves it against a real API server. Larger rosters are split over several
// UserSyncs, which costs nothing in vendor calls: a provider batches across
// all the UserSyncs it serves.
const (
	// MaxUsers is the most users one UserSync declares.
	MaxUsers = 500
	// MaxProviderRefs is the most providers one UserSync lists.
	MaxProviderRefs = 4
	// MaxRecords bounds users × providerRefs: one status record each.
	MaxRecords = 1000
	// MaxMessageLength is the longest status record message, in bytes;
	// longer vendor messages are cut with an ellipsis.
	MaxMessageLength = 256
	// MaxReasonLength is the longest status record reason.
	MaxReasonLength = 48
	// MaxExternalIDLength is the longest vendor id a record stores.
	MaxExternalIDLength = 64
)

// DeletionPolicy says what happens at the vendor to users that leave a
// UserSync.
// +kubebuilder:validation:Enum=Orphan;Delete
type DeletionPolicy string

const (
	// DeletionPolicyOrphan leaves the user at the vendor and forgets it.
	DeletionPolicyOrphan DeletionPolicy = "Orphan"
	// DeletionPolicyDelete deletes (or archives, where the vendor only
	// archives) the user at the vendor.
	DeletionPolicyDelete DeletionPolicy = "Delete"
)

// ProviderKind is the kind of a provider a UserSync references.
// +kubebuilder:validation:Enum=UserProvider;ClusterUserProvider
type ProviderKind string

const (
	KindUserProvider        ProviderKind = "UserProvider"
	KindClusterUserProvider ProviderKind = "ClusterUserProvider"
)

// ProviderRef names a UserProvider of the UserSync's namespace or a
// ClusterUserProvider.
type ProviderRef struct {
	// kind of the provider: UserProvider (default) or ClusterUserProvider.
	// +optional
	// +kubebuilder:default=UserProvider
	Kind ProviderKind `json:"kind"`

	// name of the provider.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name"`
}

// String is the form used in status.results[].provider: "<kind>/<name>".
func (r ProviderRef) String() string { return string(r.Kind) + "/" + r.Name }

// ProviderNames is the form of status.providerNames: the refs in their
// order, comma-separated, a UserProvider by its name (the default kind), a
// ClusterUserProvider as "ClusterUserProvider/<name>".
func ProviderNames(refs []ProviderRef) string {
	names := make([]string, len(refs))
	for i, ref := range refs {
		names[i] = ref.Name
		if ref.Kind == KindClusterUserProvider {
			names[i] = ref.String()
		}
	}
	return strings.Join(names, ",")
}

// User is one user as the cluster declares it.
type User struct {
	// key is the stable identity of the user inside this UserSync: letters,
	// digits and . _ @ + -, starting and ending with a letter or digit.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9]([A-Za-z0-9._@+-]*[A-Za-z0-9])?$`
	Key string `json:"key"`

	// email of the user.
	// +optional
	// +kubebuilder:validation:MaxLength=254
	// +kubebuilder:validation:Pattern=`^[^@\s\p{Cc}\p{Cf}]+@[^@\s\p{Cc}\p{Cf}]+\.[^@\s\p{Cc}\p{Cf}]+$`
	Email string `json:"email,omitempty"`

	// firstName of the user. No control or invisible formatting characters
	// (zero-width spaces, bidirectional overrides).
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[^\p{Cc}\p{Cf}]*$`
	FirstName string `json:"firstName,omitempty"`

	// lastName of the user. No control or invisible formatting characters.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[^\p{Cc}\p{Cf}]*$`
	LastName string `json:"lastName,omitempty"`

	// attributes maps an attribute name (a letter or _, then letters, digits,
	// _ . -; at most 40) to a JSON scalar: a string (at most 64 characters),
	// a number or a boolean. At most 8 attributes. The API server enforces
	// the count and the value types (see hack/crdpatch: CEL cannot type an
	// untyped value, so no CEL rule may cover this map); the operator fails a
	// record whose attribute names break the rule, with reason InvalidSpec.
	// +optional
	// +kubebuilder:validation:MaxProperties=8
	Attributes map[string]AttributeValue `json:"attributes,omitempty"`
}

// UserSyncSpec declares users and the providers they are kept in.
// +kubebuilder:validation:XValidation:rule="!has(self.users) || size(self.users) * size(self.providerRefs) <= 1000",message="users × providerRefs must be at most 1000 records; split the roster over several UserSyncs",fieldPath=".users"
type UserSyncSpec struct {
	// providerRefs lists the providers (1 to 4) the users are kept in.
	// +required
	// +listType=map
	// +listMapKey=kind
	// +listMapKey=name
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4
	ProviderRefs []ProviderRef `json:"providerRefs"`

	// users declared by this UserSync, keyed by key (unique). At most 500.
	// +optional
	// +listType=map
	// +listMapKey=key
	// +kubebuilder:validation:MaxItems=500
	Users []User `json:"users,omitempty"`

	// deletionPolicy says what happens at the vendor when a user leaves
	// spec.users, a provider leaves providerRefs, or the UserSync is deleted:
	// Orphan (default) leaves the user there, Delete deletes it.
	// +optional
	// +kubebuilder:default=Orphan
	DeletionPolicy DeletionPolicy `json:"deletionPolicy,omitempty"`

	// suspend stops all writes to the providers; status keeps reporting what
	// is pending.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// driftPolicy says what happens when a provider's drift detection
	// (spec.driftDetection of the provider) finds a user changed or deleted
	// at the vendor behind the operator's back. Correct (default): the
	// record goes Pending (reason Drifted or Missing) and is written again
	// (re-created when missing), then is Synced with action Corrected or
	// Recreated. Report: the record becomes Drifted (reason Changed or
	// Missing) with a message naming the fields that differ, and nothing is
	// written. Ignore: this UserSync's users are not read.
	// +optional
	// +kubebuilder:default=Correct
	DriftPolicy DriftPolicy `json:"driftPolicy,omitempty"`

	// mode is Apply (default: every change is written) or Plan: each loop
	// computes what it would send (creates, updates, deletions, drift
	// corrections) and sends none of it; status.plan shows it per provider
	// with a token, and the annotation users.usersync.io/approve-plan=<token>
	// applies exactly that plan once. Setting Apply applies everything.
	// +optional
	// +kubebuilder:default=Apply
	Mode SyncMode `json:"mode,omitempty"`

	// defaults holds values every user of this UserSync gets unless it sets
	// its own.
	// +optional
	Defaults *UserDefaults `json:"defaults,omitempty"`
}

// UserDefaults are values a UserSync's users get unless they set their own.
type UserDefaults struct {
	// attributes every user gets unless its own attributes name the same
	// key; the same rules as users[].attributes (at most 8, JSON scalars).
	// A user's attributes and the defaults together are mapped by each
	// provider's attributeMapping.
	// +optional
	// +kubebuilder:validation:MaxProperties=8
	Attributes map[string]AttributeValue `json:"attributes,omitempty"`
}

// SyncMode says whether a UserSync's changes are written or only planned.
// +kubebuilder:validation:Enum=Apply;Plan
type SyncMode string

// Values of UserSyncSpec.Mode.
const (
	ModeApply SyncMode = "Apply"
	ModePlan  SyncMode = "Plan"
)

// ProviderPlan is what applying a UserSync in mode Plan would send to one
// provider.
type ProviderPlan struct {
	// provider is "<kind>/<name>".
	// +kubebuilder:validation:MaxLength=84
	Provider string `json:"provider"`
	// creates, updates and deletes count the records the apply would write.
	Creates int32 `json:"creates"`
	Updates int32 `json:"updates"`
	Deletes int32 `json:"deletes"`
	// calls is the number of vendor calls the apply would take, given the
	// vendor's batch packing.
	Calls int32 `json:"calls"`
	// estimatedDuration is how long those calls take at least under the
	// provider's rate limit.
	// +optional
	EstimatedDuration *metav1.Duration `json:"estimatedDuration,omitempty"`
	// token names exactly this set of changes (and the spec generation):
	// users.usersync.io/approve-plan=<token> applies it.
	// +kubebuilder:validation:MaxLength=16
	Token string `json:"token"`
}

// DriftPolicy says what a UserSync does with users found different at the
// vendor.
// +kubebuilder:validation:Enum=Correct;Report;Ignore
type DriftPolicy string

// Values of UserSyncSpec.DriftPolicy.
const (
	DriftCorrect DriftPolicy = "Correct"
	DriftReport  DriftPolicy = "Report"
	DriftIgnore  DriftPolicy = "Ignore"
)

// RecordState is the state of one (provider, user) record.
// +kubebuilder:validation:Enum=Synced;Pending;Failed;Deleting;Drifted
type RecordState string

const (
	// StateSynced: the vendor holds what the current spec declares.
	StateSynced RecordState = "Synced"
	// StatePending: a write is due or being retried.
	StatePending RecordState = "Pending"
	// StateFailed: the vendor rejected the record, or it conflicts with
	// another UserSync; it is not retried until its spec changes.
	StateFailed RecordState = "Failed"
	// StateDeleting: the user left the spec and is being deleted at the vendor.
	StateDeleting RecordState = "Deleting"
	// StateDrifted: under driftPolicy Report, the vendor was found to hold
	// something else than what was written (reason Changed, the message
	// names the fields) or no user at all (reason Missing). Nothing is
	// written until the spec changes or the policy becomes Correct.
	StateDrifted RecordState = "Drifted"
)

// RecordResult is the result of one user at one provider.
type RecordResult struct {
	// provider is "<kind>/<name>" of the provider.
	// +kubebuilder:validation:MaxLength=84
	Provider string `json:"provider"`
	// key of the user.
	// +kubebuilder:validation:MaxLength=63
	Key string `json:"key"`
	// externalID is the vendor's id of the user.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	ExternalID string `json:"externalID,omitempty"`
	// state of the record.
	State RecordState `json:"state"`
	// action is the last action taken: Create, Update, Delete (asked), or
	// Created, Updated, Adopted, Deleted, Corrected, Recreated (done).
	// +optional
	// +kubebuilder:validation:MaxLength=16
	Action string `json:"action,omitempty"`
	// reason is a short machine-readable cause for Pending and Failed
	// records: the vendor's category, Conflict, RateLimited, Suspended, ...
	// +optional
	// +kubebuilder:validation:MaxLength=48
	Reason string `json:"reason,omitempty"`
	// message says why the record is Pending or Failed (at most 256 bytes).
	// +optional
	// +kubebuilder:validation:MaxLength=256
	Message string `json:"message,omitempty"`
	// attempts counts the writes of the current content that did not succeed.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// lastSyncTime is when the operator last wrote, or tried to write, this record.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
	// hash of the declared content last written (Synced) or tried (Pending,
	// Failed). A record whose hash equals its spec's is not written again.
	// +optional
	// +kubebuilder:validation:MaxLength=16
	Hash string `json:"hash,omitempty"`
}

// Summary counts the records of a UserSync.
// Each count defaults to 0 in the API server, so a count of 0 is stored and
// printed (kubectl prints an absent field as an empty cell).
type Summary struct {
	// desired is the number of records the spec declares (users × providers).
	// +optional
	// +kubebuilder:default=0
	Desired int32 `json:"desired,omitempty"`
	// synced counts the records Synced at the current spec.
	// +optional
	// +kubebuilder:default=0
	Synced int32 `json:"synced,omitempty"`
	// pending counts the records to write.
	// +optional
	// +kubebuilder:default=0
	Pending int32 `json:"pending,omitempty"`
	// failed counts the records Failed at the current spec.
	// +optional
	// +kubebuilder:default=0
	Failed int32 `json:"failed,omitempty"`
	// drifted counts the records found different at the vendor and left
	// so (driftPolicy Report).
	// +optional
	// +kubebuilder:default=0
	Drifted int32 `json:"drifted,omitempty"`
}

// ProviderSyncStatus is how one provider of providerRefs serves the UserSync.
type ProviderSyncStatus struct {
	// provider is "<kind>/<name>".
	Provider string `json:"provider"`
	// observedGeneration is the UserSync generation this provider last synced.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// ready is true when the provider may be used and every record of the
	// observed generation is Synced.
	Ready bool `json:"ready"`
	// reason is a short cause when not ready: ProviderNotFound, NotPermitted,
	// ProviderNotReady, Pending, Failed, Suspended.
	// +optional
	Reason string `json:"reason,omitempty"`
	// message explains reason.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
	// lastSyncTime is when this provider's loop last processed the UserSync.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`
	// lastVerifiedTime is when the provider's drift detection last read this
	// UserSync's users back from the vendor and compared them.
	// +optional
	LastVerifiedTime *metav1.Time `json:"lastVerifiedTime,omitempty"`
}

// UserSyncStatus is the observed state of a UserSync.
type UserSyncStatus struct {
	// observedGeneration is the generation every provider has synced.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (every record of the current generation Synced),
	// Progressing (writes pending), Degraded (records failed, or a provider
	// unusable), Suspended, Drifted (records found different at the vendor
	// under driftPolicy Report).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// summary counts the records.
	// +optional
	Summary Summary `json:"summary,omitempty"`

	// providerNames lists spec.providerRefs in their order, comma-separated,
	// for the Providers column of kubectl get (a column's JSONPath prints
	// only the first element of a list): a UserProvider by its name, a
	// ClusterUserProvider as "ClusterUserProvider/<name>", e.g.
	// "hubspot,propel,ClusterUserProvider/scim". The operator sets it at
	// every status write.
	// +optional
	// +kubebuilder:validation:MaxLength=400
	ProviderNames string `json:"providerNames,omitempty"`

	// providers reports each provider of providerRefs, and each provider
	// that still holds records of this UserSync.
	// +optional
	// +listType=atomic
	Providers []ProviderSyncStatus `json:"providers,omitempty"`

	// plan, under mode Plan, says per provider what applying would send,
	// with the token that approves it.
	// +optional
	// +listType=map
	// +listMapKey=provider
	// +kubebuilder:validation:MaxItems=8
	Plan []ProviderPlan `json:"plan,omitempty"`

	// results holds one record per (provider, user key).
	// +optional
	// +listType=atomic
	Results []RecordResult `json:"results,omitempty"`
}

// UserSync declares users to keep in one or more user directories.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=usersyncs-all,shortName=us
// +kubebuilder:printcolumn:name="Providers",type=string,JSONPath=`.status.providerNames`
// +kubebuilder:printcolumn:name="Desired",type=integer,JSONPath=`.status.summary.desired`
// +kubebuilder:printcolumn:name="Synced",type=integer,JSONPath=`.status.summary.synced`
// +kubebuilder:printcolumn:name="Failed",type=integer,JSONPath=`.status.summary.failed`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type UserSync struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec declares the users and their providers.
	// +required
	Spec UserSyncSpec `json:"spec"`

	// status reports every record's result.
	// +optional
	Status UserSyncStatus `json:"status,omitempty"`
}

// UserSyncList is a list of UserSyncs.
// +kubebuilder:object:root=true
type UserSyncList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []UserSync `json:"items"`
}

func init() {
	objectTypes = append(objectTypes, &UserSync{}, &UserSyncList{})
}
