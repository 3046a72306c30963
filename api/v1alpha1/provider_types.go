package v1alpha1

import (
	"encoding/json"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ProviderType names the vendor a provider writes to.
// +kubebuilder:validation:Enum=HubSpot;Propel;UserCom;SCIM
type ProviderType string

const (
	ProviderHubSpot ProviderType = "HubSpot"
	ProviderPropel  ProviderType = "Propel"
	ProviderUserCom ProviderType = "UserCom"
	// ProviderSCIM is any SCIM 2.0 server (RFC 7643/7644).
	ProviderSCIM ProviderType = "SCIM"
)

// ProviderSpec is the spec shared by UserProvider and ClusterUserProvider.
// +kubebuilder:validation:XValidation:rule="!has(self.endpoint) || url(self.endpoint).getScheme() == 'https' || (url(self.endpoint).getScheme() == 'http' && has(self.allowInsecureHTTP) && self.allowInsecureHTTP)",message="endpoint must be an https:// URL; plain http:// is refused unless allowInsecureHTTP is true",fieldPath=".endpoint"
// +kubebuilder:validation:XValidation:rule="!has(self.batchSize) || self.type != 'HubSpot' || self.batchSize <= 100",message="HubSpot takes at most 100 records per batch call",fieldPath=".batchSize"
// +kubebuilder:validation:XValidation:rule="self.type != 'UserCom' || has(self.endpoint)",message="UserCom needs spec.endpoint: https://<app>.user.com/api/public/",fieldPath=".endpoint"
// +kubebuilder:validation:XValidation:rule="!has(self.hubspot) || self.type == 'HubSpot'",message="hubspot options are only allowed with type HubSpot",fieldPath=".hubspot"
// +kubebuilder:validation:XValidation:rule="!has(self.propel) || !has(self.propel.tokenURL) || url(self.propel.tokenURL).getScheme() == 'https' || (url(self.propel.tokenURL).getScheme() == 'http' && has(self.allowInsecureHTTP) && self.allowInsecureHTTP)",message="propel.tokenURL must be an https:// URL; plain http:// is refused unless allowInsecureHTTP is true",fieldPath=".propel.tokenURL"
// +kubebuilder:validation:XValidation:rule="!has(self.propel) || self.type == 'Propel'",message="propel options are only allowed with type Propel",fieldPath=".propel"
// +kubebuilder:validation:XValidation:rule="self.type != 'SCIM' || has(self.endpoint)",message="SCIM needs spec.endpoint: the server's SCIM base URL, such as https://example.com/scim/v2",fieldPath=".endpoint"
// +kubebuilder:validation:XValidation:rule="!has(self.scim) || self.type == 'SCIM'",message="scim options are only allowed with type SCIM",fieldPath=".scim"
type ProviderSpec struct {
	// type is the vendor: HubSpot, Propel or UserCom.
	// +required
	Type ProviderType `json:"type"`

	// endpoint is the base URL of the vendor's API. Empty means the vendor's
	// public URL (HubSpot: https://api.hubapi.com; Propel:
	// https://api.helice.cloud/v2); UserCom needs its app's URL,
	// https://<app>.user.com/api/public/. Plain http:// is refused unless
	// allowInsecureHTTP is true.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getHostname() != ''",message="endpoint must be an absolute URL such as https://api.example.com"
	Endpoint string `json:"endpoint,omitempty"`

	// allowInsecureHTTP permits an http:// endpoint. Only for local emulators:
	// the token would cross the network in clear text.
	// +optional
	AllowInsecureHTTP bool `json:"allowInsecureHTTP,omitempty"`

	// credentialsRef selects the Secret key that holds the API token.
	// +required
	CredentialsRef SecretKeyReference `json:"credentialsRef"`

	// batchSize is the maximum number of records per bulk call (user.com:
	// user ids per mass attribute update). Defaults to the vendor's maximum
	// (100 for each vendor) and is capped at it (user.com: 1000).
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000
	BatchSize *int32 `json:"batchSize,omitempty"`

	// rateLimit is the request budget the operator keeps to for this
	// provider. Defaults to the vendor's documented limit (HubSpot: 100
	// requests per 10s, its lowest tier; Propel and user.com document none:
	// 10 per second).
	// +optional
	RateLimit *RateLimit `json:"rateLimit,omitempty"`

	// hubspot holds the HubSpot options.
	// +optional
	HubSpot *HubSpotOptions `json:"hubspot,omitempty"`

	// propel holds the Propel options.
	// +optional
	Propel *PropelOptions `json:"propel,omitempty"`

	// scim holds the SCIM 2.0 options.
	// +optional
	SCIM *SCIMOptions `json:"scim,omitempty"`

	// driftDetection reads the users back from the vendor on a schedule and
	// compares them with what was written, so that a user edited or deleted
	// behind the operator's back is found (what happens then is each
	// UserSync's driftPolicy). Defaults: every 1h, within 20% of rateLimit
	// while writes are pending.
	// +optional
	DriftDetection *DriftDetection `json:"driftDetection,omitempty"`

	// attributeMapping maps the attributes the UserSyncs declare (the
	// admin's own vocabulary, such as title or plan) onto this vendor's
	// names and shapes, in order. An entry renames a declared attribute
	// (attribute → to), computes a value with a CEL expression over the
	// declared user, writes a value only when the user is created
	// (createOnly), or never writes an attribute (ignore). A declared
	// attribute that an entry names is written under the entry's to only.
	// Entries are checked when the provider is: an expression that does not
	// compile, returns a list or map, or may cost too much, two entries
	// writing the same to, or a to the vendor does not allow make the
	// provider Ready=False with reason InvalidMapping, and nothing is written
	// until it is fixed.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=64
	AttributeMapping []AttributeMapping `json:"attributeMapping,omitempty"`

	// unmappedAttributes says what happens to a declared attribute that no
	// attributeMapping entry names: Send (default) writes it under its own
	// name; Drop does not write it.
	// +optional
	// +kubebuilder:validation:Enum=Send;Drop
	UnmappedAttributes UnmappedAttributes `json:"unmappedAttributes,omitempty"`
}

// UnmappedAttributes says what happens to attributes no mapping entry names.
type UnmappedAttributes string

// Values of ProviderSpec.UnmappedAttributes.
const (
	UnmappedSend UnmappedAttributes = "Send"
	UnmappedDrop UnmappedAttributes = "Drop"
)

// AttributeMapping is one entry of a provider's attributeMapping.
// +kubebuilder:validation:XValidation:rule="!(has(self.attribute) && has(self.expression))",message="attribute and expression exclude each other: an entry writes a declared attribute or a computed value"
// +kubebuilder:validation:XValidation:rule="has(self.attribute) || has(self.expression) || (has(self.ignore) && self.ignore && has(self.to))",message="an entry needs attribute (a declared attribute) or expression (a CEL expression); an ignore entry needs attribute or to"
// +kubebuilder:validation:XValidation:rule="!has(self.expression) || has(self.to)",message="an expression needs to: the vendor attribute its value is written to",fieldPath=".to"
// +kubebuilder:validation:XValidation:rule="!(has(self.ignore) && self.ignore) || (!has(self.expression) && !(has(self.createOnly) && self.createOnly))",message="ignore excludes expression and createOnly: an ignored attribute is never written"
type AttributeMapping struct {
	// attribute is the declared attribute (a key of users[].attributes or
	// of the UserSync's defaults.attributes) this entry writes.
	// +optional
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_.-]*$`
	Attribute string `json:"attribute,omitempty"`

	// to is the vendor's name for the value (a HubSpot property, a Propel
	// user field or attribute, a user.com attribute, a SCIM attribute such
	// as title or enterprise.department). Defaults to attribute.
	// +optional
	// +kubebuilder:validation:MaxLength=100
	// +kubebuilder:validation:Pattern=`^[A-Za-z_][A-Za-z0-9_.-]*$`
	To string `json:"to,omitempty"`

	// expression is a CEL expression over the declared user (user.key,
	// user.email, user.firstName, user.lastName, user.attributes, a map with
	// the UserSync's defaults filled in) whose value is written to to: a
	// string, a number or a boolean, or null to write nothing. For example
	// user.firstName + ' ' + user.lastName, or
	// user.attributes.plan == 'pro' ? 'Enterprise' : 'Standard'. Reading an
	// attribute a user does not have fails that user's record (InvalidSpec);
	// guard with has(user.attributes.plan).
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Expression string `json:"expression,omitempty"`

	// createOnly writes the value when the user is created and never
	// updates it: an initial value an admin may change in the vendor. Drift
	// detection does not compare it.
	// +optional
	CreateOnly bool `json:"createOnly,omitempty"`

	// ignore never writes the attribute (and nothing to to), whatever the
	// UserSyncs declare. Drift detection does not compare it.
	// +optional
	Ignore bool `json:"ignore,omitempty"`
}

// DriftDetection configures how a provider verifies its users.
type DriftDetection struct {
	// interval between two verifications of every user; 0s disables reads.
	// +optional
	// +kubebuilder:default="1h"
	Interval *metav1.Duration `json:"interval,omitempty"`

	// maxReadShare is the percentage of spec.rateLimit that verification
	// reads may use while writes are pending (default 20); reads never delay
	// a pending write by more than one call slot.
	// +optional
	// +kubebuilder:default=20
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	MaxReadShare *int32 `json:"maxReadShare,omitempty"`
}

// SecretKeyReference selects one key of a Secret.
type SecretKeyReference struct {
	// name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Name string `json:"name"`

	// key in the Secret's data that holds the token.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`

	// namespace of the Secret. Required on a ClusterUserProvider, forbidden on
	// a UserProvider (which reads Secrets of its own namespace only).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Namespace string `json:"namespace,omitempty"`
}

