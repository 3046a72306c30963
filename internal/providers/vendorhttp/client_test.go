package vendorhttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/vendorhttp"
)

const secret = "sk-live-0123456789abcdef"

// answer is what the test server does with one request.
type answer func(w http.ResponseWriter, r *http.Request)

// status answers code with the body and headers (name, value, ...).
func status(code int, body string, hdr ...string) answer {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(body))
	}
}

// reset closes the connection with a TCP RST, without an answer.
func reset(w http.ResponseWriter, _ *http.Request) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

// cut answers 200 with a body shorter than its Content-Length, then drops
// the connection.
func cut(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Length", "1000")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(`{"results":[`))
	w.(http.Flusher).Flush()
	panic(http.ErrAbortHandler)
}

// server answers the n-th request with answers[n], the last one from then
// on, and counts the requests.
type server struct {
	*httptest.Server
	calls atomic.Int32
	mu    sync.Mutex
	auth  []string // Authorization headers, in order
}

func newServer(t *testing.T, answers ...answer) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(s.calls.Add(1)) - 1
		s.mu.Lock()
		s.auth = append(s.auth, r.Header.Get("Authorization"))
		s.mu.Unlock()
		answers[min(n, len(answers)-1)](w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// sleeps records the waits asked for, without waiting. cancel, when set, is
// called on the first wait, as if the sync ended while waiting.
type sleeps struct {
	mu     sync.Mutex
	d      []time.Duration
	cancel context.CancelFunc
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	return ctx.Err()
}

func (s *sleeps) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.d)
}

// renewing is an OAuth-like credential: every Renew issues a new token.
type renewing struct {
	mu     sync.Mutex
	token  string
	renews int
}

func (r *renewing) Authorize(_ context.Context, req *http.Request) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	req.Header.Set("Authorization", "Bearer "+r.token)
	return nil
}

func (r *renewing) Renew(*http.Request) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.renews++
	r.token = fmt.Sprintf("%s-%d", secret, r.renews)
	return true
}

func (r *renewing) Scrub(s string) string { return strings.ReplaceAll(s, secret, "[redacted]") }

// vendor is a vendor whose error bodies are shown as they are.
func vendor() vendorhttp.Vendor {
	return vendorhttp.Vendor{
		Name:      "Acme",
		ErrorText: func(status int, body []byte) string { return fmt.Sprintf("HTTP %d: %s", status, body) },
	}
}

// newClient returns a client of srv that records its waits in sl. The
// transport opens a connection per request, so that a reset connection is
// never reused (nor transparently resent by net/http).
func newClient(srv *server, sl *sleeps) *vendorhttp.Client {
	return &vendorhttp.Client{
		Base:   srv.URL,
		Vendor: vendor(),
		Creds:  vendorhttp.Bearer(secret),
		HTTP:   &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		Policy: vendorhttp.DefaultPolicy(),
		Sleep:  sl.sleep,
	}
}

// throttle423 reads 423 as HubSpot does: wait 2 s unless told otherwise.
func throttle423(r *vendorhttp.Response) (vendorhttp.Throttle, bool) {
	switch r.Status {
	case http.StatusLocked:
		return vendorhttp.Throttle{Code: "Locked", Message: "locked", Wait: 2 * time.Second}, true
	case http.StatusTooManyRequests:
		if strings.Contains(string(r.Body), "DAILY") {
			return vendorhttp.Throttle{Code: "DailyLimit", Message: "daily limit", Final: true}, true
		}
		ms, _ := strconv.Atoi(r.Header.Get("X-Interval-Ms"))
		return vendorhttp.Throttle{Code: "Throttled", Message: "interval", Wait: time.Duration(ms) * time.Millisecond}, true
	case 299:
		panic("the Throttle hook read a 2xx")
	}
	return vendorhttp.Throttle{}, false
}

