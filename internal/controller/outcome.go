package controller

import (
	"fmt"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
)

// The outcome of a UserSync at one provider is decided here and only here,
// by one precedence, highest first:
//
//  1. the UserSync may not use the provider (not found, namespace refused);
//  2. the provider cannot be written to (credentials, configuration);
//  3. spec.suspend, while something waits;
//  4. deletions held until the UserSync approves them;
//  5. deletions that fail at the vendor;
//  6. failed records;
//  7. pending records;
//  8. every record synced (with a remark when deletions cannot be honoured).
//
// The planner holds every write under 1-3 (holdOf); the provider's line in
// the UserSync's status takes the first that applies (classify); the
// UserSync's conditions are derived from those lines (blocking).

// holdOf is why nothing may be written for v in this loop (1-3), or nil.
func (l *loop) holdOf(v *syncView) *planner.Hold {
	switch {
	case v.refusedReason != "":
		return &planner.Hold{Reason: v.refusedReason, Message: v.refusedMessage}
	case l.notReady != nil:
		return &planner.Hold{Reason: usersv1.ReasonProviderNotReady, Message: l.notReady.Message}
	case v.obj.Spec.Suspend:
		return &planner.Hold{Reason: usersv1.ReasonSuspended, Message: "spec.suspend is true"}
	}
	return nil
}

// tally counts one provider's records of a UserSync by state.
type tally struct {
	synced, pending, failed, deleting, drifted int
	// held counts the deletions waiting for approval (of deleting), and
	// heldMessage is one of their messages, which names the token.
	held        int
	heldMessage string
	// deleteError is the message of a deletion that failed, if any.
	deleteError string
}

func tallyOf(recs map[string]planner.Record) tally {
	var t tally
	for _, rec := range recs {
		switch rec.State {
		case planner.StateSynced:
			t.synced++
		case planner.StatePending:
			t.pending++
		case planner.StateFailed:
			t.failed++
		case planner.StateDrifted:
			t.drifted++
		case planner.StateDeleting:
			t.deleting++
			if rec.Reason == planner.ReasonDeletionHeld {
				t.held++
				t.heldMessage = rec.Message
			} else if t.deleteError == "" {
				t.deleteError = rec.Message
			}
		}
	}
	return t
}

// classify sets the ready flag, reason and message of e, this provider's line
// in v's status, from its records (t) and the users the spec declares that
// have no record yet (missing).
func (l *loop) classify(e *usersv1.ProviderSyncStatus, v *syncView, t tally, missing int) {
	waiting := t.pending + t.deleting + missing
	if h := l.holdOf(v); h != nil && (h.Reason != usersv1.ReasonSuspended || waiting > 0) {
		e.Reason, e.Message = h.Reason, h.Message
		return
	}
	switch {
	case t.held > 0:
		e.Reason = usersv1.ReasonDeletionHeld
		e.Message = planner.Truncate(fmt.Sprintf("%s (kubectl annotate usersync -n %s %s %s)", t.heldMessage,
			v.obj.Namespace, v.obj.Name, approveArg(t.heldMessage)), maxConditionMessage)
	case t.deleting > 0:
		e.Reason = usersv1.ReasonDeleting
		e.Message = planner.Truncate(fmt.Sprintf("%d users wait to be deleted at the vendor (last error: %s); "+
			"set spec.deletionPolicy: Orphan to release them without deleting", t.deleting, t.deleteError), maxConditionMessage)
	case t.failed > 0:
		e.Reason, e.Message = usersv1.ReasonFailed, fmt.Sprintf("%d records failed", t.failed)
	case t.drifted > 0:
		e.Reason, e.Message = usersv1.ConditionDrifted, fmt.Sprintf("%d users differ at the vendor (driftPolicy Report)", t.drifted)
	case t.pending+missing > 0:
		e.Reason, e.Message = usersv1.ReasonPending, fmt.Sprintf("%d records pending", t.pending+missing)
	default:
		e.Ready = true
		if v.deleteUnsupported != "" {
			e.Reason = usersv1.ReasonDeletionUnsupported
			e.Message = "deletionPolicy Delete cannot be honoured, users removed from spec.users are left at the vendor: " +
				v.deleteUnsupported
		}
	}
}

// maxConditionMessage bounds the messages the engine composes for a
// provider line or a condition.
const maxConditionMessage = 1024

// blocking reports whether a provider line's reason stops the whole
// UserSync (its Ready and Degraded conditions name that provider).
func blocking(reason string) bool {
	switch reason {
	case usersv1.ReasonProviderNotFound, usersv1.ReasonNotPermitted, usersv1.ReasonProviderNotReady,
		usersv1.ReasonDeletionHeld:
		return true
	}
	return false
}
