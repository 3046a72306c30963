package usercom

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/emulation"
	ucemu "github.com/usersync/usersync-operator/internal/providers/usercom/emulator"
)

const testToken = "k3y-never-in-a-message-0123456789abcdef0123456789abcdef0123456789"

// testAttributes are the custom attributes of the emulated app.
var testAttributes = map[string]string{
	"plan":      ucemu.TypeString,
	"seat":      ucemu.TypeInteger,
	"ratio":     ucemu.TypeFloat,
	"active":    ucemu.TypeBoolean,
	"renewal":   ucemu.TypeDate,
	"last_seen": ucemu.TypeDatetime,
}

// sleeps records the waits of a client instead of waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprint(s.d)
}

type setup struct {
	em    *ucemu.Emulator
	c     *Client
	sleep *sleeps
	cfg   providers.Config
}

// newSetup starts an emulator and a client for it; batch is the client's
// and the emulator's ids per mass call.
func newSetup(t testing.TB, batch int) *setup {
	t.Helper()
	em := ucemu.New(ucemu.Options{Tokens: []string{testToken}, Attributes: testAttributes, MaxIDs: batch})
	url := em.Start()
	t.Cleanup(em.Close)
	s := &setup{em: em, sleep: &sleeps{}}
	s.cfg = providers.Config{
		Endpoint:    url,
		Credentials: map[string][]byte{"token": []byte(testToken)},
		BatchSize:   batch,
		Sleep:       s.sleep.sleep,
	}
	s.c = s.client(t)
	return s
}

