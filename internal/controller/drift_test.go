package controller

import (
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

// everySecond verifies the provider's users every second.
func everySecond(s *usersv1.ProviderSpec) {
	s.DriftDetection = &usersv1.DriftDetection{Interval: &metav1.Duration{Duration: time.Second}}
}

var _ = Describe("Drift detection", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	// converge makes a UserSync of n users on a HubSpot provider verified
	// every second and returns the emulator and the records' ids by key.
	converge := func(n int, policy usersv1.DriftPolicy) (*hsemu.Emulator, map[string]string) {
		em := hubspotProvider(ns, "hs", hsemu.Options{}, everySecond)
		us := &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "team"},
			Spec: usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{ref("hs")}, Users: users(n, "d"), DriftPolicy: policy}}
		Expect(k8s.Create(ctx, us)).To(Succeed())
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		ids := map[string]string{}
		for _, r := range getSync(ns, "team").Status.Results {
			ids[r.Key] = r.ExternalID
		}
		return em, ids
	}
	record := func(key string) usersv1.RecordResult {
		r := resultOf(getSync(ns, "team"), "UserProvider/hs", key)
		if r == nil {
			return usersv1.RecordResult{}
		}
		return *r
	}

	It("corrects a property edited and re-creates a user deleted behind the operator's back (Correct)", func() {
		em, ids := converge(20, "")
		provider := "UserProvider/" + ns + "/hs"
		changed0 := testutil.ToFloat64(driftRecords.WithLabelValues(provider, "changed"))
		Expect(em.Edit(ids["d3"], map[string]string{"team": "sales"})).To(BeTrue())
		em.Archive(ids["d5"])
		Eventually(func() string { return record("d3").Action }, 20*time.Second).Should(Equal(usersv1.ActionCorrected))
		Eventually(func() string { return record("d5").Action }, 20*time.Second).Should(Equal(usersv1.ActionRecreated))
		u, _ := em.UserByID(ids["d3"])
		Expect(u.Properties["team"]).To(Equal("core"), "the edit was undone")
		Expect(record("d5").ExternalID).NotTo(Equal(ids["d5"]), "re-created under a new id")
		Expect(record("d3").ExternalID).To(Equal(ids["d3"]))
		Expect(em.Users()).To(HaveLen(20))
		Eventually(readyStatus(ns, "team"), 10*time.Second).Should(Equal("True/Synced"))
		Expect(testutil.ToFloat64(driftRecords.WithLabelValues(provider, "changed")) - changed0).To(Equal(1.0))
		Expect(testutil.ToFloat64(driftRecords.WithLabelValues(provider, "corrected"))).To(BeNumerically(">=", 2))
		Expect(providerStatus(ns).LastVerifiedTime).NotTo(BeNil())
	})

	It("reports drift naming the field and writes nothing (Report), then corrects it when the policy becomes Correct", func() {
		em, ids := converge(20, usersv1.DriftReport)
		em.ResetCounters()
		Expect(em.Edit(ids["d3"], map[string]string{"team": "sales"})).To(BeTrue())
		em.Archive(ids["d5"])
		Eventually(func() string { r := record("d3"); return string(r.State) + "/" + r.Reason }, 20*time.Second).
			Should(Equal("Drifted/Changed"))
		Eventually(func() string { r := record("d5"); return string(r.State) + "/" + r.Reason }, 20*time.Second).
			Should(Equal("Drifted/Missing"))
		Expect(record("d3").Message).To(ContainSubstring("team"))
		us := getSync(ns, "team")
		Expect(us.Status.Summary.Drifted).To(Equal(int32(2)))
		c := condition(us.Status.Conditions, usersv1.ConditionDrifted)
		Expect(c).NotTo(BeNil())
		Expect(c.Status).To(Equal(metav1.ConditionTrue))
		Expect(condition(us.Status.Conditions, usersv1.ConditionReady).Status).To(Equal(metav1.ConditionFalse))
		Consistently(func() int { return hubspotWrites(em) }, 3*time.Second).Should(BeZero(), "Report writes nothing")
		u, _ := em.UserByID(ids["d3"])
		Expect(u.Properties["team"]).To(Equal("sales"))

		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.DriftPolicy = usersv1.DriftCorrect })
		Eventually(func() string { return record("d3").Action }, 20*time.Second).Should(Equal(usersv1.ActionCorrected))
		Eventually(func() string { return record("d5").Action }, 20*time.Second).Should(Equal(usersv1.ActionRecreated))
		Eventually(readyStatus(ns, "team"), 10*time.Second).Should(Equal("True/Synced"))
		Expect(condition(getSync(ns, "team").Status.Conditions, usersv1.ConditionDrifted).Status).To(Equal(metav1.ConditionFalse))
	})

	It("reads nothing for a UserSync under Ignore", func() {
		em, ids := converge(20, usersv1.DriftIgnore)
		em.ResetCounters()
		em.Archive(ids["d5"])
		Consistently(func() int { return em.Calls(hsemu.EndpointRead) }, 4*time.Second).Should(BeZero())
		Expect(record("d5").State).To(Equal(usersv1.StateSynced))
	})

	It("changes no record and writes nothing when every read fails", func() {
		em, ids := converge(20, "")
		em.ResetCounters()
		em.Inject(hsemu.EndpointRead, hsemu.Fault{Status: http.StatusServiceUnavailable, Count: 100000})
		em.Archive(ids["d5"])
		Expect(em.Edit(ids["d3"], map[string]string{"team": "sales"})).To(BeTrue())
		before := getSync(ns, "team").ResourceVersion
		verified := providerStatus(ns).LastVerifiedTime
		// Passes end (each read retried, then given up) without learning
		// anything: at least two more of them.
		Eventually(func() bool {
			t := providerStatus(ns).LastVerifiedTime
			return t != nil && t.After(verified.Add(time.Second))
		}, 60*time.Second, 200*time.Millisecond).Should(BeTrue())
		Expect(em.Calls(hsemu.EndpointRead)).To(BeNumerically(">=", 2))
		Consistently(func() int { return hubspotWrites(em) }, 2*time.Second).Should(BeZero())
		Expect(getSync(ns, "team").ResourceVersion).To(Equal(before), "no UserSync status write")
		Expect(record("d5").State).To(Equal(usersv1.StateSynced))
		Expect(record("d3").State).To(Equal(usersv1.StateSynced))
	})

	It("finds nothing in an unchanged roster of 500 users over 3 passes: no vendor write, no UserSync status write", func() {
		em, _ := converge(500, "")
		em.ResetCounters()
		before := getSync(ns, "team").ResourceVersion
		first := providerStatus(ns).LastVerifiedTime
		Eventually(func() int { return em.Calls(hsemu.EndpointRead) }, 20*time.Second).Should(BeNumerically(">=", 15),
			"3 passes of ⌈500/100⌉ batch reads")
		Expect(hubspotWrites(em)).To(BeZero())
		Expect(getSync(ns, "team").ResourceVersion).To(Equal(before))
		Expect(getSync(ns, "team").Status.Summary.Drifted).To(BeZero())
		Expect(providerStatus(ns).LastVerifiedTime.After(first.Time)).To(BeTrue())
	})
})
