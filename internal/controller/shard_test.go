package controller

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
)

var _ = Describe("Sharding by provider selector", func() {
	It("leaves a provider of another shard alone, and reports a missing one", func() {
		ns := newNamespace(nil)
		p := &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p", Labels: map[string]string{"shard": "a"}},
			Spec: usersv1.ProviderSpec{Type: usersv1.ProviderHubSpot, CredentialsRef: usersv1.SecretKeyReference{Name: "s", Key: "token"}}}
		Expect(k8s.Create(ctx, p)).To(Succeed())
		key := providerKey{Kind: usersv1.KindUserProvider, Namespace: ns, Name: "p"}
		missing := providerKey{Kind: usersv1.KindUserProvider, Namespace: ns, Name: "nope"}
		for _, tc := range []struct {
			selector      string
			owns, missing bool
		}{
			{"", true, true},
			{"shard=a", true, true},
			{"shard=b", false, true},
			{"shard in (b,c)", false, true},
		} {
			sel, err := labels.Parse(tc.selector)
			Expect(err).NotTo(HaveOccurred())
			r := &ProviderReconciler{APIReader: k8s, ProviderSelector: sel}
			owns, err := r.ownsMissing(ctx, key)
			Expect(err).NotTo(HaveOccurred())
			Expect(owns).To(Equal(tc.owns), tc.selector)
			owns, err = r.ownsMissing(ctx, missing)
			Expect(err).NotTo(HaveOccurred())
			Expect(owns).To(Equal(tc.missing), tc.selector)
		}
	})
})