func TestDo(t *testing.T) {
	type want struct {
		calls  int
		waits  string // fmt.Sprint of the waits
		status int    // the response's status; 0 when Do fails
		// When Do fails: the AuthError's reason, or the CallError's code.
		reason, code string
		uncertain    bool
		msg          string // a part of the error's message
	}
	cases := []struct {
		name       string
		answers    []answer
		idempotent bool
		method     string
		policy     func(*vendorhttp.Policy)
		vendor     func(*vendorhttp.Vendor)
		want       want
	}{
		{name: "200 is returned",
			answers: []answer{status(200, `{"ok":true}`)},
			want:    want{calls: 1, waits: "[]", status: 200}},
		{name: "a 4xx other than 401/403/429 is an answer",
			answers: []answer{status(404, `{"error":"nope"}`)},
			want:    want{calls: 1, waits: "[]", status: 404}},
		{name: "a 2xx is never read by the Throttle hook",
			answers: []answer{status(299, `{}`)},
			vendor:  func(v *vendorhttp.Vendor) { v.Throttle = throttle423 },
			want:    want{calls: 1, waits: "[]", status: 299}},

		{name: "401 is an AuthError, not resent",
			answers: []answer{status(401, `bad token`), status(200, ``)},
			want:    want{calls: 1, waits: "[]", reason: "Unauthorized", msg: "Acme refused the token: HTTP 401: bad token"}},
		{name: "401 names the vendor's credential",
			answers: []answer{status(401, `bad key`)},
			vendor:  func(v *vendorhttp.Vendor) { v.Credential = "the API key" },
			want:    want{calls: 1, waits: "[]", reason: "Unauthorized", msg: "Acme refused the API key: "}},
		{name: "403 is an AuthError",
			answers: []answer{status(403, `no scope`)},
			want:    want{calls: 1, waits: "[]", reason: "Forbidden", msg: "Acme refused the call: HTTP 403: no scope"}},
		{name: "403 with the Forbidden hook",
			answers: []answer{status(403, `{"missing":"users.write"}`)},
			vendor: func(v *vendorhttp.Vendor) {
				v.Forbidden = func(r *vendorhttp.Response) string { return "the key lacks users.write (" + string(r.Body) + ")" }
			},
			want: want{calls: 1, waits: "[]", reason: "Forbidden", msg: `the key lacks users.write ({"missing":"users.write"})`}},

		{name: "429 with Retry-After waits as asked",
			answers: []answer{status(429, `slow down`, "Retry-After", "7"), status(200, `{}`)},
			want:    want{calls: 2, waits: "[7s]", status: 200}},
		{name: "429 without Retry-After waits the backoff",
			answers: []answer{status(429, ``), status(429, ``), status(200, `{}`)},
			want:    want{calls: 3, waits: "[1s 2s]", status: 200}},
		{name: "429 is resent on a call that is not idempotent: nothing was done",
			answers: []answer{status(429, ``, "Retry-After", "1"), status(201, `{}`)},
			want:    want{calls: 2, waits: "[1s]", status: 201}},
		{name: "429 every time gives up after MaxAttempts",
			answers: []answer{status(429, `slow down`)},
			want: want{calls: 6, waits: "[1s 2s 4s 8s 16s]", code: vendorhttp.CodeRateLimited,
				msg: "Acme is rate limiting: HTTP 429: slow down"}},
		{name: "429 with Retry-After 0 waits the backoff",
			answers: []answer{status(429, ``, "Retry-After", "0"), status(200, `{}`)},
			want:    want{calls: 2, waits: "[1s]", status: 200}},
		{name: "429 with Retry-After 0 and ExactRetryAfter is resent at once",
			answers: []answer{status(429, ``, "Retry-After", "0"), status(200, `{}`)},
			policy:  func(p *vendorhttp.Policy) { p.ExactRetryAfter = true },
			want:    want{calls: 2, waits: "[0s]", status: 200}},
		{name: "429 read by the Throttle hook waits the vendor's wait",
			answers: []answer{status(429, ``, "X-Interval-Ms", "1500"), status(200, `{}`)},
			vendor:  func(v *vendorhttp.Vendor) { v.Throttle = throttle423 },
			want:    want{calls: 2, waits: "[1.5s]", status: 200}},
		{name: "the Throttle hook's wait 0 is the backoff",
			answers: []answer{status(429, ``), status(200, `{}`)},
			vendor:  func(v *vendorhttp.Vendor) { v.Throttle = throttle423 },
			want:    want{calls: 2, waits: "[1s]", status: 200}},
		{name: "the Throttle hook's Final is not resent",
			answers: []answer{status(429, `DAILY`), status(200, `{}`)},
			vendor:  func(v *vendorhttp.Vendor) { v.Throttle = throttle423 },
			want:    want{calls: 1, waits: "[]", code: "DailyLimit", msg: "daily limit"}},
		{name: "a vendor status read by the Throttle hook is waited out",
			answers: []answer{status(423, ``), status(200, `{}`)},
			vendor:  func(v *vendorhttp.Vendor) { v.Throttle = throttle423 },
			want:    want{calls: 2, waits: "[2s]", status: 200}},
		{name: "a status the Throttle hook leaves is read as usual",
			answers:    []answer{status(503, ``), status(200, `{}`)},
			idempotent: true,
			vendor:     func(v *vendorhttp.Vendor) { v.Throttle = throttle423 },
			want:       want{calls: 2, waits: "[1s]", status: 200}},

		{name: "5xx on an idempotent call is resent",
			answers:    []answer{status(502, ``), status(200, `{}`)},
			idempotent: true,
			want:       want{calls: 2, waits: "[1s]", status: 200}},
		{name: "5xx on an idempotent call follows Retry-After",
			answers:    []answer{status(503, ``, "Retry-After", "5"), status(200, `{}`)},
			idempotent: true,
			want:       want{calls: 2, waits: "[5s]", status: 200}},
		{name: "5xx on an idempotent call is sent MaxServerAttempts times",
			answers:    []answer{status(503, `down`)},
			idempotent: true,
			want: want{calls: 3, waits: "[1s 2s]", code: vendorhttp.CodeUnavailable, uncertain: true,
				msg: "Acme answered HTTP 503: HTTP 503: down"}},
		{name: "MaxServerAttempts counts the 5xx answers only",
			answers: []answer{status(503, ``), status(429, ``, "Retry-After", "3"), status(500, ``),
				status(429, ``, "Retry-After", "3"), status(502, ``)},
			idempotent: true,
			want:       want{calls: 5, waits: "[1s 3s 4s 3s]", code: vendorhttp.CodeUnavailable, uncertain: true}},
		{name: "5xx on a call that is not idempotent is not resent",
			answers: []answer{status(500, `oops`), status(200, `{}`)},
			want:    want{calls: 1, waits: "[]", code: vendorhttp.CodeUnavailable, uncertain: true}},
		{name: "a 429 after a 5xx leaves the call uncertain",
			answers:    []answer{status(503, ``), status(429, ``)},
			idempotent: true,
			policy:     func(p *vendorhttp.Policy) { p.MaxAttempts = 2 },
			want:       want{calls: 2, waits: "[1s]", code: vendorhttp.CodeRateLimited, uncertain: true}},

		{name: "a reset connection on a call that is not idempotent is not resent",
			answers: []answer{reset, status(200, `{}`)},
			want:    want{calls: 1, waits: "[]", code: vendorhttp.CodeUnreachable, uncertain: true, msg: "Acme did not answer: "}},
		{name: "a reset connection on an idempotent call is resent",
			answers:    []answer{reset, status(200, `{}`)},
			idempotent: true,
			want:       want{calls: 2, waits: "[1s]", status: 200}},
		{name: "a reset connection on an idempotent call gives up after MaxServerAttempts",
			answers:    []answer{reset},
			idempotent: true,
			want:       want{calls: 3, waits: "[1s 2s]", code: vendorhttp.CodeUnreachable, uncertain: true}},
		{name: "a reset connection on a read is certain: nothing was written",
			answers:    []answer{reset},
			method:     http.MethodGet,
			idempotent: true,
			want:       want{calls: 3, waits: "[1s 2s]", code: vendorhttp.CodeUnreachable}},
		{name: "a 2xx whose body is cut is uncertain",
			answers: []answer{cut, status(200, `{}`)},
			want: want{calls: 1, waits: "[]", code: vendorhttp.CodeUnreachable, uncertain: true,
				msg: "reading Acme's answer: "}},
		{name: "a 2xx whose body is cut is resent when idempotent",
			answers:    []answer{cut, status(200, `{}`)},
			idempotent: true,
			want:       want{calls: 2, waits: "[1s]", status: 200}},

		{name: "a wait over MaxWait ends the call without sleeping",
			answers: []answer{status(429, `slow down`, "Retry-After", "60"), status(200, `{}`)},
			policy:  func(p *vendorhttp.Policy) { p.MaxWait = 10 * time.Second },
			want:    want{calls: 1, waits: "[]", code: vendorhttp.CodeRateLimited, msg: "(Acme asked to wait 1m0s)"}},
		{name: "a backoff over MaxWait ends the call without sleeping",
			answers:    []answer{status(503, ``)},
			idempotent: true,
			policy:     func(p *vendorhttp.Policy) { p.MaxWait = 1500 * time.Millisecond },
			want:       want{calls: 2, waits: "[1s]", code: vendorhttp.CodeUnavailable, uncertain: true, msg: "asked to wait 2s"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.answers...)
			sl := &sleeps{}
			c := newClient(srv, sl)
			if tc.policy != nil {
				tc.policy(&c.Policy)
			}
			if tc.vendor != nil {
				tc.vendor(&c.Vendor)
			}
			method := tc.method
			var body any
			if method == "" {
				method, body = http.MethodPost, map[string]int{"a": 1}
			}
			resp, err := c.Do(context.Background(), vendorhttp.Request{Method: method, Path: "/users", Body: body,
				Idempotent: tc.idempotent, Endpoint: "users"})
			w := tc.want
			if n := int(srv.calls.Load()); n != w.calls {
				t.Errorf("%d calls, want %d", n, w.calls)
			}
			if got := sl.String(); got != w.waits {
				t.Errorf("waits %s, want %s", got, w.waits)
			}
			if w.status != 0 {
				if err != nil || resp.Status != w.status {
					t.Fatalf("Do = %+v, %v; want HTTP %d", resp, err, w.status)
				}
				return
			}
			if resp != nil {
				t.Fatalf("Do returned HTTP %d with the error %v", resp.Status, err)
			}
			var msg string
			var ae *providers.AuthError
			var ce *vendorhttp.CallError
			switch {
			case w.reason != "":
				if !errors.As(err, &ae) || !errors.Is(err, providers.ErrAuth) || ae.Reason != w.reason {
					t.Fatalf("Do: %v (%T), want an AuthError %s", err, err, w.reason)
				}
				msg = ae.Message
			default:
				if !errors.As(err, &ce) || ce.Code != w.code || ce.Uncertain != w.uncertain {
					t.Fatalf("Do: %#v, want a CallError %s with Uncertain=%v", err, w.code, w.uncertain)
				}
				if re := ce.Record(); re.Code != ce.Code || re.Message != ce.Message || re.Uncertain != ce.Uncertain || re.Permanent {
					t.Fatalf("Record() = %+v of %+v", re, ce)
				}
				msg = ce.Message
			}
			if !strings.Contains(msg, w.msg) {
				t.Errorf("message %q, want it to hold %q", msg, w.msg)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error holds the credential: %v", err)
			}
		})
	}
}

