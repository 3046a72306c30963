package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	scimemu "github.com/usersync/usersync-operator/internal/providers/scim/emulator"
)

const scimToken = "scim-e2e-token"

// scimProvider starts a SCIM emulator with a profile and a UserProvider of
// type SCIM pointing at it.
func scimProvider(ns string, profile scimemu.Profile, opts *usersv1.SCIMOptions) *scimemu.Emulator {
	em := scimemu.New(scimemu.Options{Profile: profile, Tokens: []string{scimToken}})
	em.Start()
	DeferCleanup(em.Close)
	newSecret(ns, "scim-token", "token", scimToken)
	p := &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "scim"},
		Spec: usersv1.ProviderSpec{Type: usersv1.ProviderSCIM, Endpoint: em.URL(), AllowInsecureHTTP: true, SCIM: opts,
			RateLimit:      &usersv1.RateLimit{Requests: 500, Period: metav1.Duration{Duration: time.Second}},
			CredentialsRef: usersv1.SecretKeyReference{Name: "scim-token", Key: "token"}}}
	Expect(k8s.Create(ctx, p)).To(Succeed())
	return em
}

var _ = Describe("SCIM end to end", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	// SCIM users carry no custom attributes unless an extension schema is
	// set: these users declare only core fields.
	coreUsers := func(n int, prefix string) []usersv1.User {
		us := users(n, prefix)
		for i := range us {
			us[i].Attributes = map[string]usersv1.AttributeValue{"title": usersv1.StringValue("Engineer")}
		}
		return us
	}

	It("creates 250 users in ⌈250/100⌉ = 3 Bulk calls where the server offers /Bulk", func() {
		em := scimProvider(ns, scimemu.Full, nil)
		newSync(ns, "a", coreUsers(250, "s"), ref("scim"))
		newSync(ns, "b", nil, ref("scim"))
		Eventually(readyStatus(ns, "a"), 60*time.Second).Should(Equal("True/Synced"))
		Expect(em.Calls(scimemu.EndpointBulk)).To(Equal(3))
		Expect(em.Calls(scimemu.EndpointCreate)).To(BeZero())
		Expect(em.Users()).To(HaveLen(250))
	})

	It("creates 250 users one POST each where it does not, and deactivates a removed user under Delete", func() {
		em := scimProvider(ns, scimemu.NoBulk, nil)
		newSync(ns, "a", coreUsers(250, "s"), ref("scim"))
		Eventually(readyStatus(ns, "a"), 60*time.Second).Should(Equal("True/Synced"))
		Expect(em.Calls(scimemu.EndpointCreate)).To(Equal(250))
		Expect(em.Calls(scimemu.EndpointBulk)).To(BeZero())
		updateSync(ns, "a", func(us *usersv1.UserSync) {
			us.Spec.DeletionPolicy = usersv1.DeletionPolicyDelete
			us.Spec.Users = us.Spec.Users[1:]
		})
		Eventually(readyStatus(ns, "a"), 30*time.Second).Should(Equal("True/Synced"))
		Expect(em.Calls(scimemu.EndpointDelete)).To(BeZero(), "deprovision Deactivate (default) does not delete")
		Expect(em.Calls(scimemu.EndpointPatch)).To(BeNumerically(">=", 1))
	})
})
