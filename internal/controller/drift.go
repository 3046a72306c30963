package controller

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/declared"
	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers"
)

// Drift detection. On the schedule of the provider's spec.driftDetection a
// loop that has nothing to write reads the users back (providers.Reader)
// and compares them with what was written: every record Synced (or Drifted)
// at the current spec, of every UserSync whose driftPolicy is not Ignore.
// What a read finds changes the records before the loop plans again:
//
//   - Correct: a changed user is Pending with reason Drifted, a missing one
//     Pending with reason Missing and no external id; the same loop writes
//     them again (re-creates the missing), and they are Synced with action
//     Corrected or Recreated. Every guard applies as to any write (suspend,
//     conflicts, the rate limit).
//   - Report: the record is Drifted, reason Changed (the message names the
//     fields) or Missing; nothing is written. A Drifted user found as
//     declared again is Synced again.
//
// A read that does not answer for sure (providers.Unknown) changes nothing.
// A pass that finds nothing writes no UserSync status: the provider's
// status.lastVerifiedTime is its one write.
//
// Reads and writes share spec.rateLimit. In a loop with nothing to write a
// pass may use the whole limit, and stops between two read calls as soon as
// a UserSync of the provider changes (the loop's key is queued again), so a
// write waits at most for the read call under way. In a loop with writes to
// send, the pass runs beside them (sharedPass) within
// spec.driftDetection.maxReadShare percent of the limit, one read call at a
// time, and a waiting write lets at most one read call go first
// (windowLimiter.acquireReads); it reads only the users the loop does not
// write, and what it finds is folded into the records after the writes.
// A pass that stops goes on from where it stopped in the next loop (the
// provider's passCursor): under a steady stream of writes it still
// finishes.

// DefaultDriftInterval is how often users are verified unless
// spec.driftDetection.interval says otherwise.
const DefaultDriftInterval = time.Hour

// DefaultMaxReadShare is the percentage of spec.rateLimit reads may use
// while writes are pending unless spec.driftDetection.maxReadShare says
// otherwise.
const DefaultMaxReadShare = 20

// readChunk is how many one-user reads a pass sends between two checks for
// a change of the provider's UserSyncs (the Readers keep 4 in flight).
const readChunk = 4

// driftInterval is the provider's verification interval; 0 when reads are
// off (interval 0s, or a vendor that cannot read back).
func (l *loop) driftInterval() time.Duration {
	if l.provider == nil || l.vendor == nil {
		return 0
	}
	rd, ok := l.vendor.(providers.Reader)
	if !ok || rd.ReadBatch() <= 0 {
		return 0
	}
	if rr, ok := l.vendor.(providers.ReadRefusal); ok {
		if refused, _ := rr.ReadsRefused(); refused {
			return 0
		}
	}
	d := DefaultDriftInterval
	if dd := l.provider.spec.DriftDetection; dd != nil && dd.Interval != nil {
		d = dd.Interval.Duration
	}
	return max(d, 0)
}

// verifyDue reports whether a verification pass is due, and when the next
// one is (zero: never).
func (r *ProviderReconciler) verifyDue(l *loop) (bool, time.Time) {
	every := l.driftInterval()
	if every == 0 {
		return false, time.Time{}
	}
	last := r.verified.get(l.key.index())
	if t := l.provider.status.LastVerifiedTime; t != nil && t.After(last) {
		last = t.Time
	}
	l.verifiedBefore = last
	// A pass the vendor failed verified nothing, but the next try waits an
	// interval too: an outage is not hammered with reads.
	if t := r.verified.get(failedKey(l.key.index())); t.After(last) {
		last = t
	}
	if last.IsZero() {
		return true, l.now
	}
	next := last.Add(every)
	return !l.now.Before(next), next
}

// verifiedTimes remembers when this process finished each provider's last
// pass (the provider in the cache may lag behind its status write), and
// where each provider's pass under way stopped.
type verifiedTimes struct {
	mu      sync.Mutex
	m       map[string]time.Time
	cursors map[string]passCursor
}

