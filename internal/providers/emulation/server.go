// Package emulation is the harness every vendor emulator is built on: the
// listening server, injected faults, the call log and its counters, and the
// JSON writers. A vendor emulator (internal/providers/<vendor>/emulator)
// keeps only the vendor's contract: its routes, auth, records and errors.
//
// Emulators are for tests, benchmarks and the local demo; the operator's
// binary never links them (a test in internal/app proves it).
package emulation

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Fault is an injected answer for the next Count calls to an endpoint.
//
// The kinds of faults, and how to make them:
//
//	429 with Retry-After:  Fault{Status: 429, RetryAfter: "3"}
//	429 without it:        Fault{Status: 429}
//	423, 5xx, any status:  Fault{Status: 423}, Fault{Status: 503}
//	connection reset:      Fault{Reset: true}
//	commit, then drop:     Fault{Status: 504, AfterApply: true} (or with Reset)
//	latency:               Fault{Delay: 2 * time.Second} (the real answer, late)
//	malformed body:        Fault{Body: Malformed} (HTML instead of JSON)
//	truncated body:        Fault{Body: Truncated} (half of the real answer)
type Fault struct {
	// Status is answered with the vendor's error body (Server.ErrorBody).
	// With Body it replaces the answer's status. 0 without Reset or Body
	// answers the real answer (after Delay).
	Status int
	// Count is how many calls get the fault; 0 means one.
	Count int
	// AfterApply carries the call out first and then answers the fault
	// instead of its result: a lost response ("commit then drop"). The call
	// is carried out before Delay, so that a client that gives up waiting
	// still leaves it applied.
	AfterApply bool
	// RetryAfter is sent as the Retry-After header when not empty.
	RetryAfter string
	// Reset closes the connection without an answer (a TCP RST).
	Reset bool
	// Delay holds the answer back (a slow vendor; a client timeout shorter
	// than it sees no answer). Without AfterApply a call whose client gives
	// up during the delay is not carried out.
	Delay time.Duration
	// Body replaces the answer's body: Malformed sends text that is not
	// JSON, Truncated the first half of the real answer.
	Body BodyFault
}

// BodyFault spoils an answer's body.
type BodyFault int

const (
	// BodyIntact leaves the body alone.
	BodyIntact BodyFault = iota
	// Malformed answers an HTML error page instead of JSON.
	Malformed
	// Truncated cuts the real answer (which is carried out) in half.
	Truncated
)

// Server serves a vendor emulator's handler with faults, a call log and
// counters. Set Handler (and ErrorBody) before Start.
type Server struct {
	// Handler serves the vendor's API. It calls Serve for every call that
	// passed the vendor's auth, so that faults and counters apply.
	Handler http.Handler
	// ErrorBody is the vendor's error object for an injected status.
	ErrorBody func(status int) any
	// ContentType is the Content-Type of the vendor's JSON answers
	// ("application/json" when empty); injected error bodies carry it.
	ContentType string
	// Latency delays every answer.
	Latency time.Duration
	// Limit is the vendor's rate limit, if it has one; see Admit.
	Limit *RateLimit

	srv *http.Server
	url string

	mu        sync.Mutex
	calls     map[string]int
	inputs    map[string][]int
	faults    map[string][]*Fault
	throttled int
	log       []Call
}

// Call is one entry of the call log.
type Call struct {
	Endpoint string
	// Inputs is the number of records the call carried, -1 for a call
	// that is not a batch.
	Inputs int
	// Fault is the injected fault it got, nil for a real answer.
	Fault *Fault
	At    time.Time
}

// Start listens on a free port of 127.0.0.1 and returns the base URL. It
// panics when no port can be opened, as httptest.NewServer does.
func (s *Server) Start() string {
	if err := s.StartOn("127.0.0.1:0"); err != nil {
		panic(fmt.Sprintf("emulator: %v", err))
	}
	return s.url
}

// StartOn listens on addr (host:port).
func (s *Server) StartOn(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.url = "http://" + l.Addr().String()
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(l) }()
	return nil
}

// URL is the base URL once started.
func (s *Server) URL() string { return s.url }

// Close stops serving and closes open connections.
func (s *Server) Close() {
	if s.srv != nil {
		_ = s.srv.Close()
	}
}

// ServeHTTP serves the handler without listening (for an http.Handler
// test harness).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.serveHTTP(w, r) }

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if !Sleep(r, s.Latency) {
		return
	}
	s.Handler.ServeHTTP(w, r)
}

