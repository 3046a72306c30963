package controller

import (
	"context"
	"fmt"
	"net/http"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// SetupWithManager registers the field indexes and the watches of the sync
// engine: both provider kinds (the keys), the UserSyncs naming them, the
// metadata of their Secrets, and Namespaces (for namespaceSelector).
func (r *ProviderReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, workers int) error {
	rc, err := newStatusREST(mgr.GetConfig(), mgr.GetHTTPClient())
	if err != nil {
		return err
	}
	r.statusREST = rc
	idx := mgr.GetFieldIndexer()
	if err := idx.IndexField(ctx, &usersv1.UserSync{}, indexSyncProvider, indexSyncProviders); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &usersv1.UserProvider{}, indexProviderSecret, indexProviderSecrets); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &usersv1.ClusterUserProvider{}, indexProviderSecret, indexProviderSecrets); err != nil {
		return err
	}
	// Status writes of this engine must not wake it again: only spec,
	// deletion and finalizer changes matter.
	specOrDeletion := predicate.Or(predicate.GenerationChangedPredicate{}, deletionChanged())
	return ctrl.NewControllerManagedBy(mgr).
		Named("provider-sync").
		WithOptions(controller.Options{MaxConcurrentReconciles: workers, NewQueue: r.newQueue(mgr.GetLogger())}).
		Watches(&usersv1.UserProvider{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(specOrDeletion)).
		Watches(&usersv1.ClusterUserProvider{}, &handler.EnqueueRequestForObject{}, builder.WithPredicates(specOrDeletion)).
		// An annotation may approve a held mass deletion.
		Watches(&usersv1.UserSync{}, handler.EnqueueRequestsFromMapFunc(r.mapSyncToProviders),
			builder.WithPredicates(predicate.Or(specOrDeletion, predicate.AnnotationChangedPredicate{}))).
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.mapSecretToProviders)).
		WatchesMetadata(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.mapNamespaceToProviders),
			builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Complete(r)
}

// newStatusREST makes the REST client that replaceStatus writes UserSync
// statuses through: client-go's metadata client configuration (its
// serializer decodes the PartialObjectMetadata answers and the API
// server's error Status alike) on the UserSync's group version, sharing
// the manager's HTTP client (its connections and credentials).
func newStatusREST(cfg *rest.Config, hc *http.Client) (rest.Interface, error) {
	mc := metadata.ConfigFor(cfg)
	gv := usersv1.GroupVersion
	mc.GroupVersion, mc.APIPath = &gv, "/apis"
	rc, err := rest.RESTClientForConfigAndClient(mc, hc)
	if err != nil {
		return nil, fmt.Errorf("the UserSync status client: %w", err)
	}
	return rc, nil
}

// newQueue makes controller-runtime's default queue (its priority queue)
// and keeps it, so that a loop can tell whether providers wait for a
// worker (yieldAt).
func (r *ProviderReconciler) newQueue(log logr.Logger) func(string, workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request] {
	return func(name string, rl workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request] {
		q := priorityqueue.New(name, func(o *priorityqueue.Opts[reconcile.Request]) {
			o.Log = log.WithValues("controller", name)
			o.RateLimiter = rl
		})
		r.queue.Store(&q)
		return q
	}
}

func deletionChanged() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero() ||
			len(e.ObjectOld.GetFinalizers()) != len(e.ObjectNew.GetFinalizers())
	}}
}

// mapSyncToProviders queues the providers a UserSync names, and marks them
// changed so that a drift detection pass under way yields to the write.
func (r *ProviderReconciler) mapSyncToProviders(_ context.Context, obj client.Object) []reconcile.Request {
	us, ok := obj.(*usersv1.UserSync)
	if !ok {
		return nil
	}
	keys := providerKeysOf(us)
	out := make([]reconcile.Request, len(keys))
	for i, k := range keys {
		r.changed.mark(k)
		out[i] = k.request()
	}
	return out
}

func (r *ProviderReconciler) mapSecretToProviders(ctx context.Context, obj client.Object) []reconcile.Request {
	key := obj.GetNamespace() + "/" + obj.GetName()
	var out []reconcile.Request
	var ups usersv1.UserProviderList
	if err := r.List(ctx, &ups, client.MatchingFields{indexProviderSecret: key}); err == nil {
		for i := range ups.Items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&ups.Items[i])})
		}
	}
	var cups usersv1.ClusterUserProviderList
	if err := r.List(ctx, &cups, client.MatchingFields{indexProviderSecret: key}); err == nil {
		for i := range cups.Items {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&cups.Items[i])})
		}
	}
	return out
}

// mapNamespaceToProviders wakes the ClusterUserProviders that select
// namespaces by label when a namespace's labels change.
func (r *ProviderReconciler) mapNamespaceToProviders(ctx context.Context, _ client.Object) []reconcile.Request {
	var cups usersv1.ClusterUserProviderList
	if err := r.List(ctx, &cups); err != nil {
		return nil
	}
	var out []reconcile.Request
	for i := range cups.Items {
		if cups.Items[i].Spec.NamespaceSelector != nil {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&cups.Items[i])})
		}
	}
	return out
}
