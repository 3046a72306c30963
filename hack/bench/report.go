package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/usersync/usersync-operator/internal/app"
)

const (
	targetReady      = 60 * time.Second
	targetCPUPerLoop = 0.060 // seconds (issue 19; 0.200 before)
	targetRSS        = 256 << 20
	targetScale      = 100000 // the targets on time, CPU and RSS are for 100k users
	targetRateSlack  = 0.05
)

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**not met**"
}

// plural is "1 call", "2 calls", "1,000 calls".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return thousands(n) + " " + noun + "s"
}

func pointLabel(p point) string { return fmt.Sprintf("%d × %d", p.syncs, p.users) }

func secs(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// commandLine reconstructs the command that reproduces a scenario.
func commandLine(cfg *config, sr *scenarioRun) string {
	args := []string{"go run ./hack/bench"}
	if sr.name != scenarioPoints {
		args = append(args, "-scenario "+sr.name)
	}
	var pts []string
	for _, p := range sr.points {
		pts = append(pts, p.String())
	}
	def := defaultPoints
	switch sr.name {
	case scenarioRateLim:
		def = ratelimitPoints
	case scenarioVerify:
		def = verifyPoints
	case scenarioProviders:
		def = providersPoint
	}
	if sr.name == scenarioProviders && cfg.providers != defaultProvidersCount {
		args = append(args, fmt.Sprintf("-providers %d", cfg.providers))
	}
	if strings.Join(pts, ",") != def {
		args = append(args, "-points "+strings.Join(pts, ","))
	}
	if cfg.latency != 20*time.Millisecond {
		args = append(args, "-latency "+cfg.latency.String())
	}
	if cfg.resync != 30*time.Second {
		args = append(args, "-resync-interval "+cfg.resync.String())
	}
	if cfg.steadyLoops != 3 {
		args = append(args, fmt.Sprintf("-steady-loops %d", cfg.steadyLoops))
	}
	if cfg.memoryLimit != "256Mi" {
		args = append(args, "-memory-limit '"+cfg.memoryLimit+"'")
	}
	if cfg.goMemLimit != "" {
		args = append(args, "-gomemlimit "+cfg.goMemLimit)
	}
	if cfg.workers != 4 {
		args = append(args, fmt.Sprintf("-workers %d", cfg.workers))
	}
	switch {
	case sr.name == scenarioPoints && sr.rateLimit > 0:
		args = append(args, fmt.Sprintf("-rate-limit %d -rate-window %s", sr.rateLimit, sr.rateWindow))
	case sr.name != scenarioPoints && sr.rateLimit != ratelimitLimit:
		args = append(args, fmt.Sprintf("-rate-limit %d", sr.rateLimit))
	}
	if sr.name != scenarioPoints && sr.rateWindow != ratelimitWindow {
		args = append(args, "-rate-window "+sr.rateWindow.String())
	}
	if sr.name == scenarioVerify && cfg.verifyWrites != 3 {
		args = append(args, fmt.Sprintf("-verify-writes %d", cfg.verifyWrites))
	}
	return strings.Join(args, " ")
}

// renderScenario is the markdown of one scenario's results.
func renderScenario(cfg *config, sr *scenarioRun) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	e := sr.env
	commit := e.commit
	if e.dirty {
		commit += " (with uncommitted changes)"
	}
	title := "Scale points"
	switch sr.name {
	case scenarioRateLim:
		title = "Vendor rate limit"
	case scenarioVerify:
		title = "Drift detection: verifying every user"
	}
	w("### %s\n\n", title)
	w("Measured %s UTC on %d × %s, %s RAM; %s; commit %s. Load average (1/5/15 min) %s at the start, %s at the end. ",
		e.date.Format("2006-01-02 15:04"), e.cores, e.cpuModel, e.memory, e.goVersion, commit, e.loadAvg, loadAvg())
	w("Took %s.\n\n", sr.finished.Sub(sr.started).Round(time.Second))
	w("Command: `KUBEBUILDER_ASSETS=$(./hack/setup-envtest.sh) %s`. ", commandLine(cfg, sr))
	vendorLimit := "no vendor rate limit (provider spec.rateLimit 10000/1s)"
	if sr.rateLimit > 0 {
		vendorLimit = fmt.Sprintf("vendor rate limit %d requests / %s at the emulator and in the provider's spec.rateLimit", sr.rateLimit, sr.rateWindow)
	}
	memLimit := "no memory limit"
	if cfg.memoryLimit != "" {
		memLimit = "a memory limit of " + cfg.memoryLimit + " (" + app.MemoryLimitEnv + ": the Go heap kept under 85% of it, as the Helm chart runs it)"
	}
	if cfg.goMemLimit != "" {
		memLimit = "GOMEMLIMIT=" + cfg.goMemLimit
	}
	w("Emulator latency %s per request, %s; operator `--workers=%d --resync-interval=%s`, %s.\n\n", cfg.latency, vendorLimit, cfg.workers, cfg.resync, memLimit)

	w("| UserSyncs × users | N | All Ready | Created in | Ready after last create | Vendor write calls | ⌈N/100⌉ | N (a call per user) | Vendor reads | Users at vendor | Operator CPU | Control-plane CPU | Peak RSS | K8s API requests | Sync loops |\n")
	w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range sr.results {
		ready := secs(r.convergeTime)
		if !r.converged {
			ready = "**not converged**: " + r.failure
		}
		after := "–"
		if r.converged {
			after = secs(max(r.convergeTime-r.createTime, 0))
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.2f s (GC %.2f s) | %.2f s | %s | %s | %.0f |\n",
			pointLabel(r.point), thousands(r.point.total()), ready, secs(r.createTime), after, thousands(r.calls.writes()),
			thousands(ceilDiv(r.point.total(), 100)), thousands(r.point.total()), thousands(r.calls.reads),
			thousands(r.vendorUsers), r.cpuConverge, r.gcConverge, r.cpuControl, mib(r.peakRSS), thousands(int(r.apiRequests)), r.loopsConv)
	}
	start := fmt.Sprintf("from the first UserSync create to every UserSync Ready with `status.observedGeneration == metadata.generation`, polled every %s; "+
		"the UserSyncs are created by %d goroutines while the operator runs", cfg.poll, cfg.createWorkers)
	if sr.backlog {
		start = fmt.Sprintf("from the creation of the provider's Secret, the UserSyncs all there and reported `ProviderNotReady`, to every UserSync Ready "+
			"with `status.observedGeneration == metadata.generation`, polled every %s", cfg.poll)
	}
	w("\nAll Ready: %s. Operator CPU (utime+stime; GC: of which its garbage collector's, from the Go runtime's CPU classes, `go_cpu_classes_gc_total_cpu_seconds_total` less `…_gc_mark_idle_…`, which counts a whole core for idle-time marking on cores kube-apiserver and etcd use), control-plane CPU (kube-apiserver and etcd, on the same cores) and K8s API requests "+
		"(the operator's `rest_client_requests_total`) over the same span; peak RSS is the operator process's VmHWM over the whole point, steady state included. "+
		"Sync loops: the provider's loops that ended in the span.\n\n", start)

	renderAPIServer(w, sr)

	if hasSteady(sr) {
		w("Steady state: the users unchanged, the operator resyncs every %s. Vendor calls and status writes are counted over every loop of the phase; CPU per loop is the operator's CPU over the last %d loops (loop end to loop end, idle time between loops included) divided by %d; "+
			"control-plane CPU per loop likewise, for kube-apiserver and etcd. Loop duration: mean of `usersync_sync_loop_duration_seconds`.\n\n",
			cfg.resync, cfg.steadyLoops, cfg.steadyLoops)
		w("| UserSyncs × users | Loops | Vendor write calls | Vendor reads | CPU per loop | Control-plane CPU per loop | Loop duration | UserSync status writes | Provider status writes | K8s API requests (of which writes) |\n")
		w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, r := range sr.results {
			s := r.steady
			if s == nil {
				continue
			}
			w("| %s | %d | %d | %d | %.0f ms | %.0f ms | %.0f ms | %d | %d | %.0f (%.0f) |\n",
				pointLabel(r.point), s.loops, s.calls.writes(), s.calls.reads, s.cpuPerLoop*1000, s.controlPerLoop*1000, s.loopSeconds*1000,
				s.syncStatusWrites, s.providerStatusWrites, s.apiRequests, s.apiWrites)
		}
		w("\n")
	}

	if sr.name == scenarioRateLim {
		w("| UserSyncs × users | N | Limit | Rate-limited calls | Bound: (⌈calls / limit⌉ − 1) × window | All Ready | Over the bound | First write call after | Write calls spanned | 429 answers | Most calls in one window |\n")
		w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
		for _, r := range sr.results {
			bound := rateBound(sr, r)
			first := "–"
			if !r.firstWrite.IsZero() {
				first = secs(r.firstWrite.Sub(r.start))
			}
			w("| %s | %s | %d / %s | %d | %s | %s | %+.1f%% | %s | %s | %d | %d |\n",
				pointLabel(r.point), thousands(r.point.total()), sr.rateLimit, sr.rateWindow, r.calls.rateLimited, secs(bound),
				secs(r.convergeTime), 100*(r.convergeTime.Seconds()/bound.Seconds()-1), first, secs(r.writeSpan), r.calls.throttled, r.calls.maxInWindow)
		}
		w("\nRate-limited calls: every vendor call the emulator's limit counts (all but search) from the first create to all Ready. " +
			"Bound: the least time the limit allows them, as the emulator counts them like HubSpot, in a rolling window: the first `limit` calls at once, `limit` more each window after. " +
			"First write call after: from the first UserSync create; write calls spanned: from the first write call sent to the last one answered.\n\n")
	}

	if sr.verify {
		renderVerify(w, sr)
	}

	w("Targets:\n\n| Target | UserSyncs × users | Figure | |\n|---|---|---|---|\n")
	for _, t := range targets(sr) {
		w("| %s | %s | %s | %s |\n", t.name, t.point, t.figure, verdict(t.ok))
	}
	return b.String()
}

