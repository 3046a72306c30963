package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
)

// syncMeta is a UserSync's metadata alone: the object the engine writes
// through, so a finalizer or status write sends and receives the few bytes it
// changes instead of a 500-user object.
func syncMeta(us *usersv1.UserSync) *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{ObjectMeta: *us.ObjectMeta.DeepCopy()}
	m.SetGroupVersionKind(usersv1.GroupVersion.WithKind("UserSync"))
	return m
}

// reconcileFinalizers keeps the finalizer on exactly the live UserSyncs whose
// deletionPolicy is Delete, before anything is written for them at the
// vendor. Under Orphan a deleted UserSync needs nothing from the operator, so
// it carries none (and an older operator's is removed).
func (r *ProviderReconciler) reconcileFinalizers(ctx context.Context, l *loop) error {
	for _, v := range l.syncs {
		us := v.obj
		want := us.Spec.DeletionPolicy == usersv1.DeletionPolicyDelete
		if !us.DeletionTimestamp.IsZero() || controllerutil.ContainsFinalizer(us, usersv1.Finalizer) == want {
			continue
		}
		m := syncMeta(us)
		patch := client.MergeFromWithOptions(m.DeepCopy(), client.MergeFromWithOptimisticLock{})
		if want {
			controllerutil.AddFinalizer(m, usersv1.Finalizer)
		} else {
			controllerutil.RemoveFinalizer(m, usersv1.Finalizer)
		}
		if err := r.Patch(ctx, m, patch); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return fmt.Errorf("updating the finalizer of UserSync %s/%s: %w", us.Namespace, us.Name, err)
		}
		l.wrote.Add(1)
		// v.obj may be the informer's own copy: never write into it.
		updated := *us
		updated.ObjectMeta = m.ObjectMeta
		updated.ManagedFields = nil
		r.written.record(&updated)
		v.obj = &updated
	}
	return nil
}

func currentEntry(us *usersv1.UserSync, ref string) *usersv1.ProviderSyncStatus {
	for i := range us.Status.Providers {
		if us.Status.Providers[i].Provider == ref {
			e := us.Status.Providers[i]
			return &e
		}
	}
	return nil
}

// writeSyncStatuses stores each UserSync's new records of this provider,
// emits one aggregated event per UserSync, and releases the finalizer of a
// deleted UserSync once no provider holds a record of it. UserSyncs already
// stored while the vendor calls ran (send) are unchanged and skipped.
func (r *ProviderReconciler) writeSyncStatuses(ctx context.Context, l *loop, in planner.Input, plan planner.Plan, outcomes []planner.Outcome) error {
	w := r.newStatusWriter(ctx, l, in, plan)
	for si := range l.syncs {
		if l.deferred[si] {
			// Nothing was sent for it (yield.go): it is written when its
			// users are.
			continue
		}
		w.write(si, outcomes[si].Records)
	}
	return w.wait()
}

// statusWriter writes UserSync statuses of one loop, a few at a time: each
// write costs the API server far more than the operator (it validates and
// stores the whole object), so several in flight use its cores, as the
// vendor calls do.
type statusWriter struct {
	// early: the writer of send (newEarlyWriter); dropStored: it drops
	// the input records of what it stored (send).
	early, dropStored bool
	r                 *ProviderReconciler
	ctx               context.Context
	l                 *loop
	in                planner.Input
	plan              planner.Plan
	sem               chan struct{}
	wg                sync.WaitGroup
	mu                sync.Mutex
	errs              []error
}

// statusWriters is how many UserSync status writes one loop keeps in flight.
const statusWriters = 4

func (r *ProviderReconciler) newStatusWriter(ctx context.Context, l *loop, in planner.Input, plan planner.Plan) *statusWriter {
	return &statusWriter{r: r, ctx: ctx, l: l, in: in, plan: plan, sem: make(chan struct{}, statusWriters)}
}

// newEarlyWriter is the status writer of send: it stores each UserSync
// once its changes are answered, while the next are sent, and keeps in
// the loop only the metadata and spec of what it stored (storedShell).
func (r *ProviderReconciler) newEarlyWriter(ctx context.Context, l *loop, in planner.Input, plan planner.Plan, dropStored bool) *statusWriter {
	w := r.newStatusWriter(ctx, l, in, plan)
	w.early, w.dropStored = true, dropStored
	return w
}

