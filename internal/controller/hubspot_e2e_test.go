package controller

import (
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

const hubspotToken = "pat-na1-e2e-token"

// hubspotProvider starts an emulator and a UserProvider of type HubSpot
// pointing at it.
func hubspotProvider(ns, name string, eo hsemu.Options, mutate func(*usersv1.ProviderSpec)) *hsemu.Emulator {
	if eo.Tokens == nil {
		eo.Tokens = map[string][]string{hubspotToken: hubspot.DefaultScopes}
	}
	if eo.RateLimit == 0 {
		eo.RateLimit = -1
	}
	em := hsemu.New(eo)
	startHubSpotProvider(ns, name, em, mutate)
	return em
}

// startHubSpotProvider starts em and creates a UserProvider of type
// HubSpot pointing at it, with its Secret.
func startHubSpotProvider(ns, name string, em *hsemu.Emulator, mutate func(*usersv1.ProviderSpec)) {
	em.Start()
	DeferCleanup(em.Close)
	newSecret(ns, name+"-token", "token", hubspotToken)
	p := &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: usersv1.ProviderSpec{Type: usersv1.ProviderHubSpot, Endpoint: em.URL(), AllowInsecureHTTP: true,
			CredentialsRef: usersv1.SecretKeyReference{Name: name + "-token", Key: "token"}}}
	if mutate != nil {
		mutate(&p.Spec)
	}
	Expect(k8s.Create(ctx, p)).To(Succeed())
}

