// Package controller holds the sync engine: one reconcile loop per provider
// (UserProvider or ClusterUserProvider) that gathers every UserSync naming
// it, plans the pending writes with internal/planner, sends them in the
// vendor's bulk calls, and writes each record's result into the UserSyncs'
// status.
package controller

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/recorder"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/declared"
	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers"
)

// ProviderReconciler is the sync engine. Its reconcile key is a provider;
// controller-runtime runs at most one loop per key at a time, so one provider
// never sees concurrent writers from this operator.
type ProviderReconciler struct {
	client.Client
	// APIReader reads Secrets (never cached) and re-reads UserSyncs after a
	// status write conflict.
	APIReader client.Reader
	Registry  *providers.Registry
	Recorder  recorder.EventRecorder
	Clock     clock.Clock

	// ResyncInterval is how often a provider is synced when nothing changes in
	// the cluster: nothing watches the vendor side.
	ResyncInterval time.Duration
	// NotReadyRequeue is how soon a provider whose credentials fail is tried
	// again (a Secret change retries at once).
	NotReadyRequeue time.Duration
	// Backoff is the per-record retry schedule after a transient failure.
	Backoff planner.Backoff
	// VendorTimeout bounds one vendor HTTP request.
	VendorTimeout time.Duration
	// LoopTimeout bounds the vendor calls of one loop; unfinished records
	// stay Pending.
	LoopTimeout time.Duration
	// YieldAfter: while other providers wait for a worker, a loop whose
	// next calls would wait longer than this for the provider's rate limit
	// stops sending, stores what it sent and comes back when the limit has
	// room, so that its worker serves the others meanwhile (yield.go); 0
	// never stops.
	YieldAfter time.Duration
	// Transport is the base HTTP transport for vendor calls; nil means a
	// clone of http.DefaultTransport.
	Transport http.RoundTripper
	// DeletionGuard holds back mass deletions under deletionPolicy Delete
	// until the UserSync approves them; nil disables it.
	DeletionGuard *planner.DeletionGuard
	// ProviderSelector, when not empty, limits this operator to the
	// providers whose labels match: several operator releases then share a
	// cluster, each syncing its own providers (and every UserSync of them,
	// so batching across UserSyncs is kept). The manager's cache must hold
	// only the matching providers.
	ProviderSelector labels.Selector

	// queue is the controller's work queue (newQueue): the providers
	// ready for a worker are its Len.
	queue atomic.Pointer[priorityqueue.PriorityQueue[reconcile.Request]]
	// statusREST writes UserSync statuses (replaceStatus); SetupWithManager
	// makes it from the manager's config and HTTP client.
	statusREST rest.Interface

	clients  clientCache
	written  writtenVersions
	desired  desiredCache
	inFlight inFlight
	idle     idleLoops
	verified verifiedTimes
	changed  changedKeys
}

// desiredCache keeps, per provider, each UserSync's users hashed and given
// their vendor identity, for the generation and client they were computed
// with: an unchanged UserSync costs nothing to plan again. The users are kept
// without their attributes (the hash covers them): at 100,000 users the
// converted attribute maps were a third of the operator's memory. The writes
// of a plan get theirs from the spec when they are sent
// (applyWithAttributes).
type desiredCache struct {
	mu         sync.Mutex
	byProvider map[string]map[types.UID]desiredEntry
	// mappings are the providers' attribute mappings of their last loops,
	// for the summaries of UserSyncs that other providers' loops write.
	mappings map[string]*declared.Mapping
}

type desiredEntry struct {
	generation int64
	vendor     providers.Client
	mapping    *declared.Mapping
	users      []planner.Desired
}

