package main

import (
	"context"
	"fmt"
	"syscall"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers/emulation"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

// The verify scenario (issue 14): drift detection at scale. The point
// converges under the vendor's rate limit with drift detection off
// (spec.driftDetection.interval 0s, createProvider); then:
//
//  1. The first pass. The interval is set to 30s: the provider was never
//     verified, so the loop that the spec change starts reads every user
//     back. From the patch to the provider's status.lastVerifiedTime and
//     the operator idle: the emulator's batch/read calls (exactly ⌈N/100⌉)
//     and every other call, the operator's CPU, its peak RSS over the pass
//     alone (VmHWM reset before it), the status writes (every UserSync's
//     resourceVersion unchanged), and what the emulator's rate limit saw
//     (the most calls in one window, 429s). A spec change rebuilds the
//     vendor client, and with it the cache of the hashed desired users.
//  2. The pass on the clock: the same figures for the next pass, which the
//     interval starts 30 s after the first one ended, as every pass after
//     the first: the same client, nothing changed.
//  3. Writes that arrive mid-pass, in the passes that follow (a pass that
//     stops for a write goes on from where it stopped: beside the write,
//     within maxReadShare, and in the loops after it). Once the pass under
//     way has made a given number of reads since the last write, one user's
//     attribute is changed in one UserSync; measured: the batch/read calls
//     the emulator received from the moment the API server accepted the
//     change to the first batch/update, and that delay (with the
//     benchmark's own watch of the UserSync, to tell the API server's and
//     the watch's share).
const (
	verifyPoints = ratelimitPoints // 100,000 users, the largest point
	// verifyInterval leaves the benchmark time to read the figures of a
	// pass before the next one starts.
	verifyInterval = 30 * time.Second
	// verifyProfilePhases: with -pprof, cpu-pass-first.pprof is the first
	// pass, cpu-pass-clock.pprof the pass on the clock (with the wait for
	// it), cpu-midpass.pprof the writes sent during the later ones.
	verifyProfilePhases = "pass-first,pass-clock,midpass"
	targetPassCPU       = 3.0 // operator CPU seconds for a pass over 100,000 users
	// targetMidPassReads: the read call under way when the change arrives,
	// and one more sent before the watch event reached the operator.
	targetMidPassReads = 2
	midPassAttribute   = "team"
)

// verifyResult is what the verify phase measured.
type verifyResult struct {
	// first: the pass the spec change started; clock: the next one.
	first, clock passResult
	writes       []midPassWrite
	// midCalls are the vendor calls of the phase of mid-pass writes (from
	// the patch of the interval to the last write applied).
	midCalls vendorCalls
}

// passResult is one whole verification pass.
type passResult struct {
	verified   bool   // the provider's lastVerifiedTime advanced
	failure    string // why it did not
	reads      int    // batch/read calls
	readInputs int    // users those calls carried
	calls      vendorCalls
	// firstRead, lastRead: when the emulator received the first and the
	// last batch/read.
	firstRead, lastRead time.Time
	verifiedAfter       time.Duration // from the patch to lastVerifiedTime seen
	cpu, control        float64       // operator, kube-apiserver + etcd CPU seconds
	rssStart            int64         // VmRSS when the pass began
	peakRSS             int64         // VmHWM over the pass alone
	peakAll             bool          // VmHWM could not be reset: peakRSS is the point's
	syncStatusWrites    int           // UserSyncs whose resourceVersion changed
	providerRV          bool          // the provider's resourceVersion changed
	apiRequests         float64       // Kubernetes API requests the operator made
	apiWrites           float64       // of which POST, PUT, PATCH or DELETE
	loops               float64       // sync loops that ended
	lastVerified        string        // the provider's lastVerifiedTime after the pass
}

// readSpan is the time from the first batch/read received to the last.
func (p passResult) readSpan() time.Duration {
	if p.firstRead.IsZero() {
		return 0
	}
	return p.lastRead.Sub(p.firstRead)
}

// midPassWrite is one write sent while a pass was under way.
type midPassWrite struct {
	sync, user  string // the UserSync and the user's key
	readsBefore int    // batch/reads of the pass under way when the change was sent
	// accepted: from sending the patch to the API server's answer; seen: to
	// the event on the benchmark's own (metadata) watch of the UserSync, a
	// proxy for when the operator's watch can see it.
	accepted, seen time.Duration
	// readsBetween: batch/read calls the emulator received from the
	// API server's acceptance of the change to the first batch/update;
	// readsAfterSeen, those from the benchmark's watch event on.
	readsBetween, readsAfterSeen int
	delay                        time.Duration // acceptance → first batch/update received
	updateInputs                 int           // users the first batch/update carried
	applied                      bool          // the vendor holds the new value
	ready                        time.Duration // acceptance → the UserSync Ready for its new generation
	failure                      string
}

// verifyPhase runs the verification pass and the mid-pass writes on the
// converged point.
func (b *bench) verifyPhase(ctx context.Context, op *operator, em *hsemu.Emulator, tables *tableReader, ns string) (*verifyResult, error) {
	vr := &verifyResult{}
	if err := b.waitIdle(ctx, op); err != nil {
		return nil, err
	}
	if b.cfg.pprofDir != "" {
		_ = op.cmd.Process.Signal(syscall.SIGUSR1) // cpu-pass-first.pprof starts
	}
	b.progress("first pass: spec.driftDetection.interval %s (never verified: a pass is due at once), %d users, %s reads at most %d / %s",
		verifyInterval, b.point.total(), thousands(ceilDiv(b.point.total(), 100)), b.scenario.rateLimit, b.scenario.rateWindow)
	patch := func() error { return patchDriftInterval(ctx, b.cp.client, ns, verifyInterval) }
	if err := b.measurePass(ctx, op, em, tables, ns, "first pass", patch, &vr.first); err != nil || !vr.first.verified {
		return vr, err
	}
	b.progress("pass on the clock: due %s after the first one", verifyInterval)
	if err := b.measurePass(ctx, op, em, tables, ns, "pass on the clock", nil, &vr.clock); err != nil || !vr.clock.verified || b.cfg.verifyWrites == 0 {
		return vr, err
	}
	var err error
	vr.writes, vr.midCalls, err = b.midPassWrites(ctx, op, em, ns)
	return vr, err
}

// failed reports whether a pass did not finish (false for nil).
func (v *verifyResult) failed() bool {
	return v != nil && (!v.first.verified || !v.clock.verified)
}

// passTimeout is long enough for a pass of n users under the scenario's
// rate limit, plus margin.
func (b *bench) passTimeout(n int) time.Duration {
	calls := ceilDiv(n, 100) + 1
	return time.Duration(ceilDiv(calls, max(b.scenario.rateLimit, 1))+1)*b.scenario.rateWindow + 5*time.Minute
}

// measurePass measures the next pass: the one start starts, or (start nil)
// the one the interval starts. With -pprof, it ends the CPU profile under
// way when the pass is over.
func (b *bench) measurePass(ctx context.Context, op *operator, em *hsemu.Emulator, tables *tableReader, ns, name string, start func() error, p *passResult) error {
	c := b.cp.client
	rows0, err := tables.versions(ctx, ns)
	if err != nil {
		return err
	}
	prov0, err := getProvider(ctx, c, ns)
	if err != nil {
		return err
	}
	em.ResetCounters()
	m0, err := op.scrape(ctx)
	if err != nil {
		return err
	}
	if err := op.resetPeakRSS(); err != nil {
		b.progress("cannot reset the operator's VmHWM (%v): the pass's peak RSS is the point's", err)
		p.peakAll = true
	}
	if p.rssStart, err = op.rss(); err != nil {
		return err
	}
	cpu0, err := op.cpuSeconds()
	if err != nil {
		return err
	}
	control0 := controlPlaneCPU()
	t0 := time.Now()
	if start != nil {
		if err := start(); err != nil {
			return err
		}
	}
	deadline := t0.Add(b.passTimeout(b.point.total()) + verifyInterval)
	lastReport := t0
	for {
		if err := op.exited(); err != nil {
			return err
		}
		pr, err := getProvider(ctx, c, ns)
		if err != nil {
			return err
		}
		if t := pr.Status.LastVerifiedTime; t != nil && (prov0.Status.LastVerifiedTime == nil || t.After(prov0.Status.LastVerifiedTime.Time)) {
			p.verified, p.verifiedAfter, p.lastVerified = true, time.Since(t0), t.UTC().Format(time.RFC3339)
			break
		}
		if time.Now().After(deadline) {
			p.failure = fmt.Sprintf("lastVerifiedTime not set after %s (%d batch/read calls)", time.Since(t0).Round(time.Second), em.Calls(hsemu.EndpointRead))
			b.progress("giving up: %s; operator log: %s", p.failure, op.log)
			break
		}
		if time.Since(lastReport) >= 10*time.Second {
			lastReport = time.Now()
			b.progress("%s: %5.1fs, %d batch/read calls", name, time.Since(t0).Seconds(), em.Calls(hsemu.EndpointRead))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(b.cfg.poll):
		}
	}
	if err := b.waitIdle(ctx, op); err != nil {
		return err
	}
	cpu1, err := op.cpuSeconds()
	if err != nil {
		return err
	}
	p.cpu, p.control = cpu1-cpu0, controlPlaneCPU()-control0
	if p.peakRSS, err = op.peakRSS(); err != nil {
		return err
	}
	if b.cfg.pprofDir != "" {
		_ = op.cmd.Process.Signal(syscall.SIGUSR1) // this pass's CPU profile ends
	}
	m1, err := op.scrape(ctx)
	if err != nil {
		return err
	}
	rows1, err := tables.versions(ctx, ns)
	if err != nil {
		return err
	}
	prov1, err := getProvider(ctx, c, ns)
	if err != nil {
		return err
	}
	p.calls = countCalls(em)
	p.reads = em.Calls(hsemu.EndpointRead)
	for _, n := range em.Inputs(hsemu.EndpointRead) {
		p.readInputs += n
	}
	p.firstRead, p.lastRead = callSpan(em.Log(), hsemu.EndpointRead)
	p.apiRequests = m1.sum("rest_client_requests_total", nil) - m0.sum("rest_client_requests_total", nil)
	p.apiWrites = apiWrites(m0, m1)
	filter := map[string]string{"provider": providerIndex(ns)}
	p.loops = m1.sum("usersync_sync_loop_duration_seconds", filter) - m0.sum("usersync_sync_loop_duration_seconds", filter)
	p.syncStatusWrites = changedRows(rows0, rows1)
	p.providerRV = prov0.ResourceVersion != prov1.ResourceVersion
	b.progress("%s: lastVerifiedTime after %s; %d batch/read calls (%d users) for ⌈N/100⌉ = %d, reads spanned %s, %d vendor writes, "+
		"operator CPU %.2fs (control plane %.2fs), RSS %s at the start, peak %s, %d UserSync status writes, %.0f API requests (%.0f writes), most calls in one window %d, %d 429s",
		name, p.verifiedAfter.Round(10*time.Millisecond), p.reads, p.readInputs, ceilDiv(b.point.total(), 100), p.readSpan().Round(10*time.Millisecond),
		p.calls.writes(), p.cpu, p.control, mib(p.rssStart), mib(p.peakRSS), p.syncStatusWrites, p.apiRequests, p.apiWrites, p.calls.maxInWindow, p.calls.throttled)
	return nil
}

// changedRows counts the UserSyncs whose resourceVersion differs.
func changedRows(before, after []syncRow) int {
	rv := make(map[string]string, len(before))
	for _, r := range before {
		rv[r.name] = r.rv
	}
	n := 0
	for _, r := range after {
		if rv[r.name] != r.rv {
			n++
		}
	}
	return n
}

// callSpan is when the first and the last call to endpoint of the log
// arrived (zero times without one).
func callSpan(log []emulation.Call, endpoint string) (first, last time.Time) {
	for _, c := range log {
		if c.Endpoint != endpoint {
			continue
		}
		if first.IsZero() {
			first = c.At
		}
		last = c.At
	}
	return first, last
}

// readsIn counts the batch/read calls that arrived in [from, to).
func readsIn(log []emulation.Call, from, to time.Time) int {
	n := 0
	for _, c := range log {
		if c.Endpoint == hsemu.EndpointRead && !c.At.Before(from) && c.At.Before(to) {
			n++
		}
	}
	return n
}

// firstCallFrom is the first call to endpoint that arrived at or after t.
func firstCallFrom(log []emulation.Call, endpoint string, t time.Time) (emulation.Call, bool) {
	for _, c := range log {
		if c.Endpoint == endpoint && !c.At.Before(t) {
			return c, true
		}
	}
	return emulation.Call{}, false
}

// midPassTrigger is how many reads the pass under way has made when write
// k is sent: past the rate limit's first window, alternately in the middle
// of a window's calls and at its end (where the next read waits for the
// limiter), and before the pass's last read.
func midPassTrigger(k, limit, reads int) int {
	t := limit + (k+1)*limit/2
	return max(min(t, reads-1), 0)
}

// midPassTarget is the user write k changes.
type midPassTarget struct{ sync, key, email, id string }

func midPassTargets(p point, n int, em *hsemu.Emulator) []midPassTarget {
	targets := make([]midPassTarget, n)
	byEmail := map[string]int{}
	for k := range targets {
		s, u := (37*k+11)%p.syncs, (101*k+7)%p.users
		key := fmt.Sprintf("s%d-u%d", s, u)
		targets[k] = midPassTarget{sync: fmt.Sprintf("team-%04d", s), key: key, email: key + "@bench.example.com"}
		byEmail[targets[k].email] = k
	}
	for _, u := range em.Users() {
		if k, ok := byEmail[u.Properties["hs_email"]]; ok {
			targets[k].id = u.ID
		}
	}
	return targets
}

// midPassWrites sends the writes, each once the pass under way has made its
// trigger's reads since the last write: the next pass on the clock, which
// goes on from where it stopped after each write.
func (b *bench) midPassWrites(ctx context.Context, op *operator, em *hsemu.Emulator, ns string) ([]midPassWrite, vendorCalls, error) {
	wc := b.cp.client
	targets := midPassTargets(b.point, b.cfg.verifyWrites, em)
	em.ResetCounters()
	b.progress("mid-pass writes: %d, in the passes that follow (the next one due %s after the last)", len(targets), verifyInterval)
	passFrom := time.Now() // reads after this are the pass under way's
	var out []midPassWrite
	for k, tg := range targets {
		// The watch is set up first: once the trigger is reached, the
		// change goes at once.
		sw, err := startSyncWatch(ctx, wc, ns, tg.sync)
		if err != nil {
			return nil, vendorCalls{}, err
		}
		trigger := midPassTrigger(k, b.scenario.rateLimit, ceilDiv(b.point.total(), 100))
		base := readsIn(em.Log(), time.Time{}, passFrom)
		if err := b.waitCalls(ctx, op, em, hsemu.EndpointRead, base+trigger); err != nil {
			sw.stop()
			return nil, vendorCalls{}, err
		}
		w, upd, err := b.midPassWrite(ctx, op, em, wc, ns, tg, sw, fmt.Sprintf("verify-%d", k))
		sw.stop()
		if err != nil {
			return nil, vendorCalls{}, err
		}
		w.readsBefore -= base
		seen := "no watch event"
		if w.seen >= 0 {
			seen = fmt.Sprintf("on a watch after %s, %d after it", w.seen.Round(time.Millisecond), w.readsAfterSeen)
		}
		b.progress("mid-pass write %d (%s of %s, %d reads into the pass): accepted after %s (%s); %d batch/read calls from acceptance to the first batch/update, "+
			"which came %s after acceptance (%d users); UserSync Ready after %s",
			k+1, tg.key, tg.sync, w.readsBefore, w.accepted.Round(time.Millisecond), seen, w.readsBetween,
			w.delay.Round(time.Millisecond), w.updateInputs, w.ready.Round(time.Millisecond))
		out = append(out, w)
		passFrom = upd.Add(time.Nanosecond) // the pass goes on after the write
	}
	return out, countCalls(em), nil
}

// syncWatch is the benchmark's metadata watch of one UserSync.
type syncWatch struct {
	gen0 int64          // the generation when the watch began
	seen chan time.Time // when an event of a later generation arrived; closed without one if the watch ends
	stop context.CancelFunc
}

// startSyncWatch watches the UserSync's metadata. It returns once the watch
// has sent the object as it is (the API server's synthetic ADDED event of a
// watch without a resourceVersion), so that any later event is a change.
func startSyncWatch(ctx context.Context, wc client.WithWatch, ns, name string) (*syncWatch, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(usersv1.GroupVersion.WithKind("UserSyncList"))
	wctx, cancel := context.WithCancel(ctx)
	watcher, err := wc.Watch(wctx, list, &client.ListOptions{Namespace: ns, FieldSelector: fields.OneTermEqualSelector("metadata.name", name)})
	if err != nil {
		cancel()
		return nil, err
	}
	sw := &syncWatch{seen: make(chan time.Time, 1), stop: func() { watcher.Stop(); cancel() }}
	select {
	case ev, ok := <-watcher.ResultChan():
		m, isMeta := ev.Object.(*metav1.PartialObjectMetadata)
		if !ok || !isMeta {
			sw.stop()
			return nil, fmt.Errorf("watching UserSync %s: %s %v", name, ev.Type, ev.Object)
		}
		sw.gen0 = m.Generation
	case <-time.After(time.Minute):
		sw.stop()
		return nil, fmt.Errorf("watching UserSync %s: no event within a minute", name)
	}
	go func() {
		defer close(sw.seen)
		for ev := range watcher.ResultChan() {
			if m, ok := ev.Object.(*metav1.PartialObjectMetadata); ok && m.Generation > sw.gen0 {
				sw.seen <- time.Now()
				return
			}
		}
	}()
	return sw, nil
}

// midPassWrite changes tg's attribute to value and measures how the
// operator answers. It returns when the UserSync is Ready for the change,
// with the time the emulator received the first batch/update.
func (b *bench) midPassWrite(ctx context.Context, op *operator, em *hsemu.Emulator, wc client.WithWatch, ns string, tg midPassTarget, sw *syncWatch, value string) (midPassWrite, time.Time, error) {
	w := midPassWrite{sync: tg.sync, user: tg.key, seen: -1}
	updates0 := em.Calls(hsemu.EndpointUpdate)
	w.readsBefore = em.Calls(hsemu.EndpointRead)
	sent := time.Now()
	if err := patchAttribute(ctx, wc, ns, tg.sync, tg.key, b.point.users, value); err != nil {
		return w, time.Time{}, err
	}
	accepted := time.Now()
	w.accepted = accepted.Sub(sent)
	if err := b.waitCalls(ctx, op, em, hsemu.EndpointUpdate, updates0+1); err != nil {
		return w, time.Time{}, err
	}
	log := em.Log()
	upd, _ := firstCallFrom(log, hsemu.EndpointUpdate, sent)
	w.delay, w.updateInputs = upd.At.Sub(accepted), upd.Inputs
	w.readsBetween = readsIn(log, accepted, upd.At)
	select {
	case t, ok := <-sw.seen:
		if ok {
			w.seen = t.Sub(sent)
			w.readsAfterSeen = readsIn(log, t, upd.At)
		}
	case <-time.After(10 * time.Second):
	}
	if w.applied = b.waitVendorValue(ctx, em, tg.id, value); !w.applied {
		w.failure = fmt.Sprintf("the vendor does not hold %s=%s for %s (id %q)", midPassAttribute, value, tg.key, tg.id)
	}
	var err error
	if w.ready, err = b.waitSyncReady(ctx, ns, tg.sync, sw.gen0+1, accepted); err != nil {
		return w, time.Time{}, err
	}
	return w, upd.At, nil
}

// waitSyncReady waits for the UserSync to be Ready for generation gen, and
// returns how long after since it was seen so.
func (b *bench) waitSyncReady(ctx context.Context, ns, name string, gen int64, since time.Time) (time.Duration, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var us usersv1.UserSync
		if err := b.cp.client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &us); err != nil {
			return 0, err
		}
		cond := apimeta.FindStatusCondition(us.Status.Conditions, usersv1.ConditionReady)
		if us.Generation >= gen && us.Status.ObservedGeneration == us.Generation && cond != nil && cond.Status == metav1.ConditionTrue {
			return time.Since(since), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("UserSync %s not Ready for generation %d after 2 minutes", name, gen)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(b.cfg.poll):
		}
	}
}

