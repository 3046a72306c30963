package controller

import (
	"fmt"
	"math"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
	propemu "github.com/usersync/usersync-operator/internal/providers/propel/emulator"
)

const (
	propelClientID     = "usersync-e2e"
	propelClientSecret = "propel-e2e-secret"
	propelBulk         = "/users/bulk/sourceId"
)

// propelProvider starts an emulator and a UserProvider of type Propel
// pointing at it. The Secret holds the client id and, under the key
// credentialsRef selects, the client secret.
func propelProvider(ns string, eo propemu.Options) *propemu.Emulator {
	const name = "propel"
	if eo.Clients == nil {
		eo.Clients = map[string]string{propelClientID: propelClientSecret}
	}
	em := propemu.New(eo)
	em.Start()
	DeferCleanup(em.Close)
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-oauth"},
		Data: map[string][]byte{"clientId": []byte(propelClientID), "clientSecret": []byte(propelClientSecret)}}
	Expect(k8s.Create(ctx, s)).To(Succeed())
	p := &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: usersv1.ProviderSpec{Type: usersv1.ProviderPropel, Endpoint: em.URL() + "/v2", AllowInsecureHTTP: true,
			CredentialsRef: usersv1.SecretKeyReference{Name: name + "-oauth", Key: "clientSecret"},
			Propel:         &usersv1.PropelOptions{Source: "k8s-e2e"}}}
	Expect(k8s.Create(ctx, p)).To(Succeed())
	return em
}