// client builds another client with the setup's configuration: a
// restarted operator.
func (s *setup) client(t testing.TB) *Client {
	t.Helper()
	c, err := Factory{}.New(s.cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c.(*Client)
}

// users returns n users: the first 280 (of 300) share plan "pro", the
// others have a seat number of their own.
func users(n int) []providers.User {
	out := make([]providers.User, n)
	for i := range out {
		key := fmt.Sprintf("u-%03d", i)
		attrs := map[string]any{"plan": "pro"}
		if i >= 280 {
			attrs = map[string]any{"seat": float64(1000 + i)}
		}
		out[i] = providers.User{Key: key, Email: key + "@example.com", FirstName: "First", LastName: fmt.Sprint("Last ", i), Attributes: attrs}
	}
	return out
}

// creates returns a create change per user.
func creates(us []providers.User) []providers.Change {
	out := make([]providers.Change, len(us))
	for i, u := range us {
		out[i] = providers.Change{ID: "c-" + u.Key, Op: providers.OpCreate, User: u}
	}
	return out
}

// apply runs Apply and returns the results by change id, checking that
// there is one per change and that no error holds the token.
func apply(t testing.TB, c providers.Client, chs []providers.Change) map[string]providers.Result {
	t.Helper()
	res, err := c.Apply(context.Background(), chs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(res) != len(chs) {
		t.Fatalf("%d results for %d changes", len(res), len(chs))
	}
	out := map[string]providers.Result{}
	for _, r := range res {
		if _, dup := out[r.ID]; dup {
			t.Fatalf("two results for %s", r.ID)
		}
		if r.Err != nil && strings.Contains(r.Err.Error(), testToken) {
			t.Fatalf("%s: the error holds the token", r.ID)
		}
		out[r.ID] = r
	}
	for _, ch := range chs {
		if _, ok := out[ch.ID]; !ok {
			t.Fatalf("no result for %s", ch.ID)
		}
	}
	return out
}

func recErr(t testing.TB, r providers.Result) *providers.RecordError {
	t.Helper()
	var re *providers.RecordError
	if !errors.As(r.Err, &re) {
		t.Fatalf("%s: error %v (%T) is not a RecordError", r.ID, r.Err, r.Err)
	}
	return re
}

// created applies creates of us and returns update changes carrying the
// ExternalIDs user.com gave.
func (s *setup) created(t testing.TB, us []providers.User) []providers.Change {
	t.Helper()
	chs := creates(us)
	res := apply(t, s.c, chs)
	for i, ch := range chs {
		r := res[ch.ID]
		if r.Err != nil || r.Action != providers.ActionCreated || r.ExternalID == "" {
			t.Fatalf("%s: %+v", ch.User.Key, r)
		}
		chs[i].Op, chs[i].ExternalID = providers.OpUpdate, r.ExternalID
	}
	return chs
}

// counts is the calls per endpoint since the last ResetCounters.
func (s *setup) counts() map[string]int {
	out := map[string]int{}
	for _, ep := range []string{ucemu.EndpointUpsert, ucemu.EndpointMass, ucemu.EndpointPerUser, ucemu.EndpointDelete, ucemu.EndpointList, ucemu.EndpointRead} {
		if n := s.em.Calls(ep); n > 0 {
			out[ep] = n
		}
	}
	return out
}

func (s *setup) total() int {
	n := 0
	for _, c := range s.counts() {
		n += c
	}
	return n
}

func idOf(t testing.TB, r providers.Result) int64 {
	t.Helper()
	id, err := strconv.ParseInt(r.ExternalID, 10, 64)
	if err != nil {
		t.Fatalf("%s: ExternalID %q", r.ID, r.ExternalID)
	}
	return id
}

// TestPackedAttributeWrites follows 300 users through their first sync and
// three rounds of changes, and checks that the client sends the calls Pack
// plans for exactly the attributes that changed.
func TestPackedAttributeWrites(t *testing.T) {
	for _, tc := range []struct {
		batch     int
		planCalls int
	}{{100, 1}, {30, 2}} {
		t.Run(fmt.Sprint("maxIDs ", tc.batch), func(t *testing.T) {
			s := newSetup(t, tc.batch)
			us := users(300)

			chs := creates(us)
			res := apply(t, s.c, chs)
			t.Logf("first sync of 300 users: %v", s.counts())
			if got := s.counts(); got[ucemu.EndpointUpsert] != 300 || s.total() != 300 {
				t.Fatalf("calls %v, want 300 upserts only", got)
			}
			for i, ch := range chs {
				r := res[ch.ID]
				if r.Err != nil || r.Action != providers.ActionCreated {
					t.Fatalf("%s: %+v", ch.User.Key, r)
				}
				u, ok := s.em.UserByCustomID(ch.User.Key)
				if !ok || u.ID != idOf(t, r) || u.Email != ch.User.Email || u.LastName != ch.User.LastName {
					t.Fatalf("%s: stored %+v, result %+v", ch.User.Key, u, r)
				}
				if i < 280 && u.Attributes["plan"] != "pro" || i >= 280 && u.Attributes["seat"] != int64(1000+i) {
					t.Fatalf("%s: attributes %v did not ride along", ch.User.Key, u.Attributes)
				}
				chs[i].Op, chs[i].ExternalID = providers.OpUpdate, r.ExternalID
			}

			// writesOf is what the client is expected to write for chs.
			writesOf := func(chs []providers.Change, attr string) []AttrWrite {
				var ws []AttrWrite
				for _, ch := range chs {
					id, _ := strconv.ParseInt(ch.ExternalID, 10, 64)
					ws = append(ws, AttrWrite{UserID: id, Key: ch.User.Key, Attr: attr, Value: ch.User.Attributes[attr]})
				}
				return ws
			}
			step := func(name string, changed []providers.Change, want []AttrWrite) {
				t.Helper()
				s.em.ResetCounters()
				for id, r := range apply(t, s.c, changed) {
					if r.Err != nil || r.Action != providers.ActionUpdated || r.ExternalID == "" {
						t.Fatalf("%s: %s: %+v", name, id, r)
					}
				}
				plan := Pack(want, tc.batch)
				t.Logf("%s: calls %v, Pack plans %d", name, s.counts(), len(plan))
				if s.em.Calls(ucemu.EndpointUpsert) != 0 {
					t.Errorf("%s: %d upserts, want 0", name, s.em.Calls(ucemu.EndpointUpsert))
				}
				if got := s.total(); got != len(plan) {
					t.Errorf("%s: %d calls, Pack plans %d", name, got, len(plan))
				}
			}

			// 40 users move to plan enterprise: one shared value.
			for i := range 40 {
				chs[i].User.Attributes = map[string]any{"plan": "enterprise"}
			}
			step("plan of 40 users", chs[:40], writesOf(chs[:40], "plan"))
			if got := s.em.Calls(ucemu.EndpointMass); got != tc.planCalls {
				t.Errorf("%d mass calls, want %d (inputs %v)", got, tc.planCalls, s.em.Inputs(ucemu.EndpointMass))
			}
			for i := range 40 {
				if u, _ := s.em.UserByCustomID(chs[i].User.Key); u.Attributes["plan"] != "enterprise" {
					t.Fatalf("%s: %v", chs[i].User.Key, u.Attributes)
				}
			}

			// 5 users get new seat numbers of their own.
			for i := 280; i < 285; i++ {
				chs[i].User.Attributes = map[string]any{"seat": float64(2000 + i)}
			}
			step("seat of 5 users", chs[280:285], writesOf(chs[280:285], "seat"))
			if got := s.total(); got > 5 {
				t.Errorf("%d calls for 5 seats", got)
			}
			if u, _ := s.em.UserByCustomID(chs[283].User.Key); u.Attributes["seat"] != int64(2283) {
				t.Errorf("seat not written: %v", u.Attributes)
			}

			// Everything again, nothing changed.
			step("nothing changed", chs, nil)
			if got := s.total(); got != 0 {
				t.Errorf("%d calls for no change", got)
			}
			if n := len(s.em.Users()); n != 300 {
				t.Errorf("%d users at user.com, want 300", n)
			}
		})
	}
}

func TestSeveralAttributesOfOneUserGoInOneCall(t *testing.T) {
	s := newSetup(t, 100)
	us := users(10)
	chs := s.created(t, us)
	s.em.ResetCounters()
	// User 0 gets three values of its own, user 1..9 keep theirs.
	chs[0].User.Attributes = map[string]any{"plan": "pro", "seat": float64(7), "ratio": 0.25, "active": true}
	res := apply(t, s.c, chs)
	if r := res[chs[0].ID]; r.Err != nil {
		t.Fatal(r.Err)
	}
	t.Logf("calls %v, inputs %v", s.counts(), s.em.Inputs(ucemu.EndpointPerUser))
	if s.total() != 1 || s.em.Calls(ucemu.EndpointPerUser) != 1 {
		t.Fatalf("calls %v, want one set_multiple_attributes", s.counts())
	}
	u, _ := s.em.UserByCustomID(us[0].Key)
	if u.Attributes["seat"] != int64(7) || u.Attributes["ratio"] != 0.25 || u.Attributes["active"] != true {
		t.Fatalf("attributes %v", u.Attributes)
	}
}

func TestTypedValues(t *testing.T) {
	s := newSetup(t, 100)
	u := providers.User{Key: "typed", Attributes: map[string]any{
		"plan":      "42",
		"seat":      float64(12),
		"ratio":     0.5,
		"active":    false,
		"renewal":   "2024-05-01",
		"last_seen": "2024-05-01T10:00:00Z",
	}}
	chs := s.created(t, []providers.User{u})
	got, _ := s.em.UserByCustomID("typed")
	want := map[string]any{"plan": "42", "seat": int64(12), "ratio": 0.5, "active": false, "renewal": "2024-05-01", "last_seen": "2024-05-01T10:00:00Z"}
	if fmt.Sprintf("%#v", got.Attributes) != fmt.Sprintf("%#v", want) {
		t.Fatalf("stored %#v, want %#v", got.Attributes, want)
	}

	// Through the attribute calls too, and a float that is a whole number
	// goes as an integer.
	chs[0].User.Attributes = map[string]any{"plan": "43", "seat": float64(13), "ratio": float64(2), "active": true,
		"renewal": "2025-05-01", "last_seen": "2025-05-01T10:00:00+02:00"}
	if r := apply(t, s.c, chs)[chs[0].ID]; r.Err != nil {
		t.Fatal(r.Err)
	}
	got, _ = s.em.UserByCustomID("typed")
	want = map[string]any{"plan": "43", "seat": int64(13), "ratio": float64(2), "active": true, "renewal": "2025-05-01", "last_seen": "2025-05-01T10:00:00+02:00"}
	if fmt.Sprintf("%#v", got.Attributes) != fmt.Sprintf("%#v", want) {
		t.Fatalf("stored %#v, want %#v", got.Attributes, want)
	}

	// A value of the wrong type fails that record only, for good.
	chs[0].User.Attributes = map[string]any{"seat": "abc"}
	other := creates([]providers.User{{Key: "fine", Attributes: map[string]any{"seat": float64(1)}}})
	res := apply(t, s.c, append(chs, other...))
	if re := recErr(t, res[chs[0].ID]); !re.Permanent || re.Code != codeValidation || !strings.Contains(re.Message, "seat") {
		t.Fatalf("%+v", re)
	}
	if r := res[other[0].ID]; r.Err != nil {
		t.Fatal(r.Err)
	}
}

func TestRemovedAttributeIsCleared(t *testing.T) {
	s := newSetup(t, 100)
	chs := s.created(t, []providers.User{{Key: "a", Attributes: map[string]any{"plan": "pro", "seat": float64(3)}}})
	chs[0].User.Attributes = map[string]any{"plan": "pro"}
	s.em.ResetCounters()
	if r := apply(t, s.c, chs)[chs[0].ID]; r.Err != nil {
		t.Fatal(r.Err)
	}
	u, _ := s.em.UserByCustomID("a")
	if _, ok := u.Attributes["seat"]; ok || u.Attributes["plan"] != "pro" || s.total() != 1 {
		t.Fatalf("attributes %v after %v", u.Attributes, s.counts())
	}
}

func TestUnknownAttributeFailsOnlyItsRecords(t *testing.T) {
	s := newSetup(t, 100)
	us := users(12)
	chs := s.created(t, us)
	s.em.ResetCounters()
	for i := range 3 {
		chs[i].User.Attributes = map[string]any{"plan": "pro", "region_code": "eu"}
	}
	for i := 3; i < 10; i++ {
		chs[i].User.Attributes = map[string]any{"plan": "enterprise"}
	}
	// A new user with the undefined attribute fails its upsert alone.
	fresh := creates([]providers.User{{Key: "new-bad", Attributes: map[string]any{"region_code": "eu"}}, {Key: "new-good"}})
	res := apply(t, s.c, append(chs, fresh...))
	t.Logf("calls %v", s.counts())
	for i, ch := range chs {
		r := res[ch.ID]
		if i < 3 {
			re := recErr(t, r)
			if !re.Permanent || re.Code != codeUnknownAttribute || !strings.Contains(re.Message, "region_code") {
				t.Errorf("%s: %+v", ch.User.Key, re)
			}
			continue
		}
		if r.Err != nil {
			t.Errorf("%s: %v", ch.User.Key, r.Err)
		}
	}
	if re := recErr(t, res[fresh[0].ID]); !re.Permanent || re.Code != codeUnknownAttribute || !strings.Contains(re.Message, "region_code") {
		t.Errorf("new-bad: %+v", re)
	}
	if r := res[fresh[1].ID]; r.Err != nil || r.Action != providers.ActionCreated {
		t.Errorf("new-good: %+v", r)
	}
	if u, _ := s.em.UserByCustomID(us[5].Key); u.Attributes["plan"] != "enterprise" {
		t.Errorf("other call not applied: %v", u.Attributes)
	}
	if got := s.em.Inputs(ucemu.EndpointMass); fmt.Sprint(got) != "[7 3]" {
		t.Errorf("mass inputs %v, want [7 3]", got)
	}
}

func TestRetries(t *testing.T) {
	cases := []struct {
		name     string
		endpoint string
		status   int
		count    int
		after    bool
		waits    string
		calls    int
		// failCode is empty when the call finally succeeds.
		failCode  string
		uncertain bool
	}{
		{"429 honours Retry-After", ucemu.EndpointMass, 429, 1, false, "[1s]", 3, "", false},
		{"503 backs off", ucemu.EndpointMass, 503, 2, false, "[1s 2s]", 4, "", false},
		{"5xx gives up after three attempts", ucemu.EndpointMass, 502, 3, false, "[1s 2s]", 4, codeVendorUnavailable, true},
		{"429 gives up after five attempts", ucemu.EndpointMass, 429, 5, false, "[1s 1s 1s 1s]", 6, codeRateLimited, false},
		{"a lost answer is uncertain", ucemu.EndpointMass, 504, 3, true, "[1s 2s]", 4, codeVendorUnavailable, true},
		{"upsert 503 is retried", ucemu.EndpointUpsert, 503, 1, false, "[1s]", 2, "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSetup(t, 100)
			chs := s.created(t, users(10))
			s.em.ResetCounters()
			// Users 0-4 change active (the first mass call, by attribute
			// order), users 5-9 their plan (the second).
			for i := range 5 {
				chs[i].User.Attributes = map[string]any{"plan": "pro", "active": true}
			}
			for i := 5; i < 10; i++ {
				chs[i].User.Attributes = map[string]any{"plan": "free"}
			}
			if tc.endpoint == ucemu.EndpointUpsert {
				chs = creates([]providers.User{{Key: "fresh"}})
			}
			f := ucemu.Fault{Status: tc.status, Count: tc.count, AfterApply: tc.after}
			if tc.status == http.StatusTooManyRequests {
				f.RetryAfter = "1"
			}
			s.em.Inject(tc.endpoint, f)
			res := apply(t, s.c, chs)
			if got := s.sleep.String(); got != tc.waits {
				t.Errorf("waits %s, want %s", got, tc.waits)
			}
			if got := s.total(); got != tc.calls {
				t.Errorf("calls %v, want %d in all", s.counts(), tc.calls)
			}
			for i, ch := range chs {
				r := res[ch.ID]
				if tc.failCode == "" || i >= 5 {
					if r.Err != nil {
						t.Errorf("%s: %v", ch.User.Key, r.Err)
					}
					continue
				}
				if re := recErr(t, r); re.Permanent || re.Uncertain != tc.uncertain || re.Code != tc.failCode {
					t.Errorf("%s: %+v", ch.User.Key, re)
				}
			}
			if tc.uncertain {
				// The client forgot the users whose write may have been
				// applied: their next change upserts them.
				s.em.ResetCounters()
				apply(t, s.c, chs)
				if got := s.counts(); got[ucemu.EndpointUpsert] != 5 || s.total() != 5 {
					t.Errorf("after an uncertain failure: calls %v, want 5 upserts", got)
				}
			}
		})
	}
}

func TestCredentialsRefused(t *testing.T) {
	s := newSetup(t, 100)
	cfg := s.cfg
	cfg.Credentials = map[string][]byte{"token": []byte("wrong-" + testToken)}
	bad, err := Factory{}.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = bad.Apply(context.Background(), creates(users(3)))
	var ae *providers.AuthError
	if !errors.Is(err, providers.ErrAuth) || !errors.As(err, &ae) || ae.Reason != "Unauthorized" || !strings.Contains(ae.Message, "Invalid token") {
		t.Fatalf("Apply: %v", err)
	}
	if strings.Contains(err.Error(), testToken) {
		t.Fatal("the error holds the token")
	}
	err = bad.Verify(context.Background())
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized || strings.Contains(err.Error(), testToken) {
		t.Fatalf("Verify: %v", err)
	}
	if len(s.em.Users()) != 0 {
		t.Fatal("a refused call wrote users")
	}
	if err := s.c.Verify(context.Background()); err != nil {
		t.Fatalf("Verify with the right token: %v", err)
	}
}

func TestForbiddenIsAnAuthError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		emulation.WriteJSON(w, http.StatusForbidden, map[string]string{"detail": "You do not have permission to perform this action. Key " + testToken})
	}))
	defer srv.Close()
	c := fakeClient(t, srv.URL)
	err := c.Verify(context.Background())
	var ae *providers.AuthError
	if !errors.As(err, &ae) || ae.Reason != "Forbidden" || strings.Contains(err.Error(), testToken) {
		t.Fatalf("Verify: %v", err)
	}
}

