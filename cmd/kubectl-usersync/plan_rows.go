package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/declared"
	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers"
)

// What plan prints for one UserSync at one provider: a row per user that
// changes, with the fields an update changes, then the calls.

// rows describes the items of the planned UserSync that change something.
func (pl *planner2) rows(us, live *usersv1.UserSync, p *provider, s planner.Sync, items []planner.Item) []row {
	// The users as the vendor would get them (mapped), before and after.
	liveUsers := map[string]*providers.User{}
	if live != nil {
		for i := range live.Spec.Users {
			u := declared.Written(live, i, p.mapping, providers.OpUpdate)
			liveUsers[u.Key] = &u
		}
	}
	newUsers := map[string]*providers.User{}
	for i := range us.Spec.Users {
		u := declared.Written(us, i, p.mapping, providers.OpUpdate)
		newUsers[u.Key] = &u
	}
	var rows []row
	for i := range items {
		it := &items[i]
		old, had := s.Records[it.Key]
		switch it.Kind {
		case planner.Write:
			if it.Change.Op == providers.OpCreate {
				what := "new user"
				if had {
					what = "not at the vendor yet (" + dash(old.State) + ")"
				}
				rows = append(rows, row{it.Key, "create", what})
				continue
			}
			rows = append(rows, row{it.Key, "update", fieldChanges(old, liveUsers[it.Key], newUsers[it.Key])})
		case planner.Remove:
			rows = append(rows, row{it.Key, "delete", "left spec.users (deletionPolicy Delete)"})
		case planner.Forget:
			rows = append(rows, row{it.Key, "forget", "left spec.users; kept at the vendor (deletionPolicy Orphan, or handed over)"})
		case planner.Held:
			if it.Record.State == old.State && it.Record.Reason == old.Reason && it.Record.Message == old.Message {
				continue // already so
			}
			switch it.Record.Reason {
			case planner.ReasonDeletionHeld:
				rows = append(rows, row{it.Key, "hold", "delete held by the mass-deletion guard: " + shorten(it.Record.Message, 120)})
			default:
				rows = append(rows, row{it.Key, "fail", it.Record.Reason + ": " + it.Record.Message})
			}
		default:
			if pl.po.showUnchanged {
				rows = append(rows, row{it.Key, "unchanged", "-"})
			}
		}
	}
	return rows
}

// fieldChanges names what an update writes. The status keeps only a
// digest of what was last written: the fields are known when the
// cluster's current spec of the user is what was written (same digest).
func fieldChanges(old planner.Record, was, now *providers.User) string {
	if now == nil {
		return "content changed"
	}
	if old.Hash == planner.Hash(*now) {
		switch old.State {
		case planner.StateDrifted, planner.StatePending:
			if old.Reason == planner.ReasonMissing {
				return "re-create: the vendor lost the user (drift)"
			}
			if old.Reason == planner.ReasonDrifted || old.Reason == planner.ReasonChanged {
				return "drift correction: rewrite what the vendor changed"
			}
			return "write again (" + dash(old.Reason) + ")"
		}
		return "write again"
	}
	if was == nil || old.Hash != planner.Hash(*was) {
		return "content changed (fields unknown: the status keeps only a digest of what was last written)"
	}
	var fields []string
	add := func(name, a, b string) {
		if a != b {
			fields = append(fields, fmt.Sprintf("%s: %q → %q", name, a, b))
		}
	}
	add("email", was.Email, now.Email)
	add("firstName", was.FirstName, now.FirstName)
	add("lastName", was.LastName, now.LastName)
	names := map[string]bool{}
	for k := range was.Attributes {
		names[k] = true
	}
	for k := range now.Attributes {
		names[k] = true
	}
	sorted := make([]string, 0, len(names))
	for k := range names {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		a, b := "", ""
		if v, ok := was.Attributes[k]; ok {
			raw, _ := json.Marshal(v)
			a = string(raw)
		}
		if v, ok := now.Attributes[k]; ok {
			raw, _ := json.Marshal(v)
			b = string(raw)
		}
		if a != b {
			fields = append(fields, fmt.Sprintf("%s: %s → %s", k, orNone(a), orNone(b)))
		}
	}
	if len(fields) == 0 {
		return "content changed"
	}
	return strings.Join(fields, ", ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// callsOf is how many vendor calls the changes take, as the operator
// counts them (internal/controller plannedCalls): the vendor client's own
// count, else a call per batch of each operation.
func callsOf(p *provider, chs []providers.Change) int {
	batch := 0
	if p.spec.BatchSize != nil {
		batch = int(*p.spec.BatchSize)
	}
	return planner.Calls(p.vendor, batch, chs)
}

// forecastLine is the calls of res and the least time they take.
//
// What the calls count: the operator's loop of a provider packs the
// pending changes of all its UserSyncs into the same vendor calls. When
// this UserSync's changes are sent on apply, the calls are those of the
// loop that sends them: its changes, with those of the provider's other
// UserSyncs that go out with them (the manifest's other UserSyncs, and
// the pending changes of UserSyncs already in the cluster), packed
// together; the line names those UserSyncs, and every UserSync sharing the
// calls shows the same number. This assumes the operator sees the whole
// manifest in one loop (kubectl apply writes its objects one by one; a
// loop between two of them sends the first one's changes alone, and the
// calls can be more, at most the sum of each UserSync's own). When the
// changes are held (mode Plan, spec.suspend), they are this UserSync's
// changes alone, as status.plan counts them: they go out once approved.
func forecastLine(p *provider, res providerResult) string {
	s := forecast(p, res.Calls)
	shared := ""
	switch n := len(res.SharedWith); {
	case res.Held != "" && res.Calls > 0:
		shared = " " + res.Held + " (this UserSync's changes alone)"
	case res.Held != "":
	case n == 1:
		shared = ", shared with the changes of 1 other UserSync (" + res.SharedWith[0] + ")"
	case n > 1:
		shared = fmt.Sprintf(", shared with the changes of %d other UserSyncs (%s)", n, strings.Join(res.SharedWith, ", "))
	}
	if shared == "" {
		return s
	}
	calls, rest, _ := strings.Cut(s, ", at least")
	if rest != "" {
		rest = ", at least" + rest
	}
	return calls + shared + rest
}

// forecast is the calls and the least time they take under the provider's
// rate limit (a window's allowance at once, then the limit's pace), as the
// operator's status.plan estimates it.
func forecast(p *provider, calls int) string {
	requests, period := p.factory.DefaultRateLimit()
	if rl := p.spec.RateLimit; rl != nil {
		requests, period = int(rl.Requests), rl.Period.Duration
	}
	s := fmt.Sprintf("%d vendor calls", calls)
	if calls == 1 {
		s = "1 vendor call"
	}
	if calls == 0 || requests <= 0 || period <= 0 {
		return s
	}
	extra := max(calls-requests, 0)
	d := (time.Duration(extra) * period / time.Duration(requests)).Round(time.Second)
	return fmt.Sprintf("%s, at least %s at %d requests per %s", s, d, requests, period)
}
