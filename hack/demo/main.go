// Command demo runs usersync-operator locally: a control plane (the envtest
// kube-apiserver and etcd from bin/k8s), the vendor emulators on loopback,
// and the operator; it applies config/samples and prints the UserSyncs'
// status until they converge, then changes two users in the HubSpot
// emulator behind the operator's back and waits for the operator to correct
// them (drift detection), then keeps running until Ctrl-C.
//
// Usage: make demo   (or: go run ./hack/demo -h)
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/app"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
	propemu "github.com/usersync/usersync-operator/internal/providers/propel/emulator"
	scimemu "github.com/usersync/usersync-operator/internal/providers/scim/emulator"
	ucemu "github.com/usersync/usersync-operator/internal/providers/usercom/emulator"
)

func main() {
	var (
		samples     = flag.String("samples", "config/samples", "Directory of manifests to apply.")
		kubeconfig  = flag.String("kubeconfig-out", "bin/demo.kubeconfig", "Where to write a kubeconfig for kubectl.")
		hubspotAddr = flag.String("hubspot-addr", "127.0.0.1:18080", "Address of the HubSpot emulator (the samples point at it).")
		propelAddr  = flag.String("propel-addr", "127.0.0.1:18081", "Address of the Propel emulator (the samples point at it).")
		usercomAddr = flag.String("usercom-addr", "127.0.0.1:18082", "Address of the user.com emulator (the samples point at it).")
		scimAddr    = flag.String("scim-addr", "127.0.0.1:18083", "Address of the SCIM 2.0 emulator, profile full (the samples point at it).")
		latency     = flag.Duration("latency", 20*time.Millisecond, "Latency the emulators add to every request.")
		exitDone    = flag.Bool("exit-when-converged", false, "Exit 0 once every UserSync converged (for CI), instead of waiting for Ctrl-C.")
		timeout     = flag.Duration("timeout", 3*time.Minute, "Give up (exit 1) when not converged by then.")
		driftEvery  = flag.Duration("drift-interval", 10*time.Second, "spec.driftDetection.interval the demo sets on the providers it applies; 0 leaves the samples' (1h) and skips the drift step.")
		driftWait   = flag.Duration("drift-timeout", time.Minute, "Give up (exit 1) when the operator has not corrected the demo's drift by then.")
		verbose     = flag.Bool("v", false, "Show the operator's logs.")
	)
	flag.Parse()
	logOut := io.Discard
	if *verbose {
		logOut = os.Stderr
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(logOut)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, *samples, *kubeconfig, emulatorAddrs{hubspot: *hubspotAddr, propel: *propelAddr, usercom: *usercomAddr, scim: *scimAddr}, *latency, *exitDone, *timeout,
		driftOptions{interval: *driftEvery, timeout: *driftWait})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// emulatorAddrs are the loopback addresses the samples' endpoints name.
type emulatorAddrs struct{ hubspot, propel, usercom, scim string }

// driftOptions set the drift step: the providers' verification interval
// (0: no drift step) and how long the operator has to correct the drift.
type driftOptions struct{ interval, timeout time.Duration }

func run(ctx context.Context, samples, kubeconfig string, addrs emulatorAddrs, latency time.Duration, exitDone bool, timeout time.Duration, drift driftOptions) error {
	start := time.Now()
	// say prints a progress line: what the demo starts doing, and when
	// (seconds since it began).
	say := func(s string) { fmt.Printf("==> [%5.1fs] %s\n", time.Since(start).Seconds(), s) }
	say("starting kube-apiserver and etcd (bin/k8s)")
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{"config/crd/bases"},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane (run 'make envtest' or set KUBEBUILDER_ASSETS): %w", err)
	}
	defer func() {
		say("stopping the control plane")
		_ = env.Stop()
	}()
	user, err := env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("adding the demo user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(kubeconfig), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return err
	}

	say("starting the HubSpot emulator on http://" + addrs.hubspot)
	em := hsemu.New(hsemu.Options{
		Tokens:  map[string][]string{"demo-hubspot-token": hubspot.DefaultScopes},
		Latency: latency,
		// One sample user carries a job title HubSpot refuses, to show how a
		// rejected record reads.
		Reject: func(props map[string]string) (string, string, bool) {
			if strings.Contains(props["hs_job_title"], "<") {
				return "VALIDATION_ERROR", `Property values were not valid: [{"isValid":false,"message":"hs_job_title may not contain markup","name":"hs_job_title"}]`, true
			}
			return "", "", false
		},
	})
	if err := em.StartOn(addrs.hubspot); err != nil {
		return fmt.Errorf("starting the HubSpot emulator: %w", err)
	}
	defer em.Close()

	say("starting the Propel emulator on http://" + addrs.propel)
	pe := propemu.New(propemu.Options{
		Clients: map[string]string{"demo-propel-client": "demo-propel-secret"},
		Latency: latency,
	})
	if err := pe.StartOn(addrs.propel); err != nil {
		return fmt.Errorf("starting the Propel emulator: %w", err)
	}
	defer pe.Close()

	say("starting the user.com emulator on http://" + addrs.usercom)
	ue := ucemu.New(ucemu.Options{
		Tokens:  []string{"demo-usercom-api-key"},
		Latency: latency,
		// The custom attributes the demo app defines.
		Attributes: map[string]string{"plan": ucemu.TypeString, "onCall": ucemu.TypeBoolean, "seat": ucemu.TypeInteger},
	})
	if err := ue.StartOn(addrs.usercom); err != nil {
		return fmt.Errorf("starting the user.com emulator: %w", err)
	}
	defer ue.Close()

	say("starting the SCIM 2.0 emulator (profile full: /Bulk, PATCH, ETag) on http://" + addrs.scim + scimemu.BasePath)
	se := scimemu.New(scimemu.Options{Profile: scimemu.Full, Tokens: []string{"demo-scim-token"}, Latency: latency})
	if err := se.StartOn(addrs.scim); err != nil {
		return fmt.Errorf("starting the SCIM emulator: %w", err)
	}
	defer se.Close()

	say("starting the operator")
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: app.NewScheme(),
		Metrics: metricsserver.Options{BindAddress: "0"}, HealthProbeBindAddress: "0"})
	if err != nil {
		return err
	}
	opts := app.DefaultOptions()
	opts.ResyncInterval = 30 * time.Second
	opts.Backoff.Base = time.Second
	if err := app.Setup(ctx, mgr, opts); err != nil {
		return err
	}
	// The operator stops before the control plane does (the defers run last
	// first): kube-apiserver ends its shutdown only when its clients' watches
	// are gone, and would otherwise hold the demo for its whole timeout.
	mgrCtx, stopMgr := context.WithCancel(ctx)
	mgrErr, mgrDone := make(chan error, 1), make(chan struct{})
	go func() { mgrErr <- mgr.Start(mgrCtx); close(mgrDone) }()
	defer func() {
		say("stopping the operator")
		stopMgr()
		<-mgrDone
	}()

	c, err := client.New(cfg, client.Options{Scheme: app.NewScheme()})
	if err != nil {
		return err
	}
	say("applying " + samples)
	if err := applyDir(ctx, c, samples, drift.interval); err != nil {
		return err
	}
	say("waiting for the UserSyncs to converge (their status every second)")

	deadline := time.After(timeout)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for converged := false; !converged; {
		select {
		case <-ctx.Done():
			return nil
		case err := <-mgrErr:
			return fmt.Errorf("operator stopped: %w", err)
		case <-deadline:
			_ = printTable(ctx, c)
			return fmt.Errorf("the UserSyncs did not converge within %s", timeout)
		case <-tick.C:
		}
		var list usersv1.UserSyncList
		if err := c.List(ctx, &list); err != nil {
			return err
		}
		converged = isConverged(list.Items)
		if err := printTable(ctx, c); err != nil {
			return err
		}
	}
	// Not a say line: make demo-check looks for "==> converged in".
	fmt.Printf("==> converged in %s\n", time.Since(start).Round(100*time.Millisecond))
	if err := printFailures(ctx, c); err != nil {
		return err
	}
	if drift.interval > 0 {
		fmt.Println()
		if err := showDrift(ctx, c, em, say, drift.interval, drift.timeout, mgrErr); err != nil || ctx.Err() != nil {
			return err
		}
	}
	fmt.Printf("\nLook around with:\n  kubectl --kubeconfig %s get usersyncs,userproviders -A\n  kubectl --kubeconfig %s describe usersync platform-team\n", kubeconfig, kubeconfig)
	if exitDone {
		return nil
	}
	fmt.Println("\nThe demo keeps running; press Ctrl-C to stop it.")
	select {
	case <-ctx.Done():
	case err := <-mgrErr:
		return err
	}
	return nil
}

