package planner

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func desired(key, email string) Desired {
	u := providers.User{Key: key, Email: email}
	return Desired{User: u, Hash: Hash(u), Identity: email}
}

func synced(d Desired, id string) Record {
	return Record{Key: d.User.Key, ExternalID: id, State: StateSynced, Hash: d.Hash, Action: "Created"}
}

type got struct {
	Kind  Kind
	Op    providers.Op
	Retry bool
	State string
	Msg   string
}

func summarize(p Plan) map[string]got {
	out := map[string]got{}
	for _, it := range p.Items {
		g := got{Kind: it.Kind}
		if it.Kind == Write || it.Kind == Remove {
			g.Op, g.Retry = it.Change.Op, it.Change.Retry
		}
		if it.Kind == Held {
			g.State, g.Msg = it.Record.State, it.Record.Message
		}
		out[fmt.Sprintf("%d/%s", it.Sync, it.Key)] = g
	}
	return out
}

func TestCompute(t *testing.T) {
	a, b := desired("a", "a@x.io"), desired("b", "b@x.io")
	bChanged := desired("b", "b2@x.io")
	bp := Backoff{Base: 10 * time.Second, Max: 5 * time.Minute}
	cases := map[string]struct {
		syncs []Sync
		want  map[string]got
	}{
		"new users are created": {
			syncs: []Sync{{Name: "ns/s", Users: []Desired{a, b}}},
			want:  map[string]got{"0/a": {Kind: Write, Op: providers.OpCreate}, "0/b": {Kind: Write, Op: providers.OpCreate}},
		},
		"a user that moved to another UserSync is handed over, not deleted": {
			syncs: []Sync{
				{Name: "ns/old", Delete: true, Created: t0, Records: map[string]Record{"a": synced(a, "1")}},
				{Name: "ns/new", Delete: true, Created: t0.Add(time.Hour), Users: []Desired{a}, Records: map[string]Record{"a": synced(a, "1")}},
			},
			want: map[string]got{"0/a": {Kind: Forget}, "1/a": {Kind: Noop}},
		},
		"a user moved to another UserSync in the same change is handed over, not deleted": {
			syncs: []Sync{
				{Name: "ns/old", Delete: true, Created: t0, Records: map[string]Record{"a": synced(a, "1")}},
				{Name: "ns/new", Delete: true, Created: t0.Add(time.Hour), Users: []Desired{a}},
			},
			want: map[string]got{"0/a": {Kind: Forget}, "1/a": {Kind: Write, Op: providers.OpUpdate}},
		},
		"a user that moved to another key keeps its vendor user": {
			syncs: []Sync{{Name: "ns/s", Delete: true, Users: []Desired{b},
				Records: map[string]Record{"a": synced(a, "1"), "b": synced(b, "1")}}},
			want: map[string]got{"0/a": {Kind: Forget}, "0/b": {Kind: Noop}},
		},
		"unchanged synced users are not written": {
			syncs: []Sync{{Name: "ns/s", Users: []Desired{a}, Records: map[string]Record{"a": synced(a, "1")}}},
			want:  map[string]got{"0/a": {Kind: Noop}},
		},
		"a changed user is updated by its id": {
			syncs: []Sync{{Name: "ns/s", Users: []Desired{bChanged}, Records: map[string]Record{"b": synced(b, "2")}}},
			want:  map[string]got{"0/b": {Kind: Write, Op: providers.OpUpdate}},
		},
		"a failed record is not resent until its spec changes": {
			syncs: []Sync{{Name: "ns/s", Users: []Desired{a, bChanged}, Records: map[string]Record{
				"a": {Key: "a", State: StateFailed, Hash: a.Hash, Attempts: 1, LastAttempt: t0.Add(-time.Hour)},
				"b": {Key: "b", State: StateFailed, Hash: b.Hash, Attempts: 1, LastAttempt: t0.Add(-time.Hour)},
			}}},
			want: map[string]got{"0/a": {Kind: Noop}, "0/b": {Kind: Write, Op: providers.OpCreate}},
		},
		"a transient failure waits for its backoff, then retries without blind create": {
			syncs: []Sync{{Name: "ns/s", Users: []Desired{a, b}, Records: map[string]Record{
				"a": {Key: "a", State: StatePending, Hash: a.Hash, Attempts: 2, LastAttempt: t0.Add(-5 * time.Second), Action: "Create"},
				"b": {Key: "b", State: StatePending, Hash: b.Hash, Attempts: 1, LastAttempt: t0.Add(-time.Minute), Action: "Create"},
			}}},
			want: map[string]got{"0/a": {Kind: Wait}, "0/b": {Kind: Write, Op: providers.OpCreate, Retry: true}},
		},
		"after creates whose results were lost, users without an id are looked up, known ones updated": {
			syncs: []Sync{{Name: "ns/s", CreatesUncertain: true, Users: []Desired{a, bChanged, desired("c", "c@x.io")}, Records: map[string]Record{
				"a": {Key: "a", State: StateFailed, Hash: "old", Attempts: 1, Action: "Create"},
				"b": synced(b, "2"),
			}}},
			want: map[string]got{
				"0/a": {Kind: Write, Op: providers.OpCreate, Retry: true},
				"0/b": {Kind: Write, Op: providers.OpUpdate},
				"0/c": {Kind: Write, Op: providers.OpCreate, Retry: true},
			},
		},
		"removed users are deleted under Delete and forgotten under Orphan": {
			syncs: []Sync{
				{Name: "ns/del", Delete: true, Records: map[string]Record{"a": synced(a, "1")}},
				{Name: "ns/orphan", Records: map[string]Record{"b": synced(b, "2")}},
			},
			want: map[string]got{"0/a": {Kind: Remove, Op: providers.OpDelete}, "1/b": {Kind: Forget}},
		},
		"a record never created is forgotten even under Delete": {
			syncs: []Sync{{Name: "ns/s", Delete: true, Removed: true, Users: []Desired{a}, Records: map[string]Record{
				"a": {Key: "a", State: StateFailed, Hash: a.Hash, Action: "Create"}}}},
			want: map[string]got{"0/a": {Kind: Forget}},
		},
		"the older UserSync keeps a shared identity": {
			syncs: []Sync{
				{Name: "ns/new", Created: t0, Users: []Desired{desired("x", "same@x.io")}},
				{Name: "ns/old", Created: t0.Add(-time.Hour), Users: []Desired{desired("y", "same@x.io")}},
			},
			want: map[string]got{
				"0/x": {Kind: Held, State: StateFailed, Msg: `identity "same@x.io" is already declared by UserSync ns/old (key y)`},
				"1/y": {Kind: Write, Op: providers.OpCreate},
			},
		},
		"suspend holds writes and deletes": {
			syncs: []Sync{{Name: "ns/s", Hold: &Hold{Reason: "Suspended", Message: "spec.suspend is true"}, Delete: true, Users: []Desired{a}, Records: map[string]Record{"b": synced(b, "2")}}},
			want: map[string]got{
				"0/a": {Kind: Held, State: StatePending, Msg: "spec.suspend is true: the Create waits"},
				"0/b": {Kind: Held, State: StateDeleting, Msg: "spec.suspend is true: the Delete waits"},
			},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := Compute(Input{Now: t0, Syncs: tc.syncs, Backoff: bp})
			if diff := cmp.Diff(tc.want, summarize(p)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestApply(t *testing.T) {
	a, b, c, d := desired("a", "a@x.io"), desired("b", "b@x.io"), desired("c", "c@x.io"), desired("d", "d@x.io")
	in := Input{Now: t0, Backoff: Backoff{Base: time.Second, Max: time.Minute}, Syncs: []Sync{{
		Name: "ns/s", Delete: true, Users: []Desired{a, b, c},
		Records: map[string]Record{"d": synced(d, "4")},
	}}}
	p := Compute(in)
	if len(p.Changes()) != 4 {
		t.Fatalf("want 4 changes, got %d", len(p.Changes()))
	}
	id := map[string]string{}
	for _, it := range p.Items {
		id[it.Key] = it.Change.ID
	}
	// Results in reverse order, one missing (c): order must not matter.
	res := []providers.Result{
		{ID: id["d"], Action: providers.ActionDeleted},
		{ID: id["b"], Err: &providers.RecordError{Permanent: true, Code: "INVALID_EMAIL", Message: "bad email"}},
		{ID: id["a"], ExternalID: "11", Action: providers.ActionCreated},
	}
	recs := Apply(in, p, res)[0].Records
	want := map[string]Record{
		"a": {Key: "a", ExternalID: "11", State: StateSynced, Action: "Created", LastAttempt: t0, Hash: a.Hash},
		"b": {Key: "b", State: StateFailed, Action: "Create", Reason: "INVALID_EMAIL", Message: "bad email", Attempts: 1, LastAttempt: t0, Hash: b.Hash},
		"c": {Key: "c", State: StatePending, Action: "Create", Reason: "NoResult", Message: "the write's outcome is unknown; it will be retried", Attempts: 1, LastAttempt: t0, Hash: c.Hash},
	}
	if diff := cmp.Diff(want, recs); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	// The uncertain create is retried with Retry set once its backoff passed.
	in2 := Input{Now: t0.Add(2 * time.Second), Backoff: in.Backoff, Syncs: []Sync{{Name: "ns/s", Users: []Desired{c}, Records: recs}}}
	p2 := Compute(in2)
	if len(p2.Changes()) != 1 || !p2.Changes()[0].Retry {
		t.Fatalf("want one retried create, got %+v", p2.Changes())
	}
}

func TestHashIgnoresAttributeOrderButNotType(t *testing.T) {
	u1 := providers.User{Key: "k", Attributes: map[string]any{"a": "1", "b": true}}
	u2 := providers.User{Key: "k", Attributes: map[string]any{"b": true, "a": "1"}}
	u3 := providers.User{Key: "k", Attributes: map[string]any{"a": float64(1), "b": true}}
	if Hash(u1) != Hash(u2) {
		t.Error("attribute order changed the hash")
	}
	if Hash(u1) == Hash(u3) {
		t.Error(`"1" and 1 hash equal`)
	}
}

func TestTruncate(t *testing.T) {
	cases := map[string]struct {
		in   string
		n    int
		want string
	}{
		"short":          {"abc", 5, "abc"},
		"cut":            {"abcdefgh", 6, "abc…"},
		"rune boundary":  {"ééééé", 7, "éé…"},
		"exactly at max": {"abcdef", 6, "abcdef"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := Truncate(tc.in, tc.n); got != tc.want || len(got) > tc.n {
				t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
			}
		})
	}
}

func BenchmarkCompute(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		syncs := make([]Sync, n/500)
		for i := range syncs {
			s := Sync{Name: fmt.Sprintf("ns/s%d", i), Records: map[string]Record{}}
			for j := 0; j < 500; j++ {
				d := desired(fmt.Sprintf("u%d", j), fmt.Sprintf("u%d-%d@x.io", i, j))
				s.Users = append(s.Users, d)
				s.Records[d.User.Key] = synced(d, "1")
			}
			syncs[i] = s
		}
		b.Run(fmt.Sprintf("unchanged-%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p := Compute(Input{Now: t0, Syncs: syncs})
				if len(p.Changes()) != 0 {
					b.Fatal("unexpected writes")
				}
			}
		})
	}
}

func TestNextRetry(t *testing.T) {
	b := Backoff{Base: time.Second, Max: time.Minute}
	out := []Outcome{{Records: map[string]Record{
		"synced":  {State: StateSynced, LastAttempt: t0},
		"failed":  {State: StateFailed, Attempts: 1, LastAttempt: t0},
		"pending": {State: StatePending, Attempts: 3, LastAttempt: t0}, // due in 4s
	}}, {Records: map[string]Record{
		"deleting": {State: StateDeleting, Attempts: 2, LastAttempt: t0}, // due in 2s
	}}}
	if got, want := NextRetry(out, b), t0.Add(2*time.Second); !got.Equal(want) {
		t.Errorf("NextRetry = %v, want %v", got, want)
	}
	if got := NextRetry(out[:0], b); !got.IsZero() {
		t.Errorf("NextRetry of nothing = %v, want zero", got)
	}
}

func TestDeletionGuard(t *testing.T) {
	records := func(n int, state, reason string) map[string]Record {
		m := map[string]Record{}
		for i := range n {
			k := fmt.Sprintf("u%03d", i)
			m[k] = Record{Key: k, ExternalID: strconv.Itoa(i + 1), State: state, Reason: reason, Hash: "h", Action: "Created"}
		}
		return m
	}
	keep := func(n int) []Desired {
		out := make([]Desired, n)
		for i := range out {
			out[i] = desired(fmt.Sprintf("u%03d", i), fmt.Sprintf("u%03d@x.io", i))
		}
		return out
	}
	gone := func(from, to int) []string {
		var keys []string
		for i := from; i < to; i++ {
			keys = append(keys, fmt.Sprintf("u%03d", i))
		}
		return keys
	}
	guard := func(approved string) *DeletionGuard {
		return &DeletionGuard{MaxCount: 100, MaxPercent: 30, MinCount: 3, Approved: approved}
	}
	cases := map[string]struct {
		sync     Sync
		held     int
		removed  int
		tokenFor []string // the token the message must name
	}{
		"a few deletions pass": {
			sync:    Sync{Name: "ns/s", Delete: true, Users: keep(47), Records: records(50, StateSynced, ""), Guard: guard("")},
			removed: 3,
		},
		"a large share is held": {
			sync: Sync{Name: "ns/s", Delete: true, Users: keep(10), Records: records(50, StateSynced, ""), Guard: guard("")},
			held: 40, tokenFor: gone(10, 50),
		},
		"the approved set passes": {
			sync:    Sync{Name: "ns/s", Delete: true, Users: keep(10), Records: records(50, StateSynced, ""), Guard: guard(DeletionToken(gone(10, 50)))},
			removed: 40,
		},
		"a stale approval does not let another set through": {
			sync: Sync{Name: "ns/s", Delete: true, Users: keep(5), Records: records(50, StateSynced, ""), Guard: guard(DeletionToken(gone(10, 50)))},
			held: 45, tokenFor: gone(5, 50),
		},
		"over the count, even as a small share": {
			sync: Sync{Name: "ns/s", Delete: true, Users: keep(850), Records: records(1000, StateSynced, ""), Guard: guard("")},
			held: 150, tokenFor: gone(850, 1000),
		},
		"a deleted UserSync is guarded too": {
			sync: Sync{Name: "ns/s", Delete: true, Removed: true, Records: records(8, StateSynced, ""), Guard: guard("")},
			held: 8, tokenFor: gone(0, 8),
		},
		"deletions already under way are not held again": {
			sync:    Sync{Name: "ns/s", Delete: true, Removed: true, Records: records(8, StateDeleting, "ServerError"), Guard: guard("")},
			removed: 8,
		},
		"held deletions stay held until approved": {
			sync: Sync{Name: "ns/s", Delete: true, Removed: true, Records: records(8, StateDeleting, ReasonDeletionHeld), Guard: guard("")},
			held: 8, tokenFor: gone(0, 8),
		},
		"Orphan forgets without a guard": {
			sync: Sync{Name: "ns/s", Removed: true, Records: records(8, StateSynced, ""), Guard: guard("")},
		},
		"no guard configured": {
			sync:    Sync{Name: "ns/s", Delete: true, Removed: true, Records: records(8, StateSynced, "")},
			removed: 8,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := Compute(Input{Now: t0, Syncs: []Sync{tc.sync}, Backoff: Backoff{Base: time.Second, Max: time.Minute}})
			held, removed := 0, 0
			for _, it := range p.Items {
				switch {
				case it.Kind == Remove:
					removed++
				case it.Kind == Held && it.Record.Reason == ReasonDeletionHeld:
					held++
					if it.Record.State != StateDeleting {
						t.Fatalf("held record state %s", it.Record.State)
					}
					want := DeletionToken(tc.tokenFor)
					if !strings.Contains(it.Record.Message, usersv1.AnnotationApproveDeletions+"="+want) {
						t.Fatalf("message %q lacks token %s", it.Record.Message, want)
					}
				}
			}
			deletes := 0
			for _, ch := range p.Changes() {
				if ch.Op == providers.OpDelete {
					deletes++
				}
			}
			if held != tc.held || removed != tc.removed || deletes != tc.removed {
				t.Fatalf("held %d removed %d deletes sent %d, want held %d removed %d", held, removed, deletes, tc.held, tc.removed)
			}
		})
	}
}

