package controller

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/declared"
	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers"
)

// Plan mode. A UserSync whose spec.mode is Plan has its loop compute what
// it would send and hold all of it (planner.Hold with Planned): the records
// due a write are Pending with reason Planned and the planned action, and
// status.plan shows per provider the counts, the vendor calls, the time
// under the rate limit and a token. The annotation
// users.usersync.io/approve-plan=<token> lets exactly the plan with that
// token through, once: the token digests the provider, the generation and
// every change, so after the apply the next change makes a new token, and a
// spec edit or drift found meanwhile makes the approval stale (nothing is
// applied; the Planned condition says so and names the new token).
//
// An approved plan is applied to its end: what its loop left unfinished
// (a transient error, a create whose lookup must wait for the vendor's
// index, a loop timeout) is retried in the next loops without a new
// approval, because a retry sends again what was sent, with the same
// content (planner.Item.Retries); the token leaves retries out, so they
// never make an approval stale. Writes attempted under mode Apply before a
// switch to Plan are retried the same way.
//
// Nothing of a held plan reaches the vendor: held records are no changes,
// so no write, create intent or lookup is sent for them. Reads (drift
// detection) go on.

// review is one UserSync's plan at this loop's provider.
type review struct {
	planner.Review
	approved bool
	// stale is the token the annotation approved, when it is not the
	// current plan's.
	stale string
}

// computeGated computes the plan, then holds the changes of every UserSync
// in mode Plan whose plan holds a change that is not a retry and is not
// approved, and computes it again.
func (r *ProviderReconciler) computeGated(l *loop, in *planner.Input) planner.Plan {
	for si := range in.Syncs {
		if h := in.Syncs[si].Hold; h != nil && h.Planned {
			in.Syncs[si].Hold = nil
		}
	}
	plan := planner.Compute(*in)
	l.reviews = map[int]*review{}
	held := false
	for si, v := range l.syncs {
		if v.obj.Spec.Mode != usersv1.ModePlan || in.Syncs[si].Removed {
			continue
		}
		approval := v.obj.Annotations[usersv1.AnnotationApprovePlan]
		rv := &review{Review: planner.ReviewOf(l.key.ref(), v.obj.Generation, plan.Of(si))}
		rv.approved = planner.ApprovedBy(approval, rv.Token)
		if !rv.approved && approval != "" && rv.NeedsApproval() {
			rv.stale = approval
		}
		l.reviews[si] = rv
		if !rv.NeedsApproval() || rv.approved || in.Syncs[si].Hold != nil {
			continue
		}
		in.Syncs[si].Hold = &planner.Hold{Reason: usersv1.ReasonPlanned, Planned: true,
			Message: "spec.mode is Plan: approve with " + usersv1.AnnotationApprovePlan + "=" + rv.Token}
		held = true
	}
	if held {
		plan = planner.Compute(*in)
	}
	return plan
}

// planEntry is this provider's line of status.plan for UserSync si; nil
// when the UserSync is not in mode Plan or nothing is planned.
func (l *loop) planEntry(si int) *usersv1.ProviderPlan {
	rv := l.reviews[si]
	if rv == nil || !rv.NeedsApproval() || rv.approved {
		return nil
	}
	calls := l.plannedCalls(rv.Changes)
	e := &usersv1.ProviderPlan{Provider: l.key.ref(), Creates: int32(rv.Creates), Updates: int32(rv.Updates),
		Deletes: int32(rv.Deletes), Calls: int32(calls), Token: rv.Token}
	if d, ok := l.callsDuration(calls); ok {
		e.EstimatedDuration = &metav1.Duration{Duration: d}
	}
	return e
}

// plannedCalls is how many vendor calls the changes take: the vendor's own
// count where its client gives one, else a call per batch of each
// operation.
//
// status.plan counts a plan's changes alone. The loop packs the pending
// changes of all UserSyncs of a provider into the same calls, but an
// approval is applied in a later loop than the one that made the plan, and
// what the other UserSyncs had pending then went out in that loop; another
// plan waiting for approval does not ride along. So the count is what the
// apply takes, unless other changes reach the provider in the very loop
// that applies it (another plan approved at the same moment, an edit
// arriving with the approval): then they share calls, and the loop takes
// at most the sum.
func (l *loop) plannedCalls(chs []providers.Change) int {
	batch := 0
	if l.provider != nil && l.provider.spec.BatchSize != nil {
		batch = int(*l.provider.spec.BatchSize)
	}
	return planner.Calls(l.vendor, batch, chs)
}