// isConverged is true when every UserSync's status describes its generation
// and no record is pending.
func isConverged(items []usersv1.UserSync) bool {
	if len(items) == 0 {
		return false
	}
	for i := range items {
		us := &items[i]
		s := us.Status.Summary
		if us.Status.ObservedGeneration != us.Generation || s.Desired == 0 || s.Synced+s.Failed != s.Desired {
			return false
		}
	}
	return true
}

func printTable(ctx context.Context, c client.Client) error {
	var list usersv1.UserSyncList
	if err := c.List(ctx, &list); err != nil {
		return err
	}
	sort.Slice(list.Items, func(a, b int) bool { return list.Items[a].Name < list.Items[b].Name })
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintf(w, "\n%s\nNAMESPACE\tNAME\tPROVIDERS\tDESIRED\tSYNCED\tFAILED\tREADY\n", time.Now().Format("15:04:05"))
	for i := range list.Items {
		us := &list.Items[i]
		var provs []string
		for _, r := range us.Spec.ProviderRefs {
			provs = append(provs, r.Name)
		}
		ready := "Unknown"
		if cond := meta.FindStatusCondition(us.Status.Conditions, usersv1.ConditionReady); cond != nil {
			ready = string(cond.Status) + " (" + cond.Reason + ")"
		}
		s := us.Status.Summary
		_, _ = fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", us.Namespace, us.Name, strings.Join(provs, ","), s.Desired, s.Synced, s.Failed, ready)
	}
	return w.Flush()
}

