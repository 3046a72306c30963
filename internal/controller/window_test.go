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