func hasSteady(sr *scenarioRun) bool {
	for _, r := range sr.results {
		if r.steady != nil {
			return true
		}
	}
	return false
}

// renderAPIServer is the table of what the convergence cost the API server.
func renderAPIServer(w func(string, ...any), sr *scenarioRun) {
	w("What the operator's UserSync writes cost the API server over the same span, from kube-apiserver's own metrics: status writes (PUT, before 123bc15 PATCH, of `usersyncs/status`, `apiserver_request_total`) " +
		"and other writes of UserSyncs (finalizers); loop yields: loops that stopped sending to let the rate limit refill without holding a worker (`usersync_sync_loop_yields_total`; each may split one UserSync's users between two loops, and so its status between two writes); the bytes of their request bodies (`apiserver_request_body_size_bytes`); the bytes of the UserSync watch events the API server sent (`apiserver_watch_events_sizes`: " +
		"each write sends the whole object to the operator's informer, and the creates of the point's UserSyncs are among them when they fall in the span); " +
		"control-plane CPU (kube-apiserver and etcd) per 1,000 users.\n\n")
	w("| UserSyncs × users | N | UserSync status writes | per UserSync | Loop yields | Other UserSync writes | Request bytes | per user | Watch events | Watch bytes | per user | Control-plane CPU per 1,000 users |\n")
	w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range sr.results {
		n, a := float64(r.point.total()), r.api
		w("| %s | %s | %.0f | %.2f | %.0f | %.0f | %s | %.0f B | %.0f | %s | %.0f B | %.0f ms |\n",
			pointLabel(r.point), thousands(r.point.total()), a.statusWrites, a.statusWrites/float64(r.point.syncs), r.yields, a.otherWrites,
			bytesIEC(a.writeBytes), a.writeBytes/n, a.watchEvents, bytesIEC(a.watchBytes), a.watchBytes/n, 1000*r.cpuControl/(n/1000))
	}
	w("\n")
}

