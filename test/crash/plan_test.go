package crash

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

// hubspotWrites counts the write calls the emulator received, refused and
// faulted ones included.
func hubspotWrites(em *hsemu.Emulator) int {
	return em.Calls(hsemu.EndpointCreate) + em.Calls(hsemu.EndpointUpdate) +
		em.Calls(hsemu.EndpointUpsert) + em.Calls(hsemu.EndpointArchive)
}

func getSync(ns, name string) *usersv1.UserSync {
	us := &usersv1.UserSync{}
	Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, us)).To(Succeed())
	return us
}

func updateSync(ns, name string, edit func(*usersv1.UserSync)) {
	Eventually(func() error {
		us := getSync(ns, name)
		edit(us)
		return k8s.Update(context.Background(), us)
	}, 10*time.Second).Should(Succeed())
}

var _ = Describe("A UserSync in mode Plan while the operator is SIGKILLed", func() {
	It("costs the vendor no write, through kills, read faults, drift and a provider change; its approval applies it exactly once", func() {
		ctx := context.Background()
		em := hsemu.New(hsemu.Options{Tokens: map[string][]string{token: hubspot.DefaultScopes},
			RateLimit: -1, Latency: 40 * time.Millisecond, DuplicateEmails: true})
		em.Start()
		defer em.Close()
		ns, _ := setup(em, 0, 0)
		// Drift detection every 2 s: under Plan the reads go on (and the
		// held updates are read to name their fields); they are faulted.
		updateProvider := func(edit func(*usersv1.ProviderSpec)) {
			Eventually(func() error {
				p := &usersv1.UserProvider{}
				if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hs"}, p); err != nil {
					return err
				}
				edit(&p.Spec)
				return k8s.Update(ctx, p)
			}, 10*time.Second).Should(Succeed())
		}
		// The emulator's search is current at once: a lookup need not wait
		// for HubSpot's index more than a few seconds.
		updateProvider(func(s *usersv1.ProviderSpec) {
			s.DriftDetection = &usersv1.DriftDetection{Interval: &metav1.Duration{Duration: 2 * time.Second}}
			s.HubSpot = &usersv1.HubSpotOptions{SearchIndexDelay: &metav1.Duration{Duration: 3 * time.Second}}
		})
		log := filepath.Join(GinkgoT().TempDir(), "operator.log")

		// 200 users synced under Apply.
		first := userList("p-", 200)
		Expect(k8s.Create(ctx, &usersv1.UserSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "team"},
			Spec: usersv1.UserSyncSpec{ProviderRefs: []usersv1.ProviderRef{{Kind: usersv1.KindUserProvider, Name: "hs"}},
				Users: first, DeletionPolicy: usersv1.DeletionPolicyDelete}})).To(Succeed())
		op := startOperator(log)
		Eventually(allReady(ns), 60*time.Second, 500*time.Millisecond).Should(Equal(1))
		op.kill()
		ids := map[string]string{}
		for _, r := range getSync(ns, "team").Status.Results {
			ids[r.Key] = r.ExternalID
		}
		em.ResetCounters()

		// Mode Plan: 100 users change, 80 stay, 20 leave (deletionPolicy
		// Delete), 320 join: 500 declared.
		want := map[string]usersv1.User{}
		updateSync(ns, "team", func(us *usersv1.UserSync) {
			us.Spec.Mode = usersv1.ModePlan
			kept := us.Spec.Users[:180]
			for i := range kept[:100] {
				kept[i].Attributes["team"] = usersv1.StringValue("moved")
			}
			us.Spec.Users = append(kept, userList("n-", 320)...)
			for _, u := range us.Spec.Users {
				want[u.Email] = u
			}
		})
		// Drift behind the operator's back on two of the users that stay
		// (a correction and a re-creation are writes: planned, held), and
		// faults on the reads (drift detection, and the reads that name a
		// held update's fields): the plan below shows the drift, so they
		// were all answered before the approval.
		Expect(em.Edit(ids["p-0150"], map[string]string{"team": "sales"})).To(BeTrue())
		em.Archive(ids["p-0160"])
		em.Inject(hsemu.EndpointRead, hsemu.Fault{Status: 503, Count: 4})
		em.Inject(hsemu.EndpointRead, hsemu.Fault{Status: 429, RetryAfter: "1", Count: 2})

		const kills = 8
		rng := rand.New(rand.NewPCG(uint64(GinkgoRandomSeed()), 13))
		for i := range kills {
			op := startOperator(log)
			time.Sleep(time.Duration(300+rng.IntN(2700)) * time.Millisecond)
			op.kill()
			if i == kills/2 {
				// A provider change: the operator builds its client again.
				updateProvider(func(s *usersv1.ProviderSpec) {
					s.RateLimit = &usersv1.RateLimit{Requests: 500, Period: metav1.Duration{Duration: time.Second}}
				})
			}
			GinkgoWriter.Printf("kill %d: %d write calls, %d reads, plan %v\n", i+1, hubspotWrites(em),
				em.Calls(hsemu.EndpointRead), getSync(ns, "team").Status.Plan)
			Expect(hubspotWrites(em)).To(BeZero(), "a UserSync in mode Plan wrote to the vendor")
		}
		op = startOperator(log)
		defer func() { op.kill() }()
		var plan usersv1.ProviderPlan
		Eventually(func(g Gomega) {
			us := getSync(ns, "team")
			g.Expect(us.Status.ObservedGeneration).To(Equal(us.Generation))
			g.Expect(us.Status.Plan).To(HaveLen(1))
			plan = us.Status.Plan[0]
			// With the drift found: p-0160 created again, p-0150 corrected.
			g.Expect([]int32{plan.Creates, plan.Updates, plan.Deletes}).To(Equal([]int32{321, 101, 20}))
		}, 60*time.Second, 500*time.Millisecond).Should(Succeed())
		Consistently(func() int { return hubspotWrites(em) }, 4*time.Second, 100*time.Millisecond).Should(BeZero(),
			"a UserSync in mode Plan wrote to the vendor")
		Expect(em.Calls(hsemu.EndpointRead)).To(BeNumerically(">", 0), "the reads went on under Plan")
		AddReportEntry("SIGKILLs under Plan with 0 writes", kills)

		// The approval applies exactly that plan, once.
		plan = getSync(ns, "team").Status.Plan[0]
		em.ResetCounters()
		updateSync(ns, "team", func(us *usersv1.UserSync) {
			us.Annotations = map[string]string{usersv1.AnnotationApprovePlan: plan.Token}
		})
		approved := time.Now()
		Eventually(allReady(ns), 120*time.Second, 500*time.Millisecond).Should(Equal(1), func() string {
			us := getSync(ns, "team")
			reasons := map[string]int{}
			msg := ""
			for _, r := range us.Status.Results {
				reasons[string(r.State)+"/"+r.Reason+"/"+r.Action]++
				if r.State != usersv1.StateSynced {
					msg = r.Message
				}
			}
			return fmt.Sprintf("records %v (last message %q), conditions %v; %d creates, %d searches, %d reads",
				reasons, msg, us.Status.Conditions, em.Calls(hsemu.EndpointCreate), em.Calls(hsemu.EndpointSearch), em.Calls(hsemu.EndpointRead))
		})
		GinkgoWriter.Printf("applied %s after the approval; %d searches\n", time.Since(approved).Round(time.Second), em.Calls(hsemu.EndpointSearch))
		verifyExactlyOnce(em, ns, want)
		Expect(getSync(ns, "team").Status.Plan).To(BeEmpty())
		// Each planned write once, in full batches of 50: 321 creates, 101
		// updates, 20 archives.
		sum := func(in []int) (n int) {
			for _, v := range in {
				n += v
			}
			return n
		}
		writes := func() []int {
			return []int{em.Calls(hsemu.EndpointCreate), sum(em.Inputs(hsemu.EndpointCreate)),
				em.Calls(hsemu.EndpointUpdate), sum(em.Inputs(hsemu.EndpointUpdate)),
				em.Calls(hsemu.EndpointArchive), sum(em.Inputs(hsemu.EndpointArchive)), em.Calls(hsemu.EndpointUpsert)}
		}
		GinkgoWriter.Printf("plan: %d calls; sent: %v writes, %d searches, %d reads\n", plan.Calls, writes(),
			em.Calls(hsemu.EndpointSearch), em.Calls(hsemu.EndpointRead))
		Expect(writes()).To(Equal([]int{7, 321, 3, 101, 1, 20, 0}))
		// The plan's calls count the lookups (searches) before the creates.
		Expect(int32(hubspotWrites(em) + em.Calls(hsemu.EndpointSearch))).To(Equal(plan.Calls))
		Consistently(writes, 4*time.Second, 200*time.Millisecond).Should(Equal([]int{7, 321, 3, 101, 1, 20, 0}),
			"nothing is written again")
	})
})
