package controller

import (
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
	propemu "github.com/usersync/usersync-operator/internal/providers/propel/emulator"
	ucemu "github.com/usersync/usersync-operator/internal/providers/usercom/emulator"
)

// everySecond verifies the provider's users every second.
func everySecond(s *usersv1.ProviderSpec) {
	s.DriftDetection = &usersv1.DriftDetection{Interval: &metav1.Duration{Duration: time.Second}}
}

// stopProviders deletes the UserProviders of ns at the end of a spec: their
// emulators are gone, and providers verified every second would go on
// reading them for the rest of the suite.
func stopProviders(ns string) {
	DeferCleanup(func() {
		Expect(k8s.DeleteAllOf(ctx, &usersv1.UserProvider{}, client.InNamespace(ns))).To(Succeed())
	})
}

var _ = Describe("Drift detection", func() {
	var ns string
	BeforeEach(func() {
		ns = newNamespace(nil)
		stopProviders(ns)
	})

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

	It("counts the users that carry the provider's idProperty and that no UserSync declares, and deletes none", func() {
		em := hubspotProvider(ns, "hs", hsemu.Options{UniqueProperties: []string{"k8s_key"}}, func(s *usersv1.ProviderSpec) {
			everySecond(s)
			s.HubSpot = &usersv1.HubSpotOptions{IDProperty: "k8s_key"}
		})
		for _, k := range []string{"gone-1", "gone-2", "gone-3"} {
			em.Put(map[string]string{"k8s_key": k, "hs_email": k + "@example.com"})
		}
		em.Put(map[string]string{"hs_email": "someone@example.com"}) // not this provider's
		newSync(ns, "team", users(10, "o"), ref("hs"))
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		Eventually(func() *int32 { return providerStatus(ns).Orphans }, 20*time.Second).Should(HaveValue(Equal(int32(3))))
		Expect(em.Users()).To(HaveLen(14), "orphans are reported, never deleted")
	})

	It("answers a write that arrives mid-pass within one read call", func() {
		// 1,000 users on two UserSyncs; every HubSpot answer takes 150 ms,
		// so a pass of 10 batch reads lasts 1.5 s.
		em := hubspotProvider(ns, "hs", hsemu.Options{Latency: 150 * time.Millisecond}, func(s *usersv1.ProviderSpec) {
			s.DriftDetection = &usersv1.DriftDetection{Interval: &metav1.Duration{Duration: 3 * time.Second}}
		})
		newSync(ns, "a", users(500, "a"), ref("hs"))
		newSync(ns, "b", users(500, "b"), ref("hs"))
		Eventually(readyStatus(ns, "a"), 60*time.Second).Should(Equal("True/Synced"))
		Eventually(readyStatus(ns, "b"), 60*time.Second).Should(Equal("True/Synced"))
		em.ResetCounters()
		// Wait until a pass is under way (its third read), then change a user.
		Eventually(func() int { return em.Calls(hsemu.EndpointRead) }, 20*time.Second, 10*time.Millisecond).Should(BeNumerically(">=", 3))
		updateSync(ns, "b", func(us *usersv1.UserSync) {
			us.Spec.Users[7].Attributes["team"] = usersv1.StringValue("moved")
		})
		// The API server has stored the change (validating 500 users takes
		// it a moment): from here the operator is told within a watch
		// event's latency.
		changed := time.Now()
		Eventually(func() int { return em.Calls(hsemu.EndpointUpdate) }, 10*time.Second, 10*time.Millisecond).Should(Equal(1))
		var readsAfter int
		var update time.Time
		for _, c := range em.Log() {
			switch {
			case c.Endpoint == hsemu.EndpointUpdate && update.IsZero():
				update = c.At
			case c.Endpoint == hsemu.EndpointRead && c.At.After(changed) && update.IsZero():
				readsAfter++
			}
		}
		GinkgoWriter.Printf("the write was sent %s after the change, after %d read calls\n", update.Sub(changed), readsAfter)
		// One read may be under way when the change is stored, and one may
		// start before its watch event reaches the operator; a pass that
		// did not yield would read the 5 to 7 calls left of it first.
		Expect(readsAfter).To(BeNumerically("<=", 2), "the pass went on reading before the write")
	})

	// Writes pending all along: the provider allows 10 calls per rolling
	// 2 s and writes 10 users a call; UserSync a (200 users, read first by
	// name) is rewritten in 20 update calls while b (100 users) is read
	// back in 10 calls.
	DescribeTable("reads beside pending writes within maxReadShare of the rate limit",
		func(share int32, allowance int) {
			const limit, window = 10, 2 * time.Second
			em := hubspotProvider(ns, "hs", hsemu.Options{RateLimit: limit, RateWindow: window}, func(s *usersv1.ProviderSpec) {
				s.RateLimit = &usersv1.RateLimit{Requests: limit, Period: metav1.Duration{Duration: window}}
				s.BatchSize = ptr[int32](10)
				s.HubSpot = &usersv1.HubSpotOptions{Adoption: usersv1.HubSpotAdoptNever}
				s.DriftDetection = &usersv1.DriftDetection{Interval: &metav1.Duration{}, MaxReadShare: ptr(share)}
			})
			newSync(ns, "a", users(200, "a"), ref("hs"))
			newSync(ns, "b", users(100, "b"), ref("hs"))
			Eventually(readyStatus(ns, "a"), 60*time.Second).Should(Equal("True/Synced"))
			Eventually(readyStatus(ns, "b"), 60*time.Second).Should(Equal("True/Synced"))
			em.ResetCounters()
			// b's first user, edited behind the operator's back, is read
			// beside the writes (or after them, under 1%) and corrected.
			edited := resultOf(getSync(ns, "b"), "UserProvider/hs", "b0").ExternalID
			Expect(em.Edit(edited, map[string]string{"team": "sales"})).To(BeTrue())
			// Never verified: a pass starts at once, with nothing to write.
			Eventually(func() error {
				p := &usersv1.UserProvider{}
				if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hs"}, p); err != nil {
					return err
				}
				p.Spec.DriftDetection.Interval = &metav1.Duration{Duration: time.Hour}
				return k8s.Update(ctx, p)
			}, 10*time.Second).Should(Succeed())
			Eventually(func() int { return em.Calls(hsemu.EndpointRead) }, 20*time.Second, 10*time.Millisecond).Should(BeNumerically(">=", 3))
			updateSync(ns, "a", func(us *usersv1.UserSync) {
				for i := range us.Spec.Users {
					us.Spec.Users[i].Attributes["team"] = usersv1.StringValue("moved")
				}
			})
			Eventually(func() int { return em.Calls(hsemu.EndpointUpdate) }, 60*time.Second, 100*time.Millisecond).Should(BeNumerically(">=", 20))
			Eventually(func() *metav1.Time { return providerStatus(ns).LastVerifiedTime }, 60*time.Second).ShouldNot(BeNil(),
				"the pass goes on and ends")
			// The span of a's 20 updates (the correction of b0 comes after).
			var reads []time.Time
			var first, last time.Time
			updates := 0
			for _, c := range em.Log() {
				switch {
				case c.Endpoint == hsemu.EndpointRead:
					reads = append(reads, c.At)
				case c.Endpoint == hsemu.EndpointUpdate && updates < 20:
					updates++
					if first.IsZero() {
						first = c.At
					}
					last = c.At
				}
			}
			beside := 0
			for _, t := range reads {
				if t.Before(first) || t.After(last) {
					continue
				}
				beside++
				inWindow := 0
				for _, o := range reads {
					if !o.Before(t.Add(-window)) && !o.After(t) {
						inWindow++
					}
				}
				Expect(inWindow).To(BeNumerically("<=", allowance),
					"a read beside the writes had %d reads in its window of %s (maxReadShare %d%% of %d calls)", inWindow, window, share, limit)
			}
			GinkgoWriter.Printf("maxReadShare %d%%: %d reads of %d beside 20 writes over %s\n", share, beside, len(reads), last.Sub(first))
			if allowance == 0 {
				Expect(beside).To(BeZero(), "reads while writes were pending")
			} else {
				Expect(beside).To(BeNumerically(">", 0), "no read progress while writes were pending")
			}
			Expect(em.Throttled()).To(BeZero())
			Eventually(func() string {
				r := resultOf(getSync(ns, "b"), "UserProvider/hs", "b0")
				if r == nil {
					return ""
				}
				return r.Action
			}, 30*time.Second).Should(Equal(usersv1.ActionCorrected))
			u, _ := em.UserByID(edited)
			Expect(u.Properties["team"]).To(Equal("core"))
			// The pass went on from where each loop stopped it: no user
			// was read twice (30 calls read every user once).
			Expect(len(reads)).To(BeNumerically("<=", 30), "the pass began again instead of going on")
		},
		Entry("20%: 2 reads in any window of 10 calls", int32(20), 2),
		Entry("1%: less than one call of 10, so none", int32(1), 0),
	)

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
		// Two passes fail (each read retried, then given up) without
		// learning anything.
		Eventually(func() int { return em.Calls(hsemu.EndpointRead) }, 60*time.Second, 200*time.Millisecond).
			Should(BeNumerically(">=", 8))
		Consistently(func() int { return hubspotWrites(em) }, 2*time.Second).Should(BeZero())
		Expect(getSync(ns, "team").ResourceVersion).To(Equal(before), "no UserSync status write")
		Expect(providerStatus(ns).LastVerifiedTime).To(Equal(verified), "a failed pass verified nothing")
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

// setDriftEverySecond makes the UserProvider name of ns verify every second.
func setDriftEverySecond(ns, name string) {
	Eventually(func() error {
		p := &usersv1.UserProvider{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
			return err
		}
		everySecond(&p.Spec)
		return k8s.Update(ctx, p)
	}, 10*time.Second).Should(Succeed())
}

// The same corrections on the vendors that read one user a call.
var _ = Describe("Drift detection on user.com and Propel", func() {
	DescribeTable("corrects an edited user and re-creates a deleted one",
		func(start func(ns string) (name string, edit func(key string) bool, remove func(key string) bool)) {
			ns := newNamespace(nil)
			stopProviders(ns)
			name, edit, remove := start(ns)
			newSync(ns, "team", users(10, "v"), ref(name))
			Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
			before := resultOf(getSync(ns, "team"), "UserProvider/"+name, "v4").ExternalID
			setDriftEverySecond(ns, name)
			Expect(edit("v3")).To(BeTrue())
			Expect(remove("v4")).To(BeTrue())
			rec := func(key string) func() string {
				return func() string {
					r := resultOf(getSync(ns, "team"), "UserProvider/"+name, key)
					if r == nil {
						return ""
					}
					return r.Action
				}
			}
			Eventually(rec("v3"), 30*time.Second).Should(Equal(usersv1.ActionCorrected))
			Eventually(rec("v4"), 30*time.Second).Should(Equal(usersv1.ActionRecreated))
			Eventually(readyStatus(ns, "team"), 10*time.Second).Should(Equal("True/Synced"))
			GinkgoWriter.Printf("%s: v4 was %s, re-created as %s\n", name, before,
				resultOf(getSync(ns, "team"), "UserProvider/"+name, "v4").ExternalID)
		},
		Entry("user.com", func(ns string) (string, func(string) bool, func(string) bool) {
			em := usercomProvider(ns, "usercom", ucemu.Options{Attributes: map[string]string{"team": ucemu.TypeString}}, 50)
			return "usercom",
				func(key string) bool { return em.EditUser(key, map[string]any{"first_name": "Someone else"}) },
				em.DeleteUser
		}),
		Entry("Propel", func(ns string) (string, func(string) bool, func(string) bool) {
			em := propelProvider(ns, propemu.Options{})
			return "propel",
				func(key string) bool { return em.EditUser("k8s-e2e", key, map[string]any{"firstName": "Someone else"}) },
				func(key string) bool { return em.DeleteUser("k8s-e2e", key) }
		}),
	)
})