func TestDeletionTokenIgnoresOrder(t *testing.T) {
	if DeletionToken([]string{"a", "b"}) != DeletionToken([]string{"b", "a"}) {
		t.Fatal("order matters")
	}
	if DeletionToken([]string{"a", "b"}) == DeletionToken([]string{"a", "b", "c"}) ||
		DeletionToken([]string{"ab"}) == DeletionToken([]string{"a", "b"}) {
		t.Fatal("different sets share a token")
	}
}

// TestPlanOf: the items of each sync, in order, whatever each sync holds.
func TestPlanOf(t *testing.T) {
	a, b, c := desired("a", "a@x.io"), desired("b", "b@x.io"), desired("c", "c@x.io")
	in := Input{Now: t0, Syncs: []Sync{
		{Name: "ns/one", Users: []Desired{a, b}},
		{Name: "ns/empty"},
		{Name: "ns/gone", Delete: true, Removed: true, Records: map[string]Record{"c": synced(c, "3")}},
		{Name: "ns/last", Users: []Desired{c}, Records: map[string]Record{"z": synced(desired("z", "z@x.io"), "9")}},
	}}
	p := Compute(in)
	want := [][]string{{"a", "b"}, nil, {"c"}, {"c", "z"}}
	total := 0
	for si, keys := range want {
		var got []string
		for _, it := range p.Of(si) {
			if it.Sync != si {
				t.Errorf("Of(%d) holds an item of sync %d", si, it.Sync)
			}
			got = append(got, it.Key)
		}
		if diff := cmp.Diff(keys, got); diff != "" {
			t.Errorf("Of(%d) (-want +got):\n%s", si, diff)
		}
		total += len(got)
	}
	if total != len(p.Items) {
		t.Errorf("Of covers %d of %d items", total, len(p.Items))
	}
	if p.Of(len(in.Syncs)) != nil || p.Of(-1) != nil {
		t.Error("Of out of range is not empty")
	}
}