// callsDuration is the least time calls take under the provider's rate
// limit, counted as the vendors count it: a window's allowance at once,
// then the limit's pace.
func (l *loop) callsDuration(calls int) (time.Duration, bool) {
	if l.tr == nil || calls == 0 {
		return 0, calls == 0
	}
	requests, period := l.tr.limiter.limits()
	if requests <= 0 || period <= 0 {
		return 0, false
	}
	extra := max(calls-requests, 0)
	return (time.Duration(extra) * period / time.Duration(requests)).Round(time.Second), true
}

// plannedCondition is the UserSync's Planned condition from its plan lines
// and its approval annotation; nil outside mode Plan.
func plannedCondition(us *usersv1.UserSync) *metav1.Condition {
	if us.Spec.Mode != usersv1.ModePlan {
		return nil
	}
	c := &metav1.Condition{Type: usersv1.ConditionPlanned, Status: metav1.ConditionFalse,
		Reason: usersv1.ReasonNothingPlanned, Message: "no change waits for approval", ObservedGeneration: us.Generation}
	if len(us.Status.Plan) == 0 {
		return c
	}
	var tokens, parts []string
	for _, p := range us.Status.Plan {
		tokens = append(tokens, p.Token)
		parts = append(parts, fmt.Sprintf("%s: %d creates, %d updates, %d deletes in %d calls", p.Provider, p.Creates, p.Updates, p.Deletes, p.Calls))
	}
	c.Status, c.Reason = metav1.ConditionTrue, usersv1.ReasonAwaitingApproval
	approve := fmt.Sprintf("kubectl annotate --overwrite usersync -n %s %s %s=%s", us.Namespace, us.Name,
		usersv1.AnnotationApprovePlan, strings.Join(tokens, ","))
	c.Message = strings.Join(parts, "; ") + ". Approve exactly this plan: " + approve
	if a := us.Annotations[usersv1.AnnotationApprovePlan]; a != "" {
		c.Reason = usersv1.ReasonApprovalStale
		c.Message = fmt.Sprintf("the approved plan %s is no longer the current one (the spec or the vendor moved on); nothing was applied. ", a) + c.Message
	}
	c.Message = planner.Truncate(c.Message, maxConditionMessage)
	return c
}

// maxPlannedReads bounds the users a loop reads back to describe its held
// updates.
const maxPlannedReads = 1000

// describePlanned names, in the records of the updates a plan holds, the
// fields the update would change: read from the vendor where its client
// reads back (what it holds now against what is declared), within
// maxPlannedReads users. A read that answers nothing for sure leaves the
// message as it is.
func (r *ProviderReconciler) describePlanned(ctx context.Context, l *loop, plan *planner.Plan) {
	rd, ok := l.vendor.(providers.Reader)
	if !ok || l.notReady != nil || len(l.reviews) == 0 {
		return
	}
	var reqs []providers.ReadRequest
	var idx []int
	for i := range plan.Items {
		it := &plan.Items[i]
		if it.Kind != planner.Held || it.Record.Reason != usersv1.ReasonPlanned || it.Record.ExternalID == "" ||
			it.Record.Action != string(providers.OpUpdate) || it.Index < 0 || it.Index >= len(l.syncs[it.Sync].obj.Spec.Users) {
			continue
		}
		reqs = append(reqs, providers.ReadRequest{ID: strconv.Itoa(len(reqs)), ExternalID: it.Record.ExternalID,
			User: declared.Written(l.syncs[it.Sync].obj, it.Index, l.mapping, providers.OpUpdate)})
		idx = append(idx, i)
		if len(reqs) == maxPlannedReads {
			break
		}
	}
	if len(reqs) == 0 {
		return
	}
	vctx := providers.WithObserver(ctx, metricLabels{provider: l.key.index(), vendor: string(l.provider.spec.Type)})
	obs, err := rd.Read(vctx, reqs)
	if err != nil {
		return
	}
	for _, o := range obs {
		n, err := strconv.Atoi(o.ID)
		if err != nil || n < 0 || n >= len(idx) {
			continue
		}
		it := &plan.Items[idx[n]]
		token := ""
		if rv := l.reviews[it.Sync]; rv != nil {
			token = rv.Token
		}
		var what string
		switch o.Presence {
		case providers.Found:
			if len(o.Differs) == 0 {
				what = "the Update would change nothing the vendor holds now"
			} else {
				what = "the Update would change " + strings.Join(o.Differs, ", ")
			}
		case providers.Missing:
			what = "the vendor no longer holds this user: it would be created again"
		default:
			continue
		}
		it.Record.Message = planner.Truncate(fmt.Sprintf("spec.mode is Plan: %s; approve with %s=%s", what,
			usersv1.AnnotationApprovePlan, token), planner.MaxMessageLength)
	}
}
