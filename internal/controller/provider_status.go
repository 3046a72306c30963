package controller

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers"
)

// verify checks the credentials with one cheap call when the provider is not
// yet known to be Ready for its generation, or its client was just built from
// a changed Secret: a rotated credential that does not work shows on the
// provider at once, not at the next write.
func (r *ProviderReconciler) verify(ctx context.Context, l *loop) {
	p := l.provider
	if p == nil || l.vendor == nil || l.notReady != nil {
		return
	}
	rebuilt := r.clients.takeUnverified(p.obj.GetUID())
	c := meta.FindStatusCondition(p.status.Conditions, usersv1.ConditionReady)
	if !rebuilt && c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == p.obj.GetGeneration() {
		return
	}
	err := l.vendor.Verify(ctx)
	var ae *providers.AuthError
	switch {
	case errors.As(err, &ae):
		l.notReady = &notReady{Reason: ae.Reason, Message: ae.Error()}
	case err != nil:
		// Not a refusal: nothing is known of the credentials. Writes go
		// on (a blip must not hold them), Ready says Unknown, and the next
		// loop checks again.
		logf.FromContext(ctx).V(1).Info("verifying credentials failed", "error", err.Error())
		l.unreachable = providers.Truncate(err.Error(), maxConditionMessage-100)
	}
}

// writeProviderStatus stores the provider's conditions and counters. It
// writes only when they change, so an idle resync writes nothing.
func (r *ProviderReconciler) writeProviderStatus(ctx context.Context, l *loop, outcomes []planner.Outcome, stats transportStats) (err error) {
	// Every UserSync's results are stored, with the uncertain creates carried
	// into their records (planner.ApplyOne): the intents of the others are
	// done. p.status holds what recordCreates wrote, so the patch below
	// removes them.
	intents := r.settleInFlight(l, outcomes)
	defer func() {
		if err == nil {
			r.inFlight.set(l.key.index(), l.inFlight)
		} else {
			r.failedLoop(l)
		}
	}()
	p := l.provider
	if p == nil {
		return nil
	}
	st := p.status.DeepCopy()
	st.ObservedGeneration = p.obj.GetGeneration()
	st.CreatesInFlight = intents
	if !l.verifiedAt.IsZero() {
		t := metav1.NewTime(l.verifiedAt)
		st.LastVerifiedTime = &t
		r.verified.set(l.key.index(), l.verifiedAt)
	}
	if l.orphans != nil {
		st.Orphans = l.orphans
	}
	if cr, ok := l.vendor.(providers.CapabilityReporter); ok {
		if caps, ok := cr.Capabilities(); ok {
			st.Capabilities = &caps
		}
	}
	deleting, held := countProviderRecords(st, l, outcomes)
	setRecordGauges(l.key.index(), int(st.Synced), int(st.Pending)-deleting, int(st.Failed), deleting, held)
	r.setProviderConditions(l, st, stats)

	if equality.Semantic.DeepEqual(st, p.status) {
		return nil
	}
	now := metav1.NewTime(r.Clock.Now())
	st.LastSyncTime = &now
	base := p.obj.DeepCopyObject().(client.Object)
	*p.status = *st
	if err := r.Status().Patch(ctx, p.obj, client.MergeFrom(base)); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("patching status of %s: %w", l.key.index(), err)
	}
	l.wrote.Add(1)
	return nil
}

// countProviderRecords sets the provider's counters from the loop's records
// of the UserSyncs it serves, and returns how many of the pending ones are
// deletions, and how many of those the deletion guard holds.
func countProviderRecords(st *usersv1.ProviderStatus, l *loop, outcomes []planner.Outcome) (deleting, held int) {
	st.UserSyncs, st.Users, st.Synced, st.Pending, st.Failed = 0, 0, 0, 0, 0
	for si, v := range l.syncs {
		if v.refusedReason != "" {
			continue
		}
		t := tallyOf(outcomes[si].Records)
		st.UserSyncs++
		st.Users += int32(len(outcomes[si].Records))
		st.Synced += int32(t.synced)
		st.Failed += int32(t.failed)
		st.Pending += int32(t.pending + t.deleting)
		deleting += t.deleting
		held += t.held
	}
	return deleting, held
}

// setProviderConditions sets Ready (with an event when it turns to a new
// failure) and RateLimited (with an event when the vendor throttled).
func (r *ProviderReconciler) setProviderConditions(l *loop, st *usersv1.ProviderStatus, stats transportStats) {
	p, gen := l.provider, l.provider.obj.GetGeneration()
	ready := metav1.Condition{Type: usersv1.ConditionReady, Status: metav1.ConditionTrue, ObservedGeneration: gen,
		Reason: usersv1.ReasonAuthenticated, Message: "credentials resolved and the vendor accepted them"}
	switch {
	case l.notReady != nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, l.notReady.Reason, l.notReady.Message
	case l.unreachable != "":
		ready.Status, ready.Reason = metav1.ConditionUnknown, usersv1.ReasonVendorUnreachable
		ready.Message = "the vendor could not be reached to check the credentials (checked again next loop): " + l.unreachable
	}
	if prev := meta.FindStatusCondition(st.Conditions, usersv1.ConditionReady); l.notReady != nil &&
		(prev == nil || prev.Reason != l.notReady.Reason) && r.Recorder != nil {
		r.Recorder.Eventf(p.obj, nil, corev1.EventTypeWarning, l.notReady.Reason, "Sync", "%s", l.notReady.Message)
	}
	meta.SetStatusCondition(&st.Conditions, ready)
	up := 0.0
	if ready.Status == metav1.ConditionTrue {
		up = 1
	}
	providerReadyGauge.WithLabelValues(l.key.index()).Set(up)

	limited := metav1.Condition{Type: usersv1.ConditionRateLimited, Status: metav1.ConditionFalse, ObservedGeneration: gen,
		Reason: usersv1.ReasonNotRateLimited, Message: "the vendor did not throttle the last sync"}
	if stats.Throttled > 0 {
		limited.Status, limited.Reason = metav1.ConditionTrue, usersv1.ReasonRateLimited
		limited.Message = fmt.Sprintf("the vendor answered 429 to %d of %d requests in the last sync; the operator waited and retried",
			stats.Throttled, stats.Requests)
		if r.Recorder != nil {
			r.Recorder.Eventf(p.obj, nil, corev1.EventTypeWarning, usersv1.ReasonRateLimited, "Sync", "%s", limited.Message)
		}
	}
	meta.SetStatusCondition(&st.Conditions, limited)
	setIdempotent(l, st)
	setVerifying(l, st)
}

// setIdempotent sets the Idempotent condition from what the vendor client
// says of its creates (providers.CreateSafety); it is left as it was while
// no client can be built.
func setIdempotent(l *loop, st *usersv1.ProviderStatus) {
	cs, ok := l.vendor.(providers.CreateSafety)
	if !ok {
		return
	}
	c := metav1.Condition{Type: usersv1.ConditionIdempotent, Status: metav1.ConditionTrue,
		ObservedGeneration: l.provider.obj.GetGeneration(), Reason: usersv1.ReasonIdempotentCreates}
	safe, why := cs.IdempotentCreates()
	if !safe {
		c.Status, c.Reason = metav1.ConditionFalse, usersv1.ReasonCreatesNotIdempotent
	}
	c.Message = planner.Truncate(why, maxConditionMessage)
	meta.SetStatusCondition(&st.Conditions, c)
}