// RateLimit is a request budget: at most requests per period.
type RateLimit struct {
	// requests allowed per period.
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100000
	Requests int32 `json:"requests"`

	// period over which requests are counted, as a duration ("10s", "1m").
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms') && duration(self) <= duration('24h')",message="period must be between 1ms and 24h"
	Period metav1.Duration `json:"period"`
}

// HubSpotOptions are the HubSpot-specific settings.
type HubSpotOptions struct {
	// idProperty names a HubSpot user property with unique values. When set,
	// users are written with batch/upsert keyed on it, which is idempotent;
	// otherwise new users are created with batch/create and found again by
	// email after an uncertain write.
	// +optional
	// +kubebuilder:validation:MaxLength=100
	// +kubebuilder:validation:Pattern=`^[a-z0-9_]+$`
	IDProperty string `json:"idProperty,omitempty"`

	// idValueFrom says which value of a user goes in idProperty: its Key
	// (default; the property is also written with the key) or its Email.
	// +optional
	// +kubebuilder:validation:Enum=Key;Email
	IDValueFrom string `json:"idValueFrom,omitempty"`

	// adoption says what happens to a declared user without an external id
	// in the status when HubSpot may already hold it (without idProperty,
	// HubSpot's batch/create is not idempotent). Email (default): before
	// creating users, look them up by email (one search per 100 users) and
	// adopt the user whose email matches, case-insensitively (action
	// Adopted), the oldest when several match; only users not found are
	// created. Never: create without looking; a status that is lost (a
	// UserSync deleted under Orphan and applied again, a cluster rebuilt
	// from Git) then creates every user a second time: unsafe.
	// +optional
	// +kubebuilder:validation:Enum=Email;Never
	Adoption HubSpotAdoption `json:"adoption,omitempty"`

	// searchIndexDelay is how long HubSpot's search may take to show a user
	// just created. HubSpot serves search from an index that trails writes
	// and publishes no figure for the delay (integrators report "several
	// seconds"); the default of 1m leaves a wide margin. After a create whose
	// answer was lost, a search that finds nothing is trusted only once the
	// create is older than this: until then the record is Pending with
	// reason AwaitingIndex and nothing is created. Where HubSpot can read by
	// email directly (a portal whose hs_email is a unique property), that
	// read is current and no wait applies. 0s trusts search at once: unsafe.
	// +optional
	// +kubebuilder:default="1m"
	SearchIndexDelay *metav1.Duration `json:"searchIndexDelay,omitempty"`
}

