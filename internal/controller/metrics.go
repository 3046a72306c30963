package controller

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/usersync/usersync-operator/internal/planner"
	"github.com/usersync/usersync-operator/internal/providers"
)

// The operator's metrics, in controller-runtime's registry (served with its
// own on the manager's metrics endpoint). The provider label is
// "UserProvider/<namespace>/<name>" or "ClusterUserProvider/<name>"; no label
// ever holds user data or a credential.
var (
	vendorRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "usersync_vendor_requests_total",
		Help: "HTTP requests sent to vendors, by provider, vendor type, endpoint and status code (\"error\" when no answer came).",
	}, []string{"provider", "type", "endpoint", "code"})
	vendorRequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "usersync_vendor_request_duration_seconds",
		Help:    "Duration of vendor HTTP requests, rate-limit wait excluded.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
	}, []string{"provider", "type", "endpoint"})
	vendorBatchRecords = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "usersync_vendor_batch_records",
		Help:    "Records carried by each vendor call.",
		Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000},
	}, []string{"provider", "type", "endpoint"})
	rateLimitWait = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "usersync_rate_limit_wait_seconds_total",
		Help: "Time vendor requests waited for the provider's rate limiter.",
	}, []string{"provider"})
	records = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "usersync_records",
		Help: "Records a provider serves, by state (Synced, Pending, Failed, Deleting).",
	}, []string{"provider", "state"})
	loopYields = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "usersync_sync_loop_yields_total",
		Help: "Sync loops that stopped sending to wait for the provider's rate limit without holding a worker (they come back when it has room).",
	}, []string{"provider"})
	loopDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "usersync_sync_loop_duration_seconds",
		Help:    "Duration of one provider sync loop, vendor calls included.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	}, []string{"provider"})
	providerReadyGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "usersync_provider_ready",
		Help: "1 when the provider's Ready condition is True (its credentials and configuration work), else 0.",
	}, []string{"provider"})
	deletionsHeld = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "usersync_deletions_held",
		Help: "Deletions the mass-deletion guard holds until their UserSync approves them.",
	}, []string{"provider"})
	driftRecords = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "usersync_drift_records_total",
		Help: "Records drift detection found different at the vendor (kind changed or missing), and records rewritten after it (corrected).",
	}, []string{"provider", "kind"})
	recordWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "usersync_record_writes_total",
		Help: "Records sent to vendors, by provider, operation and outcome (ok, failed, retry).",
	}, []string{"provider", "op", "outcome"})
)

func init() {
	metrics.Registry.MustRegister(vendorRequests, vendorRequestDuration, vendorBatchRecords, rateLimitWait,
		records, loopDuration, loopYields, recordWrites, providerReadyGauge, deletionsHeld, driftRecords)
}

// metricLabels names a provider in the metrics.
type metricLabels struct {
	provider string
	vendor   string
}

// Call implements providers.Observer.
func (m metricLabels) Call(endpoint string, n int) {
	vendorBatchRecords.WithLabelValues(m.provider, m.vendor, endpoint).Observe(float64(n))
}

// observe records one HTTP request.
func (m metricLabels) observe(req *http.Request, resp *http.Response, err error, took, waited time.Duration) {
	endpoint := providers.EndpointOf(req.Context())
	if endpoint == "" {
		endpoint = req.Method + " " + normalizePath(req.URL.Path)
	}
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	vendorRequests.WithLabelValues(m.provider, m.vendor, endpoint, code).Inc()
	vendorRequestDuration.WithLabelValues(m.provider, m.vendor, endpoint).Observe(took.Seconds())
	if waited > 0 {
		rateLimitWait.WithLabelValues(m.provider).Add(waited.Seconds())
	}
}

var idSegment = regexp.MustCompile(`[0-9]`)

// normalizePath keeps a path's shape and drops ids, so that a request a
// vendor package did not name cannot create a label per user.
func normalizePath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if idSegment.MatchString(s) && !strings.HasPrefix(s, "v") {
			segs[i] = "{id}"
		}
	}
	return strings.Join(segs, "/")
}

// setRecordGauges publishes a provider's records by state, and the
// deletions held of the deleting ones.
func setRecordGauges(provider string, synced, pending, failed, deleting, held int) {
	deletionsHeld.WithLabelValues(provider).Set(float64(held))
	// The drift counters exist from the first loop on, at 0, so that a
	// rate over them is defined before any drift.
	for _, kind := range []string{"changed", "missing", "corrected"} {
		driftRecords.WithLabelValues(provider, kind)
	}
	records.WithLabelValues(provider, "Synced").Set(float64(synced))
	records.WithLabelValues(provider, "Pending").Set(float64(pending))
	records.WithLabelValues(provider, "Failed").Set(float64(failed))
	records.WithLabelValues(provider, "Deleting").Set(float64(deleting))
}

// forgetProviderMetrics drops the series of a provider that is gone.
func forgetProviderMetrics(provider string) {
	for _, v := range []*prometheus.MetricVec{vendorRequests.MetricVec, vendorRequestDuration.MetricVec,
		vendorBatchRecords.MetricVec, rateLimitWait.MetricVec, records.MetricVec, loopDuration.MetricVec, loopYields.MetricVec, recordWrites.MetricVec,
		providerReadyGauge.MetricVec, deletionsHeld.MetricVec, driftRecords.MetricVec} {
		v.DeletePartialMatch(prometheus.Labels{"provider": provider})
	}
}

// countWrites counts the records a loop sent, by operation and outcome.
func countWrites(provider string, plan planner.Plan, outcomes []planner.Outcome) {
	for _, it := range plan.Items {
		if it.Kind != planner.Write && it.Kind != planner.Remove {
			continue
		}
		outcome := "retry"
		rec, kept := outcomes[it.Sync].Records[it.Key]
		switch {
		case !kept || rec.State == planner.StateSynced:
			outcome = "ok"
		case rec.State == planner.StateFailed:
			outcome = "failed"
		}
		recordWrites.WithLabelValues(provider, string(it.Change.Op), outcome).Inc()
	}
}
