package controller

import (
	"context"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// writtenVersions remembers the resourceVersion of the last write this
// operator made to each UserSync. The informer cache lags behind writes: a
// loop that starts right after another (a finalizer added, a second
// provider's write) could otherwise plan from a copy without the records the
// previous loop just wrote, and send every user again.
type writtenVersions struct {
	mu sync.Mutex
	rv map[types.UID]string
}

func (w *writtenVersions) record(obj client.Object) {
	if obj.GetResourceVersion() == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rv == nil {
		w.rv = map[types.UID]string{}
	}
	w.rv[obj.GetUID()] = obj.GetResourceVersion()
}

func (w *writtenVersions) get(uid types.UID) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	rv, ok := w.rv[uid]
	return rv, ok
}

func (w *writtenVersions) forget(uid types.UID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.rv, uid)
}

// freshSync returns the cached UserSync when the cache holds this operator's
// last write of it (or nothing was written), and otherwise reads it from the
// API server. Resource versions are opaque, so "the cache caught up" is only
// ever decided by equality: with the write seen, or with the live object.
// It returns nil when the UserSync is gone.
func (r *ProviderReconciler) freshSync(ctx context.Context, cached *usersv1.UserSync) (*usersv1.UserSync, error) {
	want, ok := r.written.get(cached.UID)
	if !ok {
		return cached, nil
	}
	if want == cached.ResourceVersion {
		r.written.forget(cached.UID)
		return cached, nil
	}
	live := &usersv1.UserSync{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(cached), live); err != nil {
		if apierrors.IsNotFound(err) {
			r.written.forget(cached.UID)
			return nil, nil
		}
		return nil, err
	}
	if live.UID != cached.UID {
		return nil, nil // deleted and created again: the cache will bring the new one
	}
	if live.ResourceVersion == cached.ResourceVersion {
		r.written.forget(cached.UID)
	}
	return live, nil
}