func TestChangeItem(t *testing.T) {
	a, b, c := desired("a", "a@x.io"), desired("b", "b@x.io"), desired("c", "c@x.io")
	in := Input{Now: t0, Syncs: []Sync{
		{Name: "ns/one", Users: []Desired{a}, Records: map[string]Record{"a": synced(a, "1")}},
		{Name: "ns/two", Delete: true, Users: []Desired{b}, Records: map[string]Record{"c": synced(c, "3")}},
	}}
	p := Compute(in)
	if len(p.Changes()) != 2 {
		t.Fatalf("want 2 changes, got %d", len(p.Changes()))
	}
	for pos, ch := range p.Changes() {
		it := p.ChangeItem(pos)
		if it.Change.ID != ch.ID || it.Change.Op != ch.Op || it.Sync != 1 {
			t.Errorf("ChangeItem(%d) = item %s of sync %d (%s), change %s (%s)", pos, it.Key, it.Sync, it.Change.Op, ch.ID, ch.Op)
		}
	}
}

// A sync whose creates may have reached the vendor unanswered keeps that in
// its records: every record without an external id that stays Pending gets
// action Create, so the engine may clear its create intent once they are
// stored and a later plan still looks the users up.
func TestApplyCarriesCreateIntents(t *testing.T) {
	a, b, c := desired("a", "a@x.io"), desired("b", "b@x.io"), desired("c", "c@x.io")
	hold := &Hold{Reason: "ProviderNotReady", Message: "down"}
	lost := &providers.RecordError{Uncertain: true, Code: "VendorUnreachable", Message: "no answer"}
	cases := map[string]struct {
		sync    Sync
		results func(p Plan) []providers.Result
		want    map[string]string // key -> action
	}{
		"held sync with an intent": {
			sync: Sync{Name: "ns/s", Users: []Desired{a, b}, Hold: hold, CreatesUncertain: true,
				Records: map[string]Record{"b": synced(b, "2")}},
			want: map[string]string{"a": "Create", "b": "Created"},
		},
		"held sync without an intent": {
			sync: Sync{Name: "ns/s", Users: []Desired{a}, Hold: hold},
			want: map[string]string{"a": ""},
		},
		"creates sent in this plan": {
			// b waits for its backoff, without an id: its earlier write
			// may be a create that reached the vendor.
			sync: Sync{Name: "ns/s", Users: []Desired{a, b, c}, Records: map[string]Record{
				"b": {Key: "b", State: StatePending, Attempts: 1, LastAttempt: t0, Hash: b.Hash}}},
			results: func(p Plan) []providers.Result {
				return []providers.Result{{ID: p.Changes()[0].ID, Err: lost}, {ID: p.Changes()[1].ID, ExternalID: "3", Action: providers.ActionCreated}}
			},
			want: map[string]string{"a": "Create", "b": "Create", "c": "Created"},
		},
		"an update answered with an error, no create": {
			sync: Sync{Name: "ns/s", Users: []Desired{desired("a", "new@x.io")}, Records: map[string]Record{"a": synced(a, "1")}},
			results: func(p Plan) []providers.Result {
				return []providers.Result{{ID: p.Changes()[0].ID, Err: lost}}
			},
			want: map[string]string{"a": "Update"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			in := Input{Now: t0, Backoff: Backoff{Base: time.Second, Max: time.Minute}, Syncs: []Sync{tc.sync}}
			p := Compute(in)
			var res []providers.Result
			if tc.results != nil {
				res = tc.results(p)
			}
			got := map[string]string{}
			for k, rec := range Apply(in, p, res)[0].Records {
				got[k] = rec.Action
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
		})
	}
}

// A success's note (e.g. which of several vendor users was adopted) is the
// record's message; a success without one clears the message.
func TestApplyKeepsTheNoteOfASuccess(t *testing.T) {
	a, b := desired("a", "a@x.io"), desired("b", "b@x.io")
	old := Record{Key: "b", State: StatePending, Reason: "VendorUnreachable", Message: "no answer", Attempts: 1, LastAttempt: t0.Add(-time.Hour)}
	in := Input{Now: t0, Backoff: Backoff{Base: time.Second, Max: time.Minute},
		Syncs: []Sync{{Name: "ns/s", Users: []Desired{a, b}, Records: map[string]Record{"b": old}}}}
	p := Compute(in)
	var res []providers.Result
	for _, ch := range p.Changes() {
		r := providers.Result{ID: ch.ID, ExternalID: "1" + ch.ID, Action: providers.ActionAdopted}
		if ch.User.Key == "a" {
			r.Note = "HubSpot holds 2 users with this email; the oldest (id 1) was adopted"
		}
		res = append(res, r)
	}
	recs := Apply(in, p, res)[0].Records
	if recs["a"].State != StateSynced || recs["a"].Message != "HubSpot holds 2 users with this email; the oldest (id 1) was adopted" {
		t.Errorf("a: %+v", recs["a"])
	}
	if recs["b"].State != StateSynced || recs["b"].Message != "" || recs["b"].Reason != "" {
		t.Errorf("b: %+v", recs["b"])
	}
}

// A Create that a plan awaiting approval only shows was never sent; one
// carried from uncertain creates, or tried, may have been.
func TestMaySent(t *testing.T) {
	for name, tc := range map[string]struct {
		rec  Record
		want bool
	}{
		"planned create, never sent":         {Record{State: StatePending, Action: "Create", Reason: ReasonPlanned}, false},
		"planned create marked uncertain":    {Record{State: StatePending, Action: "Create", Reason: ReasonPlanned, Attempts: 1}, true},
		"create carried from an intent":      {Record{State: StatePending, Action: "Create", Reason: "ProviderNotReady"}, true},
		"create whose answer was lost":       {Record{State: StatePending, Action: "Create", Reason: "NoResult", Attempts: 2}, true},
		"held update":                        {Record{State: StatePending, Action: "Update", ExternalID: "7", Reason: ReasonPlanned}, false},
		"created":                            {Record{State: StateSynced, Action: "Created", ExternalID: "7"}, false},
		"held without an action (no intent)": {Record{State: StatePending, Reason: "ProviderNotReady"}, false},
	} {
		if got := MaySent(tc.rec); got != tc.want {
			t.Errorf("%s: MaySent = %t, want %t", name, got, tc.want)
		}
	}
}

// A plan awaiting approval sends no lookups for its creates; once its
// UserSync's creates are uncertain (an intent), its planned creates are
// marked, and a later plan looks them up.
func TestPlannedCreatesAreNotRetries(t *testing.T) {
	a := desired("a", "a@x.io")
	planned := &Hold{Reason: ReasonPlanned, Message: "awaiting approval", Planned: true}
	in := Input{Now: t0, Syncs: []Sync{{Name: "ns/s", Users: []Desired{a}, Hold: planned}}}
	rec := Apply(in, Compute(in), nil)[0].Records["a"]
	if rec.Action != "Create" || rec.Reason != ReasonPlanned || MaySent(rec) {
		t.Fatalf("a planned create: %+v (MaySent %t)", rec, MaySent(rec))
	}
	// Approved later: the create is sent as a first create, not a retry.
	in = Input{Now: t0, Syncs: []Sync{{Name: "ns/s", Users: []Desired{a}, Records: map[string]Record{"a": rec}}}}
	if chs := Compute(in).Changes(); len(chs) != 1 || chs[0].Retry {
		t.Fatalf("the approved create: %+v", chs)
	}
	// The same planned record in a UserSync whose creates are uncertain.
	in = Input{Now: t0, Syncs: []Sync{{Name: "ns/s", Users: []Desired{a}, Hold: planned, CreatesUncertain: true}}}
	rec = Apply(in, Compute(in), nil)[0].Records["a"]
	if !MaySent(rec) {
		t.Fatalf("a planned create of a UserSync with uncertain creates: %+v", rec)
	}
	in = Input{Now: t0, Syncs: []Sync{{Name: "ns/s", Users: []Desired{a}, Records: map[string]Record{"a": rec}}}}
	if chs := Compute(in).Changes(); len(chs) != 1 || !chs[0].Retry {
		t.Fatalf("its create once approved must look the user up: %+v", chs)
	}
}

// TestDefer: a loop that stops sending folds only what it sent; the changes
// it did not send keep their records as they were (a user without one has
// none), and the next plan sends them again.
func TestDefer(t *testing.T) {
	a, b, c, d := desired("a", "a@x.io"), desired("b", "b@x.io"), desired("c", "c@x.io"), desired("d", "d@x.io")
	held := Record{Key: "c", State: StatePending, Reason: "ProviderNotReady", Message: "Secret ns/hs not found"}
	in := Input{Now: t0, Backoff: Backoff{Base: time.Second, Max: time.Minute}, Syncs: []Sync{
		{Name: "ns/one", Users: []Desired{a, b}},
		{Name: "ns/two", Users: []Desired{c, d}, Records: map[string]Record{"c": held}},
	}}
	p := Compute(in)
	if p.NumChanges() != 4 {
		t.Fatalf("want 4 changes, got %d", p.NumChanges())
	}
	// a was sent and answered; b, c and d were not.
	sent := p.Change(0)
	p.Defer(1)
	if p.NumChanges() != 1 || p.Change(0).ID != sent.ID {
		t.Fatalf("after Defer(1): %d changes, first %q; want 1, %q", p.NumChanges(), p.Change(0).ID, sent.ID)
	}
	out := Apply(in, p, []providers.Result{{ID: sent.ID, ExternalID: "1", Action: providers.ActionCreated}})
	want := []map[string]Record{
		{"a": {Key: "a", ExternalID: "1", State: StateSynced, Action: "Created", LastAttempt: t0, Hash: a.Hash}},
		{"c": held},
	}
	for si := range want {
		if diff := cmp.Diff(want[si], out[si].Records); diff != "" {
			t.Errorf("sync %d records (-want +got):\n%s", si, diff)
		}
	}
	// Nothing deferred counts as attempted: the next plan sends the three
	// as new, none of them as a retry.
	in.Syncs[0].Records, in.Syncs[1].Records = out[0].Records, out[1].Records
	next := Compute(in)
	var keys []string
	for _, ch := range next.Changes() {
		if ch.Retry {
			t.Errorf("%s is a retry", ch.User.Key)
		}
		keys = append(keys, ch.User.Key)
	}
	if diff := cmp.Diff([]string{"b", "c", "d"}, keys); diff != "" {
		t.Errorf("next plan's changes (-want +got):\n%s", diff)
	}
	// Out of range: nothing changes.
	next.Defer(3)
	next.Defer(-1)
	if next.NumChanges() != 3 {
		t.Errorf("Defer out of range changed the plan: %d changes", next.NumChanges())
	}
}