func TestDelete(t *testing.T) {
	s := newSetup(t, 100)
	us := users(3)
	s.created(t, us)
	s.em.ResetCounters()
	del := []providers.Change{{ID: "d1", Op: providers.OpDelete, User: providers.User{Key: us[1].Key}}}
	for range 2 {
		r := apply(t, s.c, del)["d1"]
		if r.Err != nil || r.Action != providers.ActionDeleted {
			t.Fatalf("%+v", r)
		}
	}
	if _, ok := s.em.UserByCustomID(us[1].Key); ok || len(s.em.Users()) != 2 {
		t.Fatalf("users %v", s.em.Users())
	}
	if n := s.em.Calls(ucemu.EndpointDelete); n != 2 {
		t.Fatalf("%d delete calls, want 2 (the second answered 404)", n)
	}
	// A key with characters that need escaping.
	odd := providers.User{Key: "a b/c?%"}
	s.created(t, []providers.User{odd})
	r := apply(t, s.c, []providers.Change{{ID: "d2", Op: providers.OpDelete, User: odd}})["d2"]
	if _, ok := s.em.UserByCustomID(odd.Key); ok || r.Err != nil || r.Action != providers.ActionDeleted {
		t.Fatalf("%+v", r)
	}
}

func TestRestartedClientUpsertsAgain(t *testing.T) {
	s := newSetup(t, 100)
	chs := s.created(t, users(10))
	restarted := s.client(t)
	s.em.ResetCounters()
	res := apply(t, restarted, chs)
	if got := s.counts(); got[ucemu.EndpointUpsert] != 10 || s.total() != 10 {
		t.Fatalf("calls %v, want 10 upserts", got)
	}
	for _, ch := range chs {
		if r := res[ch.ID]; r.Err != nil || r.Action != providers.ActionUpdated || r.ExternalID != ch.ExternalID {
			t.Fatalf("%s: %+v", ch.User.Key, r)
		}
	}
	if n := len(s.em.Users()); n != 10 {
		t.Fatalf("%d users, want 10", n)
	}
	// Warm again: nothing to send.
	s.em.ResetCounters()
	apply(t, restarted, chs)
	if s.total() != 0 {
		t.Fatalf("calls %v", s.counts())
	}
}

