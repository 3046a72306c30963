package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

// The providers scenario (issue 19's second scale point): P HubSpot
// providers in one operator, each its own portal (its own emulator, token
// and rate limit of 100 calls per rolling 10 s) with its own roster of
// SYNCS × USERS users, applied as a backlog (every provider's Secret
// missing, then all created at once). The clock runs from the Secrets to
// every UserSync Ready; each provider's bound is the least time its own
// limit allows its own calls, and the target is the total within 10 % of
// the slowest provider's bound: the operator's workers (--workers) must not
// make one provider wait for another's rate limit.
const (
	scenarioProviders      = "providers"
	providersPoint         = "20x500" // per provider
	defaultProvidersCount  = 10
	targetProvidersSlack   = 0.10
	providersTokenTemplate = "pat-bench-%d"
)

// providerRun is one provider of the scenario.
type providerRun struct {
	name  string
	em    *hsemu.Emulator
	calls vendorCalls
	users int
	ready time.Duration // from the Secrets to its last UserSync Ready
	// lastWrite is from the Secrets to its last write call (the
	// emulator's call log): what the rate limit decides, before the
	// status writes that follow.
	lastWrite time.Duration
	bound     time.Duration
}

// providersResult is what the scenario measured.
type providersResult struct {
	point     point // per provider
	providers []*providerRun
	converged bool
	failure   string
	took      time.Duration
	cpu, gc   float64 // operator CPU seconds, of which its garbage collector's
	control   float64
	peakRSS   int64
	api       apiServerWork
	requests  float64
	workers   int
}

// slowest is the largest of the providers' own bounds.
func (r *providersResult) slowest() time.Duration {
	var out time.Duration
	for _, p := range r.providers {
		out = max(out, p.bound)
	}
	return out
}

// runProviders runs the providers scenario and returns its markdown.
func runProviders(ctx context.Context, cfg *config, cp *controlPlane, binary, work string, env envInfo) (string, error) {
	pts, err := singlePoint(cfg, providersPoint)
	if err != nil {
		return "", err
	}
	sr := limitedScenario(cfg, scenarioProviders)
	sr.points = pts
	sr.begin(env)
	b := &bench{cfg: cfg, cp: cp, binary: binary, work: work, scenario: sr, point: pts[0]}
	res, err := b.runProviders(ctx)
	if err != nil {
		return "", err
	}
	sr.finished = time.Now()
	return renderProviders(cfg, sr, res), nil
}

