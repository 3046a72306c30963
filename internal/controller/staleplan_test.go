package controller

import (
	"errors"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"k8s.io/utils/clock"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/planner"
)

var _ = Describe("Create intents from a stale copy", func() {
	It("are refused, so nothing is created from a plan that missed stored intents", func() {
		ns := newNamespace(nil)
		newSync(ns, "team", users(2, "s"), ref("nowhere"))
		Eventually(readyStatus(ns, "team"), 20*time.Second).Should(Equal("False/" + usersv1.ReasonProviderNotFound))
		stale := getSync(ns, "team")
		// Another write lands after the copy was read (as intents whose
		// answer was lost would).
		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Labels = map[string]string{"touched": "yes"} })

		r := &ProviderReconciler{Client: k8s, APIReader: k8s, Clock: clock.RealClock{}}
		recs := map[string]planner.Record{"s0": {Key: "s0", State: planner.StatePending, Action: "Create", Message: "being created"}}
		_, err := r.patchSyncStatus(ctx, stale, "UserProvider/other", recs, nil, true)
		Expect(errors.Is(err, errStalePlan)).To(BeTrue(), "got %v", err)

		// Results learned from the vendor are merged on a conflict instead.
		got, err := r.patchSyncStatus(ctx, stale, "UserProvider/other", recs, nil, false)
		Expect(err).NotTo(HaveOccurred())
		Expect(resultOf(got, "UserProvider/other", "s0")).NotTo(BeNil())
		Expect(resultOf(getSync(ns, "team"), "UserProvider/other", "s0")).NotTo(BeNil())
	})
})
