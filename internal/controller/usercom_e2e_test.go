package controller

import (
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers/usercom"
	ucemu "github.com/usersync/usersync-operator/internal/providers/usercom/emulator"
)

const usercomToken = "usercom-e2e-key-0123456789abcdef"

func usercomProvider(ns, name string, eo ucemu.Options, batch int32) *ucemu.Emulator {
	eo.Tokens = []string{usercomToken}
	em := ucemu.New(eo)
	em.Start()
	DeferCleanup(em.Close)
	newSecret(ns, name+"-key", "apiKey", usercomToken)
	p := &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: usersv1.ProviderSpec{Type: usersv1.ProviderUserCom, Endpoint: em.URL(), AllowInsecureHTTP: true,
			BatchSize: ptr(batch),
			// user.com has no bulk create: 300 users are 300 calls.
			RateLimit:      &usersv1.RateLimit{Requests: 200, Period: metav1.Duration{Duration: time.Second}},
			CredentialsRef: usersv1.SecretKeyReference{Name: name + "-key", Key: "apiKey"}}}
	Expect(k8s.Create(ctx, p)).To(Succeed())
	return em
}

func usercomCalls(em *ucemu.Emulator) map[string]int {
	return map[string]int{
		"upsert":  em.Calls(ucemu.EndpointUpsert),
		"mass":    em.Calls(ucemu.EndpointMass),
		"perUser": em.Calls(ucemu.EndpointPerUser),
		"delete":  em.Calls(ucemu.EndpointDelete),
	}
}

var _ = Describe("user.com end to end", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	It("syncs 300 users in the fewest calls, sends one mass call for 40 changed plans, and nothing when idle", func() {
		em := usercomProvider(ns, "uc", ucemu.Options{Attributes: map[string]string{
			"plan": ucemu.TypeString, "seat": ucemu.TypeInteger}}, 100)
		us := users(300, "u")
		for i := range us {
			us[i].Attributes = map[string]usersv1.AttributeValue{"plan": usersv1.StringValue("pro")}
			if i >= 280 {
				us[i].Attributes = map[string]usersv1.AttributeValue{"seat": usersv1.NumberValue(float64(1000 + i))}
			}
		}
		newSync(ns, "team", us, ref("uc"))
		Eventually(readyStatus(ns, "team"), 60*time.Second).Should(Equal("True/Synced"))
		GinkgoWriter.Printf("first sync of 300 users: %v\n", usercomCalls(em))
		// Every user needs its one update_or_create (user.com has no bulk
		// create), and the attributes ride along: 300 is the minimum.
		Expect(usercomCalls(em)).To(Equal(map[string]int{"upsert": 300, "mass": 0, "perUser": 0, "delete": 0}))
		u, _ := em.UserByCustomID("u285")
		Expect(u.Attributes["seat"]).To(Equal(int64(1285)), "typed, not a string")

		em.ResetCounters()
		var pending []usercom.AttrWrite
		st := getSync(ns, "team")
		updateSync(ns, "team", func(us *usersv1.UserSync) {
			for i := 0; i < 40; i++ {
				us.Spec.Users[i*7].Attributes["plan"] = usersv1.StringValue("enterprise")
			}
		})
		for i := 0; i < 40; i++ {
			r := resultOf(st, "UserProvider/uc", us[i*7].Key)
			id, err := strconv.ParseInt(r.ExternalID, 10, 64)
			Expect(err).NotTo(HaveOccurred())
			pending = append(pending, usercom.AttrWrite{UserID: id, Key: r.Key, Attr: "plan", Value: "enterprise"})
		}
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		minimum := len(usercom.Pack(pending, 100))
		GinkgoWriter.Printf("40 changed plans: %v (planner minimum %d)\n", usercomCalls(em), minimum)
		Expect(minimum).To(Equal(1))
		Expect(usercomCalls(em)).To(Equal(map[string]int{"upsert": 0, "mass": minimum, "perUser": 0, "delete": 0}))
		u, _ = em.UserByCustomID(us[7].Key)
		Expect(u.Attributes["plan"]).To(Equal("enterprise"))

		em.ResetCounters()
		Consistently(func() map[string]int { return usercomCalls(em) }, 5*time.Second, 500*time.Millisecond).
			Should(Equal(map[string]int{"upsert": 0, "mass": 0, "perUser": 0, "delete": 0}))
	})

	It("fails only the records that use an attribute the app does not define, naming it", func() {
		em := usercomProvider(ns, "uc", ucemu.Options{Attributes: map[string]string{"plan": ucemu.TypeString}}, 100)
		us := users(20, "u")
		for i := range us {
			us[i].Attributes = map[string]usersv1.AttributeValue{"plan": usersv1.StringValue("pro")}
		}
		newSync(ns, "team", us, ref("uc"))
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))

		updateSync(ns, "team", func(us *usersv1.UserSync) {
			for _, i := range []int{2, 9, 15} {
				us.Spec.Users[i].Attributes["nickname"] = usersv1.StringValue("ace")
			}
			us.Spec.Users[4].Attributes["plan"] = usersv1.StringValue("free")
		})
		Eventually(func() usersv1.Summary { return getSync(ns, "team").Status.Summary }, 30*time.Second).
			Should(Equal(usersv1.Summary{Desired: 20, Synced: 17, Failed: 3}))
		got := getSync(ns, "team")
		for _, i := range []int{2, 9, 15} {
			r := resultOf(got, "UserProvider/uc", us[i].Key)
			Expect(string(r.State)).To(Equal("Failed"))
			Expect(r.Message).To(ContainSubstring("nickname"))
		}
		u, _ := em.UserByCustomID("u4")
		Expect(u.Attributes["plan"]).To(Equal("free"))
	})

	It("deletes removed users by custom id under Delete", func() {
		em := usercomProvider(ns, "uc", ucemu.Options{Attributes: map[string]string{"team": ucemu.TypeString}}, 100)
		newSync(ns, "team", users(6, "u"), ref("uc"))
		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.DeletionPolicy = usersv1.DeletionPolicyDelete })
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.Users = us.Spec.Users[:4] })
		Eventually(func() int { return len(em.Users()) }, 20*time.Second).Should(Equal(4))
		_, ok := em.UserByCustomID("u5")
		Expect(ok).To(BeFalse())
		Expect(em.Calls(ucemu.EndpointDelete)).To(Equal(2))
	})
})
