package providers_test

import (
	"context"
	"errors"

	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/propel"
	"github.com/usersync/usersync-operator/internal/providers/usercom"
)

// TestTransportFaults gives Propel and user.com clients a vendor that resets
// the connection or never answers: every change ends transient and
// uncertain (the write may have been applied), the idempotent calls are
// retried at most three times, and no credential reaches a message.
func TestTransportFaults(t *testing.T) {
	const secret = "transport-fault-secret-0123456789"
	reset := func(w http.ResponseWriter, _ *http.Request) {
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			_ = conn.Close()
		}
	}
	hang := func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}
	vendors := []struct {
		name    string
		path    string // the write endpoint the fault hits
		factory providers.Factory
		creds   map[string][]byte
		prefix  string
	}{
		{"propel", "/users/bulk/sourceId", propel.Factory{},
			map[string][]byte{"clientId": []byte("c"), "token": []byte(secret)}, ""},
		{"usercom", "/api/public/users/update_or_create/", usercom.Factory{},
			map[string][]byte{"token": []byte(secret)}, "/api/public/"},
	}
	faults := []struct {
		name    string
		handler http.HandlerFunc
	}{{"connection reset", reset}, {"no answer", hang}}
	for _, v := range vendors {
		for _, f := range faults {
			t.Run(v.name+"/"+f.name, func(t *testing.T) {
				var mu sync.Mutex
				calls := 0
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/oauth2/token" {
						w.Header().Set("Content-Type", "application/json")
						_, _ = w.Write([]byte(`{"access_token":"at-123","token_type":"BearerToken","expires_in":"1800"}`))
						return
					}
					if r.URL.Path != v.path {
						http.NotFound(w, r)
						return
					}
					mu.Lock()
					calls++
					mu.Unlock()
					f.handler(w, r)
				}))
				defer srv.Close()
				c, err := v.factory.New(providers.Config{Endpoint: srv.URL + v.prefix, Credentials: v.creds,
					HTTPClient: &http.Client{Timeout: 200 * time.Millisecond},
					Sleep:      func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
				if err != nil {
					t.Fatal(err)
				}
				chs := []providers.Change{
					{ID: "1", Op: providers.OpCreate, User: providers.User{Key: "alice", Email: "alice@example.com"}},
					{ID: "2", Op: providers.OpCreate, User: providers.User{Key: "bob", Email: "bob@example.com"}},
				}
				res, err := c.Apply(context.Background(), chs)
				if err != nil {
					t.Fatal(err)
				}
				if len(res) != len(chs) {
					t.Fatalf("%d results", len(res))
				}
				for _, r := range res {
					var re *providers.RecordError
					if !errors.As(r.Err, &re) || re.Permanent || !re.Uncertain {
						t.Fatalf("%s: %v, want a transient uncertain failure", r.ID, r.Err)
					}
					if strings.Contains(re.Message, secret) || strings.Contains(re.Message, "at-123") {
						t.Fatal("a credential is in the message")
					}
				}
				mu.Lock()
				defer mu.Unlock()
				if want := 3 * callsPerChange(v.name, len(chs)); calls != want {
					t.Fatalf("%d calls, want %d (3 attempts each)", calls, want)
				}
			})
		}
	}
}

// callsPerChange: Propel sends the changes in one bulk call, user.com one
// call per new user.
func callsPerChange(vendor string, n int) int {
	if vendor == "usercom" {
		return n
	}
	return 1
}