// storedShell is what a loop keeps of a UserSync whose status it stored
// while sending: its metadata and spec, not its status. The stored status
// is the informer's now; keeping the loop's copy (and the version it
// replaced) until the end of a loop that sends a 100,000-user backlog for
// minutes doubled the statuses in memory: 50 MB of the 250 MB peak. The
// rest of the loop reads a stored UserSync's status only through
// refetchStored.
func storedShell(us *usersv1.UserSync) *usersv1.UserSync {
	return &usersv1.UserSync{TypeMeta: us.TypeMeta, ObjectMeta: us.ObjectMeta, Spec: us.Spec}
}

// recordsDigest names a set of records, to tell whether the loop's final
// records of a UserSync are those it stored early.
func recordsDigest(recs map[string]planner.Record) string {
	h := sha256.New()
	for _, k := range slices.Sorted(maps.Keys(recs)) {
		r := recs[k]
		_, _ = fmt.Fprintf(h, "%q %q %q %q %q %q %d %q %d\n", r.Key, r.ExternalID, r.State, r.Action, r.Reason, r.Message,
			r.Attempts, r.Hash, r.LastAttempt.UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))
}

// refetchStored reads back the UserSyncs the loop stored early, for the
// parts of the loop that read their status again.
func (r *ProviderReconciler) refetchStored(ctx context.Context, l *loop) error {
	for _, v := range l.syncs {
		if v.stored == "" {
			continue
		}
		if err := r.readBack(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

// readBack replaces a UserSync stored early (its storedShell) with the
// object as the API server holds it.
func (r *ProviderReconciler) readBack(ctx context.Context, v *syncView) error {
	fresh := &usersv1.UserSync{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(v.obj), fresh); err != nil {
		return fmt.Errorf("reading back UserSync %s/%s: %w", v.obj.Namespace, v.obj.Name, err)
	}
	v.obj, v.stored = fresh, ""
	return nil
}

// write stores the records of UserSync si, in the background unless they
// are what its status already holds.
func (w *statusWriter) write(si int, recs map[string]planner.Record) {
	l, v := w.l, w.l.syncs[si]
	if v.stored != "" {
		if recordsDigest(recs) == v.stored {
			return // stored early, and unchanged since
		}
		// Changed since (drift found beside the writes): the write needs
		// the whole object again.
		if err := w.r.readBack(w.ctx, v); err != nil {
			if !apierrors.IsNotFound(err) { // gone: nothing to store
				w.fail(err)
			}
			return
		}
	}
	entry := w.r.providerEntry(l, v, recs)
	plan := l.planEntry(si)
	// The rest of the status derives from the providers' records and
	// entries: when this provider's are as stored, nothing would change.
	unchanged := providerUnchanged(v.obj, l.key.ref(), recs, entry) && samePlan(v.obj, l.key.ref(), plan)
	if unchanged && v.obj.DeletionTimestamp.IsZero() {
		return // the steady state: no goroutine, no copy, no write
	}
	w.sem <- struct{}{}
	w.wg.Add(1)
	go func() {
		defer func() { <-w.sem; w.wg.Done() }()
		us := v.obj
		if !unchanged {
			var err error
			us, err = w.r.patchSyncStatus(w.ctx, v.obj, l.key.ref(), recs, entry, plan, w.in.Syncs[si].Users, l.lastVerified())
			if err != nil {
				w.fail(fmt.Errorf("UserSync %s/%s: %w", v.obj.Namespace, v.obj.Name, err))
				return
			}
			wrote := us != v.obj
			if wrote {
				l.wrote.Add(1)
			}
			w.r.emitSyncEvents(l, us, w.plan.Of(si), w.in.Syncs[si].Records, recs)
			if w.early && wrote && us.DeletionTimestamp.IsZero() {
				v.obj, v.stored = storedShell(us), recordsDigest(recs)
				if w.dropStored {
					w.in.Syncs[si].Records = nil
				}
			} else {
				v.obj = us
			}
		}
		if err := w.r.releaseFinalizer(w.ctx, us); err != nil {
			w.fail(err)
		}
	}()
}

func (w *statusWriter) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.errs = append(w.errs, err)
}

// wait waits for every write and returns what failed.
func (w *statusWriter) wait() error {
	w.wg.Wait()
	if err := errors.Join(w.errs...); err != nil {
		return fmt.Errorf("writing UserSync statuses: %w", err)
	}
	return nil
}

// providerEntry is this provider's line in a UserSync's status.providers;
// nil once the UserSync no longer names the provider and holds no record.
func (r *ProviderReconciler) providerEntry(l *loop, v *syncView, recs map[string]planner.Record) *usersv1.ProviderSyncStatus {
	if !v.listed && len(recs) == 0 {
		return nil
	}
	e := &usersv1.ProviderSyncStatus{Provider: l.key.ref(), ObservedGeneration: v.obj.Generation}
	if old := currentEntry(v.obj, l.key.ref()); old != nil {
		e.LastSyncTime, e.LastVerifiedTime = old.LastSyncTime, old.LastVerifiedTime
	}
	t := tallyOf(recs)
	missing := 0
	if v.listed && v.obj.DeletionTimestamp.IsZero() {
		// Declared users without a record yet (a new UserSync's first loop).
		missing = max(len(v.obj.Spec.Users)-(len(recs)-t.deleting), 0)
	}
	l.classify(e, v, t, missing)
	return e
}

// samePlan reports whether us's status.plan holds plan as this provider's
// line (nil: none).
func samePlan(us *usersv1.UserSync, ref string, plan *usersv1.ProviderPlan) bool {
	for i := range us.Status.Plan {
		if us.Status.Plan[i].Provider == ref {
			return plan != nil && equality.Semantic.DeepEqual(us.Status.Plan[i], *plan)
		}
	}
	return plan == nil
}

// mergePlan sets this provider's line of status.plan (nil removes it),
// keeping the others.
func mergePlan(us *usersv1.UserSync, ref string, plan *usersv1.ProviderPlan) {
	out := us.Status.Plan[:0:0]
	for _, p := range us.Status.Plan {
		if p.Provider != ref {
			out = append(out, p)
		}
	}
	if plan != nil {
		out = append(out, *plan)
	}
	if len(out) == 0 {
		out = nil
	}
	us.Status.Plan = out
}

// patchSyncStatus merges this provider's records into the UserSync's status
// and patches it under optimistic locking; on a conflict (another provider's
// loop wrote meanwhile) it re-reads the object and merges again, so no
// provider ever overwrites another's records. Nothing is written when the
// status would not change. us is never modified (it may be the informer's
// copy); the UserSync as written is returned.
//
// users are the spec's users of us, hashed (nil: hash them again);
// verified is when the provider last finished a drift detection pass (zero:
// never), stored on its line with any write but never a write of its own.
func (r *ProviderReconciler) patchSyncStatus(ctx context.Context, us *usersv1.UserSync, ref string,
	recs map[string]planner.Record, entry *usersv1.ProviderSyncStatus, plan *usersv1.ProviderPlan, users []planner.Desired,
	verified time.Time) (*usersv1.UserSync, error) {
	cur, first := us, true
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		if !first {
			fresh := &usersv1.UserSync{}
			if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(us), fresh); err != nil {
				return client.IgnoreNotFound(err)
			}
			cur = fresh
		}
		first = false
		// A shallow copy with a status of its own: the spec and metadata
		// are only read.
		desired := *cur
		desired.Status = *cur.Status.DeepCopy()
		mergeProvider(&desired, ref, toResults(&desired, ref, recs), entry)
		mergePlan(&desired, ref, plan)
		if cur.Generation != us.Generation {
			users = nil // re-read after a conflict: another spec
		}
		summarize(&desired, r.hashesFor(&desired, ref, users))
		if equality.Semantic.DeepEqual(cur.Status, desired.Status) {
			return nil
		}
		if entry != nil && desired.Status.Providers != nil {
			now := metav1.NewTime(r.Clock.Now())
			for i := range desired.Status.Providers {
				if desired.Status.Providers[i].Provider == ref {
					desired.Status.Providers[i].LastSyncTime = &now
					if !verified.IsZero() {
						t := metav1.NewTime(verified)
						desired.Status.Providers[i].LastVerifiedTime = &t
					}
				}
			}
		}
		rv, err := r.replaceStatus(ctx, cur, &desired.Status)
		if err != nil {
			return client.IgnoreNotFound(err)
		}
		desired.ResourceVersion = rv
		r.written.record(&desired)
		cur = &desired
		return nil
	})
	return cur, err
}

