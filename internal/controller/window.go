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
//
// Verification reads share the window with the writes (maxReadShare). A
// pass takes the slots of its read calls ahead (acquireReads). While a loop
// has writes to send (beginWrites) or a write waits for a slot, reads are
// admitted only once the loop's first write was answered, within readShare
// percent of the limit, and either leave the writes' next call a free slot
// or, when a write already waits, go before it at most once: a write waits
// for at most one read call, and reads still progress when writes take
// every slot.
type windowLimiter struct {
	mu       sync.Mutex
	limit    int
	period   time.Duration
	inFlight int
	// done holds the answer times of the requests of the last period,
	// oldest first.
	done []time.Time
	// readsInFlight are the read calls admitted by acquireReads and not yet
	// released, readsDone the release times of those of the last period;
	// prepaid the slots they took that their requests have not used yet.
	readsInFlight, prepaid int
	readsDone              []time.Time
	// writers counts the loops sending writes (beginWrites), waitingWrites
	// the other requests waiting in acquire, readWaiting the calls a read
	// waits to be admitted for; readShare is the percentage of the limit
	// reads may use while writes are pending; readJumped: a read went
	// before a waiting write since the last write was admitted.
	writers, waitingWrites, readWaiting int
	readShare                           int
	readJumped                          bool
	// writeAnswered: a write was answered since the last beginWrites;
	// until then reads wait (the loop's first write reaches the vendor
	// first).
	writeAnswered bool
	// wake is closed when a slot may have freed up early (an answer came
	// or the limit changed).
	wake chan struct{}
}

// verifyReadKey marks a context whose requests are verification reads.
type verifyReadKey struct{}

// withVerifyRead marks ctx's requests as verification reads: they are not
// writes waiting for a slot.
func withVerifyRead(ctx context.Context) context.Context {
	return context.WithValue(ctx, verifyReadKey{}, true)
}

func isVerifyRead(ctx context.Context) bool {
	v, _ := ctx.Value(verifyReadKey{}).(bool)
	return v
}

// beginWrites tells the limiter that writes are pending until end is
// called: reads keep within share percent of the limit meanwhile.
func (w *windowLimiter) beginWrites(share int) (end func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writers++
	w.readShare = max(share, 0)
	w.writeAnswered = false
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.writers--
		w.signal()
	}
}

// acquireReads waits until n read calls may be sent (see windowLimiter)
// and takes their slots; the caller must call releaseReads(n) once they are
// answered. The requests of those calls (a context from withVerifyRead)
// then pass acquire at once.
func (w *windowLimiter) acquireReads(ctx context.Context, n int) error {
	w.mu.Lock()
	w.readWaiting = n
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.readWaiting = 0
		w.signal()
		w.mu.Unlock()
	}()
	return w.wait(ctx, func() bool { return w.readAdmits(n) }, func() {
		if w.waitingWrites > 0 {
			w.readJumped = true
		}
		// More calls than the limit take what it has; the rest wait in
		// acquire.
		slots := min(n, w.limit)
		w.inFlight += slots
		w.prepaid += slots
		w.readsInFlight += n
	})
}

// readAdmits reports whether n read calls may be sent now; w.mu is held and
// the window expired.
func (w *windowLimiter) readAdmits(n int) bool {
	used := w.inFlight + len(w.done)
	switch {
	case used+min(n, w.limit) > w.limit:
		return false
	case w.writers == 0 && w.waitingWrites == 0:
		return true
	case !w.writeAnswered || w.readsInFlight+len(w.readsDone)+n > w.limit*w.readShare/100:
		return false
	case w.waitingWrites > 0:
		return !w.readJumped
	default:
		return used+n < w.limit
	}
}

// releaseReads records that n read calls of acquireReads were answered,
// and frees the slots they took and did not use.
func (w *windowLimiter) releaseReads(n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	w.readsInFlight -= n
	for range n {
		w.readsDone = append(w.readsDone, now)
	}
	w.inFlight -= w.prepaid
	w.prepaid = 0
	w.signal()
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
// caller must call release when its answer came (or it failed). A read's
// request uses the slot acquireReads took for it (a retry waits for one).
func (w *windowLimiter) acquire(ctx context.Context) error {
	free := func() bool { return w.inFlight+len(w.done) < w.limit }
	if isVerifyRead(ctx) {
		w.mu.Lock()
		if w.prepaid > 0 {
			w.prepaid--
			w.mu.Unlock()
			return nil
		}
		w.mu.Unlock()
		return w.wait(ctx, free, func() { w.inFlight++ })
	}
	w.mu.Lock()
	w.waitingWrites++
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.waitingWrites--
		w.signal()
		w.mu.Unlock()
	}()
	// A read that may go first goes first (at most one per write).
	return w.wait(ctx, func() bool { return free() && (w.readWaiting == 0 || !w.readAdmits(w.readWaiting)) },
		func() { w.inFlight++; w.readJumped = false })
}

// wait waits until admits, called with w.mu held after the window moved
// on, is true, and then calls take under the same lock.
func (w *windowLimiter) wait(ctx context.Context, admits func() bool, take func()) error {
	for {
		w.mu.Lock()
		now := time.Now()
		cut := now.Add(-w.period)
		w.done = expire(w.done, cut)
		w.readsDone = expire(w.readsDone, cut)
		if admits() {
			take()
			w.mu.Unlock()
			return nil
		}
		wake := w.wake
		var timer *time.Timer
		var expired <-chan time.Time
		if oldest, ok := w.oldest(); ok {
			// The oldest answer leaves the window first.
			timer = time.NewTimer(oldest.Sub(cut) + time.Millisecond)
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

// room returns how long from now until n more requests could be admitted
// at once, as the window stands (0: now). A request still in flight frees
// its slot a period after its answer, so no sooner than a period from now.
func (w *windowLimiter) room(n int) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	w.done = expire(w.done, now.Add(-w.period))
	need := w.inFlight + len(w.done) + min(max(n, 1), w.limit) - w.limit
	switch {
	case need <= 0:
		return 0
	case need > len(w.done):
		return w.period
	}
	return w.done[need-1].Add(w.period).Sub(now)
}

// oldest is the earliest answer time the window holds; w.mu is held.
func (w *windowLimiter) oldest() (time.Time, bool) {
	switch {
	case len(w.done) == 0 && len(w.readsDone) == 0:
		return time.Time{}, false
	case len(w.done) == 0:
		return w.readsDone[0], true
	case len(w.readsDone) == 0 || w.done[0].Before(w.readsDone[0]):
		return w.done[0], true
	}
	return w.readsDone[0], true
}

// expire drops the times not after cut from the front of ts.
func expire(ts []time.Time, cut time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(cut) {
		i++
	}
	return ts[i:]
}

// release records that an admitted request was answered now.
func (w *windowLimiter) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.inFlight--
	w.done = append(w.done, time.Now())
	// Reads wait for the first answer to a write, so until then every
	// answer is a write's.
	if w.writers > 0 && w.readsInFlight == 0 {
		w.writeAnswered = true
	}
	w.signal()
}
