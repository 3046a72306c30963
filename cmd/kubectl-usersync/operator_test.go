package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/yaml"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/app"
	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

// The operator as main.go runs it (internal/app), in-process, limited to
// one test's namespace, so that its plans can be compared with what it
// does.

const hubspotToken = "pat-plugin-test"

// operatorLog keeps what the operators of the tests logged, for failures.
var operatorLog = &lockedBuffer{}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return s
}

var setLogger sync.Once

// runningOperator is one run of the operator; stop ends it and waits.
type runningOperator struct {
	t      *testing.T
	cancel context.CancelFunc
	done   chan error
}

// startOperator runs the operator with its production options (the
// deletion guard's defaults included), serving namespace ns only.
func startOperator(t *testing.T, ns string) *runningOperator {
	t.Helper()
	setLogger.Do(func() { logf.SetLogger(zap.New(zap.WriteTo(operatorLog), zap.UseDevMode(true))) })
	opts := app.DefaultOptions()
	opts.WatchNamespaces = []string{ns}
	opts.ResyncInterval = 2 * time.Second
	opts.Backoff = planner.Backoff{Base: 200 * time.Millisecond, Max: 2 * time.Second}
	cacheOpts, err := opts.CacheOptions()
	if err != nil {
		t.Fatal(err)
	}
	skip := true
	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{Scheme: app.NewScheme(), Cache: cacheOpts,
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0",
		Controller: config.Controller{SkipNameValidation: &skip}})
	if err != nil {
		t.Fatal(err)
	}
	octx, cancel := context.WithCancel(ctx)
	if err := app.Setup(octx, mgr, opts); err != nil {
		cancel()
		t.Fatal(err)
	}
	o := &runningOperator{t: t, cancel: cancel, done: make(chan error, 1)}
	go func() { o.done <- mgr.Start(octx) }()
	t.Cleanup(o.stop)
	return o
}

func (o *runningOperator) stop() {
	if o.cancel == nil {
		return
	}
	o.cancel()
	if err := <-o.done; err != nil {
		o.t.Errorf("the operator stopped with %v", err)
	}
	o.cancel = nil
}

// hubspotProvider starts a HubSpot emulator (no rate limit of its own) and
// creates UserProvider ns/hs on it with its Secret; mutate edits the spec.
func hubspotProvider(t *testing.T, ns string, eo hsemu.Options, mutate func(*usersv1.ProviderSpec)) *hsemu.Emulator {
	t.Helper()
	eo.Tokens = map[string][]string{hubspotToken: hubspot.DefaultScopes}
	if eo.RateLimit == 0 {
		eo.RateLimit = -1
	}
	em := hsemu.New(eo)
	em.Start()
	t.Cleanup(em.Close)
	if err := k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hs-token"},
		Data: map[string][]byte{"token": []byte(hubspotToken)}}); err != nil {
		t.Fatal(err)
	}
	p := &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hs"},
		Spec: usersv1.ProviderSpec{Type: usersv1.ProviderHubSpot, Endpoint: em.URL(), AllowInsecureHTTP: true,
			CredentialsRef: usersv1.SecretKeyReference{Name: "hs-token", Key: "token"},
			RateLimit:      &usersv1.RateLimit{Requests: 1000, Period: metav1.Duration{Duration: time.Second}}}}
	if mutate != nil {
		mutate(&p.Spec)
	}
	if err := k8s.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	return em
}

// hubspotWrites counts the write calls the emulator received.
func hubspotWrites(em *hsemu.Emulator) int {
	return em.Calls(hsemu.EndpointCreate) + em.Calls(hsemu.EndpointUpdate) +
		em.Calls(hsemu.EndpointUpsert) + em.Calls(hsemu.EndpointArchive)
}

// waitSynced waits until every named UserSync of ns is Ready at its
// current generation.
func waitSynced(t *testing.T, ns string, names ...string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var notYet []string
		for _, name := range names {
			us := &usersv1.UserSync{}
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, us); err != nil {
				t.Fatal(err)
			}
			c := meta.FindStatusCondition(us.Status.Conditions, usersv1.ConditionReady)
			if c == nil || c.Status != metav1.ConditionTrue || us.Status.ObservedGeneration != us.Generation {
				state := "no Ready condition"
				if c != nil {
					state = fmt.Sprintf("Ready=%s/%s %q at generation %d of %d", c.Status, c.Reason, c.Message,
						us.Status.ObservedGeneration, us.Generation)
				}
				notYet = append(notYet, name+": "+state)
			}
		}
		if len(notYet) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not synced after 60s: %s\noperator log:\n%s", strings.Join(notYet, "; "), operatorLog.tail(4000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// manifestOf writes objects as a multi-document YAML manifest.
func manifestOf(t *testing.T, objs ...client.Object) string {
	t.Helper()
	var docs []string
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	return writeFile(t, strings.Join(docs, "---\n"))
}

// planOf runs the plan command's computation on a manifest in namespace ns
// and returns what it printed and its results, one per UserSync and
// provider.
func planOf(t *testing.T, file, ns string) (string, []providerResult, bool) {
	t.Helper()
	var out bytes.Buffer
	o := &options{kube: genericclioptions.NewConfigFlags(true),
		streams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &out}}
	*o.kube.KubeConfig, *o.kube.Namespace = kubeconfig, ns
	defaults := app.DefaultOptions()
	pl, err := newManifestPlanner(ctx, o, planOptions{file: file, guardCount: defaults.DeletionGuardCount,
		guardPercent: defaults.DeletionGuardPercent, guardMin: defaults.DeletionGuardMin})
	if err != nil {
		t.Fatal(err)
	}
	changed, err := pl.planAll(ctx, &out)
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), pl.results, changed
}
