package app

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// TestStripUnread: the cache keeps what the engine reads (the approval
// annotation, labels) and drops managedFields and kubectl's copy of the
// object.
func TestStripUnread(t *testing.T) {
	us := &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{
		Labels: map[string]string{"team": "a"},
		Annotations: map[string]string{
			corev1.LastAppliedConfigAnnotation:  `{"spec":{"users":[…500 users…]}}`,
			usersv1.AnnotationApproveDeletions: "abc123",
		},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
	}}
	out, err := stripUnread(us)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*usersv1.UserSync)
	if len(got.ManagedFields) != 0 {
		t.Error("managedFields kept")
	}
	if _, ok := got.Annotations[corev1.LastAppliedConfigAnnotation]; ok {
		t.Error("last-applied-configuration kept")
	}
	if got.Annotations[usersv1.AnnotationApproveDeletions] != "abc123" || got.Labels["team"] != "a" {
		t.Errorf("dropped what the engine reads: %v %v", got.Annotations, got.Labels)
	}
	// Objects without annotations, and other types, pass through.
	if _, err := stripUnread(&corev1.Secret{}); err != nil {
		t.Fatal(err)
	}
}