// patchAttribute changes the midPassAttribute of user key (the user at
// index i of the UserSync's spec, as userSyncs builds it).
func patchAttribute(ctx context.Context, c client.Client, ns, sync, key string, users int, value string) error {
	var s, i int
	if _, err := fmt.Sscanf(key, "s%d-u%d", &s, &i); err != nil || i >= users {
		return fmt.Errorf("user key %q", key)
	}
	body := fmt.Sprintf(`[{"op":"test","path":"/spec/users/%d/key","value":%q},{"op":"replace","path":"/spec/users/%d/attributes/%s","value":%q}]`,
		i, key, i, midPassAttribute, value)
	us := &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sync}}
	return c.Patch(ctx, us, client.RawPatch(types.JSONPatchType, []byte(body)))
}

// waitCalls waits until the emulator has counted n calls to endpoint. It
// polls the emulator's counter (in this process) every 2 ms.
func (b *bench) waitCalls(ctx context.Context, op *operator, em *hsemu.Emulator, endpoint string, n int) error {
	deadline := time.Now().Add(b.passTimeout(b.point.total()))
	for em.Calls(endpoint) < n {
		if err := op.exited(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d %s calls, waited for %d; operator log: %s", em.Calls(endpoint), endpoint, n, op.log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// waitVendorValue waits up to a minute for the vendor's user id to hold
// value.
func (b *bench) waitVendorValue(ctx context.Context, em *hsemu.Emulator, id, value string) bool {
	deadline := time.Now().Add(time.Minute)
	for {
		if u, ok := em.UserByID(id); ok && u.Properties[midPassAttribute] == value {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(5 * time.Millisecond):
		}
	}
}
