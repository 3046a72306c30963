// Package planner decides, for one provider, which records of which UserSyncs
// must be written, deleted, forgotten or left alone. It is pure: no
// Kubernetes client, no HTTP, no clock of its own. The engine applies the plan
// and folds the vendor's results back with Apply.
//
// The model follows CloudNativePG's role reconciler: take the desired state,
// the stored state and what is known of the outside, write nothing, and
// return every record bucketed by what must happen to it.
package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"time"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers"
)

// Record states, as in the UserSync API.
const (
	StateSynced   = "Synced"
	StatePending  = "Pending"
	StateFailed   = "Failed"
	StateDeleting = "Deleting"
	StateDrifted  = "Drifted"
)

// Drift reasons and actions, as in the UserSync API: a record found
// different at the vendor is Pending with ReasonDrifted (ReasonMissing when
// the vendor lost the user) until it is rewritten (ActionCorrected,
// ActionRecreated), or, under driftPolicy Report, Drifted with ReasonChanged
// or ReasonMissing.
const (
	ReasonDrifted   = "Drifted"
	ReasonMissing   = "Missing"
	ReasonChanged   = "Changed"
	ActionCorrected = "Corrected"
	ActionRecreated = "Recreated"
)

// Values of Sync.DriftPolicy ("" is DriftCorrect).
const (
	DriftCorrect = "Correct"
	DriftReport  = "Report"
	DriftIgnore  = "Ignore"
)

// Record reasons set by the planner.
const (
	ReasonConflict    = "Conflict"
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonPlanned is the reason the engine gives the hold of a UserSync
	// in mode Plan (Hold.Planned); its records show the planned action.
	ReasonPlanned = "Planned"
)

// MaySent reports whether a create of the record's user may have reached
// the vendor without the engine learning its id, so that a later plan must
// look the user up before creating it. Every write whose outcome was
// stored counts an attempt; a record that says Create without one carries
// the uncertainty of its UserSync's creates (markCreates) — except a
// record held by a plan awaiting approval, whose Create is only the
// planned action: it was never sent. A planned record whose UserSync's
// creates are uncertain is given an attempt by markCreates, so that it
// stays one that may have been sent. (A create sent by a loop that stopped
// before storing anything is covered by the engine's create intent, as
// for users that have no record yet.)
func MaySent(rec Record) bool {
	return rec.ExternalID == "" && rec.Action == string(providers.OpCreate) && (rec.Reason != ReasonPlanned || rec.Attempts > 0)
}

// Record is what a UserSync's status says about one user at this provider.
type Record struct {
	Key         string
	ExternalID  string
	State       string
	Action      string
	Reason      string
	Message     string
	Attempts    int32
	LastAttempt time.Time
	Hash        string
}

// Desired is one user of a UserSync's spec, with its content hash and its
// vendor identity (providers.Client.Identity).
type Desired struct {
	// User is copied into the Change of a Write. The planner itself reads
	// only its Key: it compares content by Hash. The engine may leave out
	// what is costly to keep for every user (attributes) and complete the
	// Changes it sends (Item.Index names the user).
	User     providers.User
	Hash     string
	Identity string
	// Invalid, when set, says why the user cannot be written (a rule the API
	// server cannot enforce); the record is Failed with reason InvalidSpec
	// and nothing is sent.
	Invalid string
}

// Sync is one UserSync as one provider's loop sees it.
type Sync struct {
	// Name is "<namespace>/<name>"; with Created it orders UserSyncs for
	// conflicts: the older one keeps an identity.
	Name    string
	Created time.Time
	// Users is the spec's users in spec order; empty when Removed.
	Users []Desired
	// Records are this provider's records from the status, by key.
	Records map[string]Record
	// Delete is true under deletionPolicy Delete.
	Delete bool
	// Hold, when set, holds every write and delete back: the records are
	// stored Pending (or Deleting) with its reason and message. Set for
	// spec.suspend, and for a provider that cannot be written to now.
	Hold *Hold
	// Removed is true when the UserSync is being deleted or no longer lists
	// this provider: every record leaves.
	Removed bool
	// Guard, when set, holds a mass deletion back until it is approved.
	Guard *DeletionGuard
	// CreatesUncertain is true when a loop may have sent creates for this
	// UserSync whose results were never stored (a crash, a lost answer): every
	// write of a user without an external id is then a Retry, so the client
	// looks the user up before creating it. Apply carries it into the records
	// (see ApplyOne), so the engine can clear its create intents once they
	// are stored.
	CreatesUncertain bool
	// CreatesSince, with CreatesUncertain, is the latest moment at which
	// those creates may have been sent (Change.RetrySince).
	CreatesSince time.Time
	// DriftPolicy is the UserSync's spec.driftPolicy: what a Drifted record
	// becomes (Correct: written again; Report: kept; Ignore: Synced).
	DriftPolicy string
}