func TestUserDeletedAtUserComIsCreatedAgain(t *testing.T) {
	s := newSetup(t, 100)
	us := users(6)
	chs := s.created(t, us)
	s.em.DeleteUser(us[3].Key)
	s.em.ResetCounters()
	for i := range chs {
		chs[i].User.Attributes = map[string]any{"plan": "enterprise"}
	}
	res := apply(t, s.c, chs)
	t.Logf("calls %v, mass inputs %v", s.counts(), s.em.Inputs(ucemu.EndpointMass))
	for i, ch := range chs {
		r := res[ch.ID]
		if i != 3 {
			if r.Err != nil {
				t.Errorf("%s: %v", ch.User.Key, r.Err)
			}
			continue
		}
		if re := recErr(t, r); re.Permanent || re.Code != codeNotFound {
			t.Errorf("%s: %+v", ch.User.Key, re)
		}
	}
	if got := fmt.Sprint(s.em.Inputs(ucemu.EndpointMass)); got != "[6 5]" {
		t.Errorf("mass inputs %s, want [6 5]", got)
	}
	// The engine's next attempt creates the user again.
	r := apply(t, s.c, chs[3:4])[chs[3].ID]
	if r.Err != nil || r.Action != providers.ActionCreated || r.ExternalID == chs[3].ExternalID {
		t.Fatalf("%+v", r)
	}
	if u, _ := s.em.UserByCustomID(us[3].Key); u.Attributes["plan"] != "enterprise" {
		t.Fatalf("%+v", u)
	}
}

