package controller

import (
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// providerKey identifies the provider a sync loop serves. The reconcile
// request of a UserProvider carries its namespace; a ClusterUserProvider's
// request has none, so the two kinds never share a key.
type providerKey struct {
	Kind      usersv1.ProviderKind
	Namespace string
	Name      string
}

func keyFromRequest(req reconcile.Request) providerKey {
	if req.Namespace == "" {
		return providerKey{Kind: usersv1.KindClusterUserProvider, Name: req.Name}
	}
	return providerKey{Kind: usersv1.KindUserProvider, Namespace: req.Namespace, Name: req.Name}
}

func (k providerKey) request() reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Namespace: k.Namespace, Name: k.Name}}
}

// index is the value of the UserSync field index: "UserProvider/<ns>/<name>"
// or "ClusterUserProvider/<name>".
func (k providerKey) index() string {
	if k.Kind == usersv1.KindClusterUserProvider {
		return string(k.Kind) + "/" + k.Name
	}
	return string(k.Kind) + "/" + k.Namespace + "/" + k.Name
}

// ref is the form used in a UserSync's status: "<kind>/<name>".
func (k providerKey) ref() string { return string(k.Kind) + "/" + k.Name }

// keyForRef returns the key of a provider a UserSync of namespace ns names.
// A UserProvider is always looked up in the UserSync's own namespace: a
// UserSync cannot name another namespace's provider.
func keyForRef(ns string, ref usersv1.ProviderRef) providerKey {
	if ref.Kind == usersv1.KindClusterUserProvider {
		return providerKey{Kind: ref.Kind, Name: ref.Name}
	}
	return providerKey{Kind: usersv1.KindUserProvider, Namespace: ns, Name: ref.Name}
}

// keyForStatusRef parses the "<kind>/<name>" of a UserSync's status.
func keyForStatusRef(ns, s string) (providerKey, bool) {
	kind, name, ok := strings.Cut(s, "/")
	if !ok || name == "" {
		return providerKey{}, false
	}
	switch usersv1.ProviderKind(kind) {
	case usersv1.KindUserProvider, usersv1.KindClusterUserProvider:
		return keyForRef(ns, usersv1.ProviderRef{Kind: usersv1.ProviderKind(kind), Name: name}), true
	}
	return providerKey{}, false
}

// providerKeysOf lists the providers a UserSync concerns: those its spec
// names, and those its status still holds records of (a provider removed from
// providerRefs must still delete or forget them).
func providerKeysOf(us *usersv1.UserSync) []providerKey {
	seen := map[providerKey]struct{}{}
	var out []providerKey
	add := func(k providerKey) {
		if _, dup := seen[k]; !dup {
			seen[k] = struct{}{}
			out = append(out, k)
		}
	}
	for _, ref := range us.Spec.ProviderRefs {
		add(keyForRef(us.Namespace, ref))
	}
	for _, p := range us.Status.Providers {
		if k, ok := keyForStatusRef(us.Namespace, p.Provider); ok {
			add(k)
		}
	}
	for i := range us.Status.Results {
		if k, ok := keyForStatusRef(us.Namespace, us.Status.Results[i].Provider); ok {
			add(k)
		}
	}
	return out
}

// Field index names.
const (
	// indexSyncProvider indexes UserSyncs by providerKey.index().
	indexSyncProvider = "usersync.providerKeys"
	// indexProviderSecret indexes providers by "<namespace>/<name>" of their Secret.
	indexProviderSecret = "provider.secret"
)

func indexSyncProviders(obj client.Object) []string {
	us, ok := obj.(*usersv1.UserSync)
	if !ok {
		return nil
	}
	keys := providerKeysOf(us)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.index()
	}
	return out
}

func indexProviderSecrets(obj client.Object) []string {
	switch p := obj.(type) {
	case *usersv1.UserProvider:
		return []string{p.Namespace + "/" + p.Spec.CredentialsRef.Name}
	case *usersv1.ClusterUserProvider:
		return []string{p.Spec.CredentialsRef.Namespace + "/" + p.Spec.CredentialsRef.Name}
	}
	return nil
}