// users returns the cached users of us, or computes them. The hashes
// depend on the UserSync's generation and the provider's mapping (by its
// Key), the identities also on the vendor client: a client rebuilt for
// another field of the provider (its rate limit, its drift detection)
// costs the identities again, not the mapping and hashing of every user.
func (c *desiredCache) users(provider string, us *usersv1.UserSync, vendor providers.Client, m *declared.Mapping) []planner.Desired {
	c.mu.Lock()
	e, ok := c.byProvider[provider][us.UID]
	c.mu.Unlock()
	switch {
	case !ok || e.generation != us.Generation || e.mapping.Key() != m.Key() || len(e.users) != len(us.Spec.Users):
		return desiredUsers(us, vendor, m)
	case e.vendor == vendor:
		return e.users
	}
	out := slices.Clone(e.users)
	for i := range out {
		out[i].Identity = ""
		if vendor != nil {
			out[i].Identity = vendor.Identity(out[i].User)
		}
	}
	return out
}

// hashes returns the current hash of each user of us for a provider, by
// key: from the cache when this generation is there, else computed with
// the provider's mapping as its last loop compiled it (none before one ran).
func (c *desiredCache) hashes(provider string, us *usersv1.UserSync) map[string]string {
	c.mu.Lock()
	e, ok := c.byProvider[provider][us.UID]
	m := c.mappings[provider]
	c.mu.Unlock()
	if ok && e.generation == us.Generation && len(e.users) == len(us.Spec.Users) {
		out := make(map[string]string, len(e.users))
		for i := range e.users {
			out[e.users[i].User.Key] = e.users[i].Hash
		}
		return out
	}
	return declared.Hashes(us, m)
}

// desiredUsers converts the spec's users, with their hashes and, when the
// vendor client is known, their vendor identities; without their
// attributes (see desiredCache).
func desiredUsers(us *usersv1.UserSync, vendor providers.Client, m *declared.Mapping) []planner.Desired {
	return declared.Users(us, m, vendor, false)
}

// keep replaces a provider's entries with those of this loop, so that
// UserSyncs that left it are dropped, and records its mapping.
func (c *desiredCache) keep(provider string, entries map[types.UID]desiredEntry, m *declared.Mapping) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byProvider == nil {
		c.byProvider = map[string]map[types.UID]desiredEntry{}
		c.mappings = map[string]*declared.Mapping{}
	}
	if m != nil {
		c.mappings[provider] = m
	} else {
		delete(c.mappings, provider)
	}
	if len(entries) == 0 {
		delete(c.byProvider, provider)
		return
	}
	c.byProvider[provider] = entries
}

// loop is the state of one sync loop of one provider.
type loop struct {
	key      providerKey
	provider *providerView
	vendor   providers.Client
	// mapping is the provider's attributeMapping (nil: attributes are
	// written as declared).
	mapping  *declared.Mapping
	tr       *limitedTransport
	notReady *notReady // why the provider cannot be written to; nil when it can
	// unreachable: the credentials could not be checked (the vendor did not
	// answer); writes go on.
	unreachable string
	syncs       []*syncView
	now         time.Time
	// inFlight: the UserSyncs whose creates may have been sent without their
	// results known, with the latest moment they may have been sent (see
	// inflight.go); sentCreates: those this loop sends creates for.
	inFlight    map[types.UID]time.Time
	sentCreates map[types.UID]bool
	// verifyDue: a drift detection pass is due (drift.go); nextVerify: when
	// the next one is; verifiedAt: when this loop finished one.
	verifyDue      bool
	nextVerify     time.Time
	verifiedAt     time.Time
	verifiedBefore time.Time
	verifyFailed   bool
	// correctSoon: a pass beside the writes found users to correct; the
	// next loop writes them.
	correctSoon bool
	// orphans, when not nil, is what the pass counted (status.orphans).
	orphans *int32
	// reviews are the plans of the UserSyncs in mode Plan, by index in
	// syncs (review.go).
	reviews map[int]*review
	// wrote counts the API writes the loop made.
	wrote atomic.Int32
	// yielded: the loop stopped sending before its plan's end, to come
	// back at resumeAt (send); deferred are the syncs none of whose
	// changes it sent.
	yielded     bool
	sentChanges int
	resumeAt    time.Time
	deferred    map[int]bool
}

