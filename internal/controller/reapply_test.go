package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	propemu "github.com/usersync/usersync-operator/internal/providers/propel/emulator"
	ucemu "github.com/usersync/usersync-operator/internal/providers/usercom/emulator"
)

// A UserSync deleted under Orphan and applied again (a cluster rebuilt from
// Git, a Helm release reinstalled) has lost its status: on every vendor the
// users it made are found again, none is created twice, and each record
// gets back the external id it had. (HubSpot, whose create is not
// idempotent, has its own spec: "adopts the users a lost status created".)
var _ = Describe("A UserSync applied again after its status was lost", func() {
	DescribeTable("finds the users it made, under the ids they had",
		func(start func(ns string) (ref usersv1.ProviderRef, held func() int)) {
			ns := newNamespace(nil)
			pref, held := start(ns)
			apply := func() {
				us := &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "team"},
					Spec: usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{pref}, Users: users(40, "r"),
						DeletionPolicy: usersv1.DeletionPolicyOrphan}}
				Expect(k8s.Create(ctx, us)).To(Succeed())
				Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
			}
			apply()
			ids := map[string]string{}
			for _, r := range getSync(ns, "team").Status.Results {
				Expect(r.ExternalID).NotTo(BeEmpty(), r.Key)
				ids[r.Key] = r.ExternalID
			}
			Expect(ids).To(HaveLen(40))
			Expect(held()).To(Equal(40))

			Expect(k8s.Delete(ctx, getSync(ns, "team"))).To(Succeed())
			Eventually(func() bool {
				return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "team"}, &usersv1.UserSync{}))
			}, 20*time.Second).Should(BeTrue())
			Expect(held()).To(Equal(40), "Orphan leaves the users at the vendor")

			apply()
			Expect(held()).To(Equal(40), "a user was created twice")
			for _, r := range getSync(ns, "team").Status.Results {
				Expect(r.ExternalID).To(Equal(ids[r.Key]), r.Key)
			}
		},
		Entry("Propel: upserts by (source, sourceId)", func(ns string) (usersv1.ProviderRef, func() int) {
			em := propelProvider(ns, propemu.Options{})
			return ref("propel"), func() int { return len(em.Users()) }
		}),
		Entry("user.com: update_or_create by custom_id", func(ns string) (usersv1.ProviderRef, func() int) {
			em := usercomProvider(ns, "usercom", ucemu.Options{Attributes: map[string]string{"team": ucemu.TypeString}}, 50)
			return ref("usercom"), func() int { return len(em.Users()) }
		}),
	)
})