// HubSpotAdoption says whether existing HubSpot users are adopted.
type HubSpotAdoption string

// Values of HubSpotOptions.Adoption.
const (
	HubSpotAdoptByEmail HubSpotAdoption = "Email"
	HubSpotAdoptNever   HubSpotAdoption = "Never"
)

// SCIMOptions are the settings of a SCIM 2.0 server.
type SCIMOptions struct {
	// bulk: Auto (default) sends POST /Bulk when the server's
	// ServiceProviderConfig offers it, within its maxOperations and
	// maxPayloadSize; Never sends one call per user.
	// +optional
	// +kubebuilder:validation:Enum=Auto;Never
	Bulk string `json:"bulk,omitempty"`

	// userName says what goes into SCIM's userName: the user's Email
	// (default; the key when a user has no email) or its Key.
	// +optional
	// +kubebuilder:validation:Enum=Email;Key
	UserName string `json:"userName,omitempty"`

	// deprovision says what deletionPolicy Delete does to a removed user:
	// Deactivate (default: PATCH active=false, the user and its history
	// stay) or Delete (DELETE /Users/{id}).
	// +optional
	// +kubebuilder:validation:Enum=Delete;Deactivate
	Deprovision string `json:"deprovision,omitempty"`

	// extensionSchema is the URN of a custom schema extension of the
	// server's User (such as urn:example:params:scim:schemas:extension:acme:2.0:User)
	// that receives the attributes that are neither singular core attributes
	// nor enterprise.<name>: an attribute "costCode" is written as
	// costCode in that extension, and the extension's URN is added to the
	// user's schemas. Attribute names must then be SCIM attribute names
	// (a letter, then letters, digits, '-' or '_'). Without it such an
	// attribute fails its record with reason InvalidSpec, naming it.
	// +optional
	// +kubebuilder:validation:MinLength=5
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:[^\s]+$`
	// +kubebuilder:validation:XValidation:rule="self.lowerAscii() != 'urn:ietf:params:scim:schemas:core:2.0:user' && self.lowerAscii() != 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:user'",message="extensionSchema must be a custom extension's URN, not the core or enterprise User schema"
	ExtensionSchema string `json:"extensionSchema,omitempty"`
}

// PropelOptions are the Propel-specific settings. Propel authenticates with
// the OAuth 2.0 client-credentials grant: credentialsRef selects the client
// secret, and clientIDKey names the key of the same Secret that holds the
// client id.
type PropelOptions struct {
	// source is written with every user; Propel matches users on (source,
	// sourceId), and sourceId is the user's key. Defaults to
	// "usersync-operator". Changing it makes Propel create new users.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9][-A-Za-z0-9_.]*$`
	Source string `json:"source,omitempty"`

	// clientIDKey is the key of the credentials Secret that holds the OAuth
	// client id. Defaults to "clientId".
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	ClientIDKey string `json:"clientIDKey,omitempty"`

	// tokenURL is the OAuth 2.0 token endpoint. Defaults to /oauth2/token on
	// the endpoint's host (https://api.helice.cloud/oauth2/token).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getHostname() != ''",message="tokenURL must be an absolute URL such as https://api.helice.cloud/oauth2/token"
	TokenURL string `json:"tokenURL,omitempty"`
}

