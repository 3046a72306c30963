package main

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	scimemu "github.com/usersync/usersync-operator/internal/providers/scim/emulator"
)

// The scim scenario (issue 16): 10,000 users (20 UserSyncs × 500) created
// on the SCIM emulator's full profile (Bulk: 100 operations, 1 MiB; PATCH,
// ETag, filters), then one attribute of every user changed, twice: with
// spec.scim.bulk Auto (POST /Bulk) and Never (one call per user, four in
// flight), the same server otherwise. Each run has its own namespace,
// emulator and operator process. The emulator adds -latency to every call;
// the provider's rate limit is 10,000 requests a second, so the figures are
// the operator's and the protocol's, not a vendor budget's. The users'
// attributes (team, seat, admin) go to a custom extension schema
// (spec.scim.extensionSchema).
const (
	scenarioSCIM   = "scim"
	scimPoint      = "20x500"
	scimToken      = "scim-bench"
	scimExtension  = "urn:example:params:scim:schemas:extension:bench:2.0:User"
	scimUpdateAttr = "team"
)

// scimPhase is what one phase (creates, or updates) of a run measured.
type scimPhase struct {
	converged bool
	took      time.Duration
	calls     map[string]int // by emulator endpoint
	total     int
	cpu       float64 // operator CPU seconds
}

// scimResult is one run: bulk on or off.
type scimResult struct {
	bulk            bool
	create, update  scimPhase
	users           int // at the server after the creates
	duplicates      int // users beyond the declared ones
	failure         string
	profileOps      int
	profilePayload  int
	latency         time.Duration
	providerRequest int
}

// runSCIM runs the scim scenario and returns its markdown.
func runSCIM(ctx context.Context, cfg *config, cp *controlPlane, binary, work string, env envInfo) (string, error) {
	pts, err := singlePoint(cfg, scimPoint)
	if err != nil {
		return "", err
	}
	sr := &scenarioRun{name: scenarioSCIM, points: pts}
	sr.begin(env)
	var results []*scimResult
	for _, bulk := range []bool{true, false} {
		b := &bench{cfg: cfg, cp: cp, binary: binary, work: work, scenario: sr, point: pts[0]}
		r, err := b.runSCIM(ctx, bulk)
		if err != nil {
			return "", err
		}
		results = append(results, r)
	}
	sr.finished = time.Now()
	return renderSCIM(cfg, sr, results), nil
}

// runSCIM measures one run.
func (b *bench) runSCIM(ctx context.Context, bulk bool) (*scimResult, error) {
	c, p := b.cp.client, b.point
	res := &scimResult{bulk: bulk, latency: b.cfg.latency, profileOps: scimemu.Full.MaxOperations,
		profilePayload: scimemu.Full.MaxPayloadSize, providerRequest: 10000}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: fmt.Sprintf("bench-scim-bulk-%t-", bulk)}}
	if err := c.Create(ctx, ns); err != nil {
		return nil, err
	}
	em := scimemu.New(scimemu.Options{Profile: scimemu.Full, Tokens: []string{scimToken}, Latency: b.cfg.latency})
	em.Start()
	defer em.Close()
	mode := "Auto"
	if !bulk {
		mode = "Never"
	}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: secretName},
		Data: map[string][]byte{"token": []byte(scimToken)}}); err != nil {
		return nil, err
	}
	if err := c.Create(ctx, &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: providerName},
		Spec: usersv1.ProviderSpec{Type: usersv1.ProviderSCIM, Endpoint: em.URL(), AllowInsecureHTTP: true,
			CredentialsRef: usersv1.SecretKeyReference{Name: secretName, Key: "token"},
			RateLimit:      &usersv1.RateLimit{Requests: int32(res.providerRequest), Period: metav1.Duration{Duration: time.Second}},
			DriftDetection: &usersv1.DriftDetection{Interval: &metav1.Duration{}},
			SCIM:           &usersv1.SCIMOptions{Bulk: mode, ExtensionSchema: scimExtension}}}); err != nil {
		return nil, err
	}
	op, err := startOperator(b.cfg, b.binary, b.cp.kubeconfig, b.work, ns.Name, "", "")
	if err != nil {
		return nil, err
	}
	defer op.stop()
	if err := b.waitOperatorReady(ctx, op, ns.Name, metav1.ConditionTrue); err != nil {
		return nil, err
	}
	tables, err := newTableReader(b.cp.cfg)
	if err != nil {
		return nil, err
	}

	b.progress("bulk %s: creating %d UserSyncs × %d users (%d users)", mode, p.syncs, p.users, p.total())
	objs := userSyncs(ns.Name, p)
	var created atomic.Int64
	create := func() error { return createAll(ctx, c, objs, b.cfg.createWorkers, &created) }
	if res.create, err = b.scimPhase(ctx, op, em, tables, ns.Name, create); err != nil {
		return nil, err
	}
	res.users = len(em.Users())
	res.duplicates = res.users - p.total()
	if !res.create.converged {
		res.failure = "the creates did not converge"
		return res, nil
	}

	b.progress("bulk %s: changing %q of every user", mode, scimUpdateAttr)
	update := func() error { return changeEveryUser(ctx, c, ns.Name) }
	if res.update, err = b.scimPhase(ctx, op, em, tables, ns.Name, update); err != nil {
		return nil, err
	}
	if !res.update.converged {
		res.failure = "the updates did not converge"
	}
	op.stop()
	if err := cleanup(ctx, c, ns.Name); err != nil {
		b.progress("cleaning up: %v", err)
	}
	return res, nil
}