// replaceStatus replaces the status of the UserSync as it was at cur's
// resourceVersion (a Conflict if it changed since) and returns the new
// resourceVersion. It PUTs the status subresource with an object of the
// name, namespace, resourceVersion and status alone, and reads back only
// the metadata.
//
// Why a PUT of a bare object: the API server ignores everything but the
// status in a PUT of /status (it copies the rest from the stored object,
// as the CRD documentation says: "PUT requests to the /status subresource
// take a custom resource object and ignore changes to anything except the
// status stanza"), so the spec need not be sent; and a PUT spares the API
// server what any patch costs it, which grows with the whole object, not
// with the patch: encoding the stored object, applying the patch to it
// and decoding the result. A 500-user UserSync is about 230 KB, of which
// its status is a third; a PUT of the status costs the API server about
// a fifth less CPU than the JSON patch it replaced (docs/benchmarks.md,
// issue 19), and the operator marshals the status once, as before. A
// mutating admission webhook registered for usersyncs/status sees the
// object without its spec (the API server restores it before validation,
// so validating webhooks see it whole).
func (r *ProviderReconciler) replaceStatus(ctx context.Context, cur *usersv1.UserSync, st *usersv1.UserSyncStatus) (string, error) {
	body, err := json.Marshal(statusObject{
		TypeMeta: metav1.TypeMeta{APIVersion: usersv1.GroupVersion.String(), Kind: "UserSync"},
		Metadata: metav1.ObjectMeta{Name: cur.Name, Namespace: cur.Namespace, ResourceVersion: cur.ResourceVersion},
		Status:   st,
	})
	if err != nil {
		return "", err
	}
	if r.statusREST == nil {
		return "", errors.New("the UserSync status client is not set up (SetupWithManager)")
	}
	got, err := r.statusREST.Put().Namespace(cur.Namespace).Resource("usersyncs").Name(cur.Name).SubResource("status").
		SetHeader("Content-Type", "application/json").
		SetHeader("Accept", metadataOnly).
		Body(body).Do(ctx).Get()
	if err != nil {
		return "", err
	}
	m, ok := got.(*metav1.PartialObjectMetadata)
	if !ok {
		return "", fmt.Errorf("the API server answered a UserSync status write with a %T, not its metadata", got)
	}
	return m.ResourceVersion, nil
}