// ProviderStatus is the observed state of a UserProvider or ClusterUserProvider.
type ProviderStatus struct {
	// observedGeneration is the generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready (credentials resolved and the last vendor call
	// authenticated) and RateLimited (the vendor slowed the last sync).
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// userSyncs is the number of UserSyncs this provider serves (0 is
	// stored, for the UserSyncs column).
	// +optional
	// +kubebuilder:default=0
	UserSyncs int32 `json:"userSyncs,omitempty"`

	// users is the number of records this provider serves (0 is stored,
	// for the Users column).
	// +optional
	// +kubebuilder:default=0
	Users int32 `json:"users,omitempty"`

	// synced, pending and failed count the records by state.
	// +optional
	Synced int32 `json:"synced,omitempty"`
	// +optional
	Pending int32 `json:"pending,omitempty"`
	// +optional
	Failed int32 `json:"failed,omitempty"`

	// lastSyncTime is when the last sync loop of this provider ended.
	// +optional
	LastSyncTime *metav1.Time `json:"lastSyncTime,omitempty"`

	// lastVerifiedTime is when drift detection last finished reading every
	// user of this provider back from the vendor.
	// +optional
	LastVerifiedTime *metav1.Time `json:"lastVerifiedTime,omitempty"`

	// orphans counts the users the vendor holds that carry this provider's
	// identity (HubSpot: an idProperty value; Propel: its source) and that
	// no UserSync declares. Reported, never deleted. Absent when the vendor
	// cannot tell.
	// +optional
	Orphans *int32 `json:"orphans,omitempty"`

	// createsInFlight lists the UserSyncs whose creates a sync loop is
	// sending, with when it began: it is written before the vendor calls and
	// cleared once their results are in the UserSyncs' status. After a crash
	// or a lost answer, the users of these UserSyncs without an externalID
	// are looked up at the vendor before they are created, so none is created
	// twice; a lookup that may lag (HubSpot's search) is trusted only once
	// the vendor's index delay has passed since the later of sendTime and the
	// moment the operator that reads it started.
	// +optional
	// +listType=map
	// +listMapKey=uid
	// +kubebuilder:validation:MaxItems=20000
	CreatesInFlight []CreateIntent `json:"createsInFlight,omitempty"`

	// capabilities is what the vendor's server says it offers, read when
	// the provider is checked (its credentials verified): for SCIM, from
	// GET /ServiceProviderConfig; a server that answers none offers
	// nothing optional. The operator sends /Bulk, PATCH, If-Match and
	// filtered lookups only where they are offered. Absent for vendors
	// whose API is fixed (HubSpot, Propel, user.com).
	// +optional
	Capabilities *ProviderCapabilities `json:"capabilities,omitempty"`
}