func TestOversizedMassCallIsSplit(t *testing.T) {
	// The client believes in 100 ids a call, the app takes 30.
	em := ucemu.New(ucemu.Options{Tokens: []string{testToken}, Attributes: testAttributes, MaxIDs: 30})
	url := em.Start()
	defer em.Close()
	c, err := Factory{}.New(providers.Config{Endpoint: url, Credentials: map[string][]byte{"token": []byte(testToken)}})
	if err != nil {
		t.Fatal(err)
	}
	chs := creates(users(80))
	res := apply(t, c, chs)
	for i := range chs {
		chs[i].Op, chs[i].ExternalID = providers.OpUpdate, res[chs[i].ID].ExternalID
		chs[i].User.Attributes = map[string]any{"plan": "free"}
	}
	em.ResetCounters()
	for _, r := range apply(t, c, chs) {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.ID, r.Err)
		}
	}
	t.Logf("80 ids against a limit of 30: mass inputs %v", em.Inputs(ucemu.EndpointMass))
	if got := fmt.Sprint(em.Inputs(ucemu.EndpointMass)); got != "[80 40 20 20 40 20 20]" {
		t.Errorf("mass inputs %s", got)
	}
}

func TestDuplicateKeysInOneApply(t *testing.T) {
	s := newSetup(t, 100)
	u1 := providers.User{Key: "dup", Attributes: map[string]any{"plan": "pro"}}
	u2 := providers.User{Key: "dup", Attributes: map[string]any{"plan": "free"}}
	chs := []providers.Change{{ID: "a", Op: providers.OpCreate, User: u1}, {ID: "b", Op: providers.OpCreate, User: u2}}
	res := apply(t, s.c, chs)
	if res["a"].Err != nil || res["b"].Err != nil || res["a"].ExternalID != res["b"].ExternalID {
		t.Fatalf("%+v", res)
	}
	if u, _ := s.em.UserByCustomID("dup"); u.Attributes["plan"] != "free" || len(s.em.Users()) != 1 {
		t.Fatalf("%+v", s.em.Users())
	}
}

