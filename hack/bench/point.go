package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

// bench runs one point.
type bench struct {
	cfg      *config
	cp       *controlPlane
	binary   string
	work     string
	scenario *scenarioRun
	point    point
}

// vendorCalls are the emulator's counters.
type vendorCalls struct {
	creates, updates, upserts, archives int
	reads                               int // batch/read, search, list, get
	rateLimited                         int // every call the operator's rate limit counts
	throttled                           int // answered 429
	maxInWindow                         int
}

func (v vendorCalls) writes() int { return v.creates + v.updates + v.upserts + v.archives }

func countCalls(em *hsemu.Emulator) vendorCalls {
	v := vendorCalls{
		creates:     em.Calls(hsemu.EndpointCreate),
		updates:     em.Calls(hsemu.EndpointUpdate),
		upserts:     em.Calls(hsemu.EndpointUpsert),
		archives:    em.Calls(hsemu.EndpointArchive),
		throttled:   em.Throttled(),
		maxInWindow: em.MaxInWindow(),
	}
	v.reads = em.Calls(hsemu.EndpointRead) + em.Calls(hsemu.EndpointSearch) + em.Calls(hsemu.EndpointList) +
		em.Calls(hsemu.EndpointGet)
	// The operator counts every call in spec.rateLimit but search, which
	// HubSpot exempts from the ten-second window and limits to 4 a second
	// on its own (the client keeps to that apart). The adoption lookups
	// before creates are batch/read by email here (the emulator's hs_email
	// is unique): counted. The bound is over these calls.
	v.rateLimited = v.writes() + v.reads - em.Calls(hsemu.EndpointSearch)
	return v
}

// loopDurationMetric is the operator's histogram of sync loop durations.
const loopDurationMetric = "usersync_sync_loop_duration_seconds"

// yieldsMetric counts the loops that stopped sending to wait for the rate
// limit without holding a worker; each may leave one UserSync split
// between two loops, and written twice.
const yieldsMetric = "usersync_sync_loop_yields_total"

// gcCPU is the CPU the operator's garbage collector took, from the Go
// runtime's CPU classes (controller-runtime exports them): its total less
// the mark work of idle processors, which the runtime counts as a whole
// processor's time while the machine's cores in fact run kube-apiserver
// and etcd.
func gcCPU(m metricsSnapshot) float64 {
	return m.sum("go_cpu_classes_gc_total_cpu_seconds_total", nil) - m.sum("go_cpu_classes_gc_mark_idle_cpu_seconds_total", nil)
}

// result is what one point measured.
type result struct {
	point     point
	namespace string
	start     time.Time // first create
	converged bool
	failure   string // why it did not converge

	ready        int           // UserSyncs Ready at the end of the convergence phase
	createTime   time.Duration // first create to last create answered
	convergeTime time.Duration // first create to all Ready
	calls        vendorCalls   // during convergence
	firstWrite   time.Time     // first vendor write call sent
	writeSpan    time.Duration // first vendor write call sent to last one answered
	vendorUsers  int           // users at the vendor after convergence
	cpuConverge  float64       // operator CPU seconds, first create to all Ready
	gcConverge   float64       // of which the Go garbage collector's (gcCPU)
	yields       float64       // loops that stopped sending for the rate limit (usersync_sync_loop_yields_total)
	cpuControl   float64       // kube-apiserver and etcd CPU seconds, same span
	apiRequests  float64       // Kubernetes API requests the operator made, first create to all Ready
	api          apiServerWork // the API server's side of the operator's UserSync writes, same span
	rssConverged int64         // VmHWM at convergence
	peakRSS      int64         // VmHWM at the end (steady state included)
	loopsConv    float64       // sync loops during convergence

	// killedAt: the write calls answered when the operator was SIGKILLed
	// and started again (-kill-after-writes); 0: never. The killed
	// process's CPU, API requests, loops and peak RSS until then are added
	// to the point's.
	killedAt                                                  int
	killedCPU, killedAPI, killedLoops, killedGC, killedYields float64
	killedRSS                                                 int64

	steady     *steadyResult
	verify     *verifyResult
	profileDir string
}

