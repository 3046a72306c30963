package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

// Bad input the API server cannot refuse is reported in a condition with a
// specific reason, and never stops the valid UserSyncs next to it.
var _ = Describe("Bad input the API server accepts", func() {
	It("is reported with a specific reason on the provider or the record while a valid UserSync keeps syncing", func() {
		ns := newNamespace(nil)
		em := hubspotProvider(ns, "good", hsemu.Options{}, nil)

		provider := func(name string, typ usersv1.ProviderType, secret, key string) {
			p := &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: usersv1.ProviderSpec{Type: typ, Endpoint: "https://" + name + ".example.invalid",
					CredentialsRef: usersv1.SecretKeyReference{Name: secret, Key: key}}}
			Expect(k8s.Create(ctx, p)).To(Succeed())
		}
		// A Secret that does not exist; one without the key; one of the
		// wrong shape for Propel (no client id); an empty token.
		provider("no-secret", usersv1.ProviderHubSpot, "missing", "token")
		newSecret(ns, "other-key", "password", "x")
		provider("no-key", usersv1.ProviderHubSpot, "other-key", "token")
		newSecret(ns, "propel-half", "clientSecret", "s3cr3t")
		provider("wrong-shape", usersv1.ProviderPropel, "propel-half", "clientSecret")
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "empty"},
			Data: map[string][]byte{"token": {}}})).To(Succeed())
		provider("empty-token", usersv1.ProviderHubSpot, "empty", "token")

		for _, name := range []string{"no-secret", "no-key", "wrong-shape", "empty-token", "nowhere"} {
			newSync(ns, "uses-"+name, users(2, "b"), ref(name))
		}
		// Attribute names no vendor property can have.
		bad := users(3, "x")
		bad[1].Attributes = map[string]usersv1.AttributeValue{"bad name!": usersv1.StringValue("v")}
		newSync(ns, "valid", append(users(20, "v"), bad...), ref("good"))

		want := map[string]string{
			"no-secret":   "False/" + usersv1.ReasonSecretNotFound,
			"no-key":      "False/" + usersv1.ReasonSecretKeyNotFound,
			"wrong-shape": "False/" + usersv1.ReasonInvalidConfig,
			"empty-token": "False/" + usersv1.ReasonSecretKeyNotFound, // an empty value counts as missing
		}
		for name, w := range want {
			Eventually(providerReady(ns, name), 20*time.Second).Should(Equal(w), name)
		}
		Eventually(readyStatus(ns, "uses-nowhere"), 20*time.Second).Should(Equal("False/" + usersv1.ReasonProviderNotFound))
		for name := range want {
			Eventually(readyStatus(ns, "uses-"+name), 20*time.Second).Should(Equal("False/"+usersv1.ReasonProviderNotReady), name)
		}

		Eventually(func() usersv1.Summary { return getSync(ns, "valid").Status.Summary }, 20*time.Second).
			Should(Equal(usersv1.Summary{Desired: 23, Synced: 22, Failed: 1}))
		r := resultOf(getSync(ns, "valid"), "UserProvider/good", "x1")
		Expect(r.Reason).To(Equal("InvalidSpec"))
		Expect(r.Message).To(ContainSubstring("bad name!"))
		Expect(em.Users()).To(HaveLen(22))
	})
})