// bytesIEC writes a byte count in KiB or MiB.
func bytesIEC(b float64) string {
	if b >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	}
	return fmt.Sprintf("%.1f KiB", b/(1<<10))
}

// rateBound is the least time the vendor's limit lets the point's calls
// take: a rolling window of rateLimit calls per rateWindow admits the first
// rateLimit calls at once and rateLimit more each window after, so C calls
// need (⌈C/limit⌉ − 1) windows.
func rateBound(sr *scenarioRun, r *result) time.Duration {
	return callsBound(sr, r.calls.rateLimited)
}

// callsBound is the least time the scenario's limit lets calls take.
func callsBound(sr *scenarioRun, calls int) time.Duration {
	if sr.rateLimit <= 0 || calls == 0 {
		return 0
	}
	return time.Duration(ceilDiv(calls, sr.rateLimit)-1) * sr.rateWindow
}

// renderVerify is the markdown of the verify scenario's pass and mid-pass
// writes.
func renderVerify(w func(string, ...any), sr *scenarioRun) {
	w("Two passes. The first: once every UserSync is Ready (drift detection off until then), the provider's `spec.driftDetection.interval` is set from 0s to %s; "+
		"never verified, the provider is due at once; the spec change rebuilds the vendor client, and with it the operator's cache of the hashed desired users. "+
		"The pass on the clock: the next one, which the interval starts %s after the first ended, as every later pass, nothing changed. "+
		"Each is measured from the patch (or from the end of the first, the wait for the clock included) to the provider's `status.lastVerifiedTime` set and no loop running; "+
		"operator CPU and control-plane CPU over the same span; RSS at the start: the operator's VmRSS then; peak RSS: over that span alone (VmHWM reset to the RSS of the moment through `/proc/<pid>/clear_refs`).\n\n",
		verifyInterval, verifyInterval)
	w("| UserSyncs × users | Pass | N | batch/read calls | ⌈N/100⌉ | Users read | Other vendor calls | Vendor writes | Reads spanned | Bound | lastVerifiedTime after | Operator CPU | Control-plane CPU | RSS at the start | Peak RSS | UserSync status writes | K8s API requests (of which writes) | Most calls in one window | 429 answers |\n")
	w("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range sr.results {
		for _, pp := range r.verify.passes() {
			p := pp.p
			after := secs(p.verifiedAfter)
			if !p.verified {
				after = "**not verified**: " + p.failure
			}
			w("| %s | %s | %s | %s | %s | %s | %d | %d | %s | %s | %s | %.2f s | %.2f s | %s | %s | %d | %.0f (%.0f) | %d / %d | %d |\n",
				pointLabel(r.point), pp.name, thousands(r.point.total()), thousands(p.reads), thousands(ceilDiv(r.point.total(), 100)), thousands(p.readInputs),
				p.calls.reads-p.reads, p.calls.writes(), secs(p.readSpan()), secs(callsBound(sr, p.calls.rateLimited)), after, p.cpu, p.control,
				mib(p.rssStart), mib(p.peakRSS), p.syncStatusWrites, p.apiRequests, p.apiWrites, p.calls.maxInWindow, sr.rateLimit, p.calls.throttled)
		}
	}
	w("\nOther vendor calls: the credentials check of the client rebuilt for the new spec (one `GET` of a user); a pass on the clock makes none. Reads spanned: from the first `batch/read` the emulator received to the last; "+
		"bound: the least time the limit allows the pass's rate-limited calls, (⌈calls / %d⌉ − 1) × %s. A pass in a loop with nothing to write may use the whole limit (beside writes, maxReadShare of it); "+
		"the most calls the emulator admitted in one rolling window of %s shows it kept within it.\n\n", sr.rateLimit, sr.rateWindow, sr.rateWindow)
	if !hasWrites(sr) {
		return
	}
	w("Writes that arrive mid-pass: in the passes after the pass on the clock (the next one %s after it; a pass that stops for a write goes on from where it stopped, beside the write within maxReadShare and in the loops after it). Once the pass under way has made the reads of the third column, "+
		"one user's `%s` attribute is changed in one UserSync (a JSON patch). Accepted: from sending the patch to the API server's answer; on a watch: to the event on the benchmark's own "+
		"metadata watch of that UserSync (the API server's and the watch's latency, which the operator's watch shares). Reads are counted, and the first `batch/update` timed, from the acceptance.\n\n",
		verifyInterval, midPassAttribute)
	w("| UserSyncs × users | Write | Reads of the pass when sent | Accepted after | On a watch after | batch/read calls from acceptance to the first batch/update | of which after the watch event | First batch/update after acceptance | Users in it | UserSync Ready after acceptance |\n")
	w("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, r := range sr.results {
		if r.verify == nil {
			continue
		}
		for i, m := range r.verify.writes {
			seen, after := "–", "–"
			if m.seen >= 0 {
				seen, after = secs(m.seen), fmt.Sprint(m.readsAfterSeen)
			}
			ready := secs(m.ready)
			if !m.applied {
				ready = "**" + m.failure + "**"
			}
			w("| %s | %d (`%s` of %s) | %d | %s | %s | %d | %s | %s | %d | %s |\n", pointLabel(r.point), i+1, m.user, m.sync, m.readsBefore,
				secs(m.accepted), seen, m.readsBetween, after, secs(m.delay), m.updateInputs, ready)
		}
		mc := r.verify.midCalls
		w("\nOver these writes and the passes around them: %s, %s, %d 429 answers, at most %d calls in one window of %s (limit %d).\n\n",
			plural(mc.reads, "vendor read"), plural(mc.writes(), "vendor write"), mc.throttled, mc.maxInWindow, sr.rateWindow, sr.rateLimit)
	}
}