// steadyResult is the steady-state phase: resync loops over unchanged users.
type steadyResult struct {
	loops                int           // loops observed in the whole phase (writes and status writes are counted over them)
	cpuLoops             int           // loops the CPU figure is averaged over
	cpuPerLoop           float64       // operator CPU seconds per resync loop, idle time between loops included
	controlPerLoop       float64       // kube-apiserver and etcd CPU seconds per resync loop
	loopSeconds          float64       // mean duration of one loop (usersync_sync_loop_duration_seconds)
	calls                vendorCalls   // over the whole phase
	syncStatusWrites     int           // UserSyncs whose resourceVersion changed
	providerStatusWrites int           // 1 when the provider's resourceVersion changed
	apiRequests          float64       // Kubernetes API requests the operator made
	apiWrites            float64       // of which POST, PUT, PATCH or DELETE
	duration             time.Duration // length of the phase
}

func (b *bench) progress(format string, args ...any) {
	logf("[%s %s] %s", b.scenario.name, b.point, fmt.Sprintf(format, args...))
}

func (b *bench) run(ctx context.Context) (*result, error) {
	cfg, c, p := b.cfg, b.cp.client, b.point
	res := &result{point: p}

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: fmt.Sprintf("bench-%s-%dx%d-", b.scenario.name, p.syncs, p.users)}}
	if err := c.Create(ctx, ns); err != nil {
		return nil, err
	}
	res.namespace = ns.Name

	emLimit, provRequests, provPeriod := -1, 10000, time.Second
	if b.scenario.rateLimit > 0 {
		emLimit, provRequests, provPeriod = b.scenario.rateLimit, b.scenario.rateLimit, b.scenario.rateWindow
	}
	// Emails are unique at the emulator as at HubSpot (an index, so the
	// check costs nothing at 100,000 users), so the operator's lookups
	// before creates are batch/read calls within the limit. A run that
	// SIGKILLs the operator (-kill-after-writes) accepts duplicate emails
	// instead: the emulator would refuse a second create of a user (and
	// the client adopt it), which would hide a duplicate the operator
	// sent; its lookups are then searches (4/s, outside the limit), so
	// its time says nothing about the bound.
	em := hsemu.New(hsemu.Options{
		Tokens:          map[string][]string{token: hubspot.DefaultScopes},
		Latency:         cfg.latency,
		RateLimit:       emLimit,
		RateWindow:      b.scenario.rateWindow,
		DuplicateEmails: cfg.killAfter > 0,
	})
	// The emulator is served through a wrapper that times the write calls.
	writes := &writeTimes{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: writes.wrap(em), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() { _ = srv.Close() }()
	// A backlog: the UserSyncs are all there before the provider can be
	// used (its Secret comes last), so the clock measures the operator
	// against the vendor's limit, not the time it takes to create them.
	backlog := b.scenario.backlog
	if err := createProvider(ctx, c, ns.Name, "http://"+ln.Addr().String(), provRequests, provPeriod, !backlog); err != nil {
		return nil, err
	}

	if cfg.pprofDir != "" {
		res.profileDir = filepath.Join(cfg.pprofDir, b.scenario.name+"-"+p.String())
	}
	phases := ""
	if b.scenario.verify {
		phases = verifyProfilePhases
	}
	op, err := startOperator(cfg, b.binary, b.cp.kubeconfig, b.work, ns.Name, res.profileDir, phases)
	if err != nil {
		return nil, err
	}
	defer func() { op.stop() }()
	want := metav1.ConditionTrue
	if backlog {
		want = metav1.ConditionFalse // SecretNotFound
	}
	if err := b.waitOperatorReady(ctx, op, ns.Name, want); err != nil {
		return nil, err
	}

	objs := userSyncs(ns.Name, p)
	tables, err := newTableReader(b.cp.cfg)
	if err != nil {
		return nil, err
	}
	if backlog {
		b.progress("creating the backlog: %d UserSyncs × %d users (%d users) in namespace %s, the provider without its Secret",
			p.syncs, p.users, p.total(), ns.Name)
		if err := b.createBacklog(ctx, op, ns.Name, objs); err != nil {
			return nil, err
		}
	}

	// Convergence: from the first create to every UserSync Ready.
	em.ResetCounters()
	writes.reset()
	m0, err := op.scrape(ctx)
	if err != nil {
		return nil, err
	}
	cpu0, err := op.cpuSeconds()
	if err != nil {
		return nil, err
	}
	a0, err := b.cp.scrapeAPIServer(ctx)
	if err != nil {
		return nil, err
	}
	control0 := controlPlaneCPU()
	start := time.Now()
	res.start = start
	var created atomic.Int64
	createErr := make(chan error, 1)
	if backlog {
		b.progress("creating the Secret: the provider can sync its backlog")
		created.Store(int64(len(objs)))
		createErr <- createSecret(ctx, c, ns.Name)
	} else {
		b.progress("creating %d UserSyncs × %d users (%d users) in namespace %s", p.syncs, p.users, p.total(), ns.Name)
		go func() {
			err := createAll(ctx, c, objs, cfg.createWorkers, &created)
			res.createTime = time.Since(start)
			createErr <- err
		}()
	}

	deadline := start.Add(cfg.timeout)
	tick := time.NewTicker(cfg.poll)
	defer tick.Stop()
	lastReport := start
	creating := true
	var readyAt time.Time
	for readyAt.IsZero() {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-createErr:
			if err != nil {
				return nil, err
			}
			creating = false
			if !backlog {
				b.progress("%d UserSyncs created in %s", p.syncs, res.createTime.Round(time.Millisecond))
			}
			continue
		case <-tick.C:
		}
		if cfg.killAfter > 0 && res.killedAt == 0 {
			if n := countCalls(em).writes(); n >= cfg.killAfter {
				res.killedAt = n
				if op, err = b.killAndRestart(ctx, op, res, ns.Name, phases, &cpu0, &m0); err != nil {
					return nil, err
				}
			}
		}
		if err := op.exited(); err != nil {
			return nil, err
		}
		rows, err := tables.list(ctx, ns.Name)
		if err != nil {
			return nil, err
		}
		polled := time.Now()
		res.ready = 0
		for _, r := range rows {
			if r.ready == string(metav1.ConditionTrue) {
				res.ready++
			}
		}
		if time.Since(lastReport) >= 5*time.Second {
			lastReport = time.Now()
			b.progress("%5.1fs: %d/%d UserSyncs Ready (%d created), %d vendor write calls",
				time.Since(start).Seconds(), res.ready, p.syncs, created.Load(), countCalls(em).writes())
		}
		if time.Now().After(deadline) {
			res.failure = fmt.Sprintf("%d of %d UserSyncs Ready after %s", res.ready, p.syncs, cfg.timeout)
			b.progress("giving up: %s; operator log: %s", res.failure, op.log)
			break
		}
		if !creating && res.ready == p.syncs {
			// The table has no observedGeneration: confirm on the full
			// objects. Unchanged resourceVersions mean they were Ready when
			// the table was read (the poll's table carries none: read them
			// at once).
			if rows, err = tables.versions(ctx, ns.Name); err != nil {
				return nil, err
			}
			rvs, err := verifyReady(ctx, c, ns.Name, p.syncs)
			if err != nil {
				b.progress("not yet: %v", err)
				continue
			}
			readyAt = polled
			for _, r := range rows {
				if rvs[r.name] != r.rv {
					readyAt = time.Now()
				}
			}
		}
	}
	if creating {
		if err := <-createErr; err != nil {
			return nil, err
		}
	}
	res.calls = countCalls(em)
	res.firstWrite, res.writeSpan = writes.span()
	if !readyAt.IsZero() {
		res.converged = true
		res.convergeTime = readyAt.Sub(start)
	} else {
		res.convergeTime = time.Since(start)
	}
	cpu1, err := op.cpuSeconds()
	if err != nil {
		return nil, err
	}
	res.cpuConverge = cpu1 - cpu0 + res.killedCPU
	res.cpuControl = controlPlaneCPU() - control0
	m1, err := op.scrape(ctx)
	if err != nil {
		return nil, err
	}
	res.apiRequests = m1.sum("rest_client_requests_total", nil) - m0.sum("rest_client_requests_total", nil) + res.killedAPI
	res.gcConverge = gcCPU(m1) - gcCPU(m0) + res.killedGC
	a1, err := b.cp.scrapeAPIServer(ctx)
	if err != nil {
		return nil, err
	}
	res.api = apiServerWorkBetween(a0, a1)
	loopFilter := map[string]string{"provider": providerIndex(ns.Name)}
	res.yields = m1.sum(yieldsMetric, loopFilter) - m0.sum(yieldsMetric, loopFilter) + res.killedYields
	res.loopsConv = m1.sum("usersync_sync_loop_duration_seconds", loopFilter) - m0.sum("usersync_sync_loop_duration_seconds", loopFilter) + res.killedLoops
	if res.rssConverged, err = op.peakRSS(); err != nil {
		return nil, err
	}
	res.rssConverged = max(res.rssConverged, res.killedRSS)
	res.vendorUsers = len(em.Users())
	if res.killedAt > 0 {
		b.progress("killed after %d write calls and started again: %d users at the vendor for %d declared (each exactly once: %t)",
			res.killedAt, res.vendorUsers, p.total(), res.vendorUsers == p.total())
	}
	b.progress("converged=%t in %s: %d vendor write calls (%d creates, bound %d) over %s, %d users at the vendor, operator CPU %.2fs (control plane %.2fs), peak RSS %s, %0.f API requests",
		res.converged, res.convergeTime.Round(10*time.Millisecond), res.calls.writes(), res.calls.creates, ceilDiv(p.total(), 100),
		res.writeSpan.Round(10*time.Millisecond), res.vendorUsers, res.cpuConverge, res.cpuControl, mib(res.rssConverged), res.apiRequests)

	switch {
	case res.converged && b.scenario.verify:
		if res.verify, err = b.verifyPhase(ctx, op, em, tables, ns.Name); err != nil {
			return nil, err
		}
	case res.converged && cfg.steadyLoops > 0:
		if res.steady, err = b.steadyState(ctx, op, em, tables, ns.Name); err != nil {
			return nil, err
		}
	}
	if res.peakRSS, err = op.peakRSS(); err != nil {
		return nil, err
	}
	// The verify phase resets VmHWM to measure its passes alone: the
	// point's peak is the larger of the two.
	res.peakRSS = max(res.peakRSS, res.rssConverged)
	op.stop()
	if err := cleanup(ctx, c, ns.Name); err != nil {
		b.progress("cleaning up: %v", err)
	}
	if !res.converged {
		b.progress("operator log kept: %s", op.log)
	}
	return res, nil
}