// scimPhase starts a phase with start and measures it until every
// UserSync is Ready for its generation.
func (b *bench) scimPhase(ctx context.Context, op *operator, em *scimemu.Emulator, tables *tableReader, ns string, start func() error) (scimPhase, error) {
	var ph scimPhase
	if err := b.waitIdle(ctx, op); err != nil {
		return ph, err
	}
	em.ResetCounters()
	cpu0, err := op.cpuSeconds()
	if err != nil {
		return ph, err
	}
	t0 := time.Now()
	if err := start(); err != nil {
		return ph, err
	}
	deadline := t0.Add(b.cfg.timeout)
	for !ph.converged && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return ph, ctx.Err()
		case <-time.After(b.cfg.poll):
		}
		if err := op.exited(); err != nil {
			return ph, err
		}
		rows, err := tables.list(ctx, ns)
		if err != nil {
			return ph, err
		}
		ready := 0
		for _, r := range rows {
			if r.ready == string(metav1.ConditionTrue) {
				ready++
			}
		}
		if ready == b.point.syncs {
			if _, err := verifyReady(ctx, b.cp.client, ns, b.point.syncs); err == nil {
				ph.converged = true
			}
		}
	}
	ph.took = time.Since(t0)
	if ph.cpu, err = op.cpuSeconds(); err != nil {
		return ph, err
	}
	ph.cpu -= cpu0
	ph.calls = map[string]int{}
	for _, l := range em.Log() {
		ph.calls[l.Endpoint]++
		ph.total++
	}
	b.progress("converged=%t in %s: %d calls %v, operator CPU %.2fs", ph.converged, ph.took.Round(10*time.Millisecond), ph.total, ph.calls, ph.cpu)
	return ph, nil
}

// changeEveryUser changes the team attribute of every user of every
// UserSync of ns.
func changeEveryUser(ctx context.Context, c client.Client, ns string) error {
	var list usersv1.UserSyncList
	if err := c.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return err
	}
	for i := range list.Items {
		us := &list.Items[i]
		for j := range us.Spec.Users {
			us.Spec.Users[j].Attributes[scimUpdateAttr] = usersv1.StringValue("changed")
		}
		if err := c.Update(ctx, us); err != nil {
			return err
		}
	}
	return nil
}

// renderSCIM is the scenario's markdown block.
func renderSCIM(cfg *config, sr *scenarioRun, results []*scimResult) string {
	var sb strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&sb, format+"\n", args...) }
	p := sr.points[0]
	w("### SCIM 2.0: %s users with and without /Bulk", thousands(p.total()))
	w("")
	dirty := ""
	if sr.env.dirty {
		dirty = " with uncommitted changes"
	}
	w("`make bench BENCH_ARGS='-scenario scim -out docs/benchmarks.md'` · %s · commit %s%s · %d cores (%s), %s · %s · load %s",
		sr.env.date.Format("2006-01-02 15:04 UTC"), sr.env.commit, dirty, sr.env.cores, sr.env.cpuModel, sr.env.memory,
		sr.env.goVersion, sr.env.loadAvg)
	w("")
	w("%d UserSyncs × %d users on the SCIM emulator's full profile (Bulk of at most %d operations and %s; PATCH, ETag, filters), "+
		"%s latency a call, provider rate limit %s requests/s; the same server with `spec.scim.bulk: Auto` and `Never`. "+
		"Creates: from creating the UserSyncs to all Ready. Updates: one attribute of every user changed, to all Ready again.",
		p.syncs, p.users, results[0].profileOps, mib(int64(results[0].profilePayload)), cfg.latency, thousands(results[0].providerRequest))
	w("")
	w("| bulk | phase | converged | time | SCIM calls | of which | operator CPU | users at the server |")
	w("|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		mode := "Auto"
		if !r.bulk {
			mode = "Never"
		}
		for _, ph := range []struct {
			name string
			s    scimPhase
		}{{"creates", r.create}, {"updates", r.update}} {
			users := ""
			if ph.name == "creates" {
				users = fmt.Sprintf("%s (%d duplicates)", thousands(r.users), r.duplicates)
			}
			w("| %s | %s | %s | %s | %s | %s | %.2f s | %s |", mode, ph.name, yesNo(ph.s.converged), secs(ph.s.took),
				thousands(ph.s.total), callBreakdown(ph.s.calls), ph.s.cpu, users)
		}
	}
	for _, r := range results {
		if r.failure != "" {
			w("")
			w("Bulk %t: %s.", r.bulk, r.failure)
		}
	}
	return sb.String()
}

// callBreakdown lists the calls by endpoint, most first.
func callBreakdown(calls map[string]int) string {
	var parts []string
	for _, ep := range []string{scimemu.EndpointBulk, scimemu.EndpointCreate, scimemu.EndpointGet, scimemu.EndpointPatch,
		scimemu.EndpointPut, scimemu.EndpointLookup, scimemu.EndpointList, scimemu.EndpointConfig, scimemu.EndpointDelete} {
		if n := calls[ep]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s `%s`", thousands(n), ep))
		}
	}
	return strings.Join(parts, ", ")
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}
