package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers"
)

// Create intents. A create that is not idempotent (HubSpot without an
// idProperty) must never be sent twice blindly: if the operator crashes, or
// the answer or the status write is lost, after the vendor created a user,
// the next attempt must look the user up first. So before a loop sends
// creates it records, in one small write to the provider's status
// (status.createsInFlight), the UIDs of the UserSyncs they belong to and
// when it began sending. A loop that finds a UserSync listed there plans
// every user of it that has no external id as a Retry
// (planner.Sync.CreatesUncertain), with the latest moment its creates may
// have been sent (planner.Sync.CreatesSince): a vendor whose lookup lags
// behind writes (HubSpot's search index) trusts a lookup that finds nothing
// only once its index delay has passed since then.
//
// An intent lives as long as its UserSync has records whose create is
// uncertain (Pending, action Create, no external id): at the end of a loop
// it is cleared for the others, and for those whose creates this loop may
// have sent without learning the outcome its time moves to the end of the
// loop, after every send (not for a lookup that only waited for the index). An intent this process
// did not write (a crash, a new leader) counts from when this process first
// saw it, which is after the writer stopped: a restart never shortens the
// wait.
//
// One write of a small object per loop replaces one write per UserSync
// before its first vendor call: at 200 UserSyncs of 500 users, 200 writes of
// 250 kB objects that the API server validates and stores whole.

// inFlight remembers, per provider, the create intents of this process
// with the latest moment their creates may have been sent: the provider in
// the cache may lag behind what was written, and this process knows better
// than the stored sendTime when its loops ended.
type inFlight struct {
	mu         sync.Mutex
	byProvider map[string]map[types.UID]time.Time
}

func (f *inFlight) get(provider string) map[types.UID]time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.byProvider[provider])
}

func (f *inFlight) set(provider string, intents map[types.UID]time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byProvider == nil {
		f.byProvider = map[string]map[types.UID]time.Time{}
	}
	if len(intents) == 0 {
		delete(f.byProvider, provider)
		return
	}
	f.byProvider[provider] = maps.Clone(intents)
}

// loadInFlight sets l.inFlight: what this process knows, and what the
// provider's status holds (written before a crash, or by the previous
// leader), each intent with the latest moment its creates may have been
// sent.
func (r *ProviderReconciler) loadInFlight(l *loop) {
	l.inFlight = r.inFlight.get(l.key.index())
	if l.inFlight == nil {
		l.inFlight = map[types.UID]time.Time{}
	}
	if l.provider == nil {
		return
	}
	learned := false
	for _, in := range l.provider.status.CreatesInFlight {
		uid := types.UID(in.UID)
		if _, known := l.inFlight[uid]; known {
			continue
		}
		// Not written by this process, or cleared by it while the cache
		// still shows it: its writer may have sent until it stopped, which
		// was before now.
		l.inFlight[uid] = latest(in.SendTime.Time, l.now.Add(time.Second))
		learned = true
	}
	if learned {
		r.inFlight.set(l.key.index(), l.inFlight)
	}
}

// recordCreates writes the create intents of the plan to the provider's
// status before anything is sent. Nothing is written when the status
// already lists every UserSync with creates in the plan.
func (r *ProviderReconciler) recordCreates(ctx context.Context, l *loop, plan planner.Plan) error {
	for _, it := range plan.Items {
		if it.Kind == planner.Write && it.Change.Op == providers.OpCreate {
			uid := l.syncs[it.Sync].obj.UID
			if l.sentCreates == nil {
				l.sentCreates = map[types.UID]bool{}
			}
			l.sentCreates[uid] = true
			if _, ok := l.inFlight[uid]; !ok {
				l.inFlight[uid] = l.now
			}
		}
	}
	if len(l.sentCreates) == 0 {
		return nil
	}
	r.inFlight.set(l.key.index(), l.inFlight)
	want := l.intentList()
	if l.provider == nil || sameIntents(want, l.provider.status.CreatesInFlight) {
		return nil
	}
	if err := r.patchInFlight(ctx, l, want); err != nil {
		return fmt.Errorf("recording create intents on %s: %w", l.key.index(), err)
	}
	l.wrote.Add(1)
	return nil
}

