package usercom

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/usersync/usersync-operator/internal/providers"
	ucemu "github.com/usersync/usersync-operator/internal/providers/usercom/emulator"
)

// readReqs is a read request per user, with ID "r-<key>".
func readReqs(us []providers.User) []providers.ReadRequest {
	out := make([]providers.ReadRequest, len(us))
	for i, u := range us {
		out[i] = providers.ReadRequest{ID: "r-" + u.Key, User: u}
	}
	return out
}

// observe runs Read and returns the observations by ID, checking that
// there is one per request and that no error holds the token.
func observe(t testing.TB, c providers.Reader, reqs []providers.ReadRequest) map[string]providers.Observation {
	return observeCtx(context.Background(), t, c, reqs)
}

func observeCtx(ctx context.Context, t testing.TB, c providers.Reader, reqs []providers.ReadRequest) map[string]providers.Observation {
	t.Helper()
	obs, err := c.Read(ctx, reqs)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if len(obs) != len(reqs) {
		t.Fatalf("%d observations for %d requests", len(obs), len(reqs))
	}
	out := map[string]providers.Observation{}
	for _, o := range obs {
		if _, dup := out[o.ID]; dup {
			t.Fatalf("two observations for %s", o.ID)
		}
		if o.Presence == providers.Unknown && o.Err == nil || o.Presence != providers.Unknown && o.Err != nil {
			t.Fatalf("%s: %v with error %v", o.ID, o.Presence, o.Err)
		}
		if o.Presence != providers.Found && len(o.Differs) > 0 {
			t.Fatalf("%s: %v with Differs %v", o.ID, o.Presence, o.Differs)
		}
		if o.Err != nil && strings.Contains(o.Err.Error(), testToken) {
			t.Fatalf("%s: the error holds the token", o.ID)
		}
		out[o.ID] = o
	}
	for _, r := range reqs {
		if _, ok := out[r.ID]; !ok {
			t.Fatalf("no observation for %s", r.ID)
		}
	}
	return out
}

// typedUsers are users with a value of every type user.com stores.
func typedUsers(n int) []providers.User {
	us := users(n)
	for i := range us {
		us[i].Attributes = map[string]any{
			"plan": "pro", "seat": float64(i), "ratio": 0.5, "active": i%2 == 0,
			"renewal": "2024-05-01", "last_seen": "2024-05-01T10:00:00Z", "phone_number": "+31 20 555 0100",
		}
	}
	return us
}

// TestReadFindsEditsAndDeletions writes users, then reads them back
// unchanged, after edits behind the operator's back, and after deletions.
func TestReadFindsEditsAndDeletions(t *testing.T) {
	s := newSetup(t, 100)
	us := typedUsers(8)
	s.created(t, us)
	reqs := readReqs(us)
	for id, o := range observe(t, s.c, reqs) {
		if o.Presence != providers.Found || len(o.Differs) > 0 {
			t.Fatalf("unchanged %s: %+v", id, o)
		}
	}
	if n := s.em.Calls(ucemu.EndpointRead); n != len(us) {
		t.Fatalf("%d reads for %d users", n, len(us))
	}

	edits := map[string]map[string]any{
		"u-000": {"first_name": "Someone"},
		"u-001": {"email": "U-001@EXAMPLE.COM", "seat": "1"}, // case and type only
		"u-002": {"plan": nil},
		"u-003": {"seat": int64(42), "active": "false", "last_name": ""},
		"u-004": {"phone_number": "+1 555"},
		"u-005": {"unrelated": "x", "score": 7},
	}
	for key, f := range edits {
		if !s.em.EditUser(key, f) {
			t.Fatalf("EditUser %s", key)
		}
	}
	if !s.em.DeleteUser("u-006") || s.em.EditUser("u-006", map[string]any{"plan": "x"}) {
		t.Fatal("DeleteUser, then EditUser of the deleted user")
	}
	want := map[string][]string{
		"r-u-000": {"first_name"},
		"r-u-002": {"plan"},
		"r-u-003": {"last_name", "seat"},
		"r-u-004": {"phone_number"},
	}
	got := observe(t, s.c, reqs)
	for _, r := range reqs {
		o := got[r.ID]
		switch {
		case r.ID == "r-u-006":
			if o.Presence != providers.Missing {
				t.Errorf("deleted: %+v", o)
			}
		case o.Presence != providers.Found:
			t.Errorf("%s: %+v", r.ID, o)
		default:
			if diff := cmp.Diff(want[r.ID], o.Differs); diff != "" {
				t.Errorf("%s Differs (-want +got):\n%s", r.ID, diff)
			}
		}
	}
}

