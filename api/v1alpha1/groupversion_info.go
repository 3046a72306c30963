// Package v1alpha1 contains the API of usersync-operator: UserSync,
// UserProvider and ClusterUserProvider in the group users.usersync.io.
// +kubebuilder:object:generate=true
// +groupName=users.usersync.io
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "users.usersync.io", Version: "v1alpha1"}

	// SchemeBuilder registers the types of this API with a scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds the types of this API to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme

	// objectTypes are the root types of this API; the file of each type
	// appends it in its init.
	objectTypes []runtime.Object
)

// addKnownTypes registers objectTypes, and the meta types (ListOptions and
// the like) every group version has, under GroupVersion.
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, objectTypes...)
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
