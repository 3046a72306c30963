package app

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// compactStatus shrinks a UserSync's status as the cache receives it,
// without changing a value: the cache holds every UserSync the operator
// serves (100,000 records at the design point) and a new version of one
// arrives with each status write, so what a record costs in memory is what
// the operator's limit has to hold, twice over while a backlog is written
// (issue 19).
//
//   - The JSON decoder grows a list by half again each time it is full, so
//     a 500-record list keeps room for 711: the list is copied to its length.
//   - The fields with few distinct values (provider, state, action, reason,
//     and the message, which a held or failing UserSync repeats on every
//     record) are decoded as a new string per record: the records of the
//     object share one copy of each. (Not package unique: its canonical
//     copies are held weakly, so two decodes share a copy only until a
//     collection, and holding its handles would keep every distinct
//     failure message of every record ever seen.)
//   - lastSyncTime is a pointer per record, and a loop gives every record it
//     writes the same time: records with equal times share one.
//
// The cached objects are read-only (the engine copies before it writes), so
// shared strings and times are safe.
func compactStatus(us *usersv1.UserSync) {
	rs := us.Status.Results
	if len(rs) == 0 {
		return
	}
	if cap(rs) > len(rs) {
		rs = exact(rs)
		us.Status.Results = rs
	}
	// The distinct times of the records (a few loops' worth) and strings.
	times := map[int64]*metav1.Time{}
	strs := map[string]string{}
	canonical := func(s string) string {
		if s == "" {
			return ""
		}
		if c, ok := strs[s]; ok {
			return c
		}
		strs[s] = s
		return s
	}
	for i := range rs {
		r := &rs[i]
		r.Provider = canonical(r.Provider)
		r.State = usersv1.RecordState(canonical(string(r.State)))
		r.Action = canonical(r.Action)
		r.Reason = canonical(r.Reason)
		r.Message = canonical(r.Message)
		if t := r.LastSyncTime; t != nil {
			if shared, ok := times[t.UnixNano()]; ok {
				r.LastSyncTime = shared
			} else {
				times[t.UnixNano()] = t
			}
		}
	}
}

// compactSpec copies the spec's users to a list of their length (see
// compactStatus); the spec interner then keeps this one copy per
// generation.
func compactSpec(spec *usersv1.UserSyncSpec) {
	if cap(spec.Users) > len(spec.Users) {
		spec.Users = exact(spec.Users)
	}
}

// exact copies s to a list of its length (slices.Clone may keep room).
func exact[T any](s []T) []T {
	out := make([]T, len(s))
	copy(out, s)
	return out
}
