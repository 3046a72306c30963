package providers

import "context"

// Reader is implemented by a Client that can read its users back, for drift
// detection: the engine compares what the vendor holds with what it wrote,
// on a schedule (the provider's spec.driftDetection).
//
// Rules every Reader keeps:
//   - One Observation per ReadRequest, matched by ID (never by position).
//   - Missing only on the vendor's explicit word that this identity does
//     not exist (a 404 for it, or a batch read's per-input not-found
//     error), from a read the vendor guarantees current. A read that fails,
//     times out, is throttled, or answers something unreadable is Unknown:
//     it verifies nothing, and the engine changes no record for it.
//   - Differs compares as the vendor stores values (a normalisation per
//     vendor: HubSpot keeps numbers and booleans as strings, emails may be
//     lower-cased, ...), so that an unchanged user is never reported.
//   - Reads go through Config.HTTPClient (rate limited and metered like
//     writes) with the endpoint named for the metrics.
type Reader interface {
	Read(ctx context.Context, reqs []ReadRequest) ([]Observation, error)
	// ReadBatch is the most users one read call answers (HubSpot 100,
	// one-user-per-call vendors 1): the engine sizes its passes by it.
	ReadBatch() int
}

// ReadRequest asks what the vendor holds for one user.
type ReadRequest struct {
	// ID correlates the request with its Observation.
	ID string
	// ExternalID is the vendor's id of the user, when known.
	ExternalID string
	// User is the user as declared and last written.
	User User
}

// Presence is what a read learnt about a user's existence.
type Presence int

const (
	// Unknown: the read did not answer for sure; nothing is concluded.
	Unknown Presence = iota
	// Found: the vendor holds the user.
	Found
	// Missing: the vendor said the user does not exist.
	Missing
)

func (p Presence) String() string {
	switch p {
	case Found:
		return "Found"
	case Missing:
		return "Missing"
	}
	return "Unknown"
}

// Observation is what a read found for one ReadRequest.
type Observation struct {
	ID       string
	Presence Presence
	// Differs names the fields, in the vendor's vocabulary (e.g.
	// hs_job_title), whose stored value is not the declared one; sorted;
	// empty when the user is as declared. Only with Found.
	Differs []string
	// Err says why the observation is Unknown. It never holds a credential.
	Err error
}

// ReadRefusal is implemented by a Reader whose vendor account may refuse
// reads (Propel accounts without the read scope): ReadsRefused says so once
// known, and the engine turns verification off for the provider with a
// condition instead of failing.
type ReadRefusal interface {
	ReadsRefused() (refused bool, why string)
}

// OrphanCounter is implemented by a Reader whose users carry the
// provider's identity (HubSpot's idProperty, Propel's source): it counts
// the users the vendor holds with that identity whose identity value is not
// in declared (as Client.Identity gives them). ok is false when the vendor
// cannot tell for this configuration. Orphans are reported, never deleted.
type OrphanCounter interface {
	CountOrphans(ctx context.Context, declared map[string]bool) (n int, ok bool, err error)
}