// syncView is one UserSync as this loop sees it.
type syncView struct {
	obj *usersv1.UserSync
	// listed: the spec names this provider.
	listed bool
	// refused: why this UserSync may not use the provider ("" if it may).
	refusedReason, refusedMessage string
	// deleteUnsupported: deletionPolicy is Delete, and why the vendor cannot.
	deleteUnsupported string
	// stored is the digest of the records this loop stored while it was
	// still sending (writes.go, storedEarly); obj then holds only the
	// metadata and spec: the stored status is the cache's.
	stored string
}

// +kubebuilder:rbac:groups=users.usersync.io,resources=usersyncs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=users.usersync.io,resources=usersyncs/status,verbs=get;update
// +kubebuilder:rbac:groups=users.usersync.io,resources=usersyncs/finalizers,verbs=update
// +kubebuilder:rbac:groups=users.usersync.io,resources=userproviders;clusteruserproviders,verbs=get;list;watch
// +kubebuilder:rbac:groups=users.usersync.io,resources=userproviders/status;clusteruserproviders/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile runs one sync loop of the provider named by req: gather the
// UserSyncs that name it, plan, record the create intents, send, and store
// every record's result and the provider's status.
func (r *ProviderReconciler) Reconcile(ctx context.Context, req reconcile.Request) (result reconcile.Result, err error) {
	l := &loop{key: keyFromRequest(req), now: r.Clock.Now().Truncate(time.Second)}
	r.changed.clear(l.key)
	start := time.Now()
	defer func() { loopDuration.WithLabelValues(l.key.index()).Observe(time.Since(start).Seconds()) }()
	if done, err := r.load(ctx, l); done || err != nil {
		return result, err
	}
	r.verify(ctx, l)
	r.loadInFlight(l)
	inputs := l.inputs()
	// A verification comes due by the clock, whatever the inputs.
	if l.provider != nil {
		l.verifyDue, l.nextVerify = r.verifyDue(l)
	}
	if skip, wake := r.idle.skip(l, inputs); skip && !l.verifyDue {
		return r.requeue(l, wake), nil
	}
	if err := r.reconcileFinalizers(ctx, l); err != nil {
		return result, err
	}
	in, plan, outcomes, err := r.apply(ctx, l)
	if err != nil {
		r.failedLoop(l)
		return result, err
	}
	countWrites(l.key.index(), plan, outcomes)
	countCorrected(l.key.index(), plan, outcomes)
	var stats transportStats
	if l.tr != nil {
		stats = l.tr.take()
	}
	if err := r.writeSyncStatuses(ctx, l, in, plan, outcomes); err != nil {
		r.failedLoop(l)
		return result, err
	}
	if err := r.writeProviderStatus(ctx, l, outcomes, stats); err != nil {
		return result, err
	}
	wake := planner.NextRetry(outcomes, r.Backoff)
	for _, next := range []time.Time{l.verifyNext(), l.resumeAt} {
		if !next.IsZero() && (wake.IsZero() || next.Before(wake)) {
			wake = next
		}
	}
	r.idle.done(l, inputs, l.settled(plan.NumChanges()), wake)
	return r.requeue(l, wake), nil
}

// load reads the provider, the UserSyncs that name it and the vendor client
// into l. done is true when there is nothing for this operator to do: the
// provider is missing and another release reports on it.
func (r *ProviderReconciler) load(ctx context.Context, l *loop) (done bool, err error) {
	if l.provider, err = r.getProvider(ctx, l.key); err != nil {
		return false, err
	}
	if l.provider == nil {
		if mine, err := r.ownsMissing(ctx, l.key); err != nil || !mine {
			return true, err
		}
		forgetProviderMetrics(l.key.index())
	}
	if err := r.gather(ctx, l); err != nil {
		return false, err
	}
	if l.provider != nil {
		l.vendor, l.mapping, l.tr, err = r.clientFor(ctx, l.provider)
		var nr *notReady
		switch {
		case errors.As(err, &nr):
			l.notReady = nr
		case err != nil:
			return false, err
		}
	}
	return false, nil
}

