package emulation_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync-operator/internal/providers/emulation"
	"github.com/usersync/usersync-operator/internal/providers/emulation/emulationtest"
)

// store is the smallest vendor: POST /items/{name} stores name.
type store struct {
	*emulation.Server
	mu    sync.Mutex
	items map[string]bool
}

func newStore() *store {
	s := &store{items: map[string]bool{}}
	s.Server = &emulation.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			name, ok := strings.CutPrefix(r.URL.Path, "/items/")
			if !ok || r.Method != http.MethodPost {
				http.NotFound(w, r)
				return
			}
			_, _ = io.Copy(io.Discard, r.Body)
			s.Serve(w, r, "items", 1, func(w http.ResponseWriter, _ *http.Request) {
				s.mu.Lock()
				s.items[name] = true
				s.mu.Unlock()
				emulation.WriteJSON(w, http.StatusCreated, map[string]any{"name": name, "created": true})
			})
		}),
		ErrorBody: func(status int) any { return map[string]any{"error": status} },
	}
	return s
}

func (s *store) has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.items[name]
}

func TestFaults(t *testing.T) {
	s := newStore()
	url := s.Start()
	defer s.Close()
	emulationtest.Faults(t, emulationtest.Target{
		Inject: func(f emulation.Fault) { s.Inject("items", f) },
		Request: func(t *testing.T, i int) *http.Request {
			req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/items/i%d", url, i), strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			return req
		},
		Applied: func(i int) bool { return s.has(fmt.Sprintf("i%d", i)) },
		Calls:   func() int { return s.Calls("items") },
	})
	log := s.Log()
	if len(log) != s.Calls("items") || log[0].Fault == nil || log[0].Fault.RetryAfter != "3" || log[0].Inputs != 1 {
		t.Fatalf("log %+v", log[:1])
	}
	if got := len(s.Inputs("items")); got != len(log) {
		t.Fatalf("%d inputs, %d calls", got, len(log))
	}
	s.ResetCounters()
	if s.Calls("items") != 0 || len(s.Log()) != 0 || len(s.Inputs("items")) != 0 {
		t.Fatal("ResetCounters left counts")
	}
}

func TestRateLimit(t *testing.T) {
	l := &emulation.RateLimit{Limit: 2, Window: time.Second}
	t0 := time.Unix(1000, 0)
	for i, tc := range []struct {
		at        time.Duration
		ok        bool
		remaining int
	}{
		{0, true, 1},
		{100 * time.Millisecond, true, 0},
		{500 * time.Millisecond, false, 0},
		{time.Second, true, 0}, // the first left the window
		{1050 * time.Millisecond, false, 0},
		{1100 * time.Millisecond, true, 0},
	} {
		remaining, ok := l.Admit(t0.Add(tc.at))
		if ok != tc.ok || remaining != tc.remaining {
			t.Fatalf("call %d: ok %v remaining %d, want %v %d", i, ok, remaining, tc.ok, tc.remaining)
		}
	}
	if got := l.MaxInWindow(); got != 2 {
		t.Fatalf("MaxInWindow %d", got)
	}

	s := &emulation.Server{Limit: &emulation.RateLimit{Limit: 1, Window: time.Minute}}
	if _, ok := s.Admit(); !ok {
		t.Fatal("first call refused")
	}
	if _, ok := s.Admit(); ok {
		t.Fatal("second call admitted")
	}
	if s.Throttled() != 1 || s.MaxInWindow() != 1 {
		t.Fatalf("throttled %d, max %d", s.Throttled(), s.MaxInWindow())
	}
	s.ResetCounters()
	if s.Throttled() != 0 || s.MaxInWindow() != 0 {
		t.Fatalf("after ResetCounters: throttled %d, max %d", s.Throttled(), s.MaxInWindow())
	}
	if remaining, ok := (&emulation.Server{}).Admit(); !ok || remaining != -1 {
		t.Fatal("a server without a limit refused a call")
	}
}
