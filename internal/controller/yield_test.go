package controller

import (
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers/hubspot"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

var _ = Describe("Providers waiting for their rate limits", func() {
	// More providers than workers (the suite runs 4), each a portal of its
	// own with a rate limit its users need several windows of. A loop that
	// kept its worker while its window refilled made the fifth and sixth
	// provider wait for a whole sync of one of the first four: with
	// yield.go, a loop gives its worker away while others wait for one, so
	// every provider sends its first calls in the first window, and each
	// one's users are still created exactly once, in ⌈N/100⌉ create calls.
	It("lets every provider send while the others wait for their windows", func() {
		ns := newNamespace(nil)
		const providers, perProvider, limit = 6, 1200, 10
		window := 2 * time.Second
		// A backlog: the UserSyncs are there before the providers' Secrets,
		// so that each provider's first loop has all of its users to send.
		ems := make([]*hsemu.Emulator, providers)
		for i := range ems {
			name := fmt.Sprintf("hs-%d", i)
			ems[i] = hsemu.New(hsemu.Options{Tokens: map[string][]string{hubspotToken: hubspot.DefaultScopes},
				RateLimit: limit, RateWindow: window, Latency: 20 * time.Millisecond})
			ems[i].Start()
			DeferCleanup(ems[i].Close)
			Expect(k8s.Create(ctx, &usersv1.UserProvider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
				Spec: usersv1.ProviderSpec{Type: usersv1.ProviderHubSpot, Endpoint: ems[i].URL(), AllowInsecureHTTP: true,
					CredentialsRef: usersv1.SecretKeyReference{Name: name + "-token", Key: "token"},
					RateLimit:      &usersv1.RateLimit{Requests: limit, Period: metav1.Duration{Duration: window}}}})).To(Succeed())
			for j := range perProvider / 400 {
				sync := fmt.Sprintf("hs-%d-%d", i, j)
				newSync(ns, sync, users(400, sync), ref(name))
			}
		}
		for i := range ems {
			for j := range perProvider / 400 {
				Eventually(readyStatus(ns, fmt.Sprintf("hs-%d-%d", i, j)), 20*time.Second).Should(Equal("False/" + usersv1.ReasonProviderNotReady))
			}
		}
		for i := range ems {
			newSecret(ns, fmt.Sprintf("hs-%d-token", i), "token", hubspotToken)
		}
		for i := range ems {
			for j := range perProvider / 400 {
				Eventually(readyStatus(ns, fmt.Sprintf("hs-%d-%d", i, j)), 3*time.Minute).Should(Equal("True/Synced"))
			}
		}
		var firstCreates, lastCreates []time.Time
		for i, em := range ems {
			var first, last time.Time
			for _, c := range em.Log() {
				if c.Endpoint != hsemu.EndpointCreate || c.Fault != nil {
					continue
				}
				if first.IsZero() {
					first = c.At
				}
				last = c.At
			}
			Expect(em.Users()).To(HaveLen(perProvider), "provider %d", i)
			Expect(em.Calls(hsemu.EndpointCreate)).To(Equal(perProvider/100), "provider %d", i)
			Expect(em.Throttled()).To(BeZero(), "provider %d", i)
			firstCreates, lastCreates = append(firstCreates, first), append(lastCreates, last)
		}
		earliestLast := lastCreates[0]
		for _, t := range lastCreates {
			if t.Before(earliestLast) {
				earliestLast = t
			}
		}
		for i, t := range firstCreates {
			Expect(t.Before(earliestLast)).To(BeTrue(),
				"provider %d sent its first create %v after another provider had sent its last", i, t.Sub(earliestLast))
		}
		// The metrics say so: the loops that ran while others waited for a
		// worker stopped for their windows, at least as often as there
		// were providers beyond the workers (a loop alone keeps its
		// worker).
		fams := scrape()
		yields := 0.0
		for i := range ems {
			v, _, _ := sample(fams, "usersync_sync_loop_yields_total", map[string]string{"provider": fmt.Sprintf("UserProvider/%s/hs-%d", ns, i)})
			yields += v
		}
		Expect(yields).To(BeNumerically(">=", providers-4), "usersync_sync_loop_yields_total")
	})
})