func hasWrites(sr *scenarioRun) bool {
	for _, r := range sr.results {
		if r.verify != nil && len(r.verify.writes) > 0 {
			return true
		}
	}
	return false
}

// namedPass is a pass with its name in the tables.
type namedPass struct {
	name string
	p    passResult
}

// passes are the passes measured (none for nil).
func (v *verifyResult) passes() []namedPass {
	if v == nil {
		return nil
	}
	out := []namedPass{{"first pass (after the spec change)", v.first}}
	if v.first.verified {
		out = append(out, namedPass{"pass on the clock", v.clock})
	}
	return out
}

// verifyTargets are the verify scenario's targets for one point.
func verifyTargets(sr *scenarioRun, r *result, v *verifyResult) []target {
	n := r.point.total()
	t := func(name, figure string, ok bool) target {
		return target{name: name, point: pointLabel(r.point), figure: figure, ok: ok}
	}
	var out []target
	for _, pp := range v.passes() {
		p, name := pp.p, pp.name
		out = append(out,
			t(name+": batch/read calls = ⌈N/100⌉, every user read once", fmt.Sprintf("%s (%s users) for ⌈N/100⌉ = %s", plural(p.reads, "call"), thousands(p.readInputs), thousands(ceilDiv(n, 100))),
				p.verified && p.reads == ceilDiv(n, 100) && p.readInputs == n),
			t(name+": lastVerifiedTime advanced", fmt.Sprintf("%s, %s after the start", p.lastVerified, secs(p.verifiedAfter)), p.verified),
			t(name+": 0 vendor writes, 0 UserSync status writes", fmt.Sprintf("%d, %d", p.calls.writes(), p.syncStatusWrites), p.calls.writes() == 0 && p.syncStatusWrites == 0),
			t(fmt.Sprintf("%s: rate limit kept (≤ %d calls in any %s, no 429)", name, sr.rateLimit, sr.rateWindow), fmt.Sprintf("at most %d, %d 429s", p.calls.maxInWindow, p.calls.throttled),
				p.calls.maxInWindow <= sr.rateLimit && p.calls.throttled == 0))
		if n >= targetScale {
			out = append(out,
				t(name+": operator CPU ≤ 3 s", fmt.Sprintf("%.2f s", p.cpu), p.cpu <= targetPassCPU),
				t(name+": peak RSS within the 256Mi limit", mib(p.peakRSS), p.peakRSS <= targetRSS))
		}
	}
	if len(v.writes) > 0 {
		most, slowest, applied := 0, time.Duration(0), 0
		for _, m := range v.writes {
			most, slowest = max(most, m.readsBetween), max(slowest, m.delay)
			if m.applied {
				applied++
			}
		}
		out = append(out,
			t(fmt.Sprintf("mid-pass write: ≤ %d batch/read calls before its batch/update", targetMidPassReads),
				fmt.Sprintf("at most %d over %s (the slowest sent %s after the acceptance)", most, plural(len(v.writes), "write"), secs(slowest)),
				most <= targetMidPassReads),
			t("mid-pass write: applied at the vendor", fmt.Sprintf("%d of %d", applied, len(v.writes)), applied == len(v.writes)),
			t(fmt.Sprintf("mid-pass writes: rate limit kept (≤ %d calls in any %s, no 429)", sr.rateLimit, sr.rateWindow),
				fmt.Sprintf("at most %d, %d 429s", v.midCalls.maxInWindow, v.midCalls.throttled),
				v.midCalls.maxInWindow <= sr.rateLimit && v.midCalls.throttled == 0))
	}
	return out
}

