// Package emulationtest checks that a vendor emulator answers every kind
// of fault the harness injects: each emulator's tests run Faults against
// one of its write endpoints.
package emulationtest

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/usersync/usersync-operator/internal/providers/emulation"
)

// Target is one write endpoint of a running emulator.
type Target struct {
	// Inject queues a fault for the endpoint.
	Inject func(emulation.Fault)
	// Request builds an authenticated call to the endpoint that writes
	// record i (a new one for every i).
	Request func(t *testing.T, i int) *http.Request
	// Applied reports whether record i was written.
	Applied func(i int) bool
	// Calls is the emulator's count of calls to the endpoint.
	Calls func() int
}

// answer is what a call got.
type answer struct {
	status  int
	header  http.Header
	body    []byte
	err     error
	elapsed time.Duration
}

// Faults checks every kind of fault on t's endpoint: 429 with and without
// Retry-After, 423, 5xx, a connection reset, commit then drop (with an
// error status and with a reset), latency (answered late, and past the
// client's timeout), malformed and truncated bodies, and Count.
func Faults(t *testing.T, tg Target) {
	n := 0
	call := func(t *testing.T, timeout time.Duration) (int, answer) {
		t.Helper()
		n++
		i := n
		// A new connection for every call: a reset must not make the
		// transport retry on another one.
		c := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
		start := time.Now()
		resp, err := c.Do(tg.Request(t, i))
		a := answer{err: err}
		if err == nil {
			a.status, a.header = resp.StatusCode, resp.Header
			a.body, a.err = io.ReadAll(resp.Body)
			_ = resp.Body.Close()
		}
		a.elapsed = time.Since(start)
		return i, a
	}
	expectStatus := func(t *testing.T, a answer, status int) {
		t.Helper()
		if a.err != nil {
			t.Fatalf("call failed: %v", a.err)
		}
		if a.status != status {
			t.Fatalf("status %d, want %d (body %s)", a.status, status, a.body)
		}
	}
	expectVendorError := func(t *testing.T, a answer, status int) {
		t.Helper()
		expectStatus(t, a, status)
		if !json.Valid(a.body) || !strings.HasPrefix(a.header.Get("Content-Type"), "application/json") {
			t.Fatalf("the error body is not the vendor's JSON: %s %q", a.header.Get("Content-Type"), a.body)
		}
	}
	expectApplied := func(t *testing.T, i int, want bool) {
		t.Helper()
		if got := tg.Applied(i); got != want {
			t.Fatalf("record %d applied: %v, want %v", i, got, want)
		}
	}
	const timeout = 5 * time.Second

	t.Run("429 with Retry-After", func(t *testing.T) {
		tg.Inject(emulation.Fault{Status: http.StatusTooManyRequests, RetryAfter: "3"})
		i, a := call(t, timeout)
		expectVendorError(t, a, http.StatusTooManyRequests)
		if got := a.header.Get("Retry-After"); got != "3" {
			t.Fatalf("Retry-After %q, want 3", got)
		}
		expectApplied(t, i, false)
	})
	t.Run("429 without Retry-After", func(t *testing.T) {
		tg.Inject(emulation.Fault{Status: http.StatusTooManyRequests})
		i, a := call(t, timeout)
		expectVendorError(t, a, http.StatusTooManyRequests)
		if got, ok := a.header["Retry-After"]; ok {
			t.Fatalf("Retry-After %q, want none", got)
		}
		expectApplied(t, i, false)
	})
	for _, status := range []int{http.StatusLocked, http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			tg.Inject(emulation.Fault{Status: status})
			i, a := call(t, timeout)
			expectVendorError(t, a, status)
			expectApplied(t, i, false)
		})
	}
	t.Run("connection reset", func(t *testing.T) {
		before := tg.Calls()
		tg.Inject(emulation.Fault{Reset: true})
		i, a := call(t, timeout)
		if a.err == nil {
			t.Fatalf("answered %d %s, want a reset connection", a.status, a.body)
		}
		expectApplied(t, i, false)
		if got := tg.Calls() - before; got != 1 {
			t.Fatalf("%d calls, want 1", got)
		}
	})
	t.Run("commit then drop", func(t *testing.T) {
		tg.Inject(emulation.Fault{Status: http.StatusGatewayTimeout, AfterApply: true})
		i, a := call(t, timeout)
		expectVendorError(t, a, http.StatusGatewayTimeout)
		expectApplied(t, i, true)
	})
	t.Run("commit then reset", func(t *testing.T) {
		tg.Inject(emulation.Fault{Reset: true, AfterApply: true})
		i, a := call(t, timeout)
		if a.err == nil {
			t.Fatalf("answered %d, want a reset connection", a.status)
		}
		expectApplied(t, i, true)
	})
	t.Run("latency", func(t *testing.T) {
		const d = 150 * time.Millisecond
		tg.Inject(emulation.Fault{Delay: d})
		i, a := call(t, timeout)
		if a.err != nil || a.status >= 300 {
			t.Fatalf("a late answer: %d %v", a.status, a.err)
		}
		if a.elapsed < d {
			t.Fatalf("answered after %s, want at least %s", a.elapsed, d)
		}
		expectApplied(t, i, true)
	})
	t.Run("latency past the client's timeout", func(t *testing.T) {
		tg.Inject(emulation.Fault{Delay: time.Second})
		i, a := call(t, 50*time.Millisecond)
		if a.err == nil {
			t.Fatalf("answered %d within the client's timeout", a.status)
		}
		time.Sleep(50 * time.Millisecond) // the emulator sees the client gone
		expectApplied(t, i, false)
	})
	t.Run("applied, then slower than the client's timeout", func(t *testing.T) {
		tg.Inject(emulation.Fault{Delay: time.Second, AfterApply: true})
		i, a := call(t, 50*time.Millisecond)
		if a.err == nil {
			t.Fatalf("answered %d within the client's timeout", a.status)
		}
		expectApplied(t, i, true)
	})
	t.Run("malformed body", func(t *testing.T) {
		tg.Inject(emulation.Fault{Body: emulation.Malformed, Status: http.StatusBadGateway})
		i, a := call(t, timeout)
		expectStatus(t, a, http.StatusBadGateway)
		if json.Valid(a.body) || len(a.body) == 0 {
			t.Fatalf("body %q, want something that is not JSON", a.body)
		}
		expectApplied(t, i, false)
	})
	t.Run("malformed success", func(t *testing.T) {
		tg.Inject(emulation.Fault{Body: emulation.Malformed})
		_, a := call(t, timeout)
		expectStatus(t, a, http.StatusOK)
		if json.Valid(a.body) {
			t.Fatalf("body %q, want something that is not JSON", a.body)
		}
	})
	t.Run("truncated body", func(t *testing.T) {
		tg.Inject(emulation.Fault{Body: emulation.Truncated})
		i, a := call(t, timeout)
		if a.err != nil && !errors.Is(a.err, io.ErrUnexpectedEOF) {
			t.Fatalf("call failed: %v", a.err)
		}
		if a.status < 200 || a.status >= 300 {
			t.Fatalf("status %d, want the real answer's", a.status)
		}
		if len(a.body) == 0 || json.Valid(a.body) {
			t.Fatalf("body %q, want half a JSON answer", a.body)
		}
		expectApplied(t, i, true)
	})
	t.Run("Count", func(t *testing.T) {
		before := tg.Calls()
		tg.Inject(emulation.Fault{Status: http.StatusServiceUnavailable, Count: 2})
		for range 2 {
			_, a := call(t, timeout)
			expectVendorError(t, a, http.StatusServiceUnavailable)
		}
		i, a := call(t, timeout)
		if a.err != nil || a.status >= 300 {
			t.Fatalf("third call: %d %v, want the real answer", a.status, a.err)
		}
		expectApplied(t, i, true)
		if got := tg.Calls() - before; got != 3 {
			t.Fatalf("%d calls counted, want 3", got)
		}
	})
}
