package controller

import (
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/declared"
	"github.com/usersync/usersync-operator/internal/planner"
)

// storedResult is a record of provider ref as the API stores it.
func storedResult(ref string, rec *planner.Record) usersv1.RecordResult {
	r := usersv1.RecordResult{Provider: ref, Key: rec.Key, ExternalID: rec.ExternalID,
		State: usersv1.RecordState(rec.State), Action: rec.Action, Reason: rec.Reason,
		Message: rec.Message, Attempts: rec.Attempts, Hash: rec.Hash}
	if !rec.LastAttempt.IsZero() {
		t := metav1.NewTime(rec.LastAttempt)
		r.LastSyncTime = &t
	}
	return r
}

// sameRecord reports whether a stored result says what a record says (the
// times compared as instants: a stored time carries another location).
func sameRecord(r *usersv1.RecordResult, rec planner.Record) bool {
	have := recordOf(r)
	if !have.LastAttempt.Equal(rec.LastAttempt) {
		return false
	}
	have.LastAttempt = rec.LastAttempt
	return have == rec
}

// recordOf and recordsOf convert stored results (declared.RecordOf;
// storedResult is the inverse).
var (
	recordOf  = declared.RecordOf
	recordsOf = declared.RecordsOf
)

// toResults renders one provider's records in spec order, then the keys
// that left the spec in key order, so that equal content renders equal.
func toResults(us *usersv1.UserSync, ref string, recs map[string]planner.Record) []usersv1.RecordResult {
	out := make([]usersv1.RecordResult, 0, len(recs))
	seen := make(map[string]struct{}, len(recs))
	add := func(rec planner.Record) {
		out = append(out, storedResult(ref, &rec))
		seen[rec.Key] = struct{}{}
	}
	for i := range us.Spec.Users {
		if rec, ok := recs[us.Spec.Users[i].Key]; ok {
			add(rec)
		}
	}
	rest := make([]string, 0)
	for k := range recs {
		if _, ok := seen[k]; !ok {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		add(recs[k])
	}
	return out
}

// mergeProvider replaces one provider's records and entry in a UserSync's
// status, keeping every other provider's as they are. A nil entry removes it.
// Results stay grouped by provider: spec order first, then the others.
func mergeProvider(us *usersv1.UserSync, ref string, results []usersv1.RecordResult, entry *usersv1.ProviderSyncStatus) {
	byProvider := map[string][]usersv1.RecordResult{}
	var order []string
	for _, r := range us.Status.Results {
		if r.Provider == ref {
			continue
		}
		if _, ok := byProvider[r.Provider]; !ok {
			order = append(order, r.Provider)
		}
		byProvider[r.Provider] = append(byProvider[r.Provider], r)
	}
	if len(results) > 0 {
		if _, ok := byProvider[ref]; !ok {
			order = append(order, ref)
		}
		byProvider[ref] = results
	}
	rank := map[string]int{}
	for i, pr := range us.Spec.ProviderRefs {
		rank[pr.String()] = i
	}
	sortRefs := func(refs []string) {
		sort.SliceStable(refs, func(a, b int) bool {
			ra, oka := rank[refs[a]]
			rb, okb := rank[refs[b]]
			switch {
			case oka && okb:
				return ra < rb
			case oka != okb:
				return oka
			}
			return refs[a] < refs[b]
		})
	}
	sortRefs(order)
	merged := make([]usersv1.RecordResult, 0, len(us.Status.Results)+len(results))
	for _, p := range order {
		merged = append(merged, byProvider[p]...)
	}
	if len(merged) == 0 {
		merged = nil
	}
	us.Status.Results = merged

	us.Status.Providers = mergeEntry(us.Status.Providers, ref, entry, sortRefs)
}

// mergeEntry replaces provider ref's line in entries (nil: removes it), in
// the order sortRefs gives.
func mergeEntry(old []usersv1.ProviderSyncStatus, ref string, entry *usersv1.ProviderSyncStatus,
	sortRefs func([]string)) []usersv1.ProviderSyncStatus {
	entries := make([]usersv1.ProviderSyncStatus, 0, len(old)+1)
	for _, e := range old {
		if e.Provider != ref {
			entries = append(entries, e)
		}
	}
	if entry != nil {
		entries = append(entries, *entry)
	}
	sort.SliceStable(entries, func(a, b int) bool {
		refs := []string{entries[a].Provider, entries[b].Provider}
		sortRefs(refs)
		return refs[0] == entries[a].Provider && entries[a].Provider != entries[b].Provider
	})
	if len(entries) == 0 {
		return nil
	}
	return entries
}
