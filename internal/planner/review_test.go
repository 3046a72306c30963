package planner

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/usersync/usersync-operator/internal/providers"
)

// TestReviewOf: the review of a plan computed without a hold counts its
// changes, and its token names the changes that need an approval; a retry
// of what an earlier loop sent with the same content needs none.
func TestReviewOf(t *testing.T) {
	a, b, c := desired("a", "a@x.io"), desired("b", "b@x.io"), desired("c", "c@x.io")
	bChanged := desired("b", "b2@x.io")
	// An attempted write whose outcome is not known yet (a create whose
	// lookup had to wait for HubSpot's index), and a deletion under way.
	attempted := func(d Desired) Record {
		return Record{Key: d.User.Key, State: StatePending, Action: string(providers.OpCreate), Reason: "AwaitingIndex",
			Attempts: 1, Hash: d.Hash, LastAttempt: t0.Add(-time.Hour)}
	}
	deleting := Record{Key: "c", ExternalID: "3", State: StateDeleting, Action: string(providers.OpDelete), Reason: "Error",
		Attempts: 2, Hash: c.Hash, LastAttempt: t0.Add(-time.Hour)}
	bp := Backoff{Base: time.Second, Max: time.Minute}
	type counts struct{ Creates, Updates, Deletes, Retries, Changes int }
	cases := map[string]struct {
		sync          Sync
		want          counts
		needsApproval bool
		sameTokenAs   string // the case whose token this one must have
	}{
		"new changes": {
			sync: Sync{Name: "ns/s", Delete: true, Users: []Desired{a, bChanged},
				Records: map[string]Record{"b": synced(b, "2"), "c": synced(c, "3")}},
			want:          counts{Creates: 1, Updates: 1, Deletes: 1, Changes: 3},
			needsApproval: true,
		},
		"only what an approved apply left unfinished": {
			sync: Sync{Name: "ns/s", Delete: true, Users: []Desired{a},
				Records: map[string]Record{"a": attempted(a), "c": deleting}},
			want: counts{Creates: 1, Deletes: 1, Retries: 2, Changes: 2},
		},
		"new changes with retries: the token names the new ones alone": {
			sync: Sync{Name: "ns/s", Delete: true, Users: []Desired{a, bChanged},
				Records: map[string]Record{"a": attempted(a), "b": synced(b, "2"), "c": synced(c, "3")}},
			want:          counts{Creates: 1, Updates: 1, Deletes: 1, Retries: 1, Changes: 3},
			needsApproval: true,
			sameTokenAs:   "the new ones alone",
		},
		"the new ones alone": {
			sync: Sync{Name: "ns/s", Delete: true, Users: []Desired{bChanged},
				Records: map[string]Record{"b": synced(b, "2"), "c": synced(c, "3")}},
			want:          counts{Updates: 1, Deletes: 1, Changes: 2},
			needsApproval: true,
		},
		"an attempted write whose content changed since is new": {
			sync: Sync{Name: "ns/s", Users: []Desired{bChanged},
				Records: map[string]Record{"b": attempted(b)}},
			want:          counts{Creates: 1, Changes: 1},
			needsApproval: true,
		},
	}
	tokens := map[string]string{}
	for name, tc := range cases {
		plan := Compute(Input{Now: t0, Backoff: bp, Syncs: []Sync{tc.sync}})
		rv := ReviewOf("UserProvider/hs", 3, plan.Of(0))
		got := counts{rv.Creates, rv.Updates, rv.Deletes, rv.Retries, len(rv.Changes)}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%s: counts (-want +got):\n%s", name, d)
		}
		if rv.NeedsApproval() != tc.needsApproval || (rv.Token != "") != tc.needsApproval {
			t.Errorf("%s: needs approval %v, token %q; want %v", name, rv.NeedsApproval(), rv.Token, tc.needsApproval)
		}
		tokens[name] = rv.Token
	}
	for name, tc := range cases {
		if tc.sameTokenAs != "" && tokens[name] != tokens[tc.sameTokenAs] {
			t.Errorf("%s: token %s, want %s (%s)", name, tokens[name], tokens[tc.sameTokenAs], tc.sameTokenAs)
		}
	}
	if tokens["new changes"] == tokens["the new ones alone"] {
		t.Error("two different sets of changes have the same token")
	}
	if rv := ReviewOf("UserProvider/hs", 4, Compute(Input{Now: t0, Syncs: []Sync{cases["the new ones alone"].sync}}).Of(0)); rv.Token == tokens["the new ones alone"] {
		t.Error("another generation has the same token")
	}
}

func TestApprovedBy(t *testing.T) {
	for _, tc := range []struct {
		annotation, token string
		want              bool
	}{
		{"abc", "abc", true},
		{"x, abc", "abc", true},
		{"abcd", "abc", false},
		{"", "", false},
		{"abc", "", false},
	} {
		if got := ApprovedBy(tc.annotation, tc.token); got != tc.want {
			t.Errorf("ApprovedBy(%q, %q) = %v", tc.annotation, tc.token, got)
		}
	}
}

func TestCalls(t *testing.T) {
	chs := func(op providers.Op, n int) []providers.Change {
		out := make([]providers.Change, n)
		for i := range out {
			out[i].Op = op
		}
		return out
	}
	mixed := append(chs(providers.OpCreate, 250), chs(providers.OpUpdate, 10)...)
	for name, tc := range map[string]struct {
		batch int
		chs   []providers.Change
		want  int
	}{
		"nothing":                    {100, nil, 0},
		"a call per batch and op":    {100, mixed, 4},
		"the vendors' default batch": {0, mixed, 4},
		"a smaller batch":            {50, mixed, 6},
	} {
		if got := Calls(nil, tc.batch, tc.chs); got != tc.want {
			t.Errorf("%s: %d calls, want %d", name, got, tc.want)
		}
	}
}