// ProviderCapabilities is what a vendor's server offers of its protocol's
// optional features (SCIM 2.0 ServiceProviderConfig, RFC 7643 section 5).
type ProviderCapabilities struct {
	// bulk says whether POST /Bulk is offered, and its limits.
	// +required
	Bulk BulkCapability `json:"bulk"`

	// patch is true when PATCH of a user is offered: updates without Bulk
	// then carry only the attributes that differ. Without it the operator
	// replaces the user with PUT, as read with the declared attributes laid
	// over it.
	// +required
	Patch bool `json:"patch"`

	// etag is true when the server versions users (ETag, meta.version):
	// an update sent without Bulk (which the operator computes from a read
	// of the user) then carries If-Match with the version read, and one
	// that finds the user changed since (412) reads it again and is
	// retried once.
	// +required
	ETag bool `json:"etag"`

	// filter says whether filtered lists (the lookups by externalId or
	// userName) are offered, and the most users one list answers.
	// +required
	Filter FilterCapability `json:"filter"`
}

// BulkCapability is what a server offers of POST /Bulk.
type BulkCapability struct {
	// supported is true when POST /Bulk is offered.
	// +required
	Supported bool `json:"supported"`

	// maxOperations is the most operations one Bulk request may carry; the
	// operator sends at most the smaller of it and spec.batchSize.
	// +optional
	MaxOperations int32 `json:"maxOperations,omitempty"`

	// maxPayloadSize is the most bytes one Bulk request may have, measured
	// on the encoded body.
	// +optional
	MaxPayloadSize int64 `json:"maxPayloadSize,omitempty"`
}

