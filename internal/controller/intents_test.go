package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

// denyStatusWrites makes the API server refuse every write of a UserSync
// status in namespaces labelled deny-usersync-status=yes, with a
// ValidatingAdmissionPolicy: the operator's results are lost after the
// vendor created the users. It returns a function that lifts the refusal.
func denyStatusWrites() (lift func()) {
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "deny-usersync-status-"},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Update},
					Rule: admissionv1.Rule{APIGroups: []string{usersv1.GroupVersion.Group}, APIVersions: []string{"*"},
						Resources: []string{"usersyncs/status"}},
				},
			}}},
			Validations: []admissionv1.Validation{{Expression: "false", Message: "status writes are refused by the test"}},
		},
	}
	Expect(k8s.Create(ctx, policy)).To(Succeed())
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny},
			MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"deny-usersync-status": "yes"}}},
		},
	}
	Expect(k8s.Create(ctx, binding)).To(Succeed())
	lift = func() {
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, binding))).To(Succeed())
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, policy))).To(Succeed())
	}
	DeferCleanup(lift)
	return lift
}

// providerStatus is the status of the UserProvider "hs" of ns.
func providerStatus(ns string) usersv1.ProviderStatus {
	p := &usersv1.UserProvider{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hs"}, p)).To(Succeed())
	return p.Status
}

var _ = Describe("Create intents", func() {
	It("are recorded on the provider before the creates, so results lost after them never duplicate a user", func() {
		ns := newNamespace(map[string]string{"deny-usersync-status": "yes"})
		lift := denyStatusWrites()
		// The emulator accepts duplicate emails: only the operator's lookup
		// keeps a user from being created twice.
		em := hubspotProvider(ns, "hs", hsemu.Options{DuplicateEmails: true}, nil)
		// Wait until the policy is in force (the API server loads it
		// asynchronously).
		probe := newSync(ns, "probe", users(1, "probe"), ref("nowhere"))
		Eventually(func() error {
			p := getSync(ns, probe.Name)
			p.Status.ObservedGeneration = 42
			return k8s.Status().Update(ctx, p)
		}, 20*time.Second, 200*time.Millisecond).Should(MatchError(ContainSubstring("refused by the test")))

		us := newSync(ns, "team", users(30, "u"), ref("hs"))
		// The creates are sent; their results cannot be stored.
		Eventually(func() int { return len(em.Users()) }, 20*time.Second).Should(Equal(30))
		Expect(providerStatus(ns).CreatesInFlight).To(ContainElement(HaveField("UID", string(us.UID))))
		// The loop retries: it looks the users up and never creates them again.
		Eventually(func() int { return em.Calls(hsemu.EndpointSearch) }, 20*time.Second).Should(BeNumerically(">=", 1))
		Expect(em.Users()).To(HaveLen(30))
		Expect(getSync(ns, "team").Status.Results).To(BeEmpty())

		lift()
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		got := getSync(ns, "team")
		ids := map[string]bool{}
		for _, r := range got.Status.Results {
			Expect(r.ExternalID).NotTo(BeEmpty())
			ids[r.ExternalID] = true
		}
		Expect(ids).To(HaveLen(30))
		Expect(em.Users()).To(HaveLen(30), "no user was created twice")
		Expect(em.Calls(hsemu.EndpointCreate)).To(Equal(1))
		Eventually(func() []usersv1.CreateIntent { return providerStatus(ns).CreatesInFlight }, 10*time.Second).Should(BeEmpty())
		// Under Orphan (the default) a UserSync carries no finalizer.
		Expect(got.Finalizers).To(BeEmpty())
	})
})