// DeletionGuard holds back a loop's deletions of one UserSync when they are
// many at once (an emptied values file, a bad Helm render, a deleted
// UserSync): they wait, Deleting with reason DeletionHeld, until the UserSync
// approves exactly that set of deletions.
type DeletionGuard struct {
	// MaxCount: more deletions than this are held. 0: no count limit.
	MaxCount int
	// MaxPercent: deletions of more than this share of the UserSync's
	// records at this provider are held, when they are more than MinCount.
	// 0: no share limit.
	MaxPercent int
	MinCount   int
	// Approved is the approval token the UserSync carries, if any.
	Approved string
}

// ReasonDeletionHeld is the reason of a record whose deletion waits for
// approval.
const ReasonDeletionHeld = usersv1.ReasonDeletionHeld

// DeletionToken names a set of deletions: approving it approves exactly
// these keys, so a stale approval never lets a different mass deletion
// through.
func DeletionToken(keys []string) string {
	sorted := append([]string(nil), keys...)
	sort.Strings(sorted)
	h := sha256.New()
	for _, k := range sorted {
		h.Write([]byte(k))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// holds reports whether n deletions among total records trip the guard.
func (g *DeletionGuard) holds(n, total int) bool {
	if g == nil || n == 0 {
		return false
	}
	if g.MaxCount > 0 && n > g.MaxCount {
		return true
	}
	return g.MaxPercent > 0 && n > g.MinCount && n*100 > g.MaxPercent*total
}

// Hold is why writes wait.
type Hold struct {
	Reason  string
	Message string
	// Planned: the hold is a plan awaiting approval (mode Plan); the
	// records show the planned action (Create, Update, Delete).
	Planned bool
}

// Backoff is the per-record retry schedule: Base·2^(attempts-1), at most Max.
type Backoff struct {
	Base time.Duration
	Max  time.Duration
}

// Delay returns how long to wait after the given number of failed attempts.
func (b Backoff) Delay(attempts int32) time.Duration {
	if attempts <= 0 {
		return 0
	}
	d := b.Base
	for i := int32(1); i < attempts && d < b.Max; i++ {
		d *= 2
	}
	if d > b.Max {
		d = b.Max
	}
	return d
}

// Kind is what happens to one record.
type Kind int

const (
	// Noop: the record is as it should be; nothing is written.
	Noop Kind = iota
	// Write: a Create or Update is sent (Item.Change).
	Write
	// Remove: a Delete is sent (Item.Change).
	Remove
	// Forget: the record is dropped from the status; nothing is sent.
	Forget
	// Wait: a retry is due later (backoff); the record is unchanged.
	Wait
	// Held: the record is set to Item.Record without a write (a conflict, a
	// held write).
	Held
)

// Item is the plan for one record.
type Item struct {
	Sync int // index in Input.Syncs
	// Index is the user's index in Input.Syncs[Sync].Users; -1 for a record
	// whose user left the spec.
	Index int
	Key   string
	Kind  Kind
	// Change is set for Write and Remove.
	Change providers.Change
	// Record is the record to store for Noop, Wait and Held, and the record
	// as it was (if any) for Write and Remove.
	Record Record
	// hash is the content hash a Write sends.
	hash string
}

// Plan is the outcome of Compute.
type Plan struct {
	// Items are grouped by sync, in the order of Input.Syncs (see Of).
	Items []Item
	// ends[si] is the end of the items of sync si in Items.
	ends []int
	// items[pos] is the index in Items of the change at position pos: the
	// writes to send, in a stable order, are the changes of those items
	// (kept once, in the items: a second copy was 15 MB of a 100,000-user
	// plan).
	items []int
}

// NumChanges is how many writes the plan sends.
func (p Plan) NumChanges() int { return len(p.items) }

// Change returns the write at position pos. Change.ID is a correlation id
// for the vendor and holds no user data; ChangeItem gives its item.
func (p Plan) Change(pos int) providers.Change { return p.Items[p.items[pos]].Change }

// Changes returns every write, in order: a copy, for a review or a test
// (the engine reads them by position).
func (p Plan) Changes() []providers.Change {
	out := make([]providers.Change, len(p.items))
	for pos := range out {
		out[pos] = p.Change(pos)
	}
	return out
}

// Defer takes the changes from position pos on out of the plan: their items
// keep the records as they were (Wait; Forget for a user without one), as
// if the plan had never meant to send them, so that the engine can fold
// only the changes it sent (a loop that stopped sending to let its rate
// limit refill) and plan the rest again later. It modifies the plan's items
// in place.
func (p *Plan) Defer(pos int) {
	if pos < 0 || pos >= len(p.items) {
		return
	}
	for _, i := range p.items[pos:] {
		it := &p.Items[i]
		it.Kind, it.Change = Wait, providers.Change{}
		it.Record.Key = it.Key
		if it.Record.State == "" {
			it.Kind = Forget
		}
	}
	p.items = p.items[:pos]
}

// ChangeItem returns the item of Changes[pos] (a pointer into Items).
func (p Plan) ChangeItem(pos int) *Item {
	return &p.Items[p.items[pos]]
}

// Of returns the items of sync si, a sub-slice of Items (not a copy).
func (p Plan) Of(si int) []Item {
	if si < 0 || si >= len(p.ends) {
		return nil
	}
	start := 0
	if si > 0 {
		start = p.ends[si-1]
	}
	return p.Items[start:p.ends[si]]
}

// Input is everything Compute needs.
type Input struct {
	Now     time.Time
	Syncs   []Sync
	Backoff Backoff
}

// Compute returns the plan for one provider.
func Compute(in Input) Plan {
	owners := claimIdentities(in.Syncs)
	// The records whose user left each spec, found once. Only then are the
	// hand-over indexes needed: a resync of unchanged UserSyncs skips them.
	gone := make([][]string, len(in.Syncs))
	size, anyGone := 0, false
	for si := range in.Syncs {
		gone[si] = goneKeys(&in.Syncs[si])
		anyGone = anyGone || len(gone[si]) > 0
		size += len(gone[si])
		if !in.Syncs[si].Removed {
			size += len(in.Syncs[si].Users)
		}
	}
	var k kept
	var moved map[string]string
	if anyGone {
		k = keptExternalIDs(in.Syncs)
		moved = movedUsers(in.Syncs, gone, k)
	}
	p := Plan{Items: make([]Item, 0, size), ends: make([]int, len(in.Syncs))}
	for si := range in.Syncs {
		s := &in.Syncs[si]
		if !s.Removed {
			for i, d := range s.Users {
				it := planUser(in, si, d, owners, moved)
				it.Index = i
				p.add(it)
			}
		}
		first := len(p.Items)
		for _, key := range gone[si] {
			p.add(planGone(in, si, s.Records[key], k))
		}
		guardDeletions(s, p.Items[first:])
		p.ends[si] = len(p.Items)
	}
	for i := range p.Items {
		it := &p.Items[i]
		if it.Kind == Write || it.Kind == Remove {
			it.Change.ID = strconv.Itoa(i)
			p.items = append(p.items, i)
		}
	}
	return p
}

// goneKeys are the keys of a sync's records whose user left its spec (all
// of them for a removed sync), in key order for a stable plan.
func goneKeys(s *Sync) []string {
	if !s.Removed {
		held := 0
		for _, d := range s.Users {
			if _, ok := s.Records[d.User.Key]; ok {
				held++
			}
		}
		if held == len(s.Records) {
			return nil // every record is a declared user's: nothing left
		}
	}
	declared := make(map[string]struct{}, len(s.Users))
	if !s.Removed {
		for _, d := range s.Users {
			declared[d.User.Key] = struct{}{}
		}
	}
	var out []string
	for key := range s.Records {
		if _, ok := declared[key]; !ok {
			out = append(out, key)
		}
	}
	sort.Strings(out)
	return out
}

func (p *Plan) add(it Item) { p.Items = append(p.Items, it) }

// guardDeletions holds the new deletions of one UserSync when the guard
// trips and they are not approved. Deletions already under way (approved
// earlier, or small enough) are not counted again.
func guardDeletions(s *Sync, items []Item) {
	var fresh []int
	var keys []string
	for i, it := range items {
		if it.Kind != Remove {
			continue
		}
		if it.Record.State == StateDeleting && it.Record.Reason != ReasonDeletionHeld {
			continue
		}
		fresh = append(fresh, i)
		keys = append(keys, it.Key)
	}
	if !s.Guard.holds(len(fresh), len(s.Records)) {
		return
	}
	token := DeletionToken(keys)
	if token == s.Guard.Approved {
		return
	}
	msg := fmt.Sprintf("%d of %d users would be deleted at once: approve with the annotation %s=%s, "+
		"or set spec.deletionPolicy: Orphan to forget them", len(fresh), len(s.Records), usersv1.AnnotationApproveDeletions, token)
	for _, i := range fresh {
		it := &items[i]
		it.Kind = Held
		it.Change = providers.Change{}
		it.Record.State = StateDeleting
		it.Record.Reason = ReasonDeletionHeld
		it.Record.Message = Truncate(msg, MaxMessageLength)
	}
}

// owner is the UserSync and key that keeps an identity.
type owner struct {
	sync int
	key  string
}

// claimIdentities gives each non-empty identity to the oldest UserSync that
// declares it (then by name, then by spec order).
func claimIdentities(syncs []Sync) map[string]owner {
	order := make([]int, len(syncs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		sa, sb := syncs[order[a]], syncs[order[b]]
		if !sa.Created.Equal(sb.Created) {
			return sa.Created.Before(sb.Created)
		}
		return sa.Name < sb.Name
	})
	owners := map[string]owner{}
	for _, si := range order {
		if syncs[si].Removed {
			continue
		}
		for _, d := range syncs[si].Users {
			if d.Identity == "" {
				continue
			}
			if _, taken := owners[d.Identity]; !taken {
				owners[d.Identity] = owner{sync: si, key: d.User.Key}
			}
		}
	}
	return owners
}

// movedUsers maps the key of a user that left one UserSync for another to
// its vendor id: the new record writes that user instead of creating one.
func movedUsers(syncs []Sync, gone [][]string, k kept) map[string]string {
	moved := map[string]string{}
	for si, keys := range gone {
		for _, key := range keys {
			rec := syncs[si].Records[key]
			if rec.ExternalID == "" {
				continue
			}
			for _, other := range k.keys[key] {
				if other != si {
					moved[key] = rec.ExternalID
				}
			}
		}
	}
	return moved
}

func planUser(in Input, si int, d Desired, owners map[string]owner, moved map[string]string) Item {
	s := &in.Syncs[si]
	rec, known := s.Records[d.User.Key]
	if !known && moved[d.User.Key] != "" {
		// Taken over from the UserSync it left: update that vendor user.
		rec.ExternalID = moved[d.User.Key]
	}
	it := Item{Sync: si, Key: d.User.Key, Record: rec, hash: d.Hash}

	if d.Invalid != "" {
		it.Kind = Held
		it.Record = Record{Key: d.User.Key, ExternalID: rec.ExternalID, State: StateFailed, Action: rec.Action,
			Reason: ReasonInvalidSpec, Message: Truncate(d.Invalid, MaxMessageLength), LastAttempt: rec.LastAttempt, Hash: d.Hash}
		return it
	}

	if o, ok := owners[d.Identity]; ok && d.Identity != "" && (o.sync != si || o.key != d.User.Key) {
		other := in.Syncs[o.sync].Name
		msg := fmt.Sprintf("identity %q is already declared by UserSync %s (key %s)", d.Identity, other, o.key)
		if o.sync == si {
			msg = fmt.Sprintf("identity %q is already declared by key %s of this UserSync", d.Identity, o.key)
		}
		it.Kind = Held
		it.Record = Record{Key: d.User.Key, ExternalID: rec.ExternalID, State: StateFailed, Action: rec.Action,
			Reason: ReasonConflict, Message: msg, LastAttempt: rec.LastAttempt, Hash: d.Hash}
		return it
	}

	if known && rec.Hash == d.Hash && rec.State != StateDeleting {
		switch rec.State {
		case StateDrifted:
			switch s.DriftPolicy {
			case DriftReport:
				it.Kind = Noop
				return it
			case DriftIgnore:
				// Not read any more: nothing is known against Synced.
				it.Kind = Noop
				it.Record.State, it.Record.Reason, it.Record.Message = StateSynced, "", ""
				return it
			}
			// Correct: write it again.
			if it.Record.Reason == ReasonChanged {
				it.Record.Reason = ReasonDrifted
			}
		case StateSynced, StateFailed:
			if rec.Reason != ReasonConflict {
				it.Kind = Noop
				return it
			}
		case StatePending:
			if rec.Attempts > 0 && in.Now.Before(rec.LastAttempt.Add(in.Backoff.Delay(rec.Attempts))) && s.Hold == nil {
				it.Kind = Wait
				return it
			}
		}
	}

	op := providers.OpCreate
	if rec.ExternalID != "" {
		op = providers.OpUpdate
	}
	if s.Hold != nil {
		it.Kind = Held
		it.Record = rec
		it.Record.Key = d.User.Key
		it.Record.State = StatePending
		it.Record.Reason = s.Hold.Reason
		it.Record.Message = Truncate(s.Hold.Message+": the "+string(op)+" waits", MaxMessageLength)
		if s.Hold.Planned {
			it.Record.Action = string(op)
		}
		return it
	}
	attempts := rec.Attempts
	if rec.Hash != d.Hash {
		attempts = 0 // new content: a fresh schedule
	}
	it.Kind = Write
	it.Record.Attempts = attempts
	it.Change = providers.Change{
		Op:         op,
		ExternalID: rec.ExternalID,
		User:       d.User,
		// Any earlier attempt that the vendor did not reject may have reached
		// it: the client must not create blindly.
		Retry: rec.ExternalID == "" && (s.CreatesUncertain || known && rec.State != StateFailed &&
			(rec.Attempts > 0 || MaySent(rec))),
	}
	if it.Change.Retry {
		it.Change.RetrySince = retrySince(s, rec)
	}
	return it
}

// retrySince is the latest moment an earlier create of rec may have been
// sent: the sync's create intent, which the engine keeps (with a fixed time)
// while any create of the sync is uncertain. Without one, the record's last
// attempt, stored to the second, so the whole second after it (a later
// lookup moves it, so the engine must not leave uncertain records without
// an intent).
func retrySince(s *Sync, rec Record) time.Time {
	if s.CreatesUncertain {
		return s.CreatesSince
	}
	if rec.LastAttempt.IsZero() {
		return time.Time{}
	}
	return rec.LastAttempt.Truncate(time.Second).Add(time.Second)
}

// kept is what declared users hold at this provider: their vendor ids, and
// their keys with the UserSyncs that declare them.
type kept struct {
	ids  map[string]struct{}
	keys map[string][]int
}

func keptExternalIDs(syncs []Sync) kept {
	k := kept{ids: map[string]struct{}{}, keys: map[string][]int{}}
	for si, s := range syncs {
		if s.Removed {
			continue
		}
		for _, d := range s.Users {
			if rec, ok := s.Records[d.User.Key]; ok && rec.ExternalID != "" {
				k.ids[rec.ExternalID] = struct{}{}
			}
			k.keys[d.User.Key] = append(k.keys[d.User.Key], si)
		}
	}
	return k
}

// handedOver reports whether a record that left sync si belongs to a user
// another record now declares: the same vendor id, or the same key in
// another UserSync (a user moved between UserSyncs in one change, as when a
// Helm chart re-chunks its list). Deleting it would remove the user the
// other record writes; when in doubt the user is kept at the vendor.
func (k kept) handedOver(si int, rec Record) bool {
	if _, ok := k.ids[rec.ExternalID]; ok && rec.ExternalID != "" {
		return true
	}
	for _, other := range k.keys[rec.Key] {
		if other != si {
			return true
		}
	}
	return false
}

func planGone(in Input, si int, rec Record, kept kept) Item {
	s := &in.Syncs[si]
	it := Item{Sync: si, Index: -1, Key: rec.Key, Record: rec}
	mayExist := rec.ExternalID != "" || (rec.State != StateFailed && rec.Action != "")
	if !s.Delete || !mayExist || kept.handedOver(si, rec) {
		it.Kind = Forget
		return it
	}
	if s.Hold != nil {
		it.Kind = Held
		it.Record.State = StateDeleting
		it.Record.Reason = s.Hold.Reason
		it.Record.Message = Truncate(s.Hold.Message+": the Delete waits", MaxMessageLength)
		if s.Hold.Planned {
			it.Record.Action = string(providers.OpDelete)
		}
		return it
	}
	if rec.State == StateDeleting && rec.Attempts > 0 && in.Now.Before(rec.LastAttempt.Add(in.Backoff.Delay(rec.Attempts))) {
		it.Kind = Wait
		return it
	}
	if rec.State != StateDeleting {
		it.Record.Attempts = 0
	}
	it.Kind = Remove
	it.Change = providers.Change{Op: providers.OpDelete, ExternalID: rec.ExternalID,
		User: providers.User{Key: rec.Key}}
	return it
}
