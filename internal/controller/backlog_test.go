package controller

import (
	"fmt"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers/emulation"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

var _ = Describe("A loop that stores UserSyncs while it sends", func() {
	var ns string
	BeforeEach(func() { ns = newNamespace(nil) })

	// A loop keeps of a UserSync it stored early only its metadata and spec
	// (storedShell). When the vendor then refuses the credentials, the loop
	// plans again from the records: it must read the stored ones back, or
	// it would hold (and store) those users without their vendor ids, and
	// create them again once the credentials work. With adoption off the
	// vendor would then hold them twice.
	It("keeps the vendor ids of the UserSyncs it stored before the vendor refused the credentials", func() {
		// A backlog: the UserSyncs wait for their provider, so that one
		// loop sends them all.
		for _, name := range []string{"a", "b", "c"} {
			newSync(ns, name, users(200, name), ref("hs"))
			Eventually(readyStatus(ns, name), 10*time.Second).Should(Equal("False/" + usersv1.ReasonProviderNotFound))
		}
		// DuplicateEmails: the emulator does not refuse a second user with
		// an email (which would let the client adopt it): a user created
		// twice shows.
		em := hsemu.New(hsemu.Options{Tokens: map[string][]string{hubspotToken: hubspot.DefaultScopes}, RateLimit: -1, DuplicateEmails: true})
		// The first round of calls (4 creates of 100: two UserSyncs,
		// stored while the next round is sent) goes through; the next
		// round is refused.
		em.Inject(hsemu.EndpointCreate, emulation.Fault{Count: 4})
		em.Inject(hsemu.EndpointCreate, emulation.Fault{Status: http.StatusUnauthorized, Count: 2})
		startHubSpotProvider(ns, "hs", em, func(s *usersv1.ProviderSpec) {
			// The creates the refused round may have sent are looked up
			// (search, as emails are not unique here) before they are sent
			// again: no index lag to wait for.
			s.HubSpot = &usersv1.HubSpotOptions{Adoption: usersv1.HubSpotAdoptNever, SearchIndexDelay: &metav1.Duration{Duration: time.Second}}
		})
		// The loop that met the refusal stored its records before the
		// provider's status says so.
		Eventually(providerReady(ns, "hs"), 30*time.Second).Should(Equal("False/Unauthorized"))
		// The two UserSyncs of the first round (the loop sends them in the
		// informer's order) hold the ids of the 400 users it created.
		Expect(em.Users()).To(HaveLen(400))
		withID := 0
		for _, name := range []string{"a", "b", "c"} {
			for _, r := range getSync(ns, name).Status.Results {
				if r.ExternalID != "" {
					withID++
				}
			}
		}
		Expect(withID).To(Equal(400), "records of users the vendor holds lost their vendor ids")
		Eventually(func() int { return len(em.Users()) }, 30*time.Second).Should(Equal(600), func() string {
			us := getSync(ns, "c")
			return providerReady(ns, "hs")() + fmt.Sprintf(" %+v", us.Status.Results[0])
		})
		for _, name := range []string{"a", "b", "c"} {
			Eventually(readyStatus(ns, name), 30*time.Second).Should(Equal("True/Synced"), name)
		}
		Consistently(func() int { return len(em.Users()) }, 2*time.Second).Should(Equal(600), "a user was created twice")
		Expect(em.Calls(hsemu.EndpointCreate)).To(Equal(8), "4 answered, 2 refused, 2 once the credentials work")
	})
})
