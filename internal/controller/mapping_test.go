package controller

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
	propemu "github.com/usersync/usersync-operator/internal/providers/propel/emulator"
)

// updateProvider changes a UserProvider's spec.
func updateProvider(ns, name string, fn func(*usersv1.ProviderSpec)) {
	Eventually(func() error {
		p := &usersv1.UserProvider{}
		if err := k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, p); err != nil {
			return err
		}
		fn(&p.Spec)
		return k8s.Update(ctx, p)
	}, 10*time.Second).Should(Succeed())
}

// roster is n users in the admin's vocabulary: title, and plan pro for
// every fifth (the others get the UserSync's default).
func roster(n int) []usersv1.User {
	out := users(n, "m")
	for i := range out {
		out[i].Attributes = map[string]usersv1.AttributeValue{"title": usersv1.StringValue(fmt.Sprintf("Engineer %d", i))}
		if i%5 == 0 {
			out[i].Attributes["plan"] = usersv1.StringValue("pro")
		}
	}
	return out
}

// rosterSync creates a UserSync of roster(n) whose default plan is free.
func rosterSync(ns, name string, n int, refs ...usersv1.ProviderRef) {
	us := &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: usersv1.UserSyncSpec{ProviderRefs: refs, Users: roster(n),
			Defaults: &usersv1.UserDefaults{Attributes: map[string]usersv1.AttributeValue{"plan": usersv1.StringValue("free")}}}}
	Expect(k8s.Create(ctx, us)).To(Succeed())
}

// propelAttributes are the names of a Propel user's custom attributes.
func propelAttributes(u map[string]any) []string {
	var names []string
	attrs, _ := u["attributes"].([]any)
	for _, a := range attrs {
		if m, ok := a.(map[string]any); ok {
			names = append(names, fmt.Sprint(m["name"]))
		}
	}
	return names
}