// FilterCapability is what a server offers of filtered lists.
type FilterCapability struct {
	// supported is true when the server answers filters.
	// +required
	Supported bool `json:"supported"`

	// maxResults is the most users one list answers.
	// +optional
	MaxResults int32 `json:"maxResults,omitempty"`
}

// CreateIntent says that a sync loop may have sent creates for a UserSync.
type CreateIntent struct {
	// uid is the UserSync's metadata.uid.
	// +required
	// +kubebuilder:validation:MaxLength=64
	UID string `json:"uid"`

	// sendTime is when the loop began sending (the creates were sent at or
	// after it).
	// +required
	SendTime metav1.Time `json:"sendTime"`
}

// UnmarshalJSON reads an intent, and also the plain UID string that
// createsInFlight held before it carried times: a provider status written by
// an older operator still decodes (its sendTime unknown, so the wait counts
// from when this operator started).
func (in *CreateIntent) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		*in = CreateIntent{}
		return json.Unmarshal(b, &in.UID)
	}
	type plain CreateIntent
	return json.Unmarshal(b, (*plain)(in))
}

// UserProvider is a vendor account that UserSyncs of its namespace write to.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=usersyncs-all,shortName=up
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="UserSyncs",type=integer,JSONPath=`.status.userSyncs`
// +kubebuilder:printcolumn:name="Users",type=integer,JSONPath=`.status.users`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="!has(self.spec.credentialsRef.__namespace__)",message="spec.credentialsRef.namespace is not allowed on a UserProvider: it reads Secrets of its own namespace"
type UserProvider struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which vendor account to write to and how.
	// +required
	Spec ProviderSpec `json:"spec"`

	// status is the observed state of the provider.
	// +optional
	Status ProviderStatus `json:"status,omitempty"`
}

// UserProviderList is a list of UserProviders.
// +kubebuilder:object:root=true
type UserProviderList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []UserProvider `json:"items"`
}

// ClusterUserProviderSpec is a ProviderSpec shared by the namespaces that
// namespaceSelector selects.
type ClusterUserProviderSpec struct {
	ProviderSpec `json:",inline"`

	// namespaceSelector selects the namespaces whose UserSyncs may use this
	// provider. Absent means every namespace.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
}

// ClusterUserProvider is a vendor account shared by UserSyncs of the
// namespaces its namespaceSelector selects.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,categories=usersyncs-all,shortName=cup
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=`.spec.type`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="UserSyncs",type=integer,JSONPath=`.status.userSyncs`
// +kubebuilder:printcolumn:name="Users",type=integer,JSONPath=`.status.users`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="has(self.spec.credentialsRef.__namespace__)",message="spec.credentialsRef.namespace is required on a ClusterUserProvider"
type ClusterUserProvider struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which vendor account to write to, how, and for which namespaces.
	// +required
	Spec ClusterUserProviderSpec `json:"spec"`

	// status is the observed state of the provider.
	// +optional
	Status ProviderStatus `json:"status,omitempty"`
}

// ClusterUserProviderList is a list of ClusterUserProviders.
// +kubebuilder:object:root=true
type ClusterUserProviderList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ClusterUserProvider `json:"items"`
}

func init() {
	objectTypes = append(objectTypes, &UserProvider{}, &UserProviderList{}, &ClusterUserProvider{}, &ClusterUserProviderList{})
}