// TestRenew: a 401 renews credentials that can be renewed and resends the
// call once with the new ones; a second 401 is an AuthError.
func TestRenew(t *testing.T) {
	cases := []struct {
		name    string
		answers []answer
		calls   int
		ok      bool
	}{
		{"renewed then accepted", []answer{status(401, ``), status(200, `{}`)}, 2, true},
		{"refused again: not renewed twice", []answer{status(401, `expired`)}, 2, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.answers...)
			sl := &sleeps{}
			c := newClient(srv, sl)
			creds := &renewing{token: secret}
			c.Creds = creds
			// Not idempotent: a 401 applied nothing, so renewing is always safe.
			resp, err := c.Do(context.Background(), vendorhttp.Request{Path: "/users", Body: []int{1}})
			if tc.ok != (err == nil) {
				t.Fatalf("Do = %+v, %v", resp, err)
			}
			var ae *providers.AuthError
			if !tc.ok && (!errors.As(err, &ae) || ae.Reason != "Unauthorized" || strings.Contains(ae.Message, secret)) {
				t.Fatalf("Do: %v, want an Unauthorized AuthError without the credential", err)
			}
			if n := int(srv.calls.Load()); n != tc.calls {
				t.Fatalf("%d calls, want %d", n, tc.calls)
			}
			if creds.renews != 1 {
				t.Fatalf("renewed %d times, want once", creds.renews)
			}
			srv.mu.Lock()
			sent := fmt.Sprint(srv.auth)
			srv.mu.Unlock()
			if want := fmt.Sprintf("[Bearer %s Bearer %s-1]", secret, secret); sent != want {
				t.Fatalf("sent %s, want %s", sent, want)
			}
			if sl.String() != "[]" {
				t.Fatalf("waited %s to renew", sl)
			}
		})
	}
}