// passCursor is where a pass that stopped goes on: after the user keyed
// after of the UserSync named sync (planner.Sync.Name), or at its first
// user when the spec no longer holds that key; the UserSyncs named before
// it were read. The UserSyncs are read in name order, their users in spec
// order. A pass that began (started) more than an interval ago begins
// again.
type passCursor struct {
	sync, after string
	started     time.Time
}

func (v *verifiedTimes) cursor(provider string) (passCursor, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.cursors[provider]
	return c, ok
}

// setCursor keeps c for provider's next pass; ok false forgets it (the next
// pass starts from the first user).
func (v *verifiedTimes) setCursor(provider string, c passCursor, ok bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !ok {
		delete(v.cursors, provider)
		return
	}
	if v.cursors == nil {
		v.cursors = map[string]passCursor{}
	}
	v.cursors[provider] = c
}

func (v *verifiedTimes) get(provider string) time.Time {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.m[provider]
}

func (v *verifiedTimes) set(provider string, t time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = map[string]time.Time{}
	}
	v.m[provider] = t
}

// failedKey is where verifiedTimes keeps a provider's last failed pass.
func failedKey(provider string) string { return provider + "\x00failed" }

// changedKeys marks the providers whose UserSyncs changed since their loop
// began: a verification pass stops for them.
type changedKeys struct{ m sync.Map }

func (c *changedKeys) mark(k providerKey)  { c.m.Store(k, true) }
func (c *changedKeys) clear(k providerKey) { c.m.Delete(k) }
func (c *changedKeys) isSet(k providerKey) bool {
	_, ok := c.m.Load(k)
	return ok
}

// driftTally counts what a pass found.
type driftTally struct {
	read, changed, missing int
	// bySync counts the records each UserSync had found drifted.
	bySync map[int]int
}

// pass is one verification pass under way.
type pass struct {
	r   *ProviderReconciler
	ctx context.Context
	l   *loop
	in  *planner.Input
	rd  providers.Reader
	// objs are the loop's UserSyncs as the pass began (a shared pass runs
	// while the loop stores statuses).
	objs  []*usersv1.UserSync
	batch []passTarget
	t     driftTally
	// lim, when not nil, gives each read call its allowance; waiting for it
	// ends with waitCtx (a shared pass is stopped while it waits).
	lim     *windowLimiter
	waitCtx context.Context
	// shared: the pass runs beside the loop's writes (sharedPass): it reads
	// only the users whose plan item is a Noop (noop[si][ui]), and keeps
	// what it found in found instead of folding it; stop ends it after
	// the read call under way.
	shared bool
	noop   [][]bool
	found  []foundUser
	stop   atomic.Bool
	// at: where the pass goes on after the batch is read; reached: after
	// the last batch read.
	at, reached passCursor
	// failed: a read call answered nothing for sure (the vendor is down,
	// throttles, or answers garbage): the pass stops.
	failed bool
}

// passTarget is user ui of sync si.
type passTarget struct{ si, ui int }

// foundUser is what a shared pass read for user ui of sync si.
type foundUser struct {
	si, ui int
	o      providers.Observation
}

// verifyPass reads the users of in back and folds what it finds into
// in.Syncs[*].Records. complete is false when the pass stopped early; a
// pass stopped by a read call that answered nothing for sure is recorded as
// failed, and tried again an interval later.
func (r *ProviderReconciler) verifyPass(ctx context.Context, l *loop, in *planner.Input) (driftTally, bool) {
	p := r.newPass(ctx, l, in)
	complete := p.run()
	r.passEnded(l, p, complete)
	return p.t, complete
}

func (r *ProviderReconciler) newPass(ctx context.Context, l *loop, in *planner.Input) *pass {
	p := &pass{r: r, ctx: ctx, l: l, in: in, rd: l.vendor.(providers.Reader), t: driftTally{bySync: map[int]int{}},
		objs: make([]*usersv1.UserSync, len(l.syncs))}
	for i, v := range l.syncs {
		p.objs[i] = v.obj
	}
	if l.tr != nil {
		p.lim, p.waitCtx = l.tr.limiter, ctx
	}
	return p
}