// apply plans the loop, records its create intents, sends its changes and
// folds the vendor's results into each UserSync's records.
func (r *ProviderReconciler) apply(ctx context.Context, l *loop) (planner.Input, planner.Plan, []planner.Outcome, error) {
	in, plan := r.plan(l)
	if l.verifyDue && plan.NumChanges() == 0 && l.notReady == nil {
		// Nothing to write: read the users back (drift.go).
		t, complete := r.verifyPass(ctx, l, &in)
		if complete {
			l.verifiedAt = r.Clock.Now()
			r.countOrphans(ctx, l, in)
		}
		if t.changed+t.missing > 0 {
			r.reportDrift(l, in, t)
			plan = r.computeGated(l, &in)
		}
	}
	r.describePlanned(ctx, l, &plan)
	if err := r.recordCreates(ctx, l, plan); err != nil {
		return in, plan, nil, err
	}
	// A pass that is due while there are writes reads beside them, within
	// maxReadShare (drift.go).
	shared := r.startSharedPass(ctx, l, &in, plan)
	results, err := r.send(ctx, l, in, plan, shared == nil)
	drifted := shared.finish(r, l, &in)
	if err != nil {
		// The vendor refused the credentials: nothing was learned, hold
		// everything with the reason.
		var ae *providers.AuthError
		if !errors.As(err, &ae) {
			return in, plan, nil, err
		}
		l.notReady = &notReady{Reason: ae.Reason, Message: ae.Error()}
		// The plan is made again from the records: those stored early
		// are read back first.
		if err := r.refetchStored(ctx, l); err != nil {
			return in, plan, nil, err
		}
		in, plan = r.plan(l)
		results, drifted = nil, nil
	}
	if l.yielded {
		l.deferred = deferredSyncs(plan, l.sentChanges)
		plan.Defer(l.sentChanges)
	}
	outcomes := planner.ApplyByID(in, plan, results)
	patchOutcomes(outcomes, drifted)
	return in, plan, outcomes, nil
}

// gather lists the UserSyncs this provider serves and decides, for each,
// whether it may use the provider.
func (r *ProviderReconciler) gather(ctx context.Context, l *loop) error {
	var list usersv1.UserSyncList
	// The informer's own objects, not copies: at 100,000 users a deep copy
	// per loop costs more than the loop. The engine treats them as
	// read-only and copies before any write (reconcileFinalizers,
	// patchSyncStatus, releaseFinalizer).
	if err := r.List(ctx, &list, client.MatchingFields{indexSyncProvider: l.key.index()}, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("listing UserSyncs of %s: %w", l.key.index(), err)
	}
	for i := range list.Items {
		us, err := r.freshSync(ctx, &list.Items[i])
		if err != nil {
			return fmt.Errorf("reading UserSync %s/%s: %w", list.Items[i].Namespace, list.Items[i].Name, err)
		}
		if us == nil {
			continue
		}
		v := &syncView{obj: us}
		for _, ref := range us.Spec.ProviderRefs {
			if keyForRef(us.Namespace, ref) == l.key {
				v.listed = true
			}
		}
		if l.provider == nil {
			v.refusedReason = usersv1.ReasonProviderNotFound
			v.refusedMessage = notFoundMessage(l.key, us.Namespace)
		} else {
			ok, why, err := r.permits(ctx, l.provider, us.Namespace)
			if err != nil {
				return err
			}
			if !ok {
				v.refusedReason, v.refusedMessage = usersv1.ReasonNotPermitted, why
			}
		}
		l.syncs = append(l.syncs, v)
	}
	return nil
}

