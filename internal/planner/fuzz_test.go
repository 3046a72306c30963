package planner

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers"
)

// Fuzz targets of the planner.
//
//	go test -run '^$' -fuzz '^FuzzCompute$' -fuzztime 45s ./internal/planner
//	go test -run '^$' -fuzz '^FuzzHash$' -fuzztime 45s ./internal/planner

// fzReader hands out the bytes of a fuzz input; past its end it reads 0.
type fzReader struct{ b []byte }

func (r *fzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// n reads a number in [0, k).
func (r *fzReader) n(k int) int { return int(r.byte()) % k }

// pick reads one of list.
func (r *fzReader) pick(list []string) string { return list[r.n(len(list))] }

// Value pools of the inputs: small, so that keys, identities and vendor ids
// collide across users, records and UserSyncs.
var (
	fzNow     = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	fzKeys    = []string{"alice", "bob", "carol", "dave", "erin", "frank"}
	fzEmails  = []string{"", "alice@example.com", "bob@example.com", "ALICE@example.com", "carol@example.com"}
	fzIDs     = []string{"", "101", "102", "103", "104"}
	fzStates  = []string{StateSynced, StatePending, StateFailed, StateDeleting, ""}
	fzActions = []string{"", "Create", "Update", "Delete", "Created", "Updated", "Adopted", "Deleted"}
	fzReasons = []string{"", ReasonConflict, ReasonDeletionHeld, ReasonInvalidSpec, "NoResult", "RateLimited"}
	fzHolds   = []Hold{
		{Reason: usersv1.ReasonSuspended, Message: "spec.suspend is true"},
		{Reason: usersv1.ReasonProviderNotReady, Message: "Unauthorized (HTTP 401): HubSpot refused the token"},
		{Reason: usersv1.ReasonNotPermitted, Message: "namespace team-b is not permitted"},
	}
)

// fzInput builds a planner Input from data, deterministically. It keeps to
// what the reconciler can build: keys are unique within a UserSync, records
// are stored under their key, a Removed UserSync lists no users.
func fzInput(data []byte) Input {
	r := &fzReader{b: data}
	in := Input{Now: fzNow, Backoff: Backoff{Base: 10 * time.Second, Max: 5 * time.Minute}}
	// One provider: its identities are the lower-cased email (HubSpot) or
	// the key (Propel).
	byKey := r.byte()&1 == 1
	syncs := 1 + r.n(3)
	for si := 0; si < syncs; si++ {
		flags := r.byte()
		s := Sync{
			Name:    fmt.Sprintf("team-%c/users", 'a'+r.n(3)),
			Created: fzNow.Add(-time.Duration(r.n(3)) * time.Hour),
			Records: map[string]Record{},
			Delete:  flags&1 != 0,
			Removed: flags&2 != 0,
		}
		if flags&4 != 0 {
			h := fzHolds[r.n(len(fzHolds))]
			s.Hold = &h
		}
		users, recs := r.byte(), r.byte()
		declared := map[string]Desired{}
		for ki, key := range fzKeys {
			if users&(1<<ki) == 0 || s.Removed {
				continue
			}
			u := providers.User{Key: key, Email: r.pick(fzEmails), FirstName: r.pick([]string{"", "Ada", "Grace"})}
			if r.byte()&1 == 1 {
				u.Attributes = map[string]any{"hs_job_title": r.pick([]string{"Engineer", "Manager"}), "seats": float64(r.n(3)), "remote": r.byte()&1 == 1}
			}
			d := Desired{User: u, Hash: Hash(u), Identity: strings.ToLower(u.Email)}
			if byKey {
				d.Identity = key
			}
			if r.n(8) == 7 {
				d.Invalid = `attribute name "1x" is invalid: it must start with a letter or _`
			}
			s.Users = append(s.Users, d)
			declared[key] = d
		}
		for ki, key := range fzKeys {
			if recs&(1<<ki) == 0 {
				continue
			}
			rec := Record{
				Key:         key,
				ExternalID:  r.pick(fzIDs),
				State:       r.pick(fzStates),
				Action:      r.pick(fzActions),
				Reason:      r.pick(fzReasons),
				Attempts:    int32(r.n(4)),
				LastAttempt: fzNow.Add(-time.Duration(r.n(600)) * time.Second),
				Hash:        "0123456789abcdef",
			}
			if d, ok := declared[key]; ok && r.byte()&1 == 1 {
				rec.Hash = d.Hash
			}
			s.Records[key] = rec
		}
		if flags&8 != 0 {
			g := DeletionGuard{MaxCount: r.n(4), MaxPercent: r.n(101), MinCount: r.n(3)}
			switch {
			case flags&16 != 0: // approved: the token of every record leaving
				var gone []string
				for key := range s.Records {
					if _, ok := declared[key]; !ok {
						gone = append(gone, key)
					}
				}
				g.Approved = DeletionToken(gone)
			case flags&32 != 0:
				g.Approved = "0badc0ffee00"
			}
			s.Guard = &g
		}
		in.Syncs = append(in.Syncs, s)
	}
	return in
}

type fzSyncKey struct {
	sync int
	key  string
}

// FuzzCompute plans fuzzed UserSyncs and checks the plan's invariants, and
// what Apply makes of it with no results, with successes and with failures.
func FuzzCompute(f *testing.F) {
	// Each seed lists, in fzInput's order: byKey, syncs-1; per UserSync:
	// flags (1 Delete, 2 Removed, 4 Hold, 8 Guard, 16 approved), name,
	// age, [hold], users mask, records mask; per user: email, first name,
	// attributes? [title, seats, remote], invalid (7); per record: external
	// id, state, action, reason, attempts, seconds ago, [hash matches]; [guard:
	// max count, max percent, min count].
	for _, seed := range [][]byte{
		// three new users
		{0, 0, 0, 0, 0, 0b111, 0, 1, 1, 0, 0, 2, 2, 1, 0, 1, 1, 0, 4, 0, 0, 0},
		// Delete: two users left the spec, one is still declared and synced
		{0, 0, 1, 0, 0, 0b001, 0b111, 1, 1, 0, 0,
			1, 0, 4, 0, 0, 0, 1, 2, 0, 4, 0, 0, 0, 3, 1, 1, 4, 2, 30},
		// Delete with a count guard that trips, not approved
		{0, 0, 0b1001, 0, 0, 0, 0b111111,
			1, 0, 4, 0, 0, 0, 2, 0, 4, 0, 0, 0, 3, 0, 4, 0, 0, 0, 4, 0, 4, 0, 0, 0, 1, 0, 5, 0, 0, 0, 2, 3, 4, 2, 1, 100,
			2, 0, 0},
		// the same, approved with the token of these deletions
		{0, 0, 0b11001, 0, 0, 0, 0b111111,
			1, 0, 4, 0, 0, 0, 2, 0, 4, 0, 0, 0, 3, 0, 4, 0, 0, 0, 4, 0, 4, 0, 0, 0, 1, 0, 5, 0, 0, 0, 2, 3, 4, 2, 1, 100,
			2, 0, 0},
		// a share guard with a stale approval, and a deletion held before
		{0, 0, 0b101001, 0, 0, 0b1, 0b111, 1, 0, 0, 0,
			1, 0, 4, 0, 0, 0, 1, 2, 3, 4, 2, 0, 0, 3, 3, 3, 1, 0, 0,
			0, 30, 0},
		// two UserSyncs declare the same email: the older one keeps it
		{0, 1, 0, 0, 1, 0b1, 0, 1, 0, 0, 0, 0, 1, 0, 0b10, 0, 3, 0, 0, 0},
		// a suspended UserSync with pending records
		{0, 0, 0b100, 0, 0, 0, 0b11, 0b11, 1, 1, 0, 0, 2, 0, 0, 0,
			0, 1, 1, 5, 2, 5, 1, 2, 1, 2, 5, 1, 3, 1},
		// the same records, not suspended: one waits out its backoff
		{0, 0, 0, 0, 0, 0b11, 0b11, 1, 1, 0, 0, 2, 0, 0, 0,
			0, 1, 1, 5, 2, 5, 1, 2, 1, 2, 5, 1, 3, 1},
		// a removed UserSync under Delete: every record leaves
		{0, 0, 0b11, 0, 0, 0, 0b1010, 2, 0, 4, 0, 0, 0, 0, 3, 3, 0, 1, 5},
		// three UserSyncs, identities by key: a guard, a hold, a removal
		{1, 2,
			1, 0, 0, 0b11, 0b100, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 4, 0, 0, 0,
			0b1001, 1, 1, 0b1, 0b1, 4, 0, 0, 0, 1, 0, 4, 0, 0, 0, 0, 0, 50, 0,
			0b111, 2, 2, 1, 0, 0b11, 0, 2, 1, 3, 1, 0, 0, 0, 0, 0, 0, 0},
		// an invalid user, and a record failed with Conflict
		{0, 0, 0, 0, 0, 0b11, 0b11, 1, 0, 0, 7, 2, 0, 0, 0, 1, 0, 4, 1, 0, 0, 1, 2, 2, 1, 1, 0, 0},
		{},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		in := fzInput(data)
		plan := Compute(in)
		fzCheckPlan(t, in, plan)
		fzCheckApply(t, in, plan)
	})
}