func (b *bench) runProviders(ctx context.Context) (*providersResult, error) {
	c, p, cfg := b.cp.client, b.point, b.cfg
	n := cfg.providers
	res := &providersResult{point: p, workers: cfg.workers}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: fmt.Sprintf("bench-providers-%dx%s-", n, p)}}
	if err := c.Create(ctx, ns); err != nil {
		return nil, err
	}
	var objs []*usersv1.UserSync
	for i := range n {
		pr := &providerRun{name: fmt.Sprintf("hs-%02d", i)}
		tok := fmt.Sprintf(providersTokenTemplate, i)
		pr.em = hsemu.New(hsemu.Options{Tokens: map[string][]string{tok: hubspot.DefaultScopes}, Latency: cfg.latency,
			RateLimit: b.scenario.rateLimit, RateWindow: b.scenario.rateWindow})
		if err := pr.em.StartOn("127.0.0.1:0"); err != nil {
			return nil, err
		}
		defer pr.em.Close()
		if err := c.Create(ctx, &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: pr.name},
			Spec: usersv1.ProviderSpec{Type: usersv1.ProviderHubSpot, Endpoint: pr.em.URL(), AllowInsecureHTTP: true,
				CredentialsRef: usersv1.SecretKeyReference{Name: pr.name, Key: "token"},
				RateLimit:      &usersv1.RateLimit{Requests: int32(b.scenario.rateLimit), Period: metav1.Duration{Duration: b.scenario.rateWindow}},
				DriftDetection: &usersv1.DriftDetection{Interval: &metav1.Duration{}}}}); err != nil {
			return nil, err
		}
		for _, us := range userSyncs(ns.Name, p) {
			us.Name = pr.name + "-" + us.Name
			us.Spec.ProviderRefs = []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: pr.name}}
			objs = append(objs, us)
		}
		res.providers = append(res.providers, pr)
	}
	op, err := startOperator(cfg, b.binary, b.cp.kubeconfig, b.work, ns.Name, "", "")
	if err != nil {
		return nil, err
	}
	defer op.stop()
	b.progress("%d providers, each its own portal limited to %d calls / %s: creating the backlog, %d UserSyncs × %d users each (%d users), the Secrets missing",
		n, b.scenario.rateLimit, b.scenario.rateWindow, p.syncs, p.users, n*p.total())
	if err := b.createBacklog(ctx, op, ns.Name, objs); err != nil {
		return nil, err
	}
	tables, err := newTableReader(b.cp.cfg)
	if err != nil {
		return nil, err
	}

	for _, pr := range res.providers {
		pr.em.ResetCounters()
	}
	m0, err := op.scrape(ctx)
	if err != nil {
		return nil, err
	}
	a0, err := b.cp.scrapeAPIServer(ctx)
	if err != nil {
		return nil, err
	}
	cpu0, err := op.cpuSeconds()
	if err != nil {
		return nil, err
	}
	control0 := controlPlaneCPU()
	start := time.Now()
	b.progress("creating the %d Secrets", n)
	for i, pr := range res.providers {
		if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: pr.name},
			Data: map[string][]byte{"token": []byte(fmt.Sprintf(providersTokenTemplate, i))}}); err != nil {
			return nil, err
		}
	}
	deadline := start.Add(cfg.timeout)
	lastReport := start
	for {
		if err := op.exited(); err != nil {
			return nil, err
		}
		rows, err := tables.list(ctx, ns.Name)
		if err != nil {
			return nil, err
		}
		polled := time.Since(start)
		ready := map[string]int{}
		total := 0
		for _, r := range rows {
			if r.ready == string(metav1.ConditionTrue) {
				ready[r.name[:strings.LastIndex(r.name, "-team-")]]++
				total++
			}
		}
		for _, pr := range res.providers {
			if pr.ready == 0 && ready[pr.name] == p.syncs {
				pr.ready = polled
			}
		}
		if time.Since(lastReport) >= 5*time.Second {
			lastReport = time.Now()
			b.progress("%5.1fs: %d/%d UserSyncs Ready", polled.Seconds(), total, len(objs))
		}
		if total == len(objs) {
			if _, err := verifyReady(ctx, c, ns.Name, len(objs)); err == nil {
				res.converged, res.took = true, polled
				break
			}
		}
		if time.Now().After(deadline) {
			res.failure = fmt.Sprintf("%d of %d UserSyncs Ready after %s", total, len(objs), cfg.timeout)
			res.took = polled
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(cfg.poll):
		}
	}
	cpu1, err := op.cpuSeconds()
	if err != nil {
		return nil, err
	}
	res.cpu, res.control = cpu1-cpu0, controlPlaneCPU()-control0
	m1, err := op.scrape(ctx)
	if err != nil {
		return nil, err
	}
	res.requests = m1.sum("rest_client_requests_total", nil) - m0.sum("rest_client_requests_total", nil)
	res.gc = gcCPU(m1) - gcCPU(m0)
	a1, err := b.cp.scrapeAPIServer(ctx)
	if err != nil {
		return nil, err
	}
	res.api = apiServerWorkBetween(a0, a1)
	if res.peakRSS, err = op.peakRSS(); err != nil {
		return nil, err
	}
	for _, pr := range res.providers {
		pr.calls = countCalls(pr.em)
		pr.users = len(pr.em.Users())
		pr.bound = callsBound(b.scenario, pr.calls.rateLimited)
		for _, call := range pr.em.Log() {
			if slices.Contains(writeEndpoints, call.Endpoint) {
				pr.lastWrite = max(pr.lastWrite, call.At.Sub(start))
			}
		}
	}
	b.progress("converged=%t in %s, slowest provider's bound %s, peak RSS %s, operator CPU %.2fs (control plane %.2fs)",
		res.converged, res.took.Round(10*time.Millisecond), res.slowest(), mib(res.peakRSS), res.cpu, res.control)
	op.stop()
	if err := cleanup(ctx, c, ns.Name); err != nil {
		b.progress("cleaning up: %v", err)
	}
	return res, nil
}

