package providers

import (
	"fmt"
	"sort"
)

// Registry maps a provider's spec.type to its Factory. The manager builds one
// and hands it to the reconciler as a field; there is no global registry, so
// tests can register fakes.
type Registry struct {
	factories map[string]Factory
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry { return &Registry{factories: map[string]Factory{}} }

// Register adds the Factory for a spec.type; registering a type twice panics,
// as it is a programming error.
func (r *Registry) Register(typ string, f Factory) {
	if _, dup := r.factories[typ]; dup {
		panic(fmt.Sprintf("provider type %q registered twice", typ))
	}
	r.factories[typ] = f
}

// Get returns the Factory for a spec.type.
func (r *Registry) Get(typ string) (Factory, bool) {
	f, ok := r.factories[typ]
	return f, ok
}

// Types lists the registered types, sorted.
func (r *Registry) Types() []string {
	out := make([]string, 0, len(r.factories))
	for t := range r.factories {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}