func fzCheckPlan(t *testing.T, in Input, plan Plan) {
	t.Helper()
	desired := map[fzSyncKey]Desired{}
	for si, s := range in.Syncs {
		for _, d := range s.Users {
			desired[fzSyncKey{si, d.User.Key}] = d
		}
	}

	// Every declared user and every stored record has exactly one item.
	items := map[fzSyncKey]int{}
	writes := 0
	identities := map[string]fzSyncKey{}
	for i, it := range plan.Items {
		if it.Sync < 0 || it.Sync >= len(in.Syncs) {
			t.Fatalf("item %d names UserSync %d of %d", i, it.Sync, len(in.Syncs))
		}
		k := fzSyncKey{it.Sync, it.Key}
		if j, dup := items[k]; dup {
			t.Fatalf("items %d and %d are both for %v", j, i, k)
		}
		items[k] = i
		s := in.Syncs[it.Sync]
		d, isDeclared := desired[k]
		_, isStored := s.Records[it.Key]
		if !isDeclared && !isStored {
			t.Fatalf("item %d is for %v, which is neither declared nor stored", i, k)
		}
		switch it.Kind {
		case Write:
			writes++
			if s.Removed || s.Hold != nil {
				t.Fatalf("item %d writes %v of a UserSync removed=%v hold=%v", i, k, s.Removed, s.Hold)
			}
			if !isDeclared {
				t.Fatalf("item %d writes %v, which is not declared", i, k)
			}
			if d.Invalid != "" {
				t.Fatalf("item %d writes %v, whose spec is invalid", i, k)
			}
			ch := it.Change
			if ch.User.Key != it.Key || ch.ExternalID != it.Record.ExternalID {
				t.Fatalf("item %d: change %+v does not match its record %+v", i, ch, it.Record)
			}
			if want := map[bool]providers.Op{true: providers.OpCreate, false: providers.OpUpdate}[ch.ExternalID == ""]; ch.Op != want {
				t.Fatalf("item %d: %s of a record with ExternalID %q", i, ch.Op, ch.ExternalID)
			}
			if d.Identity != "" {
				if other, dup := identities[d.Identity]; dup {
					t.Fatalf("identity %q is written by both %v and %v", d.Identity, other, k)
				}
				identities[d.Identity] = k
			}
		case Remove:
			writes++
			if s.Hold != nil {
				t.Fatalf("item %d deletes %v of a held UserSync", i, k)
			}
			if !s.Delete {
				t.Fatalf("item %d deletes %v of a UserSync whose deletionPolicy is not Delete", i, k)
			}
			if isDeclared {
				t.Fatalf("item %d deletes %v, which is declared", i, k)
			}
			if it.Change.Op != providers.OpDelete || it.Change.User.Key != it.Key {
				t.Fatalf("item %d: a Remove sends %+v", i, it.Change)
			}
		default:
			if it.Change.ID != "" || it.Change.Op != "" {
				t.Fatalf("item %d of kind %d carries a change %+v", i, it.Kind, it.Change)
			}
		}
		if it.Kind == Held && it.Record.Reason == ReasonDeletionHeld {
			if it.Record.State != StateDeleting {
				t.Fatalf("item %d: a held deletion is %s, not %s", i, it.Record.State, StateDeleting)
			}
			if s.Guard == nil || isDeclared {
				t.Fatalf("item %d: deletion of %v held without a guard or while declared", i, k)
			}
		}
		if it.Kind == Held && s.Hold != nil && it.Record.Reason == s.Hold.Reason {
			if want := map[bool]string{true: StatePending, false: StateDeleting}[isDeclared]; it.Record.State != want && d.Invalid == "" {
				t.Fatalf("item %d: held %v is %s, want %s", i, k, it.Record.State, want)
			}
		}
		if len(it.Record.Message) > MaxMessageLength {
			t.Fatalf("item %d: a message of %d bytes", i, len(it.Record.Message))
		}
	}
	for si, s := range in.Syncs {
		for _, d := range s.Users {
			if _, ok := items[fzSyncKey{si, d.User.Key}]; !ok {
				t.Fatalf("declared user %s of UserSync %d has no item", d.User.Key, si)
			}
		}
		for key := range s.Records {
			if _, ok := items[fzSyncKey{si, key}]; !ok {
				t.Fatalf("record %s of UserSync %d has no item", key, si)
			}
		}
	}

	// Changes are exactly the Write and Remove items, and their IDs index
	// them.
	if len(plan.Changes()) != writes {
		t.Fatalf("%d changes for %d Write/Remove items", len(plan.Changes()), writes)
	}
	ids := map[string]bool{}
	for _, ch := range plan.Changes() {
		if ids[ch.ID] {
			t.Fatalf("change ID %q is used twice", ch.ID)
		}
		ids[ch.ID] = true
		i, err := strconv.Atoi(ch.ID)
		if err != nil || i < 0 || i >= len(plan.Items) {
			t.Fatalf("change ID %q indexes no item", ch.ID)
		}
		it := plan.Items[i]
		if it.Kind != Write && it.Kind != Remove {
			t.Fatalf("change %q indexes an item of kind %d", ch.ID, it.Kind)
		}
		if it.Change.ID != ch.ID || it.Change.Op != ch.Op || it.Change.ExternalID != ch.ExternalID || it.Change.User.Key != ch.User.Key {
			t.Fatalf("change %+v differs from its item's %+v", ch, it.Change)
		}
		if ch.Op == providers.OpDelete && !in.Syncs[it.Sync].Delete {
			t.Fatalf("change %q deletes under deletionPolicy Orphan", ch.ID)
		}
	}
}