// killAndRestart SIGKILLs the operator in the middle of a convergence and
// starts it again: a crash during a backlog. What the killed process did
// since the clock started (CPU, API requests, loops) is kept in res, and
// cpu0 and m0 become the new process's zero, so that the point's figures
// are the two processes' sums.
func (b *bench) killAndRestart(ctx context.Context, op *operator, res *result, ns, phases string, cpu0 *float64, m0 *metricsSnapshot) (*operator, error) {
	cpu, err := op.cpuSeconds()
	if err != nil {
		return nil, err
	}
	m, err := op.scrape(ctx)
	if err != nil {
		return nil, err
	}
	_ = op.cmd.Process.Kill()
	<-op.done
	loopFilter := map[string]string{"provider": providerIndex(ns)}
	res.killedCPU = cpu - *cpu0
	res.killedAPI = m.sum("rest_client_requests_total", nil) - m0.sum("rest_client_requests_total", nil)
	res.killedGC = gcCPU(m) - gcCPU(*m0)
	res.killedYields = m.sum(yieldsMetric, loopFilter) - m0.sum(yieldsMetric, loopFilter)
	res.killedLoops = m.sum("usersync_sync_loop_duration_seconds", loopFilter) - m0.sum("usersync_sync_loop_duration_seconds", loopFilter)
	res.killedRSS, _ = op.peakRSS()
	b.progress("SIGKILLed the operator after %d vendor write calls; starting it again", res.killedAt)
	*cpu0, *m0 = 0, metricsSnapshot{}
	return startOperator(b.cfg, b.binary, b.cp.kubeconfig, b.work, ns, res.profileDir, phases)
}