// hubspotWrites counts the write calls the emulator accepted.
func hubspotWrites(em *hsemu.Emulator) int {
	return em.Calls(hsemu.EndpointCreate) + em.Calls(hsemu.EndpointUpdate) +
		em.Calls(hsemu.EndpointUpsert) + em.Calls(hsemu.EndpointArchive)
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// providerReady returns "<status>/<reason>" of the UserProvider's Ready
// condition.
func providerReady(ns, name string) func() string {
	return func() string {
		p := &usersv1.UserProvider{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
			return err.Error()
		}
		c := condition(p.Status.Conditions, usersv1.ConditionReady)
		if c == nil {
			return ""
		}
		return string(c.Status) + "/" + c.Reason
	}
}

var _ = Describe("HubSpot end to end", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	It("says Ready Unknown when the vendor cannot be reached, instead of claiming the credentials work", func() {
		hubspotProvider(ns, "hs", hsemu.Options{}, func(s *usersv1.ProviderSpec) {
			s.Endpoint = "http://127.0.0.1:1" // nothing listens there
		})
		Eventually(providerReady(ns, "hs"), 30*time.Second).Should(Equal("Unknown/" + usersv1.ReasonVendorUnreachable))
	})

	It("says on the provider whether its creates are idempotent", func() {
		hubspotProvider(ns, "plain", hsemu.Options{}, nil)
		hubspotProvider(ns, "keyed", hsemu.Options{UniqueProperties: []string{"k8s_key"}}, func(s *usersv1.ProviderSpec) {
			s.HubSpot = &usersv1.HubSpotOptions{IDProperty: "k8s_key"}
		})
		idempotent := func(name string) func() string {
			return func() string {
				p := &usersv1.UserProvider{}
				if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
					return err.Error()
				}
				c := condition(p.Status.Conditions, usersv1.ConditionIdempotent)
				if c == nil {
					return ""
				}
				return string(c.Status) + "/" + c.Reason + ": " + c.Message
			}
		}
		Eventually(idempotent("plain"), 20*time.Second).Should(And(
			HavePrefix("False/CreatesNotIdempotent: "), ContainSubstring("spec.hubspot.idProperty")))
		Eventually(idempotent("keyed"), 20*time.Second).Should(HavePrefix("True/IdempotentCreates: "))
	})

	It("adopts the users a lost status created: a UserSync deleted under Orphan and applied again creates no user twice", func() {
		// The emulator accepts duplicate emails: only the operator can
		// prevent them.
		em := hubspotProvider(ns, "hs", hsemu.Options{DuplicateEmails: true}, nil)
		apply := func() {
			us := &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "team"},
				Spec: usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{ref("hs")}, Users: users(50, "a"),
					DeletionPolicy: usersv1.DeletionPolicyOrphan}}
			Expect(k8s.Create(ctx, us)).To(Succeed())
			Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		}
		apply()
		ids := map[string]string{}
		for _, r := range getSync(ns, "team").Status.Results {
			ids[r.Key] = r.ExternalID
		}
		Expect(ids).To(HaveLen(50))

		Expect(k8s.Delete(ctx, getSync(ns, "team"))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "team"}, &usersv1.UserSync{}))
		}, 20*time.Second).Should(BeTrue())
		em.ResetCounters()
		apply()
		Expect(em.Users()).To(HaveLen(50), "a user was created twice")
		Expect(em.Calls(hsemu.EndpointCreate)).To(BeZero())
		Expect(em.Calls(hsemu.EndpointSearch)).To(Equal(1))
		for _, r := range getSync(ns, "team").Status.Results {
			Expect(r.Action).To(Equal("Adopted"), r.Key)
			Expect(r.ExternalID).To(Equal(ids[r.Key]), r.Key)
		}
	})

	// lostCreatesUnderIndexLag loses the answer of the first batch/create of
	// 30 users (madeThem: after HubSpot made them) on a portal whose emails are not unique (lookups search) and
	// whose search index trails creates by 4 s, twice the retry backoff's
	// longest step, with spec.hubspot.searchIndexDelay delay. It waits until
	// the UserSync is Ready and returns how many users HubSpot holds and
	// whether a record was seen waiting for the index.
	lostCreatesUnderIndexLag := func(delay time.Duration, madeThem bool) (held int, waited bool) {
		em := hubspotProvider(ns, "hs", hsemu.Options{DuplicateEmails: true, SearchIndexDelay: 4 * time.Second},
			func(s *usersv1.ProviderSpec) {
				s.HubSpot = &usersv1.HubSpotOptions{SearchIndexDelay: &metav1.Duration{Duration: delay}}
			})
		em.Inject(hsemu.EndpointCreate, hsemu.Fault{Status: http.StatusGatewayTimeout, Count: 1, AfterApply: madeThem})
		newSync(ns, "team", users(30, "u"), ref("hs"))
		Eventually(func() string {
			for _, r := range getSync(ns, "team").Status.Results {
				if r.Reason == providers.ReasonAwaitingIndex {
					waited = true
					Expect(r.State).To(Equal(usersv1.StatePending))
					Expect(r.Message).To(ContainSubstring("searchIndexDelay"))
				}
			}
			return readyStatus(ns, "team")()
		}, 40*time.Second, 100*time.Millisecond).Should(Equal("True/Synced"))
		for _, c := range em.Log() {
			GinkgoWriter.Printf("%s %s %d %v\n", c.At.Format("15:04:05.000"), c.Endpoint, c.Inputs, c.Fault != nil)
		}
		return len(em.Users()), waited
	}

	It("never trusts a search that may lag: lost creates wait for the index, then are adopted, none made twice", func() {
		n, waited := lostCreatesUnderIndexLag(8*time.Second, true)
		Expect(waited).To(BeTrue(), "no record waited for the index")
		Expect(n).To(Equal(30), "a user was created twice")
		ids := map[string]bool{}
		for _, r := range getSync(ns, "team").Status.Results {
			Expect(r.Action).To(Equal("Adopted"), r.Key)
			ids[r.ExternalID] = true
		}
		Expect(ids).To(HaveLen(30))
		Eventually(func() []usersv1.CreateIntent { return providerStatus(ns).CreatesInFlight }, 10*time.Second).Should(BeEmpty())
	})

	It("creates the users of a lost create that made nothing once searchIndexDelay has passed, and only then", func() {
		start := time.Now()
		n, waited := lostCreatesUnderIndexLag(3*time.Second, false)
		Expect(waited).To(BeTrue(), "no record waited for the index")
		Expect(n).To(Equal(30))
		Expect(time.Since(start)).To(BeNumerically(">=", 3*time.Second), "created before the delay had passed")
		for _, r := range getSync(ns, "team").Status.Results {
			Expect(r.Action).To(Equal("Created"), r.Key)
		}
	})

	It("duplicates lost creates when searchIndexDelay is shorter than the index lag (the test above tests the wait)", func() {
		n, _ := lostCreatesUnderIndexLag(time.Second, true)
		Expect(n).To(Equal(60), "with a delay shorter than the lag the lookups find nothing and every user is created again")
	})

	It("creates 220 users of two UserSyncs in 3 batch calls, updates only the 5 changed in one call, and writes nothing when idle", func() {
		em := hubspotProvider(ns, "hs", hsemu.Options{ShuffleResults: true}, nil)
		newSync(ns, "eng", users(150, "e"), ref("hs"))
		newSync(ns, "ops", users(70, "o"), ref("hs"))
		Eventually(readyStatus(ns, "eng"), 30*time.Second).Should(Equal("True/Synced"))
		Eventually(readyStatus(ns, "ops"), 30*time.Second).Should(Equal("True/Synced"))
		creates := em.Inputs(hsemu.EndpointCreate)
		GinkgoWriter.Printf("batch/create calls for 220 users: %v\n", creates)
		Expect(creates).To(HaveLen(3))
		Expect(sum(creates)).To(Equal(220))
		Expect(em.Users()).To(HaveLen(220))

		// Every record carries the HubSpot id of the user with its email.
		eng := getSync(ns, "eng")
		Expect(eng.Status.Summary.Synced).To(Equal(int32(150)))
		for _, r := range eng.Status.Results {
			u, ok := em.UserByID(r.ExternalID)
			Expect(ok).To(BeTrue(), r.Key)
			Expect(u.Properties[hubspot.PropEmail]).To(Equal(r.Key + "@example.com"))
			Expect(r.Action).To(Equal("Created"))
		}

		em.ResetCounters()
		updateSync(ns, "eng", func(us *usersv1.UserSync) {
			for _, i := range []int{0, 33, 66, 99, 149} {
				us.Spec.Users[i].Attributes["team"] = usersv1.StringValue("platform")
			}
		})
		Eventually(readyStatus(ns, "eng"), 30*time.Second).Should(Equal("True/Synced"))
		Eventually(func() []int { return em.Inputs(hsemu.EndpointUpdate) }, 10*time.Second).Should(Equal([]int{5}))
		Expect(em.Calls(hsemu.EndpointCreate)).To(BeZero())
		u, _ := em.UserByID(resultOf(getSync(ns, "eng"), "UserProvider/hs", "e33").ExternalID)
		Expect(u.Properties["team"]).To(Equal("platform"))

		// Idle: several resync intervals (2 s in this suite) write nothing.
		em.ResetCounters()
		Consistently(func() int { return hubspotWrites(em) }, 6*time.Second, 500*time.Millisecond).Should(BeZero())
	})

	It("archives exactly the removed users under Delete, writes nothing under Orphan, and archives a deleted UserSync's users before releasing it", func() {
		em := hubspotProvider(ns, "hs", hsemu.Options{}, nil)
		del := newSync(ns, "del", users(8, "d"), ref("hs"))
		newSync(ns, "orphan", users(4, "o"), ref("hs"))
		updateSync(ns, "del", func(us *usersv1.UserSync) { us.Spec.DeletionPolicy = usersv1.DeletionPolicyDelete })
		_ = del
		Eventually(readyStatus(ns, "del"), 30*time.Second).Should(Equal("True/Synced"))
		Eventually(readyStatus(ns, "orphan"), 30*time.Second).Should(Equal("True/Synced"))
		Expect(em.Users()).To(HaveLen(12))
		removed := map[string]string{}
		for _, k := range []string{"d2", "d5"} {
			removed[resultOf(getSync(ns, "del"), "UserProvider/hs", k).ExternalID] = k
		}

		em.ResetCounters()
		updateSync(ns, "del", func(us *usersv1.UserSync) {
			var keep []usersv1.User
			for _, u := range us.Spec.Users {
				if u.Key != "d2" && u.Key != "d5" {
					keep = append(keep, u)
				}
			}
			us.Spec.Users = keep
		})
		updateSync(ns, "orphan", func(us *usersv1.UserSync) { us.Spec.Users = us.Spec.Users[:1] })
		Eventually(func() []int { return em.Inputs(hsemu.EndpointArchive) }, 20*time.Second).Should(Equal([]int{2}))
		Eventually(readyStatus(ns, "del"), 20*time.Second).Should(Equal("True/Synced"))
		Eventually(func() []usersv1.RecordResult { return getSync(ns, "orphan").Status.Results }, 20*time.Second).Should(HaveLen(1))
		Expect(em.Users()).To(HaveLen(10))
		for id := range removed {
			u, _ := em.UserByID(id)
			Expect(u.Archived).To(BeTrue(), removed[id])
		}
		Expect(em.Calls(hsemu.EndpointArchive)).To(Equal(1), "Orphan archives nothing")

		Expect(k8s.Delete(ctx, getSync(ns, "del"))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "del"}, &usersv1.UserSync{}))
		}, 30*time.Second).Should(BeTrue())
		Expect(em.Users()).To(HaveLen(4), "the deleted UserSync's 6 users are archived; the orphaned 4 stay")
		Expect(sum(em.Inputs(hsemu.EndpointArchive))).To(Equal(8))

		Expect(k8s.Delete(ctx, getSync(ns, "orphan"))).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "orphan"}, &usersv1.UserSync{}))
		}, 30*time.Second).Should(BeTrue())
		Expect(em.Users()).To(HaveLen(4))
	})

	It("fails only the record HubSpot rejects, with HubSpot's message, while the rest of its batch syncs", func() {
		em := hubspotProvider(ns, "hs", hsemu.Options{Reject: func(p map[string]string) (string, string, bool) {
			if strings.Contains(p["team"], "<") {
				return "VALIDATION_ERROR", "Property values were not valid: team may not contain markup", true
			}
			return "", "", false
		}}, nil)
		us := users(30, "u")
		us[17].Attributes["team"] = usersv1.StringValue("<b>core</b>")
		newSync(ns, "team", us, ref("hs"))
		Eventually(func() usersv1.Summary { return getSync(ns, "team").Status.Summary }, 30*time.Second).
			Should(Equal(usersv1.Summary{Desired: 30, Synced: 29, Failed: 1}))
		r := resultOf(getSync(ns, "team"), "UserProvider/hs", "u17")
		Expect(string(r.State)).To(Equal("Failed"))
		Expect(r.Reason).To(Equal("VALIDATION_ERROR"))
		Expect(r.Message).To(ContainSubstring("team may not contain markup"))
		Expect(em.Inputs(hsemu.EndpointCreate)).To(Equal([]int{30}))
		Expect(em.Users()).To(HaveLen(29))
		Expect(readyStatus(ns, "team")()).To(HavePrefix("False/"))
	})

	It("reports a wrong token on the provider, keeps records Pending, and recovers when the Secret is fixed", func() {
		em := hubspotProvider(ns, "hs", hsemu.Options{}, nil)
		sec := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hs-token"}, sec)).To(Succeed())
		sec.Data["token"] = []byte("pat-na1-revoked")
		Expect(k8s.Update(ctx, sec)).To(Succeed())
		newSync(ns, "team", users(5, "u"), ref("hs"))
		Eventually(providerReady(ns, "hs"), 20*time.Second).Should(Equal("False/Unauthorized"))
		p := &usersv1.UserProvider{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hs"}, p)).To(Succeed())
		Expect(condition(p.Status.Conditions, usersv1.ConditionReady).Message).NotTo(ContainSubstring("revoked"), "the token never reaches the status")
		Eventually(func() string {
			r := resultOf(getSync(ns, "team"), "UserProvider/hs", "u0")
			if r == nil {
				return ""
			}
			return string(r.State)
		}, 20*time.Second).Should(Equal("Pending"))
		Expect(em.Users()).To(BeEmpty())

		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hs-token"}, sec)).To(Succeed())
		sec.Data["token"] = []byte(hubspotToken)
		Expect(k8s.Update(ctx, sec)).To(Succeed())
		Eventually(readyStatus(ns, "team"), 20*time.Second).Should(Equal("True/Synced"))
		Eventually(providerReady(ns, "hs"), 10*time.Second).Should(HavePrefix("True/"))
		Expect(em.Users()).To(HaveLen(5))
	})

	It("converges when HubSpot throttles, shows it was rate limited, and never exceeds HubSpot's limit", func() {
		// HubSpot allows 3 calls a second; the provider is told 50.
		em := hubspotProvider(ns, "hs", hsemu.Options{RateLimit: 3, RateWindow: time.Second},
			func(s *usersv1.ProviderSpec) {
				s.BatchSize = ptr(int32(25))
				s.RateLimit = &usersv1.RateLimit{Requests: 50, Period: metav1.Duration{Duration: time.Second}}
			})
		newSync(ns, "team", users(300, "u"), ref("hs"))
		Eventually(readyStatus(ns, "team"), 60*time.Second).Should(Equal("True/Synced"))
		Expect(em.Users()).To(HaveLen(300))
		GinkgoWriter.Printf("throttled %d times; at most %d calls in a window of 1s (limit 3)\n", em.Throttled(), em.MaxInWindow())
		Expect(em.Throttled()).To(BeNumerically(">", 0), "the emulator never throttled: the spec proves nothing")
		Expect(em.MaxInWindow()).To(BeNumerically("<=", 3))
		Eventually(func() bool {
			var evs eventsv1.EventList
			Expect(k8s.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
			for _, e := range evs.Items {
				if e.Reason == usersv1.ReasonRateLimited && e.Regarding.Name == "hs" {
					return true
				}
			}
			return false
		}, 10*time.Second).Should(BeTrue(), "a RateLimited event on the provider")
	})
})