func notFoundMessage(k providerKey, ns string) string {
	if k.Kind == usersv1.KindClusterUserProvider {
		return fmt.Sprintf("ClusterUserProvider %q not found", k.Name)
	}
	return fmt.Sprintf("UserProvider %q not found in namespace %s (a UserSync can only use UserProviders of its own namespace, or ClusterUserProviders)", k.Name, ns)
}

// plannerInput builds the planner's view of every UserSync.
func (r *ProviderReconciler) plannerInput(l *loop) planner.Input {
	in := planner.Input{Now: l.now, Backoff: r.Backoff, Syncs: make([]planner.Sync, len(l.syncs))}
	kept := make(map[types.UID]desiredEntry, len(l.syncs))
	for i, v := range l.syncs {
		us := v.obj
		s := planner.Sync{
			Name:    us.Namespace + "/" + us.Name,
			Created: us.CreationTimestamp.Time,
			Records: recordsOf(us, l.key.ref()),
			Delete:  us.Spec.DeletionPolicy == usersv1.DeletionPolicyDelete,
			Removed: !v.listed || !us.DeletionTimestamp.IsZero(),
		}
		s.DriftPolicy = string(us.Spec.DriftPolicy)
		s.CreatesSince, s.CreatesUncertain = l.inFlight[us.UID]
		if !s.CreatesUncertain && uncertainCreates(s.Records) {
			// The records say a create may have been sent, and no intent
			// does (a provider status lost, or written by an older
			// operator): the wait counts from now, and the intent keeps
			// that time until they are settled.
			s.CreatesSince, s.CreatesUncertain = l.now.Add(time.Second), true
			l.inFlight[us.UID] = s.CreatesSince
		}
		s.Hold = l.holdOf(v)
		if v.refusedReason != "" && s.Removed {
			// Nothing can be deleted through a provider that is gone or
			// refuses this namespace: forget the records.
			s.Delete = false
		}
		// Under mode Plan the plan's approval is the deletions' approval
		// (README: Review changes before they reach the vendor).
		if r.DeletionGuard != nil && s.Delete && us.Spec.Mode != usersv1.ModePlan {
			g := *r.DeletionGuard
			g.Approved = us.Annotations[usersv1.AnnotationApproveDeletions]
			s.Guard = &g
		}
		if ds, ok := l.vendor.(providers.DeleteSupport); ok && s.Delete {
			if can, why := ds.CanDelete(); !can {
				// Never pretend: forget what cannot be deleted, and say so.
				s.Delete = false
				v.deleteUnsupported = why
			}
		}
		if !s.Removed {
			s.Users = r.desired.users(l.key.index(), us, l.vendor, l.mapping)
			kept[us.UID] = desiredEntry{generation: us.Generation, vendor: l.vendor, mapping: l.mapping, users: s.Users}
		}
		in.Syncs[i] = s
	}
	r.desired.keep(l.key.index(), kept, l.mapping)
	return in
}

// plan computes the loop's plan. Its writes get their users' attributes
// when they are sent (applyWithAttributes).
func (r *ProviderReconciler) plan(l *loop) (planner.Input, planner.Plan) {
	in := r.plannerInput(l)
	return in, r.computeGated(l, &in)
}

// applyWithAttributes sends the plan's changes [start, end) in one Apply. The
// changes are copied with the attributes of their users, from the spec the
// plan was made from, mapped by the provider's attributeMapping (with the
// createOnly values for creates): the copy lives for this call only, so at 100,000 new
// users the attributes never all sit in memory at once (see desiredCache).
func applyWithAttributes(ctx context.Context, l *loop, plan planner.Plan, start, end int) ([]providers.Result, error) {
	changes := make([]providers.Change, end-start)
	for i := range changes {
		ch := plan.Change(start + i)
		if ch.Op != providers.OpDelete {
			it := plan.ChangeItem(start + i)
			ch.User.Attributes = declared.Written(l.syncs[it.Sync].obj, it.Index, l.mapping, ch.Op).Attributes
		}
		changes[i] = ch
	}
	return l.vendor.Apply(ctx, changes)
}