// passEnded keeps where a pass stopped for the next loop, or forgets it
// when it is complete or failed (failed is also remembered: the next try
// waits an interval).
func (r *ProviderReconciler) passEnded(l *loop, p *pass, complete bool) {
	if p.failed {
		r.verified.set(failedKey(l.key.index()), r.Clock.Now())
		l.verifyFailed = true
	}
	r.verified.setCursor(l.key.index(), p.reached, !complete && !p.failed && p.reached.sync != "")
}

// run reads the users from the provider's cursor on; it reports whether
// the pass reached the last user.
func (p *pass) run() bool {
	in, l := p.in, p.l
	// A change of a UserSync stops the pass after the read call under way:
	// one call of a batch vendor, or the few one-user calls a Reader keeps
	// in flight together (one beside writes).
	size := p.rd.ReadBatch()
	if size == 1 && !p.shared {
		size = readChunk
	}
	order := make([]int, 0, len(in.Syncs))
	for si := range in.Syncs {
		order = append(order, si)
	}
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(in.Syncs[a].Name, in.Syncs[b].Name) })
	from, resume := p.r.verified.cursor(l.key.index())
	if resume && l.now.Sub(from.started) > l.driftInterval() {
		resume = false
	}
	if !resume {
		from = passCursor{started: l.now}
	}
	p.reached = from
	for _, si := range order {
		s := &in.Syncs[si]
		obj := p.objs[si]
		start := 0
		if resume {
			switch c := strings.Compare(s.Name, from.sync); {
			case c < 0:
				continue
			case c == 0:
				start = 1 + slices.IndexFunc(s.Users, func(d planner.Desired) bool { return d.User.Key == from.after })
			}
		}
		if s.Removed || s.DriftPolicy == planner.DriftIgnore || l.syncs[si].refusedReason != "" || len(s.Users) != len(obj.Spec.Users) {
			continue
		}
		for ui := start; ui < len(s.Users); ui++ {
			d := &s.Users[ui]
			rec, ok := s.Records[d.User.Key]
			if !ok || rec.ExternalID == "" || rec.Hash != d.Hash || d.Invalid != "" ||
				(rec.State != planner.StateSynced && rec.State != planner.StateDrifted) ||
				(p.shared && !p.noop[si][ui]) {
				continue
			}
			p.batch = append(p.batch, passTarget{si, ui})
			p.at = passCursor{sync: s.Name, after: d.User.Key, started: from.started}
			if len(p.batch) == size && !p.flush() {
				return false
			}
		}
	}
	return p.flush()
}

// flush reads the batch and folds what it found (a shared pass keeps it);
// false when the pass must stop (the read failed as a whole, the loop is
// cancelled, a UserSync of the provider changed, or a shared pass was told
// to stop).
func (p *pass) flush() bool {
	if len(p.batch) == 0 {
		return true
	}
	reqs := make([]providers.ReadRequest, len(p.batch))
	for i, tg := range p.batch {
		s := &p.in.Syncs[tg.si]
		reqs[i] = providers.ReadRequest{ID: strconv.Itoa(i), ExternalID: s.Records[s.Users[tg.ui].User.Key].ExternalID,
			User: declared.Written(p.objs[tg.si], tg.ui, p.l.mapping, providers.OpUpdate)}
	}
	vctx := providers.WithObserver(withVerifyRead(p.ctx), metricLabels{provider: p.l.key.index(), vendor: string(p.l.provider.spec.Type)})
	if p.lim != nil {
		calls := 1
		if n := p.rd.ReadBatch(); n > 0 {
			calls = (len(reqs) + n - 1) / n
		}
		if p.lim.acquireReads(p.waitCtx, calls) != nil {
			return false // the loop is cancelled, or the shared pass stopped
		}
		defer p.lim.releaseReads(calls)
	}
	obs, err := p.rd.Read(vctx, reqs)
	if err != nil || answeredNothing(obs) {
		p.failed = p.ctx.Err() == nil
		return false
	}
	p.t.read += len(reqs)
	p.reached = p.at
	for _, o := range obs {
		i, err := strconv.Atoi(o.ID)
		if err != nil || i < 0 || i >= len(p.batch) {
			continue
		}
		tg := p.batch[i]
		if p.shared {
			if o.Presence != providers.Unknown {
				p.found = append(p.found, foundUser{si: tg.si, ui: tg.ui, o: o})
			}
			continue
		}
		p.count(tg.si, foldObservation(&p.in.Syncs[tg.si], p.in.Syncs[tg.si].Users[tg.ui].User.Key, o, p.l.vendorName()))
	}
	p.batch = p.batch[:0]
	return p.ctx.Err() == nil && !p.r.changed.isSet(p.l.key) && !p.stop.Load()
}