// waitOperatorReady waits for the metrics endpoint and for the provider to
// be verified: the operator is up, its caches synced, before the clock
// starts.
func (b *bench) waitOperatorReady(ctx context.Context, op *operator, ns string, want metav1.ConditionStatus) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := op.exited(); err != nil {
			return err
		}
		_, scrapeErr := op.scrape(ctx)
		ok, _, err := providerReady(ctx, b.cp.client, ns, want)
		if err != nil {
			return err
		}
		if ok && scrapeErr == nil {
			return b.waitIdle(ctx, op)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the operator did not verify the provider within 2 minutes (metrics: %v); its log: %s", scrapeErr, op.log)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// createBacklog creates the UserSyncs while their providers cannot be used,
// and waits until the operator reports every one waiting for its provider
// and no loop runs: then the clock can start.
func (b *bench) createBacklog(ctx context.Context, op *operator, ns string, objs []*usersv1.UserSync) error {
	var n atomic.Int64
	if err := createAll(ctx, b.cp.client, objs, b.cfg.createWorkers, &n); err != nil {
		return err
	}
	for {
		held, err := allHeld(ctx, b.cp.client, ns, len(objs))
		if err != nil {
			return err
		}
		if held {
			return b.waitIdle(ctx, op)
		}
		if err := op.exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// waitIdle waits until no sync loop is running.
func (b *bench) waitIdle(ctx context.Context, op *operator) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		m, err := op.scrape(ctx)
		if err != nil {
			return err
		}
		if m.sum("controller_runtime_active_workers", map[string]string{"controller": "provider-sync"}) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("a sync loop has been running for 5 minutes")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// steadyState measures resync loops over the converged, unchanged users.
// Vendor calls, status writes and API requests are counted from the end of
// the converging loop to the end of the last measured loop; CPU is averaged
// over the K loops after the first one, from loop end to loop end, so that
// the window holds exactly K loops and the idle time between them.
func (b *bench) steadyState(ctx context.Context, op *operator, em *hsemu.Emulator, tables *tableReader, ns string) (*steadyResult, error) {
	k := b.cfg.steadyLoops
	if err := b.waitIdle(ctx, op); err != nil {
		return nil, err
	}
	rows0, err := tables.versions(ctx, ns)
	if err != nil {
		return nil, err
	}
	_, provRV0, err := providerReady(ctx, b.cp.client, ns, metav1.ConditionTrue)
	if err != nil {
		return nil, err
	}
	em.ResetCounters()
	m0, err := op.scrape(ctx)
	if err != nil {
		return nil, err
	}
	if op.cmd.Process != nil && b.cfg.pprofDir != "" {
		_ = op.cmd.Process.Signal(syscall.SIGUSR1) // converge profile done, steady profile starts
	}
	start := time.Now()
	filter := map[string]string{"provider": providerIndex(ns)}
	loops0 := m0.sum("usersync_sync_loop_duration_seconds", filter)
	b.progress("steady state: waiting for %d resync loops (--resync-interval %s)", k+1, b.cfg.resync)

	// waitLoops waits until the loop count reaches n and returns the
	// operator's CPU seconds then. Each scrape costs the operator CPU that
	// lands in the figure, so until notBefore it only sleeps, and then
	// scrapes every 200 ms.
	timeout := time.Now().Add(time.Duration(k+2)*b.cfg.resync + 2*time.Minute)
	// controlA and controlB: control-plane CPU when the previous and the
	// last awaited loop count was reached.
	var controlA, controlB float64
	waitLoops := func(n float64, notBefore time.Time) (float64, float64, error) {
		last := time.Now()
		for time.Now().Before(notBefore) {
			select {
			case <-ctx.Done():
				return 0, 0, ctx.Err()
			case <-time.After(time.Until(notBefore)):
			}
		}
		for {
			m, err := op.scrape(ctx)
			if err != nil {
				return 0, 0, err
			}
			if got := m.sum("usersync_sync_loop_duration_seconds", filter); got >= n {
				controlA, controlB = controlB, controlPlaneCPU()
				cpu, err := op.cpuSeconds()
				return got, cpu, err
			}
			if time.Now().After(timeout) {
				return 0, 0, fmt.Errorf("fewer than %.0f sync loops after %s; operator log: %s", n-loops0, time.Since(start).Round(time.Second), op.log)
			}
			if time.Since(last) >= 10*time.Second {
				last = time.Now()
				b.progress("steady state: %.0f/%d loops, %s", m.sum("usersync_sync_loop_duration_seconds", filter)-loops0, k+1, time.Since(start).Round(time.Second))
			}
			select {
			case <-ctx.Done():
				return 0, 0, ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	// The first resync loop comes at most one interval after the last
	// converging loop.
	loopsA, cpuA, err := waitLoops(loops0+1, time.Time{})
	if err != nil {
		return nil, err
	}
	// The K loops after it end about K intervals later (each loop is
	// requeued one interval after it ends, so a little more).
	loopsB, cpuB, err := waitLoops(loopsA+float64(k), time.Now().Add(time.Duration(k)*b.cfg.resync-time.Second))
	if err != nil {
		return nil, err
	}
	if err := b.waitIdle(ctx, op); err != nil {
		return nil, err
	}
	m1, err := op.scrape(ctx)
	if err != nil {
		return nil, err
	}
	rows1, err := tables.versions(ctx, ns)
	if err != nil {
		return nil, err
	}
	_, provRV1, err := providerReady(ctx, b.cp.client, ns, metav1.ConditionTrue)
	if err != nil {
		return nil, err
	}
	s := &steadyResult{
		loops:       int(m1.sum("usersync_sync_loop_duration_seconds", filter) - loops0),
		cpuLoops:    int(loopsB - loopsA),
		calls:       countCalls(em),
		apiRequests: m1.sum("rest_client_requests_total", nil) - m0.sum("rest_client_requests_total", nil),
		duration:    time.Since(start),
	}
	s.cpuPerLoop = (cpuB - cpuA) / float64(s.cpuLoops)
	s.controlPerLoop = (controlB - controlA) / float64(s.cpuLoops)
	if s.loops > 0 {
		s.loopSeconds = (m1.histSum(loopDurationMetric, filter) - m0.histSum(loopDurationMetric, filter)) / float64(s.loops)
	}
	s.apiWrites = apiWrites(m0, m1)
	rv0 := map[string]string{}
	for _, r := range rows0 {
		rv0[r.name] = r.rv
	}
	for _, r := range rows1 {
		if rv0[r.name] != r.rv {
			s.syncStatusWrites++
		}
	}
	if provRV0 != provRV1 {
		s.providerStatusWrites = 1
	}
	b.progress("steady state: %d loops in %s, %d vendor write calls, %.1f ms operator CPU per loop (control plane %.1f ms), %d UserSync status writes, %.0f API requests (%.0f writes)",
		s.loops, s.duration.Round(time.Second), s.calls.writes(), s.cpuPerLoop*1000, s.controlPerLoop*1000, s.syncStatusWrites, s.apiRequests, s.apiWrites)
	return s, nil
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// writeTimes records when the vendor's write endpoints were called.
type writeTimes struct {
	mu          sync.Mutex
	first, last time.Time
}

func (w *writeTimes) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.first, w.last = time.Time{}, time.Time{}
}

// span returns when the first write call was sent, and how long it was
// until the last one was answered.
func (w *writeTimes) span() (time.Time, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.first.IsZero() {
		return time.Time{}, 0
	}
	return w.first, w.last.Sub(w.first)
}

// writeEndpoints are the HubSpot endpoints that write users.
var writeEndpoints = []string{hsemu.EndpointCreate, hsemu.EndpointUpdate, hsemu.EndpointUpsert, hsemu.EndpointArchive}

func (w *writeTimes) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		write := false
		for _, ep := range writeEndpoints {
			write = write || (r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/"+ep))
		}
		if write {
			w.mu.Lock()
			if w.first.IsZero() {
				w.first = time.Now()
			}
			w.mu.Unlock()
		}
		h.ServeHTTP(rw, r)
		if write {
			w.mu.Lock()
			w.last = time.Now()
			w.mu.Unlock()
		}
	})
}