func TestInvalidRecords(t *testing.T) {
	s := newSetup(t, 100)
	chs := []providers.Change{
		{ID: "nokey", Op: providers.OpCreate, User: providers.User{}},
		{ID: "reserved", Op: providers.OpCreate, User: providers.User{Key: "r", Attributes: map[string]any{"email": "x@example.com"}}},
		{ID: "badop", Op: "Merge", User: providers.User{Key: "m"}},
		{ID: "bademail", Op: providers.OpCreate, User: providers.User{Key: "e", Email: "not-an-email"}},
		{ID: "ok", Op: providers.OpCreate, User: providers.User{Key: "ok"}},
	}
	res := apply(t, s.c, chs)
	for id, code := range map[string]string{"nokey": codeInvalidRecord, "reserved": codeReservedAttribute, "badop": codeUnsupported, "bademail": codeValidation} {
		if re := recErr(t, res[id]); !re.Permanent || re.Code != code {
			t.Errorf("%s: %+v, want %s", id, re, code)
		}
	}
	if re := recErr(t, res["bademail"]); !strings.Contains(re.Message, "email") {
		t.Errorf("bademail: %+v", re)
	}
	if res["ok"].Err != nil {
		t.Errorf("ok: %v", res["ok"].Err)
	}
}

func TestCancelledBeforeSending(t *testing.T) {
	s := newSetup(t, 100)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := s.c.Apply(ctx, creates(users(3)))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if re := recErr(t, r); re.Permanent || re.Uncertain || re.Code != codeCancelled {
			t.Fatalf("%+v", re)
		}
	}
	if s.total() != 0 {
		t.Fatalf("sent after cancel: %v", s.counts())
	}
}

