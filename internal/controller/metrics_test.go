package controller

import (
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

// scrape reads the manager's metrics endpoint.
func scrape() map[string]*dto.MetricFamily {
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	Expect(resp.StatusCode).To(Equal(http.StatusOK))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return fams
}

// sample returns the value of the series of a family whose labels include
// want: a counter's or gauge's value, a histogram's sample count and sum.
func sample(fams map[string]*dto.MetricFamily, name string, want map[string]string) (value, sum float64, found bool) {
	f := fams[name]
	if f == nil {
		return 0, 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), 0, true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), 0, true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), m.Histogram.GetSampleSum(), true
		}
	}
	return 0, 0, false
}

var _ = Describe("Metrics", func() {
	It("counts a provider's vendor requests, batch sizes, writes and records by state on the metrics endpoint", func() {
		ns := newNamespace(nil)
		em := hubspotProvider(ns, "hs", hsemu.Options{Reject: func(p map[string]string) (string, string, bool) {
			return "VALIDATION_ERROR", "no", p["team"] == "bad"
		}}, nil)
		us := users(150, "m")
		us[9].Attributes["team"] = usersv1.StringValue("bad")
		newSync(ns, "team", us, ref("hs"))
		Eventually(func() usersv1.Summary { return getSync(ns, "team").Status.Summary }, 30*time.Second).
			Should(Equal(usersv1.Summary{Desired: 150, Synced: 149, Failed: 1}))
		Expect(em.Inputs(hsemu.EndpointCreate)).To(ConsistOf(100, 50))

		provider := "UserProvider/" + ns + "/hs"
		var fams map[string]*dto.MetricFamily
		Eventually(func() float64 {
			fams = scrape()
			v, _, _ := sample(fams, "usersync_records", map[string]string{"provider": provider, "state": "Synced"})
			return v
		}, 10*time.Second).Should(Equal(149.0))

		expect := func(name string, labels map[string]string, value float64) {
			v, _, ok := sample(fams, name, labels)
			ExpectWithOffset(1, ok).To(BeTrue(), "%s%v missing", name, labels)
			ExpectWithOffset(1, v).To(Equal(value), "%s%v", name, labels)
		}
		expect("usersync_vendor_requests_total", map[string]string{"provider": provider, "type": "HubSpot",
			"endpoint": "batch/create", "code": "207"}, 1)
		expect("usersync_vendor_requests_total", map[string]string{"provider": provider, "type": "HubSpot",
			"endpoint": "batch/create", "code": "201"}, 1)
		expect("usersync_records", map[string]string{"provider": provider, "state": "Failed"}, 1)
		expect("usersync_records", map[string]string{"provider": provider, "state": "Pending"}, 0)
		expect("usersync_record_writes_total", map[string]string{"provider": provider, "op": "Create", "outcome": "ok"}, 149)
		expect("usersync_record_writes_total", map[string]string{"provider": provider, "op": "Create", "outcome": "failed"}, 1)
		count, sum, ok := sample(fams, "usersync_vendor_batch_records", map[string]string{"provider": provider, "endpoint": "batch/create"})
		Expect(ok).To(BeTrue())
		Expect(count).To(Equal(2.0))
		Expect(sum).To(Equal(150.0))
		count, _, ok = sample(fams, "usersync_sync_loop_duration_seconds", map[string]string{"provider": provider})
		Expect(ok).To(BeTrue())
		Expect(count).To(BeNumerically(">=", 1))
	})
})