// count tallies a drift kind of sync si.
func (p *pass) count(si int, kind string) {
	switch kind {
	case planner.ReasonMissing:
		p.t.bySync[si]++
		p.t.missing++
	case planner.ReasonChanged:
		p.t.bySync[si]++
		p.t.changed++
	}
}

// sharedPass is a pass that runs while the loop sends its writes.
type sharedPass struct {
	p         *pass
	done      chan struct{}
	complete  bool
	endWrites func()
	// stopWaiting ends a wait for a read's allowance (a read under way
	// goes on).
	stopWaiting context.CancelFunc
}

// readShare is spec.driftDetection.maxReadShare: the percentage of the rate
// limit reads may use while writes are pending.
func (l *loop) readShare() int {
	if dd := l.provider.spec.DriftDetection; dd != nil && dd.MaxReadShare != nil {
		return int(*dd.MaxReadShare)
	}
	return DefaultMaxReadShare
}

// startSharedPass starts the pass that is due beside the writes of plan, or
// returns nil: none is due, the provider cannot be written to, or its
// maxReadShare leaves reads nothing.
func (r *ProviderReconciler) startSharedPass(ctx context.Context, l *loop, in *planner.Input, plan planner.Plan) *sharedPass {
	if !l.verifyDue || l.notReady != nil || l.tr == nil || plan.NumChanges() == 0 || l.readShare() <= 0 {
		return nil
	}
	p := r.newPass(ctx, l, in)
	p.shared = true
	p.noop = make([][]bool, len(in.Syncs))
	for si := range in.Syncs {
		p.noop[si] = make([]bool, len(in.Syncs[si].Users))
		for _, it := range plan.Of(si) {
			if it.Kind == planner.Noop && it.Index >= 0 && it.Index < len(p.noop[si]) {
				p.noop[si][it.Index] = true
			}
		}
	}
	sp := &sharedPass{p: p, done: make(chan struct{}), endWrites: p.lim.beginWrites(l.readShare())}
	p.waitCtx, sp.stopWaiting = context.WithCancel(ctx)
	go func() {
		defer close(sp.done)
		sp.complete = p.run()
	}()
	return sp
}

// finish stops the pass after the read call under way, once the writes are
// sent, and folds what it found into in. It returns the records it changed,
// by sync, for the loop's outcomes (patchOutcomes).
func (sp *sharedPass) finish(r *ProviderReconciler, l *loop, in *planner.Input) map[int]map[string]planner.Record {
	if sp == nil {
		return nil
	}
	sp.p.stop.Store(true)
	sp.stopWaiting()
	<-sp.done
	sp.endWrites()
	p := sp.p
	r.passEnded(l, p, sp.complete)
	changed := map[int]map[string]planner.Record{}
	for _, f := range p.found {
		s := &in.Syncs[f.si]
		key := s.Users[f.ui].User.Key
		before := s.Records[key]
		p.count(f.si, foldObservation(s, key, f.o, l.vendorName()))
		if after := s.Records[key]; after != before {
			if changed[f.si] == nil {
				changed[f.si] = map[string]planner.Record{}
			}
			changed[f.si][key] = after
		}
	}
	if sp.complete {
		l.verifiedAt = r.Clock.Now()
		r.countOrphans(p.ctx, l, *in)
	}
	if p.t.changed+p.t.missing > 0 {
		r.reportDrift(l, *in, p.t)
		// What is to be corrected is written by the next loop.
		l.correctSoon = true
	}
	return changed
}