// TestReadRepeatedKeys: requests that repeat a key get one observation
// each, compared with their own user, from one call.
func TestReadRepeatedKeys(t *testing.T) {
	s := newSetup(t, 100)
	us := typedUsers(2)
	s.created(t, us)
	other := us[0]
	other.FirstName = "Other"
	reqs := []providers.ReadRequest{
		{ID: "a", User: us[0]}, {ID: "b", User: us[1]}, {ID: "c", User: other}, {ID: "d", User: us[0]},
	}
	got := observe(t, s.c, reqs)
	if got["a"].Presence != providers.Found || len(got["a"].Differs) > 0 || got["d"].Presence != providers.Found ||
		len(got["d"].Differs) > 0 || got["b"].Presence != providers.Found {
		t.Fatalf("%+v", got)
	}
	if diff := cmp.Diff([]string{"first_name"}, got["c"].Differs); diff != "" {
		t.Errorf("c: %s", diff)
	}
	if n := s.em.Calls(ucemu.EndpointRead); n != 2 {
		t.Errorf("%d reads for 2 keys", n)
	}
}

// TestReadFailuresAreUnknown: a read that fails, is throttled, times out
// or answers something unreadable verifies nothing; only user.com's 404
// is Missing.
func TestReadFailuresAreUnknown(t *testing.T) {
	cases := map[string]struct {
		fault ucemu.Fault
		want  providers.Presence
		// notSpent: the fault may last is over after the read (net/http resends a
		// reset GET of a reused connection itself, so resets are not
		// counted).
		notSpent bool
	}{
		"5xx":                 {fault: ucemu.Fault{Status: http.StatusServiceUnavailable, Count: 3}},
		"429":                 {fault: ucemu.Fault{Status: http.StatusTooManyRequests, Count: 5}},
		"reset":               {fault: ucemu.Fault{Reset: true, Count: 6}, notSpent: true},
		"timeout":             {fault: ucemu.Fault{Delay: 5 * time.Second, Count: 3}},
		"malformed":           {fault: ucemu.Fault{Body: ucemu.Malformed}},
		"truncated":           {fault: ucemu.Fault{Body: ucemu.Truncated}},
		"HTML 404":            {fault: ucemu.Fault{Body: ucemu.Malformed, Status: http.StatusNotFound}},
		"400":                 {fault: ucemu.Fault{Status: http.StatusBadRequest}},
		"user.com's own 404":  {fault: ucemu.Fault{Status: http.StatusNotFound}, want: providers.Missing},
		"429 then the answer": {fault: ucemu.Fault{Status: http.StatusTooManyRequests, Count: 2}, want: providers.Found},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := newSetup(t, 100)
			s.cfg.HTTPClient = &http.Client{Timeout: 200 * time.Millisecond}
			c := s.client(t)
			us := typedUsers(1)
			s.created(t, us)
			s.em.Inject(ucemu.EndpointRead, tc.fault)
			o := observe(t, c, readReqs(us))["r-u-000"]
			if o.Presence != tc.want {
				t.Fatalf("%+v, want %v", o, tc.want)
			}
			// The fault is spent: the next read finds the user.
			if tc.notSpent {
				return
			}
			if o := observe(t, c, readReqs(us))["r-u-000"]; o.Presence != providers.Found || len(o.Differs) > 0 {
				t.Fatalf("after the fault: %+v", o)
			}
		})
	}
}