// settleInFlight is called once the loop's results are stored in the
// UserSyncs' status: an intent stays for the UserSyncs that still have
// uncertain creates, its time moved to now where the loop sent creates, and
// goes for the others. It returns what the provider's status is to hold.
func (r *ProviderReconciler) settleInFlight(l *loop, outcomes []planner.Outcome) []usersv1.CreateIntent {
	now := r.Clock.Now()
	for si, v := range l.syncs {
		uid := v.obj.UID
		if _, ok := l.inFlight[uid]; !ok {
			continue
		}
		if !uncertainCreates(outcomes[si].Records) {
			delete(l.inFlight, uid)
			continue
		}
		if l.sentCreates[uid] && sentUncertain(outcomes[si].Records, l.now) {
			l.inFlight[uid] = now
		}
	}
	return l.intentList()
}

// sentUncertain reports whether this loop (attempts at now) left a record
// whose create it may have sent uncertain. A record that waited for the
// vendor's index was only looked up: its wait keeps counting from the
// intent's time, or it would never end.
func sentUncertain(recs map[string]planner.Record, now time.Time) bool {
	for _, rec := range recs {
		if rec.ExternalID == "" && rec.State == planner.StatePending && rec.Action == string(providers.OpCreate) &&
			rec.LastAttempt.Equal(now) && rec.Reason != providers.ReasonAwaitingIndex {
			return true
		}
	}
	return false
}

// failedLoop is called when a loop ends with an error: whatever it sent was
// sent before now, and the intents of this process say so (the provider's
// status keeps the earlier time; a restart counts from its own start).
func (r *ProviderReconciler) failedLoop(l *loop) {
	if len(l.sentCreates) == 0 {
		return
	}
	now := r.Clock.Now()
	for uid := range l.sentCreates {
		l.inFlight[uid] = now
	}
	r.inFlight.set(l.key.index(), l.inFlight)
}

// uncertainCreates reports whether a record may have been created at the
// vendor without its id being known (planner.ApplyOne marks them).
func uncertainCreates(recs map[string]planner.Record) bool {
	for _, rec := range recs {
		if rec.State == planner.StatePending && planner.MaySent(rec) {
			return true
		}
	}
	return false
}

// intentList is l.inFlight restricted to the UserSyncs the provider still
// serves, sorted: UserSyncs that are gone have nothing left to look up.
func (l *loop) intentList() []usersv1.CreateIntent {
	var out []usersv1.CreateIntent
	for _, v := range l.syncs {
		if t, ok := l.inFlight[v.obj.UID]; ok {
			out = append(out, usersv1.CreateIntent{UID: string(v.obj.UID), SendTime: metav1.NewTime(t.Truncate(time.Second))})
		}
	}
	slices.SortFunc(out, func(a, b usersv1.CreateIntent) int { return strings.Compare(a.UID, b.UID) })
	return out
}

func sameIntents(a, b []usersv1.CreateIntent) bool {
	return slices.EqualFunc(a, b, func(x, y usersv1.CreateIntent) bool {
		return x.UID == y.UID && x.SendTime.Equal(&y.SendTime)
	})
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// patchInFlight sets status.createsInFlight of the provider to intents
// (none: removes it). The list is written explicitly (a merge patch computed
// from a cached copy that lags would leave it out) and the answer updates
// l.provider.
func (r *ProviderReconciler) patchInFlight(ctx context.Context, l *loop, intents []usersv1.CreateIntent) error {
	var value any // JSON null removes the field
	if len(intents) > 0 {
		value = intents
	}
	body, err := json.Marshal(map[string]any{"status": map[string]any{"createsInFlight": value}})
	if err != nil {
		return err
	}
	return r.Status().Patch(ctx, l.provider.obj, client.RawPatch(types.MergePatchType, body))
}