// TestCancelled: a call whose context ends while it waits to be resent ends
// Cancelled, uncertain only when an attempt may have been applied.
func TestCancelled(t *testing.T) {
	cases := []struct {
		name       string
		answer     answer
		idempotent bool
		uncertain  bool
	}{
		{"waiting out a 429", status(429, `slow down`, "Retry-After", "30"), false, false},
		{"waiting out a 5xx", status(503, `down`), true, true},
		{"waiting out a reset connection", reset, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.answer, status(200, `{}`))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			sl := &sleeps{cancel: cancel}
			c := newClient(srv, sl)
			_, err := c.Do(ctx, vendorhttp.Request{Path: "/users", Body: []int{1}, Idempotent: tc.idempotent})
			var ce *vendorhttp.CallError
			if !errors.As(err, &ce) || ce.Code != vendorhttp.CodeCancelled || ce.Uncertain != tc.uncertain {
				t.Fatalf("Do: %#v, want Cancelled with Uncertain=%v", err, tc.uncertain)
			}
			if !strings.Contains(ce.Message, "the sync ended before the call was sent to Acme again") {
				t.Errorf("message %q", ce.Message)
			}
			if n := srv.calls.Load(); n != 1 {
				t.Fatalf("%d calls, want 1", n)
			}
			if got := sl.String(); got != "[30s]" && got != "[1s]" {
				t.Fatalf("waits %s, want one", got)
			}
		})
	}

	t.Run("before sending", func(t *testing.T) {
		srv := newServer(t, status(200, `{}`))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := newClient(srv, &sleeps{}).Do(ctx, vendorhttp.Request{Path: "/users", Body: []int{1}})
		var ce *vendorhttp.CallError
		if !errors.As(err, &ce) || ce.Code != vendorhttp.CodeCancelled || ce.Uncertain {
			t.Fatalf("Do: %#v, want Cancelled and certain", err)
		}
		if n := srv.calls.Load(); n != 0 {
			t.Fatalf("%d calls after the context ended", n)
		}
	})

	t.Run("while the vendor answers", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			cancel()
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		})
		sl := &sleeps{}
		_, err := newClient(srv, sl).Do(ctx, vendorhttp.Request{Path: "/users", Body: []int{1}, Idempotent: true})
		var ce *vendorhttp.CallError
		if !errors.As(err, &ce) || ce.Code != vendorhttp.CodeCancelled || !ce.Uncertain {
			t.Fatalf("Do: %#v, want Cancelled and uncertain", err)
		}
		if n := srv.calls.Load(); n != 1 || sl.String() != "[]" {
			t.Fatalf("%d calls, waits %s: resent after the context ended", n, sl)
		}
	})
}

