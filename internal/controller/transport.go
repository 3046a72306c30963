package controller

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
)

// limitedTransport sends a provider's vendor requests under its rate limit
// and counts what the vendor answered, so a loop can tell it was throttled.
// One exists per provider and outlives its clients: a rotated token or a new
// spec keeps the same request budget.
type limitedTransport struct {
	base    http.RoundTripper
	limiter *windowLimiter
	labels  metricLabels

	mu    sync.Mutex
	stats transportStats
	// calls counts the requests the limiter admitted; chunkCalls is the
	// most one chunk of a loop's changes took (yieldAt).
	calls, chunkCalls atomic.Int64
}

// transportStats are counters since the last take.
type transportStats struct {
	Requests  int
	Throttled int // 429 answers
	Waited    time.Duration
}

func newLimitedTransport(base http.RoundTripper, requests int, period time.Duration, labels metricLabels) *limitedTransport {
	return &limitedTransport{base: base, limiter: newWindowLimiter(requests, period), labels: labels}
}

// setLimit lets at most requests calls into any rolling window of length
// period.
func (t *limitedTransport) setLimit(requests int, period time.Duration) {
	t.limiter.setLimit(requests, period)
}

// RoundTrip waits for the rate limiter, then sends the request. A request
// on a budget of the vendor's own (providers.WithOwnBudget) is not counted.
func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	limited := !providers.OwnBudget(req.Context())
	if limited {
		if err := t.limiter.acquire(req.Context()); err != nil {
			return nil, err
		}
		t.calls.Add(1)
	}
	waited := time.Since(start)
	sent := time.Now()
	resp, err := t.base.RoundTrip(req)
	if limited {
		t.limiter.release()
	}
	t.labels.observe(req, resp, err, time.Since(sent), waited)
	t.mu.Lock()
	t.stats.Requests++
	t.stats.Waited += waited
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		t.stats.Throttled++
	}
	t.mu.Unlock()
	return resp, err
}

// sent is how many requests the limiter admitted so far; 0 without a
// transport.
func (t *limitedTransport) sent() int64 {
	if t == nil {
		return 0
	}
	return t.calls.Load()
}

// chunkSent records that one chunk of changes took n requests.
func (t *limitedTransport) chunkSent(n int64) {
	if t == nil {
		return
	}
	for {
		old := t.chunkCalls.Load()
		if n <= old || t.chunkCalls.CompareAndSwap(old, n) {
			return
		}
	}
}

// callsPerChunk is the most requests a chunk took so far (at least 1).
func (t *limitedTransport) callsPerChunk() int {
	return int(max(t.chunkCalls.Load(), 1))
}

// take returns the counters and resets them.
func (t *limitedTransport) take() transportStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	t.stats = transportStats{}
	return s
}