var _ = Describe("Propel end to end", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	It("syncs 250 users in ⌈250/100⌉ bulk calls and resends only the 3 changed in one call", func() {
		em := propelProvider(ns, propemu.Options{ShuffleResults: true})
		newSync(ns, "team", users(250, "u"), ref("propel"))
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		Expect(em.Inputs(propelBulk)).To(Equal([]int{100, 100, 50}))
		Expect(em.Users()).To(HaveLen(250))
		us := getSync(ns, "team")
		r := resultOf(us, "UserProvider/propel", "u42")
		u, ok := em.UserBySourceID("k8s-e2e", "u42")
		Expect(ok).To(BeTrue())
		Expect(r.ExternalID).To(Equal(fmt.Sprint(u["id"])))
		Expect(r.Action).To(Equal("Created"))

		em.ResetCounters()
		updateSync(ns, "team", func(us *usersv1.UserSync) {
			for _, i := range []int{1, 120, 249} {
				us.Spec.Users[i].LastName = "Changed"
			}
		})
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		Eventually(func() []int { return em.Inputs(propelBulk) }, 10*time.Second).Should(Equal([]int{3}))
		Expect(em.Users()).To(HaveLen(250))
	})

	It("fails exactly the five records Propel's schema refuses, syncs the other 95, within O(k·log n) calls", func() {
		em := propelProvider(ns, propemu.Options{})
		us := users(100, "u")
		bad := []int{4, 27, 50, 73, 96}
		for _, i := range bad {
			us[i].Attributes["gender"] = usersv1.StringValue("x")
		}
		newSync(ns, "team", us, ref("propel"))
		Eventually(func() usersv1.Summary { return getSync(ns, "team").Status.Summary }, 30*time.Second).
			Should(Equal(usersv1.Summary{Desired: 100, Synced: 95, Failed: 5}))
		got := getSync(ns, "team")
		for _, i := range bad {
			r := resultOf(got, "UserProvider/propel", us[i].Key)
			Expect(string(r.State)).To(Equal("Failed"), us[i].Key)
			Expect(r.Message).To(ContainSubstring("gender"), us[i].Key)
		}
		calls := em.Calls(propelBulk)
		bound := 1 + 2*len(bad)*int(math.Ceil(math.Log2(100)))
		GinkgoWriter.Printf("5 bad records in 100: %d bulk calls (bound %d)\n", calls, bound)
		AddReportEntry("propel bulk calls for 5 bad records in 100", calls)
		Expect(calls).To(BeNumerically("<=", bound))
		Expect(em.Users()).To(HaveLen(95))
	})

	It("refreshes an expired token mid-sync without failing a record, and shows refused client credentials on the provider", func() {
		em := propelProvider(ns, propemu.Options{})
		newSync(ns, "team", users(20, "u"), ref("propel"))
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		tokens := em.Calls("/oauth2/token")

		em.ExpireTokens()
		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.Users[3].FirstName = "Renamed" })
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		Expect(getSync(ns, "team").Status.Summary.Failed).To(BeZero())
		Expect(em.Calls("/oauth2/token")).To(Equal(tokens + 1))
		u, _ := em.UserBySourceID("k8s-e2e", "u3")
		Expect(u["firstName"]).To(Equal("Renamed"))

		sec := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "propel-oauth"}, sec)).To(Succeed())
		sec.Data["clientSecret"] = []byte("not-the-secret")
		Expect(k8s.Update(ctx, sec)).To(Succeed())
		Eventually(providerReady(ns, "propel"), 20*time.Second).Should(Equal("False/Unauthorized"))
		p := &usersv1.UserProvider{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "propel"}, p)).To(Succeed())
		msg := condition(p.Status.Conditions, usersv1.ConditionReady).Message
		Expect(msg).To(ContainSubstring("client credentials"))
		Expect(msg).NotTo(ContainSubstring("not-the-secret"))
	})

	It("says deletionPolicy Delete cannot be honoured by Propel, forgets removed users instead of pretending, and never blocks deletion", func() {
		em := propelProvider(ns, propemu.Options{})
		newSync(ns, "team", users(5, "u"), ref("propel"))
		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.DeletionPolicy = usersv1.DeletionPolicyDelete })
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		degraded := func() string {
			c := condition(getSync(ns, "team").Status.Conditions, usersv1.ConditionDegraded)
			if c == nil {
				return ""
			}
			return string(c.Status) + "/" + c.Reason + ": " + c.Message
		}
		Eventually(degraded, 10*time.Second).Should(And(HavePrefix("True/DeletionUnsupported"),
			ContainSubstring("Propel offers no API to delete users")))

		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.Users = us.Spec.Users[:3] })
		Eventually(func() []usersv1.RecordResult { return getSync(ns, "team").Status.Results }, 20*time.Second).Should(HaveLen(3))
		Eventually(readyStatus(ns, "team"), 20*time.Second).Should(Equal("True/Synced"))
		Expect(em.Users()).To(HaveLen(5), "Propel keeps the removed users: nothing pretends to delete them")

		Expect(k8s.Delete(ctx, getSync(ns, "team"))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "team"}, &usersv1.UserSync{}))
		}, 20*time.Second).Should(BeTrue())
		Expect(em.Users()).To(HaveLen(5))
	})

	It("keeps a result per provider for a UserSync on HubSpot and Propel, and a Propel outage leaves the HubSpot records alone", func() {
		hs := hubspotProvider(ns, "hubspot", hsemu.Options{}, nil)
		em := propelProvider(ns, propemu.Options{})
		em.Inject(propelBulk, propemu.Fault{Status: 503, Count: 9}) // three sync loops' worth of failures
		newSync(ns, "team", users(30, "u"), ref("hubspot"), ref("propel"))
		Eventually(func() string {
			r := resultOf(getSync(ns, "team"), "UserProvider/propel", "u5")
			if r == nil {
				return ""
			}
			return string(r.State) + "/" + r.Reason
		}, 30*time.Second, 100*time.Millisecond).Should(Equal("Pending/VendorUnavailable"))
		during := getSync(ns, "team")
		Expect(during.Status.Results).To(HaveLen(60))
		for i := range 30 {
			r := resultOf(during, "UserProvider/hubspot", users(30, "u")[i].Key)
			Expect(r).NotTo(BeNil())
			Expect(string(r.State)).To(Equal("Synced"))
		}
		Expect(hs.Users()).To(HaveLen(30))

		Eventually(readyStatus(ns, "team"), 60*time.Second).Should(Equal("True/Synced"))
		final := getSync(ns, "team")
		Expect(final.Status.Results).To(HaveLen(60))
		Expect(final.Status.Summary).To(Equal(usersv1.Summary{Desired: 60, Synced: 60}))
		Expect(em.Users()).To(HaveLen(30))
	})
})
