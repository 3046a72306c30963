// Package app wires the operator into a controller-runtime manager: the
// scheme, the vendor registry and the sync engine. main.go and the local demo
// share it, so both run the same operator.
package app

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/controller"
	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	"github.com/usersync/usersync-operator/internal/providers/propel"
	"github.com/usersync/usersync-operator/internal/providers/scim"
	"github.com/usersync/usersync-operator/internal/providers/usercom"
)

// NewScheme returns a scheme with the Kubernetes types and this API.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(usersv1.AddToScheme(s))
	return s
}

// NewRegistry maps each spec.type to its vendor package.
func NewRegistry() *providers.Registry {
	reg := providers.NewRegistry()
	reg.Register(string(usersv1.ProviderHubSpot), hubspot.Factory{})
	reg.Register(string(usersv1.ProviderPropel), propel.Factory{})
	reg.Register(string(usersv1.ProviderUserCom), usercom.Factory{})
	reg.Register(string(usersv1.ProviderSCIM), scim.Factory{})
	return reg
}

// Options tune the sync engine.
type Options struct {
	Workers         int
	ResyncInterval  time.Duration
	NotReadyRequeue time.Duration
	Backoff         planner.Backoff
	VendorTimeout   time.Duration
	LoopTimeout     time.Duration
	// DeletionGuardCount and DeletionGuardPercent hold back mass deletions
	// (more than this many, or more than this share of a UserSync's users
	// once more than DeletionGuardMin) until the UserSync approves them; 0
	// disables each.
	DeletionGuardCount   int
	DeletionGuardPercent int
	DeletionGuardMin     int
	// WatchNamespaces limits the operator to UserSyncs, UserProviders and
	// Secrets of these namespaces; empty means all.
	WatchNamespaces []string
	// ProviderSelector is a label selector on UserProviders and
	// ClusterUserProviders: several operator releases can shard a cluster's
	// providers (each provider's UserSyncs follow it).
	ProviderSelector string
}

// DefaultOptions are the production defaults.
func DefaultOptions() Options {
	return Options{
		Workers:         4,
		ResyncInterval:  10 * time.Minute,
		NotReadyRequeue: time.Minute,
		Backoff:         planner.Backoff{Base: 5 * time.Second, Max: 10 * time.Minute},
		VendorTimeout:   30 * time.Second,
		LoopTimeout:     5 * time.Minute,
		// An emptied values file or a deleted UserSync is the usual cause of
		// a mass deletion; editing a small team should not need approval.
		DeletionGuardCount:   100,
		DeletionGuardPercent: 30,
		DeletionGuardMin:     3,
	}
}

// BindFlags registers the options as command-line flags.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.IntVar(&o.Workers, "workers", o.Workers, "Providers synced at the same time.")
	fs.DurationVar(&o.ResyncInterval, "resync-interval", o.ResyncInterval, "How often each provider is synced when nothing changes.")
	fs.DurationVar(&o.NotReadyRequeue, "not-ready-requeue", o.NotReadyRequeue, "How soon a provider whose credentials fail is tried again.")
	fs.DurationVar(&o.Backoff.Base, "retry-base", o.Backoff.Base, "First retry delay of a record after a transient failure; doubles per attempt.")
	fs.DurationVar(&o.Backoff.Max, "retry-max", o.Backoff.Max, "Longest retry delay of a record.")
	fs.DurationVar(&o.VendorTimeout, "vendor-timeout", o.VendorTimeout, "Timeout of one vendor HTTP request.")
	fs.DurationVar(&o.LoopTimeout, "loop-timeout", o.LoopTimeout, "Time budget of the vendor calls of one sync loop.")
	fs.IntVar(&o.DeletionGuardCount, "deletion-guard-count", o.DeletionGuardCount, "Hold back a UserSync's deletions when more than this many would happen at once, until approved with the users.usersync.io/approve-deletions annotation; 0 disables.")
	fs.IntVar(&o.DeletionGuardPercent, "deletion-guard-percent", o.DeletionGuardPercent, "Hold back a UserSync's deletions when more than this share (percent) of its users would go at once (and more than --deletion-guard-min); 0 disables.")
	fs.IntVar(&o.DeletionGuardMin, "deletion-guard-min", o.DeletionGuardMin, "Deletions up to this many are never held by --deletion-guard-percent.")
	fs.Func("watch-namespaces", "Comma-separated namespaces to serve (UserSyncs, UserProviders, Secrets); empty means all.", func(s string) error {
		o.WatchNamespaces = nil
		for _, ns := range strings.Split(s, ",") {
			if ns = strings.TrimSpace(ns); ns != "" {
				o.WatchNamespaces = append(o.WatchNamespaces, ns)
			}
		}
		return nil
	})
	fs.StringVar(&o.ProviderSelector, "provider-selector", o.ProviderSelector, "Label selector of the UserProviders and ClusterUserProviders this operator serves, to shard several releases; empty means all.")
}