func printFailures(ctx context.Context, c client.Client) error {
	var list usersv1.UserSyncList
	if err := c.List(ctx, &list); err != nil {
		return err
	}
	for i := range list.Items {
		for _, r := range list.Items[i].Status.Results {
			if r.State == usersv1.StateFailed {
				fmt.Printf("\nFailed record: UserSync %s/%s, provider %s, user %s\n  reason:  %s\n  message: %s\n",
					list.Items[i].Namespace, list.Items[i].Name, r.Provider, r.Key, r.Reason, r.Message)
			}
		}
	}
	return nil
}

// applyDir creates every object of every YAML file of dir in namespace
// default (cluster-scoped objects stay cluster-scoped). A non-zero
// driftInterval is set as every provider's spec.driftDetection.interval:
// the samples are also what users apply against real vendors, so they keep
// the default (1h), and the demo alone verifies often enough to show a
// correction within seconds.
func applyDir(ctx context.Context, c client.Client, dir string, driftInterval time.Duration) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
		for {
			doc, err := dec.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			obj := &unstructured.Unstructured{}
			if err := utilyaml.Unmarshal(doc, &obj.Object); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			if gvk := obj.GroupVersionKind(); driftInterval > 0 && gvk.Group == usersv1.GroupVersion.Group &&
				(gvk.Kind == "UserProvider" || gvk.Kind == "ClusterUserProvider") {
				if err := unstructured.SetNestedField(obj.Object, driftInterval.String(), "spec", "driftDetection", "interval"); err != nil {
					return fmt.Errorf("%s: %w", f, err)
				}
			}
			if !strings.HasPrefix(obj.GetKind(), "Cluster") && obj.GetKind() != "Namespace" && obj.GetNamespace() == "" {
				obj.SetNamespace("default")
			}
			if err := c.Create(ctx, obj); err != nil {
				return fmt.Errorf("applying %s %s from %s: %w", obj.GetKind(), obj.GetName(), f, err)
			}
		}
	}
	return nil
}