// patchOutcomes puts the records a shared pass changed into the loop's
// outcomes: their plan items were Noops, which store the record as it was.
func patchOutcomes(outcomes []planner.Outcome, changed map[int]map[string]planner.Record) {
	for si, recs := range changed {
		if si >= len(outcomes) || outcomes[si].Records == nil {
			continue
		}
		for key, rec := range recs {
			if _, ok := outcomes[si].Records[key]; ok {
				outcomes[si].Records[key] = rec
			}
		}
	}
}

// vendorName names the provider's vendor in record messages.
func (l *loop) vendorName() string {
	switch l.provider.spec.Type {
	case usersv1.ProviderUserCom:
		return "user.com"
	default:
		return string(l.provider.spec.Type)
	}
}

// foldObservation applies what a read found to the record of key, and
// returns the drift kind (ReasonChanged or ReasonMissing) or "".
func foldObservation(s *planner.Sync, key string, o providers.Observation, vendor string) string {
	rec := s.Records[key]
	var kind, msg string
	switch o.Presence {
	case providers.Found:
		if len(o.Differs) == 0 {
			if rec.State == planner.StateDrifted {
				rec.State, rec.Reason, rec.Message = planner.StateSynced, "", ""
				s.Records[key] = rec
			}
			return ""
		}
		kind = planner.ReasonChanged
		msg = fmt.Sprintf("%s holds other values for %s than were written", vendor, strings.Join(o.Differs, ", "))
	case providers.Missing:
		kind = planner.ReasonMissing
		msg = fmt.Sprintf("%s no longer holds this user (id %s)", vendor, rec.ExternalID)
	default:
		return ""
	}
	if s.DriftPolicy == planner.DriftReport {
		rec.State, rec.Reason, rec.Message = planner.StateDrifted, kind, planner.Truncate(msg+"; left so (driftPolicy Report)", planner.MaxMessageLength)
	} else {
		rec.State, rec.Reason, rec.Hash, rec.Attempts = planner.StatePending, planner.ReasonDrifted, "", 0
		rec.Message = planner.Truncate(msg+"; it is written again", planner.MaxMessageLength)
		if kind == planner.ReasonMissing {
			rec.Reason, rec.ExternalID = planner.ReasonMissing, ""
			rec.Message = planner.Truncate(msg+"; it is created again", planner.MaxMessageLength)
		}
	}
	s.Records[key] = rec
	return kind
}

// reportDrift counts the pass in the metrics and, per UserSync with drift,
// one event with the counts.
func (r *ProviderReconciler) reportDrift(l *loop, in planner.Input, t driftTally) {
	p := l.key.index()
	driftRecords.WithLabelValues(p, "changed").Add(float64(t.changed))
	driftRecords.WithLabelValues(p, "missing").Add(float64(t.missing))
	driftRecords.WithLabelValues(p, "corrected").Add(0)
	for si, n := range t.bySync {
		us := l.syncs[si].obj
		verb := "corrected"
		if in.Syncs[si].DriftPolicy == planner.DriftReport {
			verb = "reported"
		}
		r.Recorder.Eventf(us, nil, corev1.EventTypeWarning, usersv1.ConditionDrifted, "Verify",
			"%s: %d users found different at the vendor (%s)", p, n, verb)
	}
}

