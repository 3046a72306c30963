package controller

import (
	"time"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
)

// A loop holds one of the operator's workers (--workers) for as long as it
// sends, and under a vendor's rate limit most of that time is spent waiting
// for the window to have room: a 100,000-user backlog at HubSpot's 100 calls
// per 10 s waits 200 s, and with more providers than workers the others
// waited for it, each a whole backlog behind the one before. So when other
// providers wait for a worker, a loop whose next calls would wait longer
// than YieldAfter stops sending (yieldAt):
// what it sent is stored as always, the changes it did not send are
// deferred (planner.Plan.Defer: their records stay as they were, and a
// UserSync none of whose changes were sent is not written at all, so it is
// still written once when its users are), and the provider comes back
// when its window has room (resumeAt), a little early so that its plan is
// ready then. Between the two, the worker serves the other providers.
//
// A UserSync in mode Plan is never split between loops: its approved plan
// is applied whole (a part would read as another plan).

// yieldResumeLead is how much before the window has room the provider's
// next loop starts: the time to plan a large provider again.
const yieldResumeLead = time.Second

// yieldAt reports whether the loop stops sending before the change at
// position pos of the plan, and if so records where and when to resume.
func (r *ProviderReconciler) yieldAt(l *loop, plan planner.Plan, pos int) bool {
	if r.YieldAfter <= 0 || l.tr == nil || pos >= plan.NumChanges() {
		return false
	}
	if pos > 0 {
		it, prev := plan.ChangeItem(pos), plan.ChangeItem(pos-1)
		if it.Sync == prev.Sync && l.syncs[it.Sync].obj.Spec.Mode == usersv1.ModePlan {
			return false
		}
	}
	if !r.othersWaiting() {
		return false
	}
	wait := l.tr.limiter.room(l.tr.callsPerChunk())
	if wait <= r.YieldAfter {
		return false
	}
	l.yielded, l.sentChanges = true, pos
	loopYields.WithLabelValues(l.key.index()).Inc()
	l.resumeAt = r.Clock.Now().Add(wait - min(yieldResumeLead, wait/2))
	return true
}

// othersWaiting reports whether providers are ready for a worker and wait
// for one. A loop alone keeps its worker: yielding would only cost it a
// plan and its UserSyncs a status write per split. Without the queue (a
// reconciler not set up by SetupWithManager) it is taken that they do.
func (r *ProviderReconciler) othersWaiting() bool {
	q := r.queue.Load()
	return q == nil || (*q).Len() > 0
}

// deferredSyncs are the syncs with changes none of which is before
// position sent.
func deferredSyncs(plan planner.Plan, sent int) map[int]bool {
	out := map[int]bool{}
	for pos := sent; pos < plan.NumChanges(); pos++ {
		out[plan.ChangeItem(pos).Sync] = true
	}
	for pos := range sent {
		delete(out, plan.ChangeItem(pos).Sync)
	}
	return out
}
