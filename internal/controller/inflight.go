package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers"
)

// Create intents. A create that is not idempotent (HubSpot without an
// idProperty) must never be sent twice blindly: if the operator crashes, or
// the answer or the status write is lost, after the vendor created a user,
// the next attempt must look the user up first. So before a loop sends
// creates it records, in one small write to the provider's status
// (status.createsInFlight), the UIDs of the UserSyncs they belong to; it
// clears them after every result is stored in the UserSync's status, where
// planner.ApplyOne has carried the intent into the records (action Create). A
// loop that finds a UserSync listed there plans every user of it that has no
// external id as a Retry (planner.Sync.CreatesUncertain).
//
// One write of a small object per loop replaces one write per UserSync
// before its first vendor call: at 200 UserSyncs of 500 users, 200 writes of
// 250 kB objects that the API server validates and stores whole.

// inFlight remembers, per provider, the create intents this process wrote
// (as status.createsInFlight holds them) and has not cleared yet: the
// provider in the cache may lag behind that write, and the intent must hold
// from the write on.
type inFlight struct {
	mu         sync.Mutex
	byProvider map[string][]string
}

func (f *inFlight) get(provider string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byProvider[provider]
}

func (f *inFlight) set(provider string, uids []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byProvider == nil {
		f.byProvider = map[string][]string{}
	}
	if len(uids) == 0 {
		delete(f.byProvider, provider)
		return
	}
	f.byProvider[provider] = uids
}

// loadInFlight sets l.inFlight: what this process wrote, and what the
// provider's status holds (written before a crash, or by the previous
// leader).
func (r *ProviderReconciler) loadInFlight(l *loop) {
	l.inFlight = map[types.UID]bool{}
	uids := r.inFlight.get(l.key.index())
	if l.provider != nil {
		uids = append(slices.Clip(uids), l.provider.status.CreatesInFlight...)
	}
	for _, uid := range uids {
		l.inFlight[types.UID(uid)] = true
	}
}

// recordCreates writes the create intents of the plan to the provider's
// status before anything is sent. Nothing is written when the status
// already lists every UserSync with creates in the plan.
func (r *ProviderReconciler) recordCreates(ctx context.Context, l *loop, plan planner.Plan) error {
	for _, it := range plan.Items {
		if it.Kind == planner.Write && it.Change.Op == providers.OpCreate {
			l.inFlight[l.syncs[it.Sync].obj.UID] = true
		}
	}
	want := l.inFlightList()
	if l.provider == nil || slices.Equal(want, l.provider.status.CreatesInFlight) {
		return nil
	}
	if err := r.patchInFlight(ctx, l, want); err != nil {
		return fmt.Errorf("recording create intents on %s: %w", l.key.index(), err)
	}
	l.wrote.Add(1)
	r.inFlight.set(l.key.index(), want)
	return nil
}

// inFlightList is l.inFlight restricted to the UserSyncs the provider still
// serves, sorted: UserSyncs that are gone have nothing left to look up.
func (l *loop) inFlightList() []string {
	var out []string
	for _, v := range l.syncs {
		if l.inFlight[v.obj.UID] {
			out = append(out, string(v.obj.UID))
		}
	}
	slices.Sort(out)
	return out
}

// patchInFlight sets status.createsInFlight of the provider to uids (none:
// removes it). The list is written explicitly (a merge patch computed from a
// cached copy that lags would leave it out) and the answer updates l.provider.
func (r *ProviderReconciler) patchInFlight(ctx context.Context, l *loop, uids []string) error {
	var value any // JSON null removes the field
	if len(uids) > 0 {
		value = uids
	}
	body, err := json.Marshal(map[string]any{"status": map[string]any{"createsInFlight": value}})
	if err != nil {
		return err
	}
	return r.Status().Patch(ctx, l.provider.obj, client.RawPatch(types.MergePatchType, body))
}
