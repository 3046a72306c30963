package v1alpha1

// Condition types.
const (
	// ConditionReady: UserSync, every record of the current generation is
	// Synced; provider, credentials resolved and the last call authenticated.
	ConditionReady = "Ready"
	// ConditionProgressing: writes of the UserSync are pending.
	ConditionProgressing = "Progressing"
	// ConditionDegraded: records failed, or a provider cannot be used.
	ConditionDegraded = "Degraded"
	// ConditionSuspended: spec.suspend holds every write back.
	ConditionSuspended = "Suspended"
	// ConditionRateLimited: the vendor answered 429 in the provider's last loop.
	ConditionRateLimited = "RateLimited"
	// ConditionIdempotent: provider, whether the vendor's create can be sent
	// twice without making two users. False says what is at stake and how to
	// make it so (HubSpot: a unique idProperty).
	ConditionIdempotent = "Idempotent"
	// ConditionDrifted: UserSync, records were found different at the vendor
	// and left so (driftPolicy Report).
	ConditionDrifted = "Drifted"
	// ConditionVerifying: provider, whether drift detection can read users
	// back (False when the vendor refuses reads, or it is off).
	ConditionVerifying = "Verifying"
)

// Drift reasons and actions.
const (
	// ReasonDrifted: a record found changed at the vendor, to be rewritten.
	ReasonDrifted = "Drifted"
	// ReasonMissing: the vendor says the user no longer exists.
	ReasonMissing = "Missing"
	// ReasonChanged: under Report, the vendor holds other values.
	ReasonChanged = "Changed"
	// ReasonNoDrift: the Drifted condition is False.
	ReasonNoDrift = "NoDrift"
	// ActionCorrected and ActionRecreated: the record was rewritten after
	// drift, or created again after the vendor lost the user.
	ActionCorrected = "Corrected"
	ActionRecreated = "Recreated"
)

// Condition and record reasons.
const (
	ReasonSynced            = "Synced"
	ReasonPending           = "Pending"
	ReasonFailed            = "Failed"
	ReasonSuspended         = "Suspended"
	ReasonNotSuspended      = "NotSuspended"
	ReasonConflict          = "Conflict"
	ReasonProviderNotFound  = "ProviderNotFound"
	ReasonNotPermitted      = "NotPermitted"
	ReasonProviderNotReady  = "ProviderNotReady"
	ReasonProvidersHealthy  = "ProvidersHealthy"
	ReasonDeleting          = "Deleting"
	ReasonAuthenticated     = "Authenticated"
	ReasonSecretNotFound    = "SecretNotFound"
	ReasonSecretKeyNotFound = "SecretKeyNotFound"
	ReasonInvalidConfig     = "InvalidConfiguration"
	// ReasonInvalidMapping: the provider's attributeMapping cannot be used.
	ReasonInvalidMapping     = "InvalidMapping"
	ReasonUnsupportedType    = "UnsupportedType"
	ReasonUnauthorized       = "Unauthorized"
	ReasonForbidden          = "Forbidden"
	ReasonVendorUnreachable  = "VendorUnreachable"
	ReasonRateLimited        = "RateLimited"
	ReasonNotRateLimited     = "NotRateLimited"
	ReasonWaitingForProvider = "WaitingForProvider"
	// ReasonDeletionUnsupported: deletionPolicy is Delete but the provider's
	// vendor cannot delete users; removed users are left at the vendor.
	ReasonDeletionUnsupported = "DeletionUnsupported"
	// ReasonIdempotentCreates and ReasonCreatesNotIdempotent are the reasons
	// of a provider's Idempotent condition.
	ReasonIdempotentCreates    = "IdempotentCreates"
	ReasonCreatesNotIdempotent = "CreatesNotIdempotent"
)

// Finalizer holds a UserSync under deletionPolicy Delete until each provider
// has deleted its users. Under Orphan nothing is sent when a UserSync goes, so
// it carries no finalizer (one write less per UserSync at the API server).
const Finalizer = "users.usersync.io/finalizer"

// AnnotationApproveDeletions on a UserSync approves a held mass deletion:
// its value is the token the DeletionHeld message names, and it approves
// exactly that set of deletions.
const AnnotationApproveDeletions = "users.usersync.io/approve-deletions"

// ReasonDeletionHeld: a mass deletion waits for approval.
const ReasonDeletionHeld = "DeletionHeld"

// AnnotationApprovePlan on a UserSync in mode Plan applies exactly the
// plan whose token it holds (several tokens, one per provider, separated by
// commas). A token that no longer matches applies nothing.
const AnnotationApprovePlan = "users.usersync.io/approve-plan"

// Plan mode: the Planned condition, the record reason, and the condition's
// reasons.
const (
	// ConditionPlanned: UserSync in mode Plan, changes wait for approval.
	ConditionPlanned = "Planned"
	// ReasonPlanned: a record's write waits for the plan's approval.
	ReasonPlanned = "Planned"
	// ReasonAwaitingApproval: the Planned condition, changes wait.
	ReasonAwaitingApproval = "AwaitingApproval"
	// ReasonApprovalStale: the approve-plan annotation names a plan that
	// is no longer the current one; nothing was applied.
	ReasonApprovalStale = "ApprovalStale"
	// ReasonNothingPlanned: no change waits.
	ReasonNothingPlanned = "NothingPlanned"
)
