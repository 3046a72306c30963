package controller

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestWindowLimiter: no rolling window holds more than the limit, counted
// from the answers as a vendor counts them, and the whole allowance of a
// window is used at once.
func TestWindowLimiter(t *testing.T) {
	const limit, period, latency, calls = 5, 300 * time.Millisecond, 20 * time.Millisecond, 12
	w := newWindowLimiter(limit, period)
	var mu sync.Mutex
	var admitted, answered []time.Time
	var wg sync.WaitGroup
	start := time.Now()
	for range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.acquire(context.Background()); err != nil {
				t.Error(err)
				return
			}
			sent := time.Now()
			time.Sleep(latency) // the vendor receives the call somewhere in here
			mu.Lock()
			admitted = append(admitted, sent)
			answered = append(answered, time.Now())
			mu.Unlock()
			w.release()
		}()
	}
	wg.Wait()
	// A vendor receives each call between its admission and its answer: at
	// worst, an earlier call at its answer and a later one at its admission.
	for _, a := range admitted {
		in := 0
		for _, b := range answered {
			if !b.Before(a.Add(-period)) && !b.After(a) {
				in++
			}
		}
		if in >= limit {
			t.Errorf("a call admitted at %v had %d answered calls in the window before it", a.Sub(start), in)
		}
	}
	early := 0
	for _, a := range admitted {
		if a.Sub(start) < period/2 {
			early++
		}
	}
	if early != limit {
		t.Errorf("%d calls admitted in the first half window, want the whole allowance of %d", early, limit)
	}
	// 12 calls of 5 per window: three windows.
	if el := time.Since(start); el < 2*period || el > 4*period {
		t.Errorf("took %v for %d calls of %d per %v", el, calls, limit, period)
	}
}

func TestWindowLimiterCancel(t *testing.T) {
	w := newWindowLimiter(1, time.Hour)
	if err := w.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	w.release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := w.acquire(ctx); err == nil {
		t.Fatal("admitted a second call within the hour")
	}
	// A raised limit admits the waiting call at once.
	done := make(chan error, 1)
	go func() { done <- w.acquire(context.Background()) }()
	time.Sleep(20 * time.Millisecond)
	w.setLimit(2, time.Hour)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("a raised limit did not admit the waiting call")
	}
}

// readShareRun drives a limiter of 10 calls per window with one writer
// that always has a write to send (60 of them, beginWrites held until the
// last is answered) and one verification reader beside it, and returns
// what happened: every call with its admission and answer, and each
// write's wait; pending is when the writes stopped being pending.
type shareEvent struct {
	read                   bool
	waitFrom, sent, answer time.Time
}

func readShareRun(t *testing.T, share int) (events []shareEvent, period time.Duration, limit int, pending time.Time) {
	t.Helper()
	const latency, writes = 5 * time.Millisecond, 60
	limit, period = 10, 200*time.Millisecond
	w := newWindowLimiter(limit, period)
	end := w.beginWrites(share)
	var mu sync.Mutex
	record := func(e shareEvent) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the pass: one read call at a time, as beside writes
		defer wg.Done()
		rctx := withVerifyRead(ctx)
		for {
			from := time.Now()
			if w.acquireReads(rctx, 1) != nil {
				return
			}
			if err := w.acquire(rctx); err != nil {
				t.Error(err)
				return
			}
			sent := time.Now()
			time.Sleep(latency)
			record(shareEvent{read: true, waitFrom: from, sent: sent, answer: time.Now()})
			w.release()
			w.releaseReads(1)
		}
	}()
	for range writes {
		from := time.Now()
		if err := w.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		sent := time.Now()
		time.Sleep(latency)
		record(shareEvent{waitFrom: from, sent: sent, answer: time.Now()})
		w.release()
	}
	// Reads sent from here on may use the whole limit.
	pending = time.Now()
	end()
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return events, period, limit, pending
}