var _ = Describe("A long HubSpot sync under a rate limit", func() {
	It("uses each rolling window whole without a 429, and stores every UserSync as soon as its calls are answered", func() {
		ns := newNamespace(nil)
		// The UserSyncs exist before the provider: one loop carries them all.
		for _, n := range []string{"a", "b", "c"} {
			newSync(ns, n, users(40, n), ref("hs"))
		}
		// HubSpot allows 4 calls in any second, and the provider says so:
		// 12 calls of 10 need 3 windows.
		em := hubspotProvider(ns, "hs", hsemu.Options{RateLimit: 4, RateWindow: time.Second},
			func(s *usersv1.ProviderSpec) {
				s.BatchSize = ptr(int32(10))
				s.RateLimit = &usersv1.RateLimit{Requests: 4, Period: metav1.Duration{Duration: time.Second}}
			})
		// A UserSync is Ready while the vendor still works on the others.
		Eventually(func() bool {
			ready := 0
			for _, n := range []string{"a", "b", "c"} {
				if readyStatus(ns, n)() == "True/Synced" {
					ready++
				}
			}
			return ready > 0 && len(em.Users()) < 120
		}, 20*time.Second, 50*time.Millisecond).Should(BeTrue(), "no UserSync was stored before the last call")
		for _, n := range []string{"a", "b", "c"} {
			Eventually(readyStatus(ns, n), 20*time.Second).Should(Equal("True/Synced"))
		}
		Expect(em.Users()).To(HaveLen(120))
		Expect(em.Calls(hsemu.EndpointCreate)).To(Equal(12))
		Expect(em.Throttled()).To(BeZero(), "the provider's own limit kept within HubSpot's")
		Expect(em.MaxInWindow()).To(Equal(4), "every window used whole")
	})
})

