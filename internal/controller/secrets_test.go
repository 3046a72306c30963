package controller

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
	propemu "github.com/usersync/usersync-operator/internal/providers/propel/emulator"
)

var _ = Describe("Secrets", func() {
	It("never show a token, client secret or Authorization header in logs, events, status, metrics or errors", func() {
		ns := newNamespace(nil)
		const wrongToken = "pat-na1-LEAKCHECK-wrong-token"
		const wrongSecret = "propel-LEAKCHECK-wrong-secret"
		hubspotProvider(ns, "hs", hsemu.Options{}, nil)
		pe := propelProvider(ns, propemu.Options{})
		setSecret(ns, "hs-token", "token", wrongToken)
		setSecret(ns, "propel-oauth", "clientSecret", wrongSecret)
		newSync(ns, "team", users(10, "s"), ref("hs"), ref("propel"))

		// Refused credentials first: the paths that report errors.
		Eventually(providerReady(ns, "hs"), 20*time.Second).Should(Equal("False/Unauthorized"))
		Eventually(providerReady(ns, "propel"), 20*time.Second).Should(Equal("False/Unauthorized"))
		Expect(testutil.ToFloat64(providerReadyGauge.WithLabelValues("UserProvider/"+ns+"/hs"))).To(BeZero(), "usersync_provider_ready")
		// Then a full sync with the right ones, and a token refresh.
		setSecret(ns, "hs-token", "token", hubspotToken)
		setSecret(ns, "propel-oauth", "clientSecret", propelClientSecret)
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))
		Expect(testutil.ToFloat64(providerReadyGauge.WithLabelValues("UserProvider/"+ns+"/hs"))).To(Equal(1.0), "usersync_provider_ready")
		pe.ExpireTokens()
		updateSync(ns, "team", func(us *usersv1.UserSync) { us.Spec.Users[0].FirstName = "Changed" })
		Eventually(readyStatus(ns, "team"), 30*time.Second).Should(Equal("True/Synced"))

		var seen strings.Builder
		seen.WriteString(operatorLog.String())
		var evs eventsv1.EventList
		Expect(k8s.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
		Expect(evs.Items).NotTo(BeEmpty())
		dump := func(v any) {
			b, err := json.Marshal(v)
			Expect(err).NotTo(HaveOccurred())
			seen.Write(b)
		}
		dump(evs.Items)
		var syncs usersv1.UserSyncList
		Expect(k8s.List(ctx, &syncs, client.InNamespace(ns))).To(Succeed())
		dump(syncs.Items)
		var provs usersv1.UserProviderList
		Expect(k8s.List(ctx, &provs, client.InNamespace(ns))).To(Succeed())
		dump(provs.Items)
		resp, err := http.Get("http://" + metricsAddr + "/metrics")
		Expect(err).NotTo(HaveOccurred())
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		Expect(err).NotTo(HaveOccurred())
		seen.Write(body)

		all := seen.String()
		Expect(all).To(ContainSubstring(ns), "the capture holds this spec's objects")
		Expect(operatorLog.String()).To(ContainSubstring("Unauthorized"), "the refusals were logged or evented")
		for _, secret := range []string{hubspotToken, wrongToken, propelClientSecret, wrongSecret, "LEAKCHECK"} {
			Expect(all).NotTo(ContainSubstring(secret))
		}
		Expect(all).NotTo(ContainSubstring("Authorization:"))
		Expect(all).NotTo(ContainSubstring("Bearer "))
	})
})

// setSecret sets one key of a Secret.
func setSecret(ns, name, key, value string) {
	Eventually(func() error {
		s := &corev1.Secret{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
			return err
		}
		s.Data[key] = []byte(value)
		return k8s.Update(ctx, s)
	}).Should(Succeed())
}