func TestEmulatorPaths(t *testing.T) {
	s := newSetup(t, 100)
	get := func(method, path, token string) (int, string) {
		req, _ := http.NewRequest(method, strings.TrimSuffix(s.em.URL(), apiPath)+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Token "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		method, path, token string
		status              int
		body                string
	}{
		{"GET", "/api/public/users/", testToken, 200, `"count":0`},
		{"GET", "/api/public/users", testToken, 404, "end with a slash"},
		{"GET", "/api/public/users/", "", 401, "credentials were not provided"},
		{"GET", "/api/public/users/", "nope", 401, "Invalid token."},
		{"GET", "/api/public/users/update_or_create/", testToken, 405, "not allowed"},
		{"PUT", "/api/public/users/mass_update_custom_attributes/", testToken, 400, "JSON"},
		{"DELETE", "/api/public/users-by-id/nobody/", testToken, 404, "Not found."},
		{"GET", "/api/public/users-by-id/nobody/", testToken, 404, `{"detail":"Not found."}`},
		{"GET", "/api/public/users-by-id/nobody/", "nope", 401, "Invalid token."},
		{"GET", "/api/public/users-by-id/nobody", testToken, 404, "end with a slash"},
		{"POST", "/api/public/users-by-id/nobody/", testToken, 405, "not allowed"},
	} {
		status, body := get(tc.method, tc.path, tc.token)
		if status != tc.status || !strings.Contains(body, tc.body) {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, status, body)
		}
	}
}

// fakeClient is a client for a test server that answers at its root.
func fakeClient(t testing.TB, url string) *Client {
	t.Helper()
	c, err := Factory{}.New(providers.Config{Endpoint: url + apiPath, Credentials: map[string][]byte{"token": []byte(testToken)},
		Sleep: (&sleeps{}).sleep})
	if err != nil {
		t.Fatal(err)
	}
	return c.(*Client)
}

// TestTolerantParsing feeds answers shaped differently from the
// emulator's, and checks the headers the client sends.
func TestTolerantParsing(t *testing.T) {
	cases := []struct {
		name       string
		op         providers.Op
		externalID string
		status     int
		body       string
		// want is an ExternalID and action, or "err:CODE" or "uncertain".
		want string
	}{
		{"id as a string", providers.OpCreate, "", 201, `{"created":true,"id":"77","extra":{}}`, "77 Created"},
		{"created false on a create", providers.OpCreate, "", 200, `{"created":false,"id":78}`, "78 Adopted"},
		{"no created field on an update", providers.OpUpdate, "79", 200, `{"id":79}`, "79 Updated"},
		{"no id but the engine knows it", providers.OpUpdate, "80", 200, `{}`, "80 Updated"},
		{"no id at all", providers.OpCreate, "", 200, ``, "uncertain"},
		{"unreadable answer", providers.OpCreate, "", 200, `<html>`, "uncertain"},
		{"field error naming an unknown attribute", providers.OpCreate, "", 400, `{"region_code":["Attribute does not exist."]}`, "err:UnknownAttribute:region_code"},
		{"detail naming an unknown attribute", providers.OpCreate, "", 400, `{"detail":"Unknown attribute: tier"}`, "err:UnknownAttribute:tier"},
		{"validation error", providers.OpCreate, "", 400, `{"email":["Enter a valid email address."]}`, "err:ValidationError:email: Enter a valid email address."},
		{"HTML 400", providers.OpCreate, "", 400, `<h1>Bad Request</h1>`, "err:ValidationError:HTTP 400"},
		{"404 hints at the endpoint", providers.OpCreate, "", 404, `<h1>Not Found</h1>`, "transient:NotFound:/api/public/"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var header http.Header
			var path string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				header, path = r.Header.Clone(), r.URL.Path
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			ch := providers.Change{ID: "x", Op: tc.op, ExternalID: tc.externalID, User: providers.User{Key: "k"}}
			r := apply(t, fakeClient(t, srv.URL), []providers.Change{ch})["x"]
			if header.Get("Authorization") != "Token "+testToken || header.Get("Accept") != "*/*; version=2" ||
				header.Get("Content-Type") != "application/json" || path != "/api/public/users/update_or_create/" {
				t.Errorf("sent %s with headers %v", path, header)
			}
			switch parts := strings.SplitN(tc.want, ":", 3); parts[0] {
			case "uncertain":
				if re := recErr(t, r); !re.Uncertain || re.Permanent {
					t.Errorf("%+v", re)
				}
			case "err", "transient":
				re := recErr(t, r)
				if re.Permanent != (parts[0] == "err") || re.Code != parts[1] || !strings.Contains(re.Message, parts[2]) {
					t.Errorf("%+v, want %s", re, tc.want)
				}
			default:
				if got := r.ExternalID + " " + string(r.Action); r.Err != nil || got != tc.want {
					t.Errorf("%+v, want %s", r, tc.want)
				}
			}
		})
	}
}