type target struct {
	name, point, figure string
	ok                  bool
}

func targets(sr *scenarioRun) []target {
	var out []target
	add := func(r *result, name, figure string, ok bool) {
		out = append(out, target{name: name, point: pointLabel(r.point), figure: figure, ok: ok})
	}
	for _, r := range sr.results {
		n := r.point.total()
		bound := ceilDiv(n, 100)
		add(r, "vendor write calls = ⌈N/100⌉ (all creates)", fmt.Sprintf("%s (%s, %s) for ⌈N/100⌉ = %s",
			plural(r.calls.writes(), "call"), plural(r.calls.creates, "create"), plural(r.calls.updates+r.calls.upserts, "update"), thousands(bound)),
			r.converged && r.calls.writes() <= bound && r.vendorUsers == n)
		if sr.name == scenarioRateLim && n >= targetScale {
			add(r, "operator peak RSS ≤ 256 MiB during a backlog", mib(r.peakRSS), r.peakRSS <= targetRSS)
		}
		if sr.backlog && r.killedAt == 0 {
			add(r, "at most one status write per UserSync whose users synced in one loop", fmt.Sprintf("%.0f status writes for %d UserSyncs, %.0f of them split between two loops by a yield",
				r.api.statusWrites, r.point.syncs, r.yields), r.converged && r.api.statusWrites <= float64(r.point.syncs)+r.yields)
		}
		if r.killedAt > 0 {
			add(r, "SIGKILL mid-backlog: every user at the vendor exactly once",
				fmt.Sprintf("killed after %s, started again: %s users at the vendor for N = %s", plural(r.killedAt, "write call"),
					thousands(r.vendorUsers), thousands(n)), r.converged && r.vendorUsers == n)
		}
		if sr.name == scenarioPoints && n >= targetScale {
			fig := secs(r.convergeTime)
			if !r.converged {
				fig = "did not converge: " + r.failure
			}
			add(r, "all Ready ≤ 60 s", fig, r.converged && r.convergeTime <= targetReady)
			add(r, "operator peak RSS ≤ 256 MiB", mib(r.peakRSS), r.peakRSS <= targetRSS)
		}
		if s := r.steady; s != nil {
			add(r, "steady state: 0 vendor writes", fmt.Sprintf("%d over %d loops", s.calls.writes(), s.loops), s.calls.writes() == 0)
			add(r, "steady state: no status write", fmt.Sprintf("%d UserSync, %d provider over %d loops", s.syncStatusWrites, s.providerStatusWrites, s.loops),
				s.syncStatusWrites == 0 && s.providerStatusWrites == 0)
			if n >= targetScale {
				add(r, "steady state: ≤ 60 ms CPU per resync loop", fmt.Sprintf("%.0f ms", s.cpuPerLoop*1000), s.cpuPerLoop <= targetCPUPerLoop)
			}
		} else if sr.name == scenarioPoints && n >= targetScale {
			add(r, "steady state measured", "not measured", false)
		}
		if v := r.verify; v != nil {
			out = append(out, verifyTargets(sr, r, v)...)
		}
		if sr.name == scenarioRateLim {
			bound := rateBound(sr, r)
			add(r, "all Ready within 5% of the rate-limit bound", fmt.Sprintf("%s for a bound of %s", secs(r.convergeTime), secs(bound)),
				r.converged && r.convergeTime.Seconds() <= bound.Seconds()*(1+targetRateSlack))
			add(r, "no 429", fmt.Sprintf("%d", r.calls.throttled), r.calls.throttled == 0)
		}
	}
	return out
}

func markers(name string) (string, string) {
	return "<!-- bench:" + name + ":begin (generated by go run ./hack/bench -out; edits inside are overwritten) -->",
		"<!-- bench:" + name + ":end -->"
}

// refreshDoc writes a scenario's block into a markdown file: it replaces the
// block between the scenario's markers, appends it when the file has none,
// and creates the file when it does not exist.
func refreshDoc(path, name, md string) error {
	begin, end := markers(name)
	block := begin + "\n" + md + end + "\n"
	old, err := os.ReadFile(path)
	switch {
	case os.IsNotExist(err):
		return os.WriteFile(path, []byte("# Benchmarks\n\nScale figures of the operator, produced by `hack/bench`.\n\n"+block), 0o644)
	case err != nil:
		return err
	}
	s := string(old)
	i := strings.Index(s, begin)
	j := strings.Index(s, end)
	if i < 0 || j < i {
		if !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		return os.WriteFile(path, []byte(s+"\n"+block), 0o644)
	}
	j += len(end)
	if j < len(s) && s[j] == '\n' {
		j++
	}
	return os.WriteFile(path, []byte(s[:i]+block+s[j:]), 0o644)
}
