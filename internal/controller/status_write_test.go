package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

// replaceStatus PUTs a bare object (name, namespace, resourceVersion,
// status) to the status subresource: these specs hold the API server to
// what that relies on.
var _ = Describe("A UserSync status write", func() {
	var (
		ns string
		r  *ProviderReconciler
	)
	BeforeEach(func() {
		ns = newNamespace(nil)
		hc, err := rest.HTTPClientFor(cfg)
		Expect(err).NotTo(HaveOccurred())
		rc, err := newStatusREST(cfg, hc)
		Expect(err).NotTo(HaveOccurred())
		// No provider names this UserSync: the engine leaves it alone.
		r = &ProviderReconciler{statusREST: rc}
	})

	status := func(key string) *usersv1.UserSyncStatus {
		t := metav1.NewTime(time.Now().Truncate(time.Second))
		return &usersv1.UserSyncStatus{ObservedGeneration: 1,
			Summary: usersv1.Summary{Desired: 1, Synced: 1},
			Results: []usersv1.RecordResult{{Provider: "UserProvider/nobody", Key: key, ExternalID: "7",
				State: usersv1.StateSynced, Action: "Created", LastSyncTime: &t, Hash: "0123456789abcdef"}}}
	}

	It("replaces the status alone, under optimistic locking, and answers with the new resourceVersion", func() {
		us := &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bare",
			Labels: map[string]string{"team": "a"}, Annotations: map[string]string{"note": "kept"},
			Finalizers: []string{"example.com/kept"}},
			Spec: usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{ref("nobody")},
				Users: []usersv1.User{{Key: "ana", Email: "ana@example.com"}}}}
		Expect(k8s.Create(ctx, us)).To(Succeed())
		DeferCleanup(func() {
			updateSync(ns, "bare", func(u *usersv1.UserSync) { u.Finalizers = nil })
		})
		// The engine writes this UserSync too (its provider does not
		// exist): a write of its own in between is a conflict, so try
		// until one lands with nothing else between the read and the check.
		var before *usersv1.UserSync
		Eventually(func(g Gomega) {
			before = getSync(ns, "bare")
			rv, err := r.replaceStatus(ctx, before, status("ana"))
			g.Expect(err).NotTo(HaveOccurred())
			after := getSync(ns, "bare")
			g.Expect(after.ResourceVersion).To(Equal(rv))
			g.Expect(rv).NotTo(Equal(before.ResourceVersion))
			g.Expect(after.Status.Results).To(HaveLen(1))
			g.Expect(after.Status.Results[0].Key).To(Equal("ana"))
			g.Expect(after.Status.Summary.Synced).To(BeEquivalentTo(1))
			// Everything but the status is as it was.
			g.Expect(after.Spec).To(Equal(before.Spec))
			g.Expect(after.Labels).To(Equal(before.Labels))
			g.Expect(after.Annotations).To(Equal(before.Annotations))
			g.Expect(after.Finalizers).To(Equal(before.Finalizers))
			g.Expect(after.Generation).To(Equal(before.Generation))
			g.Expect(after.UID).To(Equal(before.UID))
		}).Should(Succeed())
		after := getSync(ns, "bare")

		// A write based on what was read before is refused: another
		// provider's loop wrote in between.
		_, err := r.replaceStatus(ctx, before, status("bea"))
		Expect(apierrors.IsConflict(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(ContainSubstring("the object has been modified"), "the API server's message is kept")
		Expect(resultOf(getSync(ns, "bare"), "UserProvider/nobody", "bea")).To(BeNil())

		// A spec change in between is a conflict too.
		updateSync(ns, "bare", func(u *usersv1.UserSync) { u.Spec.Users[0].FirstName = "Ana" })
		_, err = r.replaceStatus(ctx, after, status("bea"))
		Expect(apierrors.IsConflict(err)).To(BeTrue(), "got %v", err)
		Expect(getSync(ns, "bare").Spec.Users[0].FirstName).To(Equal("Ana"))
		Expect(resultOf(getSync(ns, "bare"), "UserProvider/nobody", "bea")).To(BeNil())
	})

	It("reports a deleted UserSync as not found", func() {
		us := newSync(ns, "gone", []usersv1.User{{Key: "ana", Email: "ana@example.com"}}, ref("nobody"))
		cur := getSync(ns, us.Name)
		Expect(k8s.Delete(ctx, cur)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(cur), &usersv1.UserSync{}))
		}).Should(BeTrue())
		_, err := r.replaceStatus(ctx, cur, status("ana"))
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "got %v", err)
	})

})