// TestMaxBody: no more than MaxBody bytes of an answer are read.
func TestMaxBody(t *testing.T) {
	big := strings.Repeat("x", 1000)
	for _, tc := range []struct {
		max  int64
		want int
	}{{10, 10}, {0, 1000}, {5000, 1000}} {
		t.Run(fmt.Sprint(tc.max), func(t *testing.T) {
			srv := newServer(t, status(200, big))
			c := newClient(srv, &sleeps{})
			c.Policy.MaxBody = tc.max
			resp, err := c.Do(context.Background(), vendorhttp.Request{Method: http.MethodGet, Idempotent: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Body) != tc.want {
				t.Fatalf("read %d bytes, want %d", len(resp.Body), tc.want)
			}
		})
	}
}

// TestMessages: no message holds the credential, even where the vendor
// echoes it or the URL holds it, and every message fits a status record.
func TestMessages(t *testing.T) {
	echo := func(code int) answer {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			_, _ = fmt.Fprintf(w, "you sent %q", r.Header.Get("Authorization"))
		}
	}
	long := strings.Repeat("é", providers.MaxMessageLength) // two bytes each
	answers := map[string]answer{
		"401": echo(401), "403": echo(403), "429": echo(429), "503": echo(503), "reset": reset,
		"long 503": status(503, long), "long 401": status(401, long),
	}
	for name, a := range answers {
		t.Run(name, func(t *testing.T) {
			srv := newServer(t, a)
			c := newClient(srv, &sleeps{})
			c.Policy.MaxAttempts = 1
			_, err := c.Do(context.Background(), vendorhttp.Request{Path: "/users?key=" + secret, Body: []int{1}})
			if err == nil {
				t.Fatal("Do succeeded")
			}
			var msg string
			var ae *providers.AuthError
			var ce *vendorhttp.CallError
			switch {
			case errors.As(err, &ae):
				msg = ae.Message
			case errors.As(err, &ce):
				msg = ce.Message
			default:
				t.Fatalf("Do: %v (%T)", err, err)
			}
			if strings.Contains(err.Error(), secret) {
				t.Fatalf("the error holds the credential: %v", err)
			}
			if len(msg) > providers.MaxMessageLength {
				t.Fatalf("a message of %d bytes, over %d", len(msg), providers.MaxMessageLength)
			}
			if strings.HasPrefix(name, "long") && !strings.HasSuffix(msg, "…") {
				t.Fatalf("a cut message without an ellipsis: %q", msg)
			}
		})
	}
}