func TestFactoryNew(t *testing.T) {
	tok := map[string][]byte{"token": []byte(" key\n")}
	cases := []struct {
		name    string
		cfg     providers.Config
		wantErr string
		base    string
		batch   int
	}{
		{"canonical", providers.Config{Endpoint: "https://acme.user.com/api/public/", Credentials: tok}, "", "https://acme.user.com/api/public/", 100},
		{"no trailing slash", providers.Config{Endpoint: "https://acme.user.com/api/public", Credentials: tok}, "", "https://acme.user.com/api/public/", 100},
		{"several trailing slashes", providers.Config{Endpoint: "https://acme.user.com/api/public///", Credentials: tok}, "", "https://acme.user.com/api/public/", 100},
		{"bare host", providers.Config{Endpoint: "https://acme.user.com", Credentials: tok}, "", "https://acme.user.com/api/public/", 100},
		{"batch kept", providers.Config{Endpoint: "https://acme.user.com/api/public/", Credentials: tok, BatchSize: 30}, "", "https://acme.user.com/api/public/", 30},
		{"batch capped", providers.Config{Endpoint: "https://acme.user.com/api/public/", Credentials: tok, BatchSize: 5000}, "", "https://acme.user.com/api/public/", 1000},
		{"no endpoint", providers.Config{Credentials: tok}, "spec.endpoint is required for UserCom: https://<app>.user.com/api/public/", "", 0},
		{"relative endpoint", providers.Config{Endpoint: "acme.user.com/api/public/", Credentials: tok}, "not an absolute URL", "", 0},
		{"endpoint with a query", providers.Config{Endpoint: "https://acme.user.com/api/public/?x=1", Credentials: tok}, "must not carry a query", "", 0},
		{"empty token", providers.Config{Endpoint: "https://acme.user.com/api/public/", Credentials: map[string][]byte{"token": []byte(" \n")}}, "API key", "", 0},
		{"no token", providers.Config{Endpoint: "https://acme.user.com/api/public/"}, "API key", "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Factory{}.New(tc.cfg)
			if tc.wantErr != "" {
				if !errors.Is(err, providers.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cl := c.(*Client)
			req, _ := http.NewRequest(http.MethodGet, cl.api.Base, nil)
			_ = cl.api.Creds.Authorize(context.Background(), req)
			if cl.api.Base != tc.base || cl.batch != tc.batch || req.Header.Get("Authorization") != "Token key" {
				t.Fatalf("base %q batch %d Authorization %q", cl.api.Base, cl.batch, req.Header.Get("Authorization"))
			}
		})
	}
	f := Factory{}
	if n, p := f.DefaultRateLimit(); f.DefaultEndpoint() != "" || f.MaxBatchSize() != 100 || n != 10 || p != time.Second {
		t.Fatal("factory defaults")
	}
	if got := (&Client{}).Identity(providers.User{Key: "abc", Email: "x@example.com"}); got != "abc" {
		t.Fatalf("Identity %q", got)
	}
}