// metadataOnly asks the API server to answer with the object's metadata
// alone, as client-go's metadata client does.
const metadataOnly = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1," +
	"application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

// statusObject is the body of a status PUT: the identity, the
// resourceVersion it replaces (optimistic locking) and the status. Its
// metadata is a named field: embedded beside TypeMeta, controller-gen
// would take the type for an API kind and make a CRD of it.
type statusObject struct {
	metav1.TypeMeta `json:",inline"`
	Metadata        metav1.ObjectMeta       `json:"metadata"`
	Status          *usersv1.UserSyncStatus `json:"status"`
}

// providerUnchanged reports whether the UserSync's status already holds
// exactly these records and this entry for the provider. It runs for every
// UserSync on every loop, so it compares fields directly instead of
// rendering and reflecting over the records.
func providerUnchanged(us *usersv1.UserSync, ref string, recs map[string]planner.Record, entry *usersv1.ProviderSyncStatus) bool {
	if us.Status.ObservedGeneration != us.Generation {
		return false
	}
	old := currentEntry(us, ref)
	if (old == nil) != (entry == nil) || (old != nil && !equality.Semantic.DeepEqual(*old, *entry)) {
		return false
	}
	n := 0
	for j := range us.Status.Results {
		have := &us.Status.Results[j]
		if have.Provider != ref {
			continue
		}
		rec, ok := recs[have.Key]
		if !ok || !sameRecord(have, rec) {
			return false
		}
		n++
	}
	return n == len(recs)
}