func fzCheckApply(t *testing.T, in Input, plan Plan) {
	t.Helper()
	// A UserSync whose creates are uncertain, or that sends creates, keeps
	// that in its records: each Pending one without an external id gets
	// action Create (the engine clears its create intents once they are
	// stored, and a later plan still looks those users up).
	creates := make([]bool, len(in.Syncs))
	for si := range in.Syncs {
		creates[si] = in.Syncs[si].CreatesUncertain
	}
	for _, it := range plan.Items {
		if it.Kind == Write && it.Change.Op == providers.OpCreate {
			creates[it.Sync] = true
		}
	}
	carried := func(si int, rec Record) Record {
		if creates[si] && rec.ExternalID == "" && rec.State == StatePending {
			rec.Action = string(providers.OpCreate)
		}
		return rec
	}
	check := func(name string, results []providers.Result, want func(it Item, r providers.Result, rec Record, kept bool)) {
		t.Helper()
		out := Apply(in, plan, results)
		if len(out) != len(in.Syncs) {
			t.Fatalf("%s: %d outcomes for %d UserSyncs", name, len(out), len(in.Syncs))
		}
		byID := map[string]providers.Result{}
		for _, r := range results {
			byID[r.ID] = r
		}
		stored := make([]int, len(in.Syncs))
		for _, it := range plan.Items {
			rec, kept := out[it.Sync].Records[it.Key]
			if kept {
				stored[it.Sync]++
				if rec.Key != it.Key {
					t.Fatalf("%s: record %q is stored under %q", name, rec.Key, it.Key)
				}
			}
			switch it.Kind {
			case Forget:
				if kept {
					t.Fatalf("%s: forgotten %s/%s is stored: %+v", name, in.Syncs[it.Sync].Name, it.Key, rec)
				}
			case Noop, Wait, Held:
				if want := carried(it.Sync, it.Record); !kept || rec != want {
					t.Fatalf("%s: %s/%s (kind %d) stored as %+v, want %+v", name, in.Syncs[it.Sync].Name, it.Key, it.Kind, rec, want)
				}
			default:
				want(it, byID[it.Change.ID], rec, kept)
			}
		}
		var due time.Time // the earliest retry of a record that awaits one
		for si, o := range out {
			if len(o.Records) != stored[si] {
				t.Fatalf("%s: UserSync %d stores %d records, %d of them planned", name, si, len(o.Records), stored[si])
			}
			for _, rec := range o.Records {
				if creates[si] && rec.ExternalID == "" && rec.State == StatePending && rec.Action != string(providers.OpCreate) {
					t.Fatalf("%s: %s may have been created but is stored without action Create: %+v", name, rec.Key, rec)
				}
				if len(rec.ExternalID) > MaxExternalIDLength || len(rec.Reason) > MaxReasonLength || len(rec.Message) > MaxMessageLength {
					t.Fatalf("%s: %s breaks the status bounds: %+v", name, rec.Key, rec)
				}
				if rec.Attempts > 0 && (rec.State == StatePending || rec.State == StateDeleting) {
					if d := rec.LastAttempt.Add(in.Backoff.Delay(rec.Attempts)); due.IsZero() || d.Before(due) {
						due = d
					}
				}
			}
		}
		if next := NextRetry(out, in.Backoff); !next.Equal(due) {
			t.Fatalf("%s: NextRetry = %v, the earliest retry is due %v", name, next, due)
		}
	}

	// No result: every write's outcome is unknown, and retried.
	check("no results", nil, func(it Item, _ providers.Result, rec Record, kept bool) {
		want := map[Kind]string{Write: StatePending, Remove: StateDeleting}[it.Kind]
		if !kept || rec.State != want || rec.Reason != "NoResult" || rec.Attempts != it.Record.Attempts+1 || !rec.LastAttempt.Equal(fzNow) {
			t.Fatalf("no results: %s (kind %d, attempts %d) stored as %+v", it.Key, it.Kind, it.Record.Attempts, rec)
		}
		if it.Kind == Write && rec.Hash != it.hash {
			t.Fatalf("no results: %s stored with hash %q, it sent %q", it.Key, rec.Hash, it.hash)
		}
	})

	// Every write succeeds.
	ok := make([]providers.Result, len(plan.Changes()))
	for i, ch := range plan.Changes() {
		ok[i] = providers.Result{ID: ch.ID, ExternalID: "9" + ch.ID, Action: providers.ActionCreated}
		if ch.Op == providers.OpDelete {
			ok[i] = providers.Result{ID: ch.ID, Action: providers.ActionDeleted}
		}
	}
	for i := range ok {
		if strings.HasSuffix(ok[i].ID, "3") && ok[i].ExternalID != "" {
			ok[i].ExternalID = strings.Repeat("9", MaxExternalIDLength+1) // more than the status holds
		}
	}
	check("successes", ok, func(it Item, r providers.Result, rec Record, kept bool) {
		if it.Kind == Remove {
			if kept {
				t.Fatalf("successes: deleted %s is still stored: %+v", it.Key, rec)
			}
			return
		}
		if len(r.ExternalID) > MaxExternalIDLength {
			if !kept || rec.State != StateFailed || rec.Reason != "ExternalIDTooLong" || rec.ExternalID != it.Record.ExternalID {
				t.Fatalf("successes: %s with a %d-byte id stored as %+v", it.Key, len(r.ExternalID), rec)
			}
			return
		}
		if !kept || rec.State != StateSynced || rec.ExternalID != r.ExternalID || rec.Reason != "" || rec.Attempts != 0 || rec.Hash != it.hash {
			t.Fatalf("successes: %s stored as %+v after %+v", it.Key, rec, r)
		}
	})

	// Every write fails, permanently for odd IDs.
	bad := make([]providers.Result, len(plan.Changes()))
	for i, ch := range plan.Changes() {
		n, _ := strconv.Atoi(ch.ID)
		bad[i] = providers.Result{ID: ch.ID, Err: &providers.RecordError{Permanent: n%2 == 1, Code: "VALIDATION_ERROR",
			Message: strings.Repeat("é", 200)}}
	}
	check("failures", bad, func(it Item, r providers.Result, rec Record, kept bool) {
		permanent := r.Err.(*providers.RecordError).Permanent
		want := StatePending
		switch {
		case it.Kind == Remove:
			want = StateDeleting
		case permanent:
			want = StateFailed
		}
		action := carried(it.Sync, Record{State: want, ExternalID: it.Record.ExternalID, Action: string(it.Change.Op)}).Action
		if !kept || rec.State != want || rec.Reason != "VALIDATION_ERROR" || rec.Attempts != it.Record.Attempts+1 ||
			rec.ExternalID != it.Record.ExternalID || rec.Action != action {
			t.Fatalf("failures: %s (kind %d) stored as %+v", it.Key, it.Kind, rec)
		}
		if len(rec.Message) > MaxMessageLength || !utf8.ValidString(rec.Message) {
			t.Fatalf("failures: message of %d bytes, valid UTF-8 %v", len(rec.Message), utf8.ValidString(rec.Message))
		}
	})
}

