package controller

import (
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

var _ = Describe("Plan mode", func() {
	It("plans 250 creates, 10 updates and 5 deletes without a write, applies exactly an approved plan, and nothing of a stale one", func() {
		ns := newNamespace(nil)
		em := hubspotProvider(ns, "hs", hsemu.Options{UniqueProperties: []string{"k8s_key"}}, func(s *usersv1.ProviderSpec) {
			s.HubSpot = &usersv1.HubSpotOptions{IDProperty: "k8s_key"}
		})
		first := users(15, "p")
		us := &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "team"},
			Spec: usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{ref("hs")}, Users: first,
				DeletionPolicy: usersv1.DeletionPolicyDelete}}
		Expect(k8s.Create(ctx, us)).To(Succeed())
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		em.ResetCounters()

		// Plan: 10 of the 15 changed, 5 removed (a third: the mass-deletion
		// guard would hold them under Apply), 250 added.
		updateSync(ns, "team", func(us *usersv1.UserSync) {
			us.Spec.Mode = usersv1.ModePlan
			kept := us.Spec.Users[:10]
			for i := range kept {
				kept[i].Attributes = map[string]usersv1.AttributeValue{"team": usersv1.StringValue("moved")}
			}
			us.Spec.Users = append(kept, users(250, "n")...)
		})
		Eventually(func() []usersv1.ProviderPlan { return getSync(ns, "team").Status.Plan }, 20*time.Second).Should(HaveLen(1))
		got := getSync(ns, "team")
		plan := got.Status.Plan[0]
		Expect([]int32{plan.Creates, plan.Updates, plan.Deletes, plan.Calls}).To(Equal([]int32{250, 10, 5, 4}),
			"⌈260/100⌉ upserts + 1 archive")
		Expect(plan.Token).NotTo(BeEmpty())
		Expect(resultOf(got, "UserProvider/hs", "n7").Reason).To(Equal(usersv1.ReasonPlanned))
		Expect(resultOf(got, "UserProvider/hs", "n7").Action).To(Equal("Create"))
		Expect(resultOf(got, "UserProvider/hs", "p3").Action).To(Equal("Update"))
		// The update names the field it would change, read from HubSpot.
		Expect(resultOf(got, "UserProvider/hs", "p3").Message).To(ContainSubstring("the Update would change team;"))
		Expect(resultOf(got, "UserProvider/hs", "p12").Action).To(Equal("Delete"))
		Expect(condition(got.Status.Conditions, usersv1.ConditionReady).Reason).To(Equal(usersv1.ReasonPlanned))
		pc := condition(got.Status.Conditions, usersv1.ConditionPlanned)
		Expect(pc.Status).To(Equal(metav1.ConditionTrue))
		Expect(pc.Message).To(ContainSubstring(usersv1.AnnotationApprovePlan + "=" + plan.Token))
		Consistently(func() int { return hubspotWrites(em) }, 3*time.Second).Should(BeZero(), "a plan writes nothing")

		// A spec edit makes the plan's token stale: approving it applies nothing.
		updateSync(ns, "team", func(us *usersv1.UserSync) {
			us.Annotations = map[string]string{usersv1.AnnotationApprovePlan: plan.Token}
			us.Spec.Users[0].FirstName = "Edited"
		})
		Eventually(func() string {
			c := condition(getSync(ns, "team").Status.Conditions, usersv1.ConditionPlanned)
			if c == nil {
				return ""
			}
			return c.Reason
		}, 20*time.Second).Should(Equal(usersv1.ReasonApprovalStale))
		Consistently(func() int { return hubspotWrites(em) }, 2*time.Second).Should(BeZero(), "a stale approval applies nothing")
		fresh := getSync(ns, "team").Status.Plan[0]
		Expect(fresh.Token).NotTo(Equal(plan.Token))

		// Approving the current token applies exactly the forecast calls.
		updateSync(ns, "team", func(us *usersv1.UserSync) {
			us.Annotations[usersv1.AnnotationApprovePlan] = fresh.Token
		})
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		Expect(int32(hubspotWrites(em))).To(Equal(fresh.Calls), "the apply took the forecast calls")
		Expect(em.Calls(hsemu.EndpointUpsert)).To(Equal(3))
		Expect(em.Calls(hsemu.EndpointArchive)).To(Equal(1))
		Expect(em.Users()).To(HaveLen(260))
		Expect(getSync(ns, "team").Status.Plan).To(BeEmpty())

		// The next change is planned again: the approval was for that plan only.
		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.Users[1].LastName = "Again" })
		Eventually(func() []usersv1.ProviderPlan { return getSync(ns, "team").Status.Plan }, 20*time.Second).Should(HaveLen(1))
		Consistently(func() int { return em.Calls(hsemu.EndpointUpsert) }, 2*time.Second).Should(Equal(3))
	})

	It("never writes for a UserSync in Plan: not on drift, not after a provider change, not after faults", func() {
		ns := newNamespace(nil)
		stopProviders(ns)
		em := hubspotProvider(ns, "hs", hsemu.Options{}, everySecond)
		newSync(ns, "team", users(30, "w"), ref("hs"))
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		ids := map[string]string{}
		for _, r := range getSync(ns, "team").Status.Results {
			ids[r.Key] = r.ExternalID
		}
		updateSync(ns, "team", func(us *usersv1.UserSync) {
			us.Spec.Mode = usersv1.ModePlan
			us.Spec.Users = append(us.Spec.Users, users(20, "x")...)
		})
		em.ResetCounters()
		// Drift behind the operator's back, faults on the reads, a provider
		// change that rebuilds its client.
		Expect(em.Edit(ids["w3"], map[string]string{"team": "sales"})).To(BeTrue())
		em.Archive(ids["w5"])
		em.Inject(hsemu.EndpointRead, hsemu.Fault{Status: 503, Count: 3})
		Eventually(func() string { return resultOf(getSync(ns, "team"), "UserProvider/hs", "w5").Reason }, 20*time.Second).
			Should(Equal(usersv1.ReasonPlanned))
		Eventually(func() []usersv1.ProviderPlan { return getSync(ns, "team").Status.Plan }, 20*time.Second).Should(
			ContainElement(And(HaveField("Creates", int32(21)), HaveField("Updates", int32(1)))))
		Eventually(func() error {
			p := &usersv1.UserProvider{}
			if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hs"}, p); err != nil {
				return err
			}
			p.Spec.RateLimit = &usersv1.RateLimit{Requests: 50, Period: metav1.Duration{Duration: time.Second}}
			return k8s.Update(ctx, p)
		}, 10*time.Second).Should(Succeed())
		Consistently(func() int { return hubspotWrites(em) }, 5*time.Second).Should(BeZero())
		Expect(em.Users()).To(HaveLen(29))
	})

	It("counts a plan's own calls: another UserSync's plan that waits for approval does not ride in them", func() {
		ns := newNamespace(nil)
		em := hubspotProvider(ns, "hs", hsemu.Options{UniqueProperties: []string{"k8s_key"}}, func(s *usersv1.ProviderSpec) {
			s.HubSpot = &usersv1.HubSpotOptions{IDProperty: "k8s_key"}
		})
		for _, name := range []string{"a", "b"} {
			Expect(k8s.Create(ctx, &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{ref("hs")}, Mode: usersv1.ModePlan,
					Users: users(60, name)}})).To(Succeed())
		}
		planOf := func(name string) func() []usersv1.ProviderPlan {
			return func() []usersv1.ProviderPlan { return getSync(ns, name).Status.Plan }
		}
		// 60 upserts each: 1 call each (together they would still take 2).
		for _, name := range []string{"a", "b"} {
			Eventually(planOf(name), 20*time.Second).Should(ConsistOf(
				And(HaveField("Creates", int32(60)), HaveField("Calls", int32(1)))))
		}
		bPlan := getSync(ns, "b").Status.Plan[0]
		Consistently(func() int { return hubspotWrites(em) }, 2*time.Second).Should(BeZero())

		updateSync(ns, "a", func(us *usersv1.UserSync) {
			us.Annotations = map[string]string{usersv1.AnnotationApprovePlan: getSync(ns, "a").Status.Plan[0].Token}
		})
		Eventually(readyStatus(ns, "a"), 30*time.Second).Should(Equal("True/Synced"))
		Expect(em.Inputs(hsemu.EndpointUpsert)).To(Equal([]int{60}), "a's plan took its 1 call, b's changes did not ride")
		Consistently(planOf("b"), 2*time.Second).Should(Equal([]usersv1.ProviderPlan{bPlan}))

		updateSync(ns, "b", func(us *usersv1.UserSync) {
			us.Annotations = map[string]string{usersv1.AnnotationApprovePlan: bPlan.Token}
		})
		Eventually(readyStatus(ns, "b"), 30*time.Second).Should(Equal("True/Synced"))
		Expect(em.Inputs(hsemu.EndpointUpsert)).To(Equal([]int{60, 60}))
		Expect(em.Users()).To(HaveLen(120))
	})

	It("applies an approved plan to its end: what a vendor failure left unfinished is retried without a new approval", func() {
		ns := newNamespace(nil)
		// HubSpot refuses 10 of the users once, for load (a transient
		// per-record error): the approved loop leaves them Pending, and
		// what remains of the plan has another token.
		var refused sync.Map
		em := hubspotProvider(ns, "hs", hsemu.Options{UniqueProperties: []string{"k8s_key"},
			Reject: func(props map[string]string) (string, string, bool) {
				if k := props["k8s_key"]; strings.HasPrefix(k, "r1") && len(k) == 3 {
					if _, again := refused.LoadOrStore(k, true); !again {
						return "RATE_LIMITS", "try again later", true
					}
				}
				return "", "", false
			}}, func(s *usersv1.ProviderSpec) {
			s.HubSpot = &usersv1.HubSpotOptions{IDProperty: "k8s_key"}
		})
		Expect(k8s.Create(ctx, &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "team"},
			Spec: usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{ref("hs")}, Mode: usersv1.ModePlan,
				Users: users(150, "r")}})).To(Succeed())
		Eventually(func() []usersv1.ProviderPlan { return getSync(ns, "team").Status.Plan }, 20*time.Second).Should(
			ConsistOf(And(HaveField("Creates", int32(150)), HaveField("Calls", int32(2)))))
		updateSync(ns, "team", func(us *usersv1.UserSync) {
			us.Annotations = map[string]string{usersv1.AnnotationApprovePlan: getSync(ns, "team").Status.Plan[0].Token}
		})
		Eventually(readyStatus(ns, "team"), 60*time.Second).Should(Equal("True/Synced"), func() string {
			us := getSync(ns, "team")
			return fmt.Sprintf("plan %v, conditions %v", us.Status.Plan, us.Status.Conditions)
		})
		inputs := em.Inputs(hsemu.EndpointUpsert)
		Expect(inputs).To(HaveLen(3))
		Expect(inputs[:2]).To(ConsistOf(100, 50))
		Expect(inputs[2]).To(Equal(10), "the 10 refused were sent again, alone")
		Expect(em.Users()).To(HaveLen(150))
		us := getSync(ns, "team")
		Expect(us.Status.Plan).To(BeEmpty())
		Expect(condition(us.Status.Conditions, usersv1.ConditionPlanned).Reason).To(Equal(usersv1.ReasonNothingPlanned))
	})
})
