package app

import (
	"runtime/debug"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// TestStripUnread: the cache keeps what the engine reads (the approval
// annotation, labels) and drops managedFields and kubectl's copy of the
// object.
func TestStripUnread(t *testing.T) {
	us := &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{
		Labels: map[string]string{"team": "a"},
		Annotations: map[string]string{
			corev1.LastAppliedConfigAnnotation: `{"spec":{"users":[…500 users…]}}`,
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

// TestSpecInterner: versions of one generation share the spec; a new
// generation or another UserSync gets its own.
func TestSpecInterner(t *testing.T) {
	mk := func(uid string, gen int64, key string) *usersv1.UserSync {
		return &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), Generation: gen},
			Spec: usersv1.UserSyncSpec{Users: []usersv1.User{{Key: key}}}}
	}
	var s specInterner
	v1 := mk("a", 1, "alice")
	s.intern(v1)
	v2 := mk("a", 1, "alice") // a status write: a new decode of the same spec
	s.intern(v2)
	if &v2.Spec.Users[0] != &v1.Spec.Users[0] {
		t.Error("two versions of one generation hold two specs")
	}
	v3 := mk("a", 2, "bob")
	s.intern(v3)
	if v3.Spec.Users[0].Key != "bob" {
		t.Error("a new generation got the old spec")
	}
	other := mk("b", 2, "carol")
	s.intern(other)
	if other.Spec.Users[0].Key != "carol" {
		t.Error("another UserSync got a spec not its own")
	}
	s.forget("a")
	v4 := mk("a", 2, "bob")
	s.intern(v4)
	if &v4.Spec.Users[0] == &v3.Spec.Users[0] {
		t.Error("a forgotten UserSync's spec was kept")
	}
}

func TestSetMemoryLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	cases := []struct {
		env, gomemlimit string
		want            int64
		err             bool
	}{
		{env: "", want: 0},
		{env: "268435456", want: 268435456 / 100 * 85},
		{env: "256Mi", want: 268435456 / 100 * 85},
		{env: "1Gi", gomemlimit: "900MiB", want: 0}, // GOMEMLIMIT wins
		{env: "lots", err: true},
		{env: "0", err: true},
	}
	for _, tc := range cases {
		t.Setenv(MemoryLimitEnv, tc.env)
		t.Setenv("GOMEMLIMIT", tc.gomemlimit)
		got, err := SetMemoryLimit()
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%s=%q GOMEMLIMIT=%q: got %d, %v; want %d (error %v)", MemoryLimitEnv, tc.env, tc.gomemlimit, got, err, tc.want, tc.err)
		}
		if tc.want > 0 && debug.SetMemoryLimit(-1) != tc.want {
			t.Errorf("%s=%q: the runtime's limit is not %d", MemoryLimitEnv, tc.env, tc.want)
		}
	}
}

// TestGCCPUMetric: the operator's metrics say how much CPU the garbage
// collector took (controller-runtime's Go collector exports the runtime's
// CPU classes), which is what a memory limit close to the live heap costs;
// make bench reads it.
func TestGCCPUMetric(t *testing.T) {
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"go_cpu_classes_gc_total_cpu_seconds_total": false, "go_cpu_classes_gc_mark_idle_cpu_seconds_total": false,
		"go_goroutines": false, "go_memstats_heap_alloc_bytes": false}
	for _, f := range families {
		if _, ok := want[f.GetName()]; ok {
			want[f.GetName()] = true
		}
	}
	for name, found := range want {
		if !found {
			t.Errorf("no metric %s", name)
		}
	}
}