// fzUser builds a user from data: its fields, then up to four attributes
// whose values are strings, numbers or booleans, as the CRD allows.
func fzUser(r *fzReader, key, email, first, last string) providers.User {
	u := providers.User{Key: key, Email: email, FirstName: first, LastName: last}
	n := r.n(5)
	if n > 0 {
		u.Attributes = map[string]any{}
	}
	for i := 0; i < n; i++ {
		name := make([]byte, r.n(6))
		for j := range name {
			name[j] = "abcdefghij_.-A0"[r.n(15)]
		}
		var v any
		switch r.n(3) {
		case 0:
			s := make([]byte, r.n(8))
			for j := range s {
				s[j] = r.byte()
			}
			v = strings.ToValidUTF8(string(s), "?") // values come from JSON
		case 1:
			var b [8]byte
			for j := range b {
				b[j] = r.byte()
			}
			x := math.Float64frombits(binary.LittleEndian.Uint64(b[:]))
			if math.IsNaN(x) || math.IsInf(x, 0) {
				x = float64(b[0]) // not JSON
			}
			v = x
		default:
			v = r.byte()&1 == 1
		}
		u.Attributes[string(name)] = v
	}
	return u
}

// FuzzHash checks that Hash is deterministic, ignores the order of the
// attributes, and tells apart users that would be written differently.
func FuzzHash(f *testing.F) {
	f.Add("alice", "alice@example.com", "Alice", "Liddell", []byte{2, 3, 0, 1, 2, 1, 4, 'E', 'n', 'g', 'i', 4, 0, 1, 1, 2, 3, 4, 5, 6, 7})
	f.Add("u-0001", "", "", "", []byte{})
	f.Add("a", "b", "c", "d", []byte{4, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 2, 1, 1, 1, 3, 2, 2, 3, 'x', 'y'})
	f.Add("ab", "", "c", "", []byte{1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, key, email, first, last string, data []byte) {
		u := fzUser(&fzReader{b: data}, key, email, first, last)
		h := Hash(u)
		if len(h) != 16 || strings.Trim(h, "0123456789abcdef") != "" {
			t.Fatalf("Hash = %q, want 16 hex digits", h)
		}
		// Deterministic, whatever order the map is read in.
		for i := 0; i < 3; i++ {
			if again := Hash(u); again != h {
				t.Fatalf("Hash changed from %s to %s", h, again)
			}
		}
		// The same attributes, inserted in another order (a new map has its
		// own iteration seed), and with nil for no attributes.
		v := u
		v.Attributes = nil
		if len(u.Attributes) > 0 {
			v.Attributes = make(map[string]any, len(u.Attributes))
			names := make([]string, 0, len(u.Attributes))
			for k := range u.Attributes {
				names = append(names, k)
			}
			for i := len(names) - 1; i >= 0; i-- {
				v.Attributes[names[i]] = u.Attributes[names[i]]
			}
		} else {
			v.Attributes = map[string]any{}
		}
		if hv := Hash(v); hv != h {
			t.Fatalf("the same user hashes %s and %s", h, hv)
		}

		// Users written differently hash differently.
		differ := func(what string, w providers.User) {
			t.Helper()
			if Hash(w) == h {
				t.Fatalf("%s: %+v and %+v hash alike (%s)", what, u, w, h)
			}
		}
		if u.Key != "" {
			w := u
			w.Key, w.Email = u.Key[:len(u.Key)-1], u.Key[len(u.Key)-1:]+u.Email
			differ("a byte moved from key to email", w)
		}
		if u.FirstName != u.LastName {
			w := u
			w.FirstName, w.LastName = u.LastName, u.FirstName
			differ("first and last name swapped", w)
		}
		w := u
		w.Attributes = map[string]any{"": ""}
		for k, x := range u.Attributes {
			w.Attributes[k] = x
		}
		if _, had := u.Attributes[""]; !had {
			differ("an attribute added", w)
		}
		names := make([]string, 0, len(u.Attributes))
		for k := range u.Attributes {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			x := u.Attributes[k]
			w := u
			w.Attributes = make(map[string]any, len(u.Attributes))
			for k2, x2 := range u.Attributes {
				w.Attributes[k2] = x2
			}
			// The same text as another JSON type: "1" and 1, "true" and true.
			switch x := x.(type) {
			case string:
				if f, err := strconv.ParseFloat(x, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
					w.Attributes[k] = f
					differ("a string attribute as a number", w)
				}
				w.Attributes[k] = x + "x"
				differ("a string attribute changed", w)
			case float64:
				b, _ := json.Marshal(x)
				w.Attributes[k] = string(b)
				differ("a number attribute as a string", w)
			case bool:
				w.Attributes[k] = !x
				differ("a boolean attribute flipped", w)
				w.Attributes[k] = strconv.FormatBool(x)
				differ("a boolean attribute as a string", w)
			}
			delete(w.Attributes, k)
			w.Attributes[k+"_"] = x
			differ("an attribute renamed", w)
		}
	})
}