// observer records the calls reported to the metrics.
type observer struct {
	mu    sync.Mutex
	calls []string
}

func (o *observer) Call(endpoint string, records int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, fmt.Sprintf("%s:%d", endpoint, records))
}

// endpoints records the endpoint name of every request sent, as the
// engine's metrics transport reads it.
type endpoints struct {
	mu    sync.Mutex
	names []string
	next  http.RoundTripper
}

func (e *endpoints) RoundTrip(r *http.Request) (*http.Response, error) {
	e.mu.Lock()
	e.names = append(e.names, providers.EndpointOf(r.Context()))
	e.mu.Unlock()
	return e.next.RoundTrip(r)
}

// TestMetrics: a call carrying records is reported once, however many
// attempts it takes; every attempt is named by its endpoint.
func TestMetrics(t *testing.T) {
	cases := []struct {
		name     string
		req      vendorhttp.Request
		observed string
		named    string
	}{
		{"a write of records", vendorhttp.Request{Path: "/batch/update", Body: []int{1}, Idempotent: true,
			Endpoint: "batch/update", Records: 5}, "[batch/update:5]", "[batch/update batch/update batch/update]"},
		{"a lookup", vendorhttp.Request{Method: http.MethodGet, Path: "/users", Idempotent: true,
			Endpoint: "list"}, "[]", "[list list list]"},
		{"no endpoint", vendorhttp.Request{Method: http.MethodGet, Path: "/users", Idempotent: true}, "[]", "[  ]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, status(503, ``), status(429, ``), status(200, `{}`))
			c := newClient(srv, &sleeps{})
			ep := &endpoints{next: c.HTTP.Transport}
			c.HTTP.Transport = ep
			o := &observer{}
			if _, err := c.Do(providers.WithObserver(context.Background(), o), tc.req); err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(o.calls); got != tc.observed {
				t.Errorf("observed %s, want %s", got, tc.observed)
			}
			if got := fmt.Sprint(ep.names); got != tc.named {
				t.Errorf("requests named %s, want %s", got, tc.named)
			}
		})
	}
}

// TestRequest: what the client puts on the wire.
func TestRequest(t *testing.T) {
	var (
		mu   sync.Mutex
		got  *http.Request
		body []byte
	)
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		got = r.Clone(context.Background())
		body, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusNoContent)
	})
	c := newClient(srv, &sleeps{})
	c.Base = srv.URL + "/api/v3"
	c.Header = http.Header{"X-Api-Version": {"2024-01"}}
	resp, err := c.Do(context.Background(), vendorhttp.Request{Method: http.MethodPut, Path: "/users/7?x=1", Body: map[string]string{"name": "Ada"}})
	if err != nil || resp.Status != http.StatusNoContent || !resp.OK() {
		t.Fatalf("Do = %+v, %v", resp, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for k, want := range map[string]string{
		"Authorization": "Bearer " + secret, "Content-Type": "application/json",
		"Accept": "application/json", "X-Api-Version": "2024-01",
	} {
		if v := got.Header.Get(k); v != want {
			t.Errorf("%s: %q, want %q", k, v, want)
		}
	}
	if got.Method != http.MethodPut || got.URL.Path != "/api/v3/users/7" || got.URL.RawQuery != "x=1" {
		t.Errorf("sent %s %s", got.Method, got.URL)
	}
	if string(body) != `{"name":"Ada"}` {
		t.Errorf("body %s", body)
	}

	// A body that cannot be encoded is not sent.
	_, err = c.Do(context.Background(), vendorhttp.Request{Body: func() {}})
	var ce *vendorhttp.CallError
	if !errors.As(err, &ce) || ce.Code != vendorhttp.CodeBadRequest || ce.Uncertain {
		t.Fatalf("Do: %v, want InvalidRequest", err)
	}
	if n := srv.calls.Load(); n != 1 {
		t.Fatalf("%d calls", n)
	}
}