var _ = Describe("A user moved between UserSyncs", func() {
	It("is handed over to the UserSync it moved to, not archived, when it is added there before it leaves", func() {
		ns := newNamespace(nil)
		em := hubspotProvider(ns, "hs", hsemu.Options{}, nil)
		all := users(10, "m")
		newSync(ns, "a", all[:6], ref("hs"))
		newSync(ns, "b", all[6:], ref("hs"))
		for _, n := range []string{"a", "b"} {
			updateSync(ns, n, func(us *usersv1.UserSync) { us.Spec.DeletionPolicy = usersv1.DeletionPolicyDelete })
		}
		Eventually(readyStatus(ns, "a"), 30*time.Second).Should(Equal("True/Synced"))
		Eventually(readyStatus(ns, "b"), 30*time.Second).Should(Equal("True/Synced"))
		ids := map[string]string{}
		for _, k := range []string{"m4", "m5"} {
			ids[k] = resultOf(getSync(ns, "a"), "UserProvider/hs", k).ExternalID
		}
		em.ResetCounters()

		// The usual order of a Helm upgrade that re-chunks a list: the
		// users appear in b, then leave a (and b's create of them may not
		// have happened yet when a's loop runs).
		updateSync(ns, "b", func(us *usersv1.UserSync) { us.Spec.Users = append(us.Spec.Users, all[4], all[5]) })
		updateSync(ns, "a", func(us *usersv1.UserSync) { us.Spec.Users = us.Spec.Users[:4] })
		Eventually(func() int { return len(getSync(ns, "b").Status.Results) }, 30*time.Second).Should(Equal(6))
		Eventually(readyStatus(ns, "b"), 30*time.Second).Should(Equal("True/Synced"))
		Eventually(readyStatus(ns, "a"), 30*time.Second).Should(Equal("True/Synced"))
		Expect(em.Calls(hsemu.EndpointArchive)).To(BeZero(), "a moved user was archived")
		Expect(em.Users()).To(HaveLen(10))
		for k, id := range ids {
			Expect(resultOf(getSync(ns, "b"), "UserProvider/hs", k).ExternalID).To(Equal(id), k)
		}
	})
})
