package controller

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

var _ = Describe("Mass-deletion guard", func() {
	It("holds a mass deletion with a condition saying how to approve it, deletes exactly the approved set, and guards a deleted UserSync too", func() {
		ns := newNamespace(nil)
		em := hubspotProvider(ns, "hs", hsemu.Options{}, nil)
		newSync(ns, "team", users(60, "u"), ref("hs"))
		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.DeletionPolicy = usersv1.DeletionPolicyDelete })
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))

		// A bad render empties most of the list: 45 of 60 would go.
		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.Users = us.Spec.Users[:15] })
		Eventually(readyStatus(ns, "team"), 20*time.Second).Should(Equal("False/DeletionHeld"))
		us := getSync(ns, "team")
		deg := condition(us.Status.Conditions, usersv1.ConditionDegraded)
		Expect(deg.Reason).To(Equal(usersv1.ReasonDeletionHeld))
		Expect(deg.Message).To(ContainSubstring("45 of 60 users would be deleted at once"))
		Expect(deg.Message).To(ContainSubstring("kubectl annotate usersync -n " + ns + " team " + usersv1.AnnotationApproveDeletions + "="))
		Expect(resultOf(us, "UserProvider/hs", "u40").Reason).To(Equal(usersv1.ReasonDeletionHeld))
		Expect(testutil.ToFloat64(deletionsHeld.WithLabelValues("UserProvider/"+ns+"/hs"))).To(Equal(45.0),
			"usersync_deletions_held counts the held deletions")
		Consistently(func() int { return em.Calls(hsemu.EndpointArchive) }, 3*time.Second).Should(BeZero())
		Expect(em.Users()).To(HaveLen(60))
		Eventually(func() bool {
			var evs eventsv1.EventList
			Expect(k8s.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
			for _, e := range evs.Items {
				if e.Reason == usersv1.ReasonDeletionHeld && e.Regarding.Name == "team" {
					return true
				}
			}
			return false
		}, 10*time.Second).Should(BeTrue(), "a DeletionHeld event on the UserSync")

		// A stale approval (another set) approves nothing.
		var keys []string
		for i := 15; i < 60; i++ {
			keys = append(keys, users(60, "u")[i].Key)
		}
		setAnnotation(ns, "team", planner.DeletionToken(keys[1:]))
		Consistently(func() int { return em.Calls(hsemu.EndpointArchive) }, 3*time.Second).Should(BeZero())

		setAnnotation(ns, "team", planner.DeletionToken(keys))
		Eventually(readyStatus(ns, "team"), 20*time.Second).Should(Equal("True/Synced"))
		Expect(em.Users()).To(HaveLen(15))
		Expect(sum(em.Inputs(hsemu.EndpointArchive))).To(Equal(45))

		// Deleting the UserSync is a mass deletion too.
		Expect(k8s.Delete(ctx, getSync(ns, "team"))).To(Succeed())
		Eventually(func() string {
			c := condition(getSync(ns, "team").Status.Conditions, usersv1.ConditionDegraded)
			if c == nil {
				return ""
			}
			return c.Reason
		}, 20*time.Second).Should(Equal(usersv1.ReasonDeletionHeld))
		Expect(em.Users()).To(HaveLen(15))
		setAnnotation(ns, "team", planner.DeletionToken(keysOf(users(60, "u")[:15])))
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "team"}, &usersv1.UserSync{}))
		}, 20*time.Second).Should(BeTrue())
		Expect(em.Users()).To(BeEmpty())
	})
})

func setAnnotation(ns, name, token string) {
	Eventually(func() error {
		us := getSync(ns, name)
		if us.Annotations == nil {
			us.Annotations = map[string]string{}
		}
		us.Annotations[usersv1.AnnotationApproveDeletions] = token
		return k8s.Update(ctx, us)
	}).Should(Succeed())
}

func keysOf(us []usersv1.User) []string {
	out := make([]string, len(us))
	for i := range us {
		out[i] = us[i].Key
	}
	return out
}