// CacheOptions restricts the manager's cache to what the options serve: the
// watched namespaces, and the providers the selector matches.
func (o Options) CacheOptions() (cache.Options, error) {
	c := cache.Options{DefaultTransform: stripUnread}
	if len(o.WatchNamespaces) > 0 {
		c.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range o.WatchNamespaces {
			c.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	if o.ProviderSelector != "" {
		sel, err := labels.Parse(o.ProviderSelector)
		if err != nil {
			return c, fmt.Errorf("--provider-selector: %w", err)
		}
		c.ByObject = map[client.Object]cache.ByObject{
			&usersv1.UserProvider{}:        {Label: sel},
			&usersv1.ClusterUserProvider{}: {Label: sel},
		}
	}
	return c, nil
}

// stripUnread drops from the cached objects what the operator never reads
// and what can be as large as a UserSync's spec: managedFields (every field
// of every user), and the copy of the whole object that a client-side
// kubectl apply keeps in an annotation. The versions of a UserSync share
// one spec per generation (specInterner), and its status is compacted
// (compactStatus).
func stripUnread(in any) (any, error) {
	in, err := cache.TransformStripManagedFields()(in)
	if err != nil {
		return in, err
	}
	if obj, ok := in.(metav1.Object); ok {
		if a := obj.GetAnnotations(); a[corev1.LastAppliedConfigAnnotation] != "" {
			delete(a, corev1.LastAppliedConfigAnnotation)
			obj.SetAnnotations(a)
		}
	}
	if us, ok := in.(*usersv1.UserSync); ok {
		specs.intern(us)
		compactStatus(us)
	}
	return in, nil
}

// yieldAfter is how long a loop's next vendor calls may wait for the
// provider's rate limit before the loop gives its worker to another
// provider (controller/yield.go): longer than the pacing of a per-second
// limit, shorter than a ten-second window.
const yieldAfter = 2 * time.Second

// Setup adds the sync engine to a manager.
func Setup(ctx context.Context, mgr ctrl.Manager, o Options) error {
	r := &controller.ProviderReconciler{
		Client:          mgr.GetClient(),
		APIReader:       mgr.GetAPIReader(),
		Registry:        NewRegistry(),
		Recorder:        mgr.GetEventRecorder("usersync-operator"),
		Clock:           clock.RealClock{},
		ResyncInterval:  o.ResyncInterval,
		NotReadyRequeue: o.NotReadyRequeue,
		Backoff:         o.Backoff,
		VendorTimeout:   o.VendorTimeout,
		LoopTimeout:     o.LoopTimeout,
		YieldAfter:      yieldAfter,
	}
	if o.ProviderSelector != "" {
		sel, err := labels.Parse(o.ProviderSelector)
		if err != nil {
			return fmt.Errorf("--provider-selector: %w", err)
		}
		r.ProviderSelector = sel
	}
	if o.DeletionGuardCount > 0 || o.DeletionGuardPercent > 0 {
		r.DeletionGuard = &planner.DeletionGuard{MaxCount: o.DeletionGuardCount,
			MaxPercent: o.DeletionGuardPercent, MinCount: o.DeletionGuardMin}
	}
	if err := specs.forgetDeleted(ctx, mgr.GetCache()); err != nil {
		return err
	}
	return r.SetupWithManager(ctx, mgr, o.Workers)
}