// releaseFinalizer removes the finalizer of a deleted UserSync that no
// provider holds a record of any more.
func (r *ProviderReconciler) releaseFinalizer(ctx context.Context, us *usersv1.UserSync) error {
	if us.DeletionTimestamp.IsZero() || len(us.Status.Results) > 0 || !controllerutil.ContainsFinalizer(us, usersv1.Finalizer) {
		return nil
	}
	m := syncMeta(us)
	patch := client.MergeFromWithOptions(m.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(m, usersv1.Finalizer)
	if err := r.Patch(ctx, m, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing finalizer of UserSync %s/%s: %w", us.Namespace, us.Name, err)
	}
	logf.FromContext(ctx).Info("released deleted UserSync", "usersync", client.ObjectKeyFromObject(us))
	return nil
}

// emitSyncEvents emits at most one event per kind of outcome per UserSync and
// loop, so a 1,000-user sync does not emit 1,000 events.
func (r *ProviderReconciler) emitSyncEvents(l *loop, us *usersv1.UserSync, items []planner.Item, prev, recs map[string]planner.Record) {
	if r.Recorder == nil {
		return
	}
	var written, deleted, failed, conflicts, held int
	var firstFail, heldMsg string
	for _, it := range items {
		rec, kept := recs[it.Key]
		switch it.Kind {
		case planner.Write:
			switch rec.State {
			case planner.StateSynced:
				written++
			case planner.StateFailed:
				failed++
				if firstFail == "" {
					firstFail = it.Key + ": " + rec.Message
				}
			}
		case planner.Remove:
			if !kept {
				deleted++
			}
		case planner.Held:
			if rec.Reason == planner.ReasonConflict && prev[it.Key].Reason != planner.ReasonConflict {
				conflicts++
			}
			if rec.Reason == planner.ReasonDeletionHeld && prev[it.Key].Message != rec.Message {
				held++
				heldMsg = rec.Message
			}
		}
	}
	prov := l.key.ref()
	if written > 0 || deleted > 0 {
		r.Recorder.Eventf(us, nil, corev1.EventTypeNormal, usersv1.ReasonSynced, "Sync",
			"%s: wrote %d users, deleted %d", prov, written, deleted)
	}
	if failed > 0 {
		r.Recorder.Eventf(us, nil, corev1.EventTypeWarning, usersv1.ReasonFailed, "Sync",
			"%s: %d users failed; first: %s", prov, failed, planner.Truncate(firstFail, 300))
	}
	if conflicts > 0 {
		r.Recorder.Eventf(us, nil, corev1.EventTypeWarning, usersv1.ReasonConflict, "Sync",
			"%s: %d users conflict with another UserSync", prov, conflicts)
	}
	if held > 0 {
		r.Recorder.Eventf(us, nil, corev1.EventTypeWarning, usersv1.ReasonDeletionHeld, "Delete",
			"%s: %s", prov, heldMsg)
	}
}

// approveArg is the "annotation=token" a DeletionHeld message names.
func approveArg(msg string) string {
	i := strings.Index(msg, usersv1.AnnotationApproveDeletions+"=")
	if i < 0 {
		return usersv1.AnnotationApproveDeletions + "=<token>"
	}
	arg := msg[i:]
	if j := strings.IndexAny(arg, ", "); j >= 0 {
		arg = arg[:j]
	}
	return arg
}

// hashesFor is summarize's view of the current hashes of us: for the
// provider ref whose loop writes, its users (when they are of this
// generation); for the others, the desired cache.
func (r *ProviderReconciler) hashesFor(us *usersv1.UserSync, ref string, users []planner.Desired) func(string) map[string]string {
	return func(p string) map[string]string {
		if p == ref && len(users) == len(us.Spec.Users) {
			out := make(map[string]string, len(users))
			for i := range users {
				out[users[i].User.Key] = users[i].Hash
			}
			return out
		}
		k, ok := keyForStatusRef(us.Namespace, p)
		if !ok {
			return nil
		}
		return r.desired.hashes(k.index(), us)
	}
}