// countingTransport counts the requests sent.
type countingTransport struct{ n atomic.Int32 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// TestReadRefusedKey: a refused API key leaves every user Unknown with an
// AuthError, and stops the reads.
func TestReadRefusedKey(t *testing.T) {
	s := newSetup(t, 100)
	s.created(t, users(20))
	ct := &countingTransport{}
	s.cfg.HTTPClient = &http.Client{Transport: ct}
	s.cfg.Credentials = map[string][]byte{"token": []byte("wrong-" + testToken)}
	for _, o := range observe(t, s.client(t), readReqs(users(20))) {
		if o.Presence != providers.Unknown || !errors.Is(o.Err, providers.ErrAuth) {
			t.Fatalf("%+v", o)
		}
	}
	if n := ct.n.Load(); n > readInFlight {
		t.Errorf("%d reads sent after the key was refused", n)
	}
}

// TestReadCancelled: users not read when the context ends are Unknown.
func TestReadCancelled(t *testing.T) {
	s := newSetup(t, 100)
	us := users(6)
	s.created(t, us)
	s.em.ResetCounters()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, o := range observeCtx(ctx, t, s.c, readReqs(us)) {
		if o.Presence != providers.Unknown {
			t.Fatalf("%+v", o)
		}
	}
	if n := s.em.Calls(ucemu.EndpointRead); n != 0 {
		t.Errorf("%d reads sent after the context ended", n)
	}
	o := observe(t, s.c, []providers.ReadRequest{{ID: "x", User: providers.User{Email: "a@example.com"}}})["x"]
	if o.Presence != providers.Unknown || !strings.Contains(o.Err.Error(), "no key") {
		t.Errorf("no key: %+v", o)
	}
}

// TestReadAnswers feeds answers shaped otherwise than the emulator's, and
// checks the request.
func TestReadAnswers(t *testing.T) {
	user := providers.User{Key: "a/b c", Email: "a@example.com", FirstName: "A", Attributes: map[string]any{"plan": "pro"}}
	cases := map[string]struct {
		status int
		body   string
		want   providers.Presence
		// differs or, for Unknown, a part of the error.
		differs []string
		err     string
	}{
		"found":                   {200, `{"id":1,"custom_id":"a/b c","email":"A@example.com","first_name":"A","attributes":{"plan":"pro"}}`, providers.Found, nil, ""},
		"no custom_id":            {200, `{"id":1,"email":"a@example.com","first_name":"A","attributes":{"plan":"free"}}`, providers.Found, []string{"plan"}, ""},
		"user_id":                 {200, `{"user_id":"a/b c","email":"a@example.com","first_name":"A","attributes":[{"name":"plan","value":"pro"}]}`, providers.Found, nil, ""},
		"another user":            {200, `{"custom_id":"other","email":"a@example.com"}`, providers.Unknown, nil, "another user"},
		"not an object":           {200, `[]`, providers.Unknown, nil, "could not be read"},
		"null":                    {200, `null`, providers.Unknown, nil, "could not be read"},
		"bad attributes":          {200, `{"custom_id":"a/b c","attributes":"x"}`, providers.Unknown, nil, "could not be read"},
		"DRF 404":                 {404, `{"detail":"Not found."}`, providers.Missing, nil, ""},
		"404 of another server":   {404, `<h1>Not Found</h1>`, providers.Unknown, nil, "spec.endpoint"},
		"404 with other JSON":     {404, `{"message":"no route"}`, providers.Unknown, nil, "not its not-found error"},
		"403":                     {403, `{"detail":"You do not have permission."}`, providers.Unknown, nil, "refused the API key"},
		"410":                     {410, `{"detail":"Gone"}`, providers.Unknown, nil, "HTTP 410"},
		"error quoting the token": {500, `{"detail":"bad token ` + testToken + `"}`, providers.Unknown, nil, "[redacted]"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var method, path string
			var header http.Header
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				method, path, header = r.Method, r.URL.EscapedPath(), r.Header.Clone()
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			o := observe(t, fakeClient(t, srv.URL), []providers.ReadRequest{{ID: "x", User: user}})["x"]
			if method != http.MethodGet || path != "/api/public/users-by-id/a%2Fb%20c/" ||
				header.Get("Authorization") != "Token "+testToken || header.Get("Accept") != acceptHeader {
				t.Errorf("sent %s %s with %v", method, path, header)
			}
			if o.Presence != tc.want || !cmp.Equal(tc.differs, o.Differs) ||
				tc.err != "" && !strings.Contains(o.Err.Error(), tc.err) {
				t.Errorf("%+v (%v), want %v %v %q", o, o.Err, tc.want, tc.differs, tc.err)
			}
		})
	}
}

func TestReadBatch(t *testing.T) {
	if n := (&Client{}).ReadBatch(); n != 1 {
		t.Fatalf("ReadBatch %d", n)
	}
}
