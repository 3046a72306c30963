package app

import (
	"context"
	"sync"

	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// specInterner lets the versions of a UserSync that differ only in their
// status (every status write brings a new version through the watch) share
// one decoded spec. A UserSync's generation changes with its spec and only
// then, so two versions of one generation have the same spec. Without it,
// the cache and the sync loop, which holds the versions it planned from
// while the next ones arrive, kept two or three copies of every 500-user
// spec at once.
type specInterner struct {
	mu    sync.Mutex
	specs map[types.UID]internedSpec
}

type internedSpec struct {
	generation int64
	spec       usersv1.UserSyncSpec
}

// intern gives us the spec already held for its UID and generation, or
// holds its own.
func (s *specInterner) intern(us *usersv1.UserSync) {
	if us.UID == "" || us.Generation == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.specs[us.UID]; ok && e.generation == us.Generation {
		us.Spec = e.spec
		return
	}
	if s.specs == nil {
		s.specs = map[types.UID]internedSpec{}
	}
	compactSpec(&us.Spec)
	s.specs[us.UID] = internedSpec{generation: us.Generation, spec: us.Spec}
}

func (s *specInterner) forget(uid types.UID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.specs, uid)
}

// forgetDeleted drops the spec of every UserSync the cache sees deleted.
func (s *specInterner) forgetDeleted(ctx context.Context, c cache.Cache) error {
	inf, err := c.GetInformer(ctx, &usersv1.UserSync{})
	if err != nil {
		return err
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if us, ok := obj.(*usersv1.UserSync); ok {
			s.forget(us.UID)
		}
	}})
	return err
}

// specs is the process's interner: one manager, one cache.
var specs specInterner