// renderProviders is the scenario's markdown.
func renderProviders(cfg *config, sr *scenarioRun, r *providersResult) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	n := len(r.providers)
	w("### %d providers × %s users in one operator\n\n", n, thousands(r.point.total()))
	e := sr.env
	commit := e.commit
	if e.dirty {
		commit += " (with uncommitted changes)"
	}
	w("Measured %s UTC on %d × %s, %s RAM; %s; commit %s. Load average (1/5/15 min) %s at the start, %s at the end. Took %s.\n\n",
		e.date.Format("2006-01-02 15:04"), e.cores, e.cpuModel, e.memory, e.goVersion, commit, e.loadAvg, loadAvg(),
		sr.finished.Sub(sr.started).Round(time.Second))
	w("Command: `%s`. %d HubSpot providers, each its own emulator (a portal: its own token and its own limit of %d requests / %s, also its spec.rateLimit), "+
		"emulator latency %s per request, each with %d UserSyncs × %d users; operator `--workers=%d`, a memory limit of %s. "+
		"A backlog: the UserSyncs are applied while every provider's Secret is missing, then the %d Secrets are created at once; "+
		"the clock runs from then to every UserSync Ready (`status.observedGeneration == metadata.generation`).\n\n",
		commandLine(cfg, sr), n, sr.rateLimit, sr.rateWindow, cfg.latency, r.point.syncs, r.point.users, r.workers, cfg.memoryLimit, n)
	w("| Provider | N | Rate-limited calls | Vendor write calls | ⌈N/100⌉ | Users at vendor | 429 answers | Its own bound | Its last write call after | Its UserSyncs Ready after |\n")
	w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, p := range r.providers {
		after, last := "–", "–"
		if p.ready > 0 {
			after = secs(p.ready)
		}
		if p.lastWrite > 0 {
			last = secs(p.lastWrite)
		}
		w("| %s | %s | %d | %d | %d | %s | %d | %s | %s | %s |\n", p.name, thousands(r.point.total()), p.calls.rateLimited, p.calls.writes(),
			ceilDiv(r.point.total(), 100), thousands(p.users), p.calls.throttled, secs(p.bound), last, after)
	}
	took := secs(r.took)
	if !r.converged {
		took = "**did not converge**: " + r.failure
	}
	w("\n| Providers × users | All Ready | Slowest provider's bound | Over it | Operator CPU | Control-plane CPU | Peak RSS | K8s API requests | UserSync status writes |\n")
	w("|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	w("| %d × %s | %s | %s | %+.1f%% | %.2f s (GC %.2f s) | %.2f s | %s | %.0f | %.0f |\n\n", n, thousands(r.point.total()), took, secs(r.slowest()),
		100*(r.took.Seconds()/r.slowest().Seconds()-1), r.cpu, r.gc, r.control, mib(r.peakRSS), r.requests, r.api.statusWrites)
	w("Bound: (⌈calls / limit⌉ − 1) × window for the provider's own rate-limited calls (all but search), as the emulator counts them. Peak RSS: the operator's VmHWM over the whole run.\n\n")
	// What the machine allows: the CPU the control plane and the operator
	// used, spread over every core without a gap, is a floor the total
	// cannot beat whatever the rate limits allow.
	w("The machine's floor: (control-plane CPU + operator CPU) / %d cores = %s: the total cannot be shorter on this machine, whatever the rate limits allow.\n\n",
		sr.env.cores, secs(time.Duration((r.control+r.cpu)/float64(sr.env.cores)*float64(time.Second))))
	writesOK := true
	for _, p := range r.providers {
		writesOK = writesOK && p.calls.writes() <= ceilDiv(r.point.total(), 100) && p.users == r.point.total() && p.calls.throttled == 0
	}
	w("Targets:\n\n| Target | Figure | |\n|---|---|---|\n")
	w("| all Ready within 10%% of the slowest provider's own bound | %s for a bound of %s | %s |\n", took, secs(r.slowest()),
		verdict(r.converged && r.took.Seconds() <= r.slowest().Seconds()*(1+targetProvidersSlack)))
	w("| every provider: ⌈N/100⌉ write calls, every user once, no 429 | see the table | %s |\n", verdict(r.converged && writesOK))
	w("| operator peak RSS ≤ 256 MiB | %s | %s |\n", mib(r.peakRSS), verdict(r.peakRSS <= targetRSS))
	return b.String()
}