var _ = Describe("Attribute mapping", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	hubspotMapping := func(s *usersv1.ProviderSpec) {
		s.UnmappedAttributes = usersv1.UnmappedDrop
		s.AttributeMapping = []usersv1.AttributeMapping{
			{Attribute: "title", To: "hs_job_title"},
			{Expression: "user.attributes.plan == 'pro' ? 'Enterprise' : 'Standard'", To: "tier"},
			{Expression: "'usersync'", To: "lead_source", CreateOnly: true},
		}
	}

	It("writes one roster under each vendor's names, and a mapping change rewrites only the users whose values change, in the fewest calls", func() {
		hs := hubspotProvider(ns, "hs", hsemu.Options{}, hubspotMapping)
		pe := propelProvider(ns, propemu.Options{})
		updateProvider(ns, "propel", func(s *usersv1.ProviderSpec) {
			s.UnmappedAttributes = usersv1.UnmappedDrop
			s.AttributeMapping = []usersv1.AttributeMapping{{Attribute: "title"}, {Attribute: "plan", To: "plan_code"}}
		})
		rosterSync(ns, "team", 150, ref("hs"), ref("propel"))
		Eventually(readyStatus(ns, "team"), 60*time.Second).Should(Equal("True/Synced"))

		Expect(hs.Users()).To(HaveLen(150))
		for _, u := range hs.Users() {
			Expect(u.Properties).To(HaveKey("hs_job_title"))
			Expect(u.Properties).NotTo(HaveKey("title"))
			Expect(u.Properties).NotTo(HaveKey("plan"))
			Expect(u.Properties["lead_source"]).To(Equal("usersync"), "createOnly values go with the create")
		}
		r := resultOf(getSync(ns, "team"), "UserProvider/hs", "m10")
		u10, _ := hs.UserByID(r.ExternalID)
		Expect(u10.Properties).To(HaveKeyWithValue("hs_job_title", "Engineer 10"))
		Expect(u10.Properties).To(HaveKeyWithValue("tier", "Enterprise"))
		r = resultOf(getSync(ns, "team"), "UserProvider/hs", "m11")
		u11, _ := hs.UserByID(r.ExternalID)
		Expect(u11.Properties).To(HaveKeyWithValue("tier", "Standard"), "the default plan is free")

		Expect(pe.Users()).To(HaveLen(150))
		p10, ok := pe.UserBySourceID("k8s-e2e", "m10")
		Expect(ok).To(BeTrue())
		Expect(p10).To(HaveKeyWithValue("title", "Engineer 10"), "Propel's title field")
		Expect(propelAttributes(p10)).To(ConsistOf("plan_code"))
		p11, _ := pe.UserBySourceID("k8s-e2e", "m11")
		Expect(propelAttributes(p11)).To(ConsistOf("plan_code"), "the default reaches Propel too")

		// The HubSpot mapping changes for the 30 pro users only; its
		// createOnly value changes for everyone but is never updated.
		hs.ResetCounters()
		pe.ResetCounters()
		updateProvider(ns, "hs", func(s *usersv1.ProviderSpec) {
			s.AttributeMapping[1].Expression = "user.attributes.plan == 'pro' ? 'Premium' : 'Standard'"
			s.AttributeMapping[2].Expression = "'changed'"
		})
		Eventually(func() string { u, _ := hs.UserByID(u10.ID); return u.Properties["tier"] }, 30*time.Second).Should(Equal("Premium"))
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		Consistently(func() int { return hubspotWrites(hs) }, 2*time.Second).Should(Equal(1), "⌈30/100⌉ = 1 call")
		Expect(hs.Inputs(hsemu.EndpointUpdate)).To(Equal([]int{30}))
		Expect(hs.Users()).To(HaveLen(150))
		for _, u := range hs.Users() {
			Expect(u.Properties["lead_source"]).To(Equal("usersync"), "createOnly is never updated")
		}
		Expect(pe.Calls(propelBulk)).To(BeZero(), "another provider's mapping writes nothing to Propel")
	})

	It("refuses a mapping that does not compile: the provider is not Ready, nothing is written, and the UserSync waits with the reason", func() {
		hs := hubspotProvider(ns, "hs", hsemu.Options{}, func(s *usersv1.ProviderSpec) {
			s.AttributeMapping = []usersv1.AttributeMapping{{Attribute: "title", To: "hs_job_title"},
				{Expression: "user.attributes.plan == ", To: "tier"}}
		})
		newSync(ns, "team", roster(20), ref("hs"))
		Eventually(providerReady(ns, "hs"), 20*time.Second).Should(Equal("False/" + usersv1.ReasonInvalidMapping))
		p := &usersv1.UserProvider{}
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "hs"}, p)).To(Succeed())
		msg := condition(p.Status.Conditions, usersv1.ConditionReady).Message
		Expect(msg).To(ContainSubstring("attributeMapping[1] (to tier): expression does not compile"))
		Eventually(readyStatus(ns, "team"), 20*time.Second).Should(Equal("False/" + usersv1.ReasonProviderNotReady))
		Expect(condition(getSync(ns, "team").Status.Conditions, usersv1.ConditionReady).Message).
			To(ContainSubstring("attributeMapping[1] (to tier)"), "the UserSync says why it waits")
		Consistently(func() int { return hubspotWrites(hs) }, 3*time.Second).Should(BeZero())
		Expect(hs.Users()).To(BeEmpty())

		// Fixed: everything is written with the whole mapping.
		updateProvider(ns, "hs", func(s *usersv1.ProviderSpec) {
			s.AttributeMapping[1].Expression = "has(user.attributes.plan) ? user.attributes.plan : 'free'"
		})
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		for _, u := range hs.Users() {
			Expect(u.Properties).To(HaveKey("hs_job_title"))
			Expect(u.Properties).To(HaveKey("tier"))
		}
	})

	It("refuses two entries writing one name and a read-only HubSpot property, naming them", func() {
		hubspotProvider(ns, "hs", hsemu.Options{}, func(s *usersv1.ProviderSpec) {
			s.AttributeMapping = []usersv1.AttributeMapping{{Attribute: "title", To: "jobtitle"}, {Attribute: "role", To: "jobtitle"}}
		})
		Eventually(providerReady(ns, "hs"), 20*time.Second).Should(Equal("False/" + usersv1.ReasonInvalidMapping))
		p := &usersv1.UserProvider{}
		Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "hs"}, p)).To(Succeed())
		Expect(condition(p.Status.Conditions, usersv1.ConditionReady).Message).To(ContainSubstring("attributeMapping[0] and attributeMapping[1] both write jobtitle"))

		updateProvider(ns, "hs", func(s *usersv1.ProviderSpec) {
			s.AttributeMapping = []usersv1.AttributeMapping{{Attribute: "id", To: "hs_object_id"}}
		})
		Eventually(func() string {
			Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: "hs"}, p)).To(Succeed())
			return condition(p.Status.Conditions, usersv1.ConditionReady).Message
		}, 20*time.Second).Should(ContainSubstring("attributeMapping[0] (to hs_object_id): property hs_object_id is read-only in HubSpot"))
	})

	It("fails only the users an expression fails for, with the message, and syncs the others", func() {
		hs := hubspotProvider(ns, "hs", hsemu.Options{}, func(s *usersv1.ProviderSpec) {
			s.AttributeMapping = []usersv1.AttributeMapping{{Expression: "user.attributes.plan.upperAscii()", To: "plan"}}
		})
		newSync(ns, "team", roster(10), ref("hs"))
		Eventually(func() int32 { return getSync(ns, "team").Status.Summary.Failed }, 30*time.Second).Should(Equal(int32(8)))
		Eventually(func() int32 { return getSync(ns, "team").Status.Summary.Synced }, 30*time.Second).Should(Equal(int32(2)))
		r := resultOf(getSync(ns, "team"), "UserProvider/hs", "m1")
		Expect(string(r.State) + "/" + r.Reason).To(Equal("Failed/" + planner.ReasonInvalidSpec))
		Expect(r.Message).To(ContainSubstring("attributeMapping[0] (to plan): expression failed: no such key: plan"))
		Expect(hs.Users()).To(HaveLen(2))
		for _, u := range hs.Users() {
			Expect(u.Properties["plan"]).To(Equal("PRO"))
		}
	})

	It("does not report a createOnly value an admin changed at the vendor as drift", func() {
		hs := hubspotProvider(ns, "hs", hsemu.Options{}, func(s *usersv1.ProviderSpec) {
			hubspotMapping(s)
			s.DriftDetection = &usersv1.DriftDetection{Interval: &metav1.Duration{Duration: time.Second}}
		})
		stopProviders(ns)
		rosterSync(ns, "team", 10, ref("hs"))
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		r := resultOf(getSync(ns, "team"), "UserProvider/hs", "m3")
		Expect(hs.Edit(r.ExternalID, map[string]string{"lead_source": "sales call"})).To(BeTrue())
		r4 := resultOf(getSync(ns, "team"), "UserProvider/hs", "m4")
		Expect(hs.Edit(r4.ExternalID, map[string]string{"hs_job_title": "CTO"})).To(BeTrue())
		// The mapped field is corrected; the createOnly one is left alone.
		Eventually(func() string { return resultOf(getSync(ns, "team"), "UserProvider/hs", "m4").Action }, 20*time.Second).
			Should(Equal(usersv1.ActionCorrected))
		u4, _ := hs.UserByID(r4.ExternalID)
		Expect(u4.Properties["hs_job_title"]).To(Equal("Engineer 4"))
		Consistently(func() string {
			return resultOf(getSync(ns, "team"), "UserProvider/hs", "m3").Action
		}, 3*time.Second).ShouldNot(Equal(usersv1.ActionCorrected))
		u3, _ := hs.UserByID(r.ExternalID)
		Expect(u3.Properties["lead_source"]).To(Equal("sales call"))
	})
})
