package planner

import (
	"errors"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
)

// Bounds of the stored record fields, as the UserSync CRD enforces them.
const (
	MaxMessageLength    = providers.MaxMessageLength
	MaxReasonLength     = providers.MaxReasonLength
	MaxExternalIDLength = providers.MaxExternalIDLength
)

// Outcome is the new state of the records of one UserSync after a loop.
type Outcome struct {
	// Records are the records to store, by key; a key absent from it is
	// forgotten.
	Records map[string]Record
}

// Apply folds the vendor's results into the records. results holds the
// Results of plan.Changes() (any order); a Change without a Result is treated
// as a transient failure whose outcome is unknown. The returned slice is
// indexed like Input.Syncs.
func Apply(in Input, plan Plan, results []providers.Result) []Outcome {
	return ApplyByID(in, plan, IndexResults(results))
}

// ApplyByID is Apply with the results already indexed by Change.ID.
func ApplyByID(in Input, plan Plan, byID map[string]providers.Result) []Outcome {
	out := make([]Outcome, len(in.Syncs))
	for si := range out {
		out[si] = ApplyOne(in, plan, si, byID)
	}
	return out
}

// IndexResults indexes results by Change.ID for ApplyOne.
func IndexResults(results []providers.Result) map[string]providers.Result {
	byID := make(map[string]providers.Result, len(results))
	for _, r := range results {
		byID[r.ID] = r
	}
	return byID
}

// ApplyOne is Apply for the sync si alone, with the results by Change.ID:
// the engine stores a UserSync's records as soon as all of its changes are
// answered, while the vendor still works on others.
//
// A sync whose creates are uncertain (Sync.CreatesUncertain) or that sent
// creates in this plan keeps that knowledge in its records: every record
// still without an external id and Pending gets action Create, which alone
// makes a later plan look the user up before creating it (the engine's
// create intents are cleared once these records are stored).
func ApplyOne(in Input, plan Plan, si int, byID map[string]providers.Result) Outcome {
	items := plan.Of(si)
	recs := make(map[string]Record, len(items))
	creates := in.Syncs[si].CreatesUncertain
	for i := range items {
		it := &items[i]
		creates = creates || it.Kind == Write && it.Change.Op == providers.OpCreate
		switch it.Kind {
		case Noop, Wait, Held:
			recs[it.Key] = it.Record
		case Forget:
		case Write, Remove:
			r, ok := byID[it.Change.ID]
			if !ok {
				r = providers.Result{ID: it.Change.ID, Err: &providers.RecordError{Uncertain: true,
					Code: "NoResult", Message: "the write's outcome is unknown; it will be retried"}}
			}
			if rec, keep := fold(in.Now, it, r); keep {
				recs[it.Key] = rec
			}
		}
	}
	if creates {
		markCreates(recs)
	}
	return Outcome{Records: recs}
}

// markCreates gives action Create to the records whose user may have been
// created at the vendor without the engine learning its id, and an attempt
// to those held by a plan awaiting approval, whose Create would otherwise
// read as only planned (MaySent).
func markCreates(recs map[string]Record) {
	for key, rec := range recs {
		if rec.ExternalID != "" || rec.State != StatePending {
			continue
		}
		switch {
		case rec.Action != string(providers.OpCreate):
			rec.Action = string(providers.OpCreate)
		case rec.Reason == ReasonPlanned && rec.Attempts == 0:
			rec.Attempts = 1
		default:
			continue
		}
		recs[key] = rec
	}
}

// fold returns the record after a write, and false when it is to be forgotten.
func fold(now time.Time, it *Item, r providers.Result) (Record, bool) {
	rec := it.Record
	rec.Key = it.Key
	rec.LastAttempt = now
	if it.Kind == Write {
		rec.Hash = it.hash
	}
	if r.Err == nil && len(r.ExternalID) > MaxExternalIDLength {
		// The status cannot hold it; never store a truncated id.
		r.Err = &providers.RecordError{Permanent: true, Code: "ExternalIDTooLong",
			Message: "the vendor returned an id longer than 64 bytes, which the status cannot hold"}
	}
	if r.Err == nil {
		if it.Kind == Remove {
			return Record{}, false
		}
		rec.State = StateSynced
		rec.Action = string(r.Action)
		switch it.Record.Reason {
		case ReasonDrifted:
			rec.Action = ActionCorrected
		case ReasonMissing:
			rec.Action = ActionRecreated
		}
		if r.ExternalID != "" {
			rec.ExternalID = r.ExternalID
		}
		rec.Reason, rec.Message, rec.Attempts = "", Truncate(r.Note, MaxMessageLength), 0
		return rec, true
	}
	var re *providers.RecordError
	if !errors.As(r.Err, &re) {
		re = &providers.RecordError{Message: r.Err.Error()}
	}
	rec.Action = string(it.Change.Op)
	rec.Reason = Truncate(re.Code, MaxReasonLength)
	if rec.Reason == "" {
		rec.Reason = "Error"
	}
	rec.Message = Truncate(re.Message, MaxMessageLength)
	rec.Attempts++
	switch {
	case it.Kind == Remove:
		rec.State = StateDeleting
	case re.Permanent:
		rec.State = StateFailed
	default:
		rec.State = StatePending
	}
	return rec, true
}

// Truncate cuts s to at most n bytes on a rune boundary (providers.Truncate).
var Truncate = providers.Truncate

// NextRetry returns when the earliest record of the outcomes that awaits a
// retry (Pending or Deleting after a failed attempt) becomes due; zero when
// none does.
func NextRetry(outcomes []Outcome, b Backoff) time.Time {
	var next time.Time
	for _, o := range outcomes {
		for _, rec := range o.Records {
			if rec.Attempts == 0 || (rec.State != StatePending && rec.State != StateDeleting) {
				continue
			}
			due := rec.LastAttempt.Add(b.Delay(rec.Attempts))
			if next.IsZero() || due.Before(next) {
				next = due
			}
		}
	}
	return next
}