// Inject queues a fault for the next calls to endpoint.
func (s *Server) Inject(endpoint string, f Fault) {
	if f.Count <= 0 {
		f.Count = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.faults == nil {
		s.faults = map[string][]*Fault{}
	}
	s.faults[endpoint] = append(s.faults[endpoint], &f)
}

// Serve counts a call to endpoint carrying inputs records (-1: not a
// batch), then answers its injected fault or lets h serve it.
func (s *Server) Serve(w http.ResponseWriter, r *http.Request, endpoint string, inputs int, h http.HandlerFunc) {
	f := s.count(endpoint, inputs)
	if f == nil {
		h(w, r)
		return
	}
	var rec *recorder
	if f.AfterApply {
		rec = record(h, r)
	}
	if !Sleep(r, f.Delay) {
		return
	}
	if f.Reset {
		reset(w)
		return
	}
	if f.Body == Truncated && rec == nil {
		rec = record(h, r)
	}
	retryAfter := func() {
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
	}
	switch {
	case f.Body == Malformed:
		retryAfter()
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(cmp(f.Status, http.StatusOK))
		_, _ = w.Write([]byte("<html><body><h1>502 Bad Gateway</h1></body></html>"))
	case f.Body == Truncated:
		rec.replay(w, f.Status, len(rec.body)/2, retryAfter)
	case f.Status == 0 && rec != nil: // slow, applied first
		rec.replay(w, 0, len(rec.body), retryAfter)
	case f.Status == 0: // slow
		retryAfter()
		h(w, r)
	default:
		retryAfter()
		var body any = map[string]any{"message": "injected fault"}
		if s.ErrorBody != nil {
			body = s.ErrorBody(f.Status)
		}
		s.WriteJSON(w, f.Status, body)
	}
}

// WriteJSON answers v as JSON with status and the vendor's ContentType.
func (s *Server) WriteJSON(w http.ResponseWriter, status int, v any) {
	ct := s.ContentType
	if ct == "" {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Admit applies the rate limit (Limit) to a call: false means the window
// is full, and the call is counted as throttled; the vendor then answers
// its 429. remaining is what is left of the window after the call, -1
// without a limit.
func (s *Server) Admit() (remaining int, ok bool) {
	if s.Limit == nil {
		return -1, true
	}
	remaining, ok = s.Limit.Admit(time.Now())
	if !ok {
		s.Throttle()
	}
	return remaining, ok
}

// MaxInWindow is the most calls the rate limit admitted within one window
// since the last ResetCounters; 0 without a limit.
func (s *Server) MaxInWindow() int {
	if s.Limit == nil {
		return 0
	}
	return s.Limit.MaxInWindow()
}

// count logs a call and takes its fault, if one is queued.
func (s *Server) count(endpoint string, inputs int) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls, s.inputs = map[string]int{}, map[string][]int{}
	}
	s.calls[endpoint]++
	if inputs >= 0 {
		s.inputs[endpoint] = append(s.inputs[endpoint], inputs)
	}
	var f *Fault
	if q := s.faults[endpoint]; len(q) > 0 {
		f = q[0]
		if f.Count--; f.Count <= 0 {
			s.faults[endpoint] = q[1:]
		}
		cp := *f
		f = &cp
	}
	s.log = append(s.log, Call{Endpoint: endpoint, Inputs: inputs, Fault: f, At: time.Now()})
	return f
}

// Throttle counts a call the vendor's rate limit refused.
func (s *Server) Throttle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.throttled++
}

// Calls is the number of calls to endpoint counted by Serve, faulted ones
// included.
func (s *Server) Calls(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[endpoint]
}

// Inputs lists the records of every batch call to endpoint, in order.
func (s *Server) Inputs(endpoint string) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.inputs[endpoint])
}

// Throttled is the number of calls the rate limit refused.
func (s *Server) Throttled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.throttled
}

// Log returns the call log since the last ResetCounters.
func (s *Server) Log() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// ResetCounters zeroes the counters and the call log; records and queued
// faults stay.
func (s *Server) ResetCounters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls, s.inputs, s.throttled, s.log = map[string]int{}, map[string][]int{}, 0, nil
	if s.Limit != nil {
		s.Limit.resetMax()
	}
}

// RateLimit is a rolling-window rate limit: at most Limit calls within any
// Window.
type RateLimit struct {
	Limit  int
	Window time.Duration

	mu    sync.Mutex
	times []time.Time // admitted calls within the window
	most  int
}

// Admit takes a place in the window for a call at now. ok is false when
// the window is full; remaining is what is left after the call.
func (l *RateLimit) Admit(now time.Time) (remaining int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cut := now.Add(-l.Window)
	i := 0
	for i < len(l.times) && !l.times[i].After(cut) {
		i++
	}
	l.times = l.times[i:]
	if len(l.times) >= l.Limit {
		return 0, false
	}
	l.times = append(l.times, now)
	l.most = max(l.most, len(l.times))
	return l.Limit - len(l.times), true
}

// MaxInWindow is the most calls admitted within one window.
func (l *RateLimit) MaxInWindow() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.most
}

func (l *RateLimit) resetMax() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.most = 0
}

// WriteJSON answers v as JSON with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Sleep waits d, or until the request is cancelled (false then).
func Sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// RetryAfterSeconds renders a wait as a Retry-After header value.
func RetryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(int((d + time.Second - 1) / time.Second))
}

func reset(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // RST, not FIN
			}
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

func cmp(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// recorder keeps an answer to spoil it.
type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	r.body = append(r.body, b...)
	return len(b), nil
}
func (r *recorder) WriteHeader(s int) {
	if r.status == 0 {
		r.status = s
	}
}

// record carries a call out and keeps its answer.
func record(h http.HandlerFunc, r *http.Request) *recorder {
	rec := &recorder{header: http.Header{}}
	h(rec, r)
	return rec
}

// replay answers the first n bytes of the recorded answer, with status
// instead of the recorded one unless 0; before writes headers of its own.
func (r *recorder) replay(w http.ResponseWriter, status, n int, before func()) {
	for k, v := range r.header {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	before()
	w.WriteHeader(cmp(status, cmp(r.status, http.StatusOK)))
	_, _ = w.Write(r.body[:n])
}

// DeepCopy copies decoded JSON (maps, slices and scalars), so that an
// emulator's store never shares a map with what it answers or is given.
func DeepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, vv := range x {
			m[k] = DeepCopy(vv)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, vv := range x {
			s[i] = DeepCopy(vv)
		}
		return s
	}
	return v
}