// inWindowBefore counts the calls (reads only, with onlyReads) answered in
// the window that ends when call e was sent: at worst for the vendor, it
// counts every one of them with e.
func inWindowBefore(events []shareEvent, e shareEvent, period time.Duration, onlyReads bool) int {
	n := 0
	for _, o := range events {
		if (!onlyReads || o.read) && o != e && !o.answer.Before(e.sent.Add(-period)) && !o.answer.After(e.sent) {
			n++
		}
	}
	return n
}

// TestWindowLimiterReadShare: while writes are pending, reads still
// progress, keep within maxReadShare of every window, and a waiting write
// lets at most one read go first.
func TestWindowLimiterReadShare(t *testing.T) {
	events, period, limit, pending := readShareRun(t, 20)
	allowance := limit * 20 / 100
	reads, writes := 0, 0
	for _, e := range events {
		if e.read && e.sent.Before(pending) {
			reads++
			if n := inWindowBefore(events, e, period, true); n+1 > allowance {
				t.Errorf("a read sent with %d reads answered in the window before it; maxReadShare 20%% of %d allows %d", n, limit, allowance)
			}
		} else {
			writes++
		}
		if n := inWindowBefore(events, e, period, false); n+1 > limit {
			t.Errorf("a call sent with %d calls answered in the window before it, limit %d", n, limit)
		}
		if e.read {
			continue
		}
		// The reads sent while this write waited for its slot.
		jumped := 0
		for _, o := range events {
			if o.read && o.sent.After(e.waitFrom) && o.sent.Before(e.sent) {
				jumped++
			}
		}
		if jumped > 1 {
			t.Errorf("a write waited %v for %d reads", e.sent.Sub(e.waitFrom), jumped)
		}
	}
	if reads == 0 {
		t.Fatalf("no read in %d writes: verification made no progress while writes were pending", writes)
	}
	t.Logf("%d writes, %d reads beside them", writes, reads)
}

// TestWindowLimiterNoReadShare: with maxReadShare 0 nothing is read while
// writes are pending, and reads go on once they are sent.
func TestWindowLimiterNoReadShare(t *testing.T) {
	w := newWindowLimiter(10, time.Hour)
	end := w.beginWrites(0)
	ctx, cancel := context.WithTimeout(withVerifyRead(context.Background()), 100*time.Millisecond)
	defer cancel()
	if err := w.acquireReads(ctx, 1); err == nil {
		t.Fatal("a read was allowed while writes were pending under maxReadShare 0")
	}
	end()
	if err := w.acquireReads(withVerifyRead(context.Background()), 1); err != nil {
		t.Fatalf("no read once no write is pending: %v", err)
	}
	events, _, _, pending := readShareRun(t, 0)
	for _, e := range events {
		if e.read && e.sent.Before(pending) {
			t.Fatal("a read was sent while writes were pending under maxReadShare 0")
		}
	}
}

// TestWindowLimiterRoom: how long until n calls fit, as the window stands.
func TestWindowLimiterRoom(t *testing.T) {
	const period = time.Second
	w := newWindowLimiter(4, period)
	if d := w.room(4); d != 0 {
		t.Fatalf("empty window: room(4) = %v, want 0", d)
	}
	for range 3 {
		if err := w.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		w.release()
	}
	if d := w.room(1); d != 0 {
		t.Errorf("3 of 4 used: room(1) = %v, want 0", d)
	}
	// Two more need the oldest answer to leave: about a period from now.
	if d := w.room(2); d < period-100*time.Millisecond || d > period {
		t.Errorf("3 of 4 used: room(2) = %v, want about %v", d, period)
	}
	// More than the limit asks for the whole limit.
	if d := w.room(10); d < period-100*time.Millisecond || d > period {
		t.Errorf("room(10) = %v, want about %v", d, period)
	}
	// A call in flight holds its slot for a period after its answer.
	if err := w.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := w.room(4); d != period {
		t.Errorf("a call in flight: room(4) = %v, want %v", d, period)
	}
	w.release()
}