// countCorrected counts the records a loop rewrote after drift.
func countCorrected(provider string, plan planner.Plan, outcomes []planner.Outcome) {
	n := 0
	for _, it := range plan.Items {
		if it.Kind != planner.Write {
			continue
		}
		if rec, ok := outcomes[it.Sync].Records[it.Key]; ok && rec.State == planner.StateSynced &&
			(rec.Action == planner.ActionCorrected || rec.Action == planner.ActionRecreated) {
			n++
		}
	}
	if n > 0 {
		driftRecords.WithLabelValues(provider, "corrected").Add(float64(n))
	}
}

// verifyNext is when the loop should run again for the next verification:
// after a pass, one interval on; while one is due but was not done (writes
// went first, or it stopped early), soon.
func (l *loop) verifyNext() time.Time {
	switch {
	case l.correctSoon:
		return l.now.Add(time.Second)
	case l.verifyFailed:
		if every := l.driftInterval(); every > 0 {
			return l.now.Add(every)
		}
		return time.Time{}
	case !l.verifiedAt.IsZero():
		if every := l.driftInterval(); every > 0 {
			return l.verifiedAt.Add(every)
		}
		return time.Time{}
	case l.verifyDue:
		return l.now.Add(time.Second)
	default:
		return l.nextVerify
	}
}

// lastVerified is when the provider last finished a pass: this loop's, or
// the one its status or this process remembers.
func (l *loop) lastVerified() time.Time {
	if !l.verifiedAt.IsZero() {
		return l.verifiedAt
	}
	return l.verifiedBefore
}

// setVerifying sets the provider's Verifying condition: whether drift
// detection reads its users back, and why not. It is left as it was while
// no client can be built.
func setVerifying(l *loop, st *usersv1.ProviderStatus) {
	if l.vendor == nil {
		return
	}
	c := metav1.Condition{Type: usersv1.ConditionVerifying, Status: metav1.ConditionTrue,
		ObservedGeneration: l.provider.obj.GetGeneration()}
	rd, ok := l.vendor.(providers.Reader)
	rr, canRefuse := l.vendor.(providers.ReadRefusal)
	refused, why := false, ""
	if canRefuse {
		refused, why = rr.ReadsRefused()
	}
	switch every := l.driftInterval(); {
	case !ok || rd.ReadBatch() <= 0:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, "ReadsUnsupported", "this vendor's client cannot read users back"
	case refused:
		c.Status, c.Reason = metav1.ConditionFalse, "ReadsRefused"
		c.Message = planner.Truncate("the vendor refuses reads, so drift detection is off for this provider (writes go on): "+why, maxConditionMessage)
	case every == 0:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, "Disabled", "spec.driftDetection.interval is 0s: users are not read back"
	default:
		c.Reason = "Verifying"
		c.Message = fmt.Sprintf("users are read back and compared every %s", every)
	}
	meta.SetStatusCondition(&st.Conditions, c)
}

// countOrphans counts, after a complete pass, the vendor's users that carry
// this provider's identity and that no UserSync declares (status.orphans),
// where the vendor can tell. A failure leaves the count as it was.
func (r *ProviderReconciler) countOrphans(ctx context.Context, l *loop, in planner.Input) {
	oc, ok := l.vendor.(providers.OrphanCounter)
	if !ok {
		return
	}
	declared := map[string]bool{}
	for si := range in.Syncs {
		for _, d := range in.Syncs[si].Users {
			if d.Identity != "" {
				declared[d.Identity] = true
			}
		}
	}
	vctx := providers.WithObserver(ctx, metricLabels{provider: l.key.index(), vendor: string(l.provider.spec.Type)})
	n, known, err := oc.CountOrphans(vctx, declared)
	if err != nil || !known {
		return
	}
	c := int32(n)
	l.orphans = &c
}

// answeredNothing reports whether a read call learnt nothing: every
// observation Unknown.
func answeredNothing(obs []providers.Observation) bool {
	for _, o := range obs {
		if o.Presence != providers.Unknown {
			return false
		}
	}
	return len(obs) > 0
}