// send applies the plan's changes under the loop timeout. A client that
// takes its changes in chunks (providers.Chunked) gets them chunk by chunk,
// and the UserSyncs whose changes are all answered are stored while the
// next chunk is sent: a long sync shows its progress, and the status writes
// overlap the vendor calls instead of following them. Whatever fails there
// is written again after send, with the rest.
//
// It returns the results by Change.ID: at 100,000 changes, one index instead
// of a list and its index.
//
// With dropStored, the input records of a UserSync stored early are dropped
// from in once stored: nothing after send reads them (the final status
// write of such a UserSync stops at its digest, and the results are folded
// from the plan's items), unless a drift pass shares the loop (it reads and
// marks them until it finishes), so that a backlog does not hold its
// 100,000 input records beside the plan until its last call.
func (r *ProviderReconciler) send(ctx context.Context, l *loop, in planner.Input, plan planner.Plan, dropStored bool) (map[string]providers.Result, error) {
	if plan.NumChanges() == 0 || l.vendor == nil {
		return nil, nil
	}
	vctx := ctx
	if r.LoopTimeout > 0 {
		var cancel context.CancelFunc
		vctx, cancel = context.WithTimeout(ctx, r.LoopTimeout)
		defer cancel()
	}
	vctx = providers.WithObserver(vctx, metricLabels{provider: l.key.index(), vendor: string(l.provider.spec.Type)})
	size := plan.NumChanges()
	if c, ok := l.vendor.(providers.Chunked); ok && c.ChunkSize() > 0 {
		size = c.ChunkSize()
	}
	if r.yieldAt(l, plan, 0) {
		return nil, nil
	}
	if size >= plan.NumChanges() {
		res, err := applyWithAttributes(vctx, l, plan, 0, plan.NumChanges())
		return planner.IndexResults(res), err
	}

	// last[si] is the position among the plan's changes of sync si's last change.
	last := make([]int, len(l.syncs))
	for i := range last {
		last[i] = -1
	}
	for pos := range plan.NumChanges() {
		last[plan.ChangeItem(pos).Sync] = pos
	}
	early := r.newEarlyWriter(ctx, l, in, plan, dropStored)
	defer func() {
		if err := early.wait(); err != nil {
			logf.FromContext(ctx).V(1).Info("storing results early failed; they are stored with the rest", "error", err.Error())
		}
	}()
	byID := make(map[string]providers.Result, plan.NumChanges())
	for start := 0; start < plan.NumChanges(); start += size {
		if start > 0 && r.yieldAt(l, plan, start) {
			break
		}
		end := min(start+size, plan.NumChanges())
		sent := l.tr.sent()
		res, err := applyWithAttributes(vctx, l, plan, start, end)
		if err != nil {
			return nil, err
		}
		l.tr.chunkSent(l.tr.sent() - sent)
		for _, res := range res {
			byID[res.ID] = res
		}
		for pos := start; pos < end; pos++ {
			if si := plan.ChangeItem(pos).Sync; last[si] == pos {
				early.write(si, planner.ApplyOne(in, plan, si, byID).Records)
			}
		}
	}
	return byID, nil
}

// requeue schedules the next loop: the earliest record retry, a quick retry
// for a provider that is not ready, else the resync interval.
func (r *ProviderReconciler) requeue(l *loop, nextRetry time.Time) reconcile.Result {
	after := r.ResyncInterval
	if l.notReady != nil && r.NotReadyRequeue < after {
		after = r.NotReadyRequeue
	}
	if !nextRetry.IsZero() {
		// From now, not from the loop's start: a loop can last minutes.
		if d := nextRetry.Sub(r.Clock.Now()); d < after {
			after = max(d, 100*time.Millisecond)
		}
	}
	return reconcile.Result{RequeueAfter: after}
}
