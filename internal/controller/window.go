package controller

import (
	"context"
	"sync"
	"time"
)

// windowLimiter admits at most limit requests in any rolling window of
// length period: the way vendors state their limits (HubSpot: 100 requests
// per rolling 10 s; Propel and user.com as requests per second), so the
// operator can use the whole allowance at once and then exactly keep pace
// with the window, without ever going over it.
//
// A token bucket (golang.org/x/time/rate) cannot do both: a bucket of burst
// B refilled at B/period admits 2B requests in the first window, and one of
// burst 1 spreads the requests evenly and never uses the burst a window
// allows, which leaves a short sync waiting for no reason.
//
// A request counts from the moment it is admitted until its answer arrives,
// and then for period after that: the vendor counts it when it receives it,
// which is no later than when its answer arrives, so the window seen here
// always covers the vendor's whatever the latency.
type windowLimiter struct {
	mu       sync.Mutex
	limit    int
	period   time.Duration
	inFlight int
	// done holds the answer times of the requests of the last period,
	// oldest first.
	done []time.Time
	// wake is closed when a slot may have freed up early (an answer came
	// or the limit changed).
	wake chan struct{}
}

func newWindowLimiter(limit int, period time.Duration) *windowLimiter {
	w := &windowLimiter{wake: make(chan struct{})}
	w.setLimit(limit, period)
	return w
}

func (w *windowLimiter) setLimit(limit int, period time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.limit, w.period = max(limit, 1), period
	w.signal()
}

// limits returns the limit: requests per period.
func (w *windowLimiter) limits() (int, time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.limit, w.period
}

// signal wakes every waiter; w.mu is held.
func (w *windowLimiter) signal() {
	close(w.wake)
	w.wake = make(chan struct{})
}

// acquire waits until a request may be sent and counts it as in flight; the
// caller must call release when its answer came (or it failed).
func (w *windowLimiter) acquire(ctx context.Context) error {
	for {
		w.mu.Lock()
		now := time.Now()
		cut := now.Add(-w.period)
		i := 0
		for i < len(w.done) && !w.done[i].After(cut) {
			i++
		}
		w.done = w.done[i:]
		if w.inFlight+len(w.done) < w.limit {
			w.inFlight++
			w.mu.Unlock()
			return nil
		}
		wake := w.wake
		var timer *time.Timer
		var expired <-chan time.Time
		if len(w.done) > 0 {
			// The oldest answer leaves the window first.
			timer = time.NewTimer(w.done[0].Sub(cut) + time.Millisecond)
			expired = timer.C
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-wake:
		case <-expired:
		}
		if timer != nil {
			timer.Stop()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// release records that an admitted request was answered now.
func (w *windowLimiter) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inFlight--
	w.done = append(w.done, time.Now())
	w.signal()
}
