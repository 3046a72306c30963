package hubspot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/emulation"
	hsemu "github.com/usersync/usersync-operator/internal/providers/hubspot/emulator"
)

const token = "pat-test-0123456789"

// sleeps records the waits a client asked for, without waiting.
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

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

type setup struct {
	em    *hsemu.Emulator
	c     *Client
	sleep *sleeps
}

func newSetup(t testing.TB, eo hsemu.Options, opts *usersv1.HubSpotOptions) setup {
	t.Helper()
	if eo.Tokens == nil {
		eo.Tokens = map[string][]string{token: DefaultScopes}
	}
	if eo.RateLimit == 0 {
		eo.RateLimit = -1
	}
	em := hsemu.New(eo)
	em.Start()
	t.Cleanup(em.Close)
	s := &sleeps{}
	c := newClient(t, em.URL(), token, opts, s.sleep)
	return setup{em: em, c: c, sleep: s}
}

func newClient(t testing.TB, url, tok string, opts *usersv1.HubSpotOptions, sleep func(context.Context, time.Duration) error) *Client {
	t.Helper()
	cl, err := Factory{}.New(providers.Config{Endpoint: url, Credentials: map[string][]byte{"token": []byte(tok)},
		Spec: usersv1.ProviderSpec{HubSpot: opts}, Sleep: sleep})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return cl.(*Client)
}

func user(i int) providers.User {
	return providers.User{Key: fmt.Sprintf("u%03d", i), Email: fmt.Sprintf("User%03d@Example.com", i),
		FirstName: "First", LastName: fmt.Sprintf("Last%d", i),
		Attributes: map[string]any{"hs_job_title": "Engineer", "seniority": float64(i), "remote": i%2 == 0}}
}

func creates(n int) []providers.Change {
	out := make([]providers.Change, n)
	for i := range out {
		out[i] = providers.Change{ID: fmt.Sprintf("c%d", i), Op: providers.OpCreate, User: user(i)}
	}
	return out
}

func apply(t testing.TB, c *Client, chs []providers.Change) map[string]providers.Result {
	t.Helper()
	res, err := c.Apply(context.Background(), chs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(res) != len(chs) {
		t.Fatalf("Apply returned %d results for %d changes", len(res), len(chs))
	}
	m := make(map[string]providers.Result, len(res))
	for _, r := range res {
		if _, dup := m[r.ID]; dup {
			t.Fatalf("two results for %s", r.ID)
		}
		m[r.ID] = r
	}
	return m
}

func recErr(t testing.TB, r providers.Result) *providers.RecordError {
	t.Helper()
	var re *providers.RecordError
	if !errors.As(r.Err, &re) {
		t.Fatalf("result %s: want a RecordError, got %v", r.ID, r.Err)
	}
	return re
}

// checkWritten asserts every change succeeded with the action and that the
// emulator's user behind its ExternalID carries its email.
func checkWritten(t *testing.T, em *hsemu.Emulator, chs []providers.Change, res map[string]providers.Result, action providers.Action) {
	t.Helper()
	for _, ch := range chs {
		r := res[ch.ID]
		if r.Err != nil || r.Action != action || r.ExternalID == "" {
			t.Fatalf("%s: got %+v, want %s with an id", ch.ID, r, action)
		}
		u, ok := em.UserByID(r.ExternalID)
		if !ok || !strings.EqualFold(u.Properties[PropEmail], ch.User.Email) {
			t.Fatalf("%s: ExternalID %s is user %+v, not %s", ch.ID, r.ExternalID, u, ch.User.Email)
		}
	}
}

func TestCreateThenUpdateInBatches(t *testing.T) {
	s := newSetup(t, hsemu.Options{ShuffleResults: true}, nil)
	chs := creates(250)
	res := apply(t, s.c, chs)
	checkWritten(t, s.em, chs, res, providers.ActionCreated)
	if got := sorted(s.em.Inputs(hsemu.EndpointCreate)); fmt.Sprint(got) != "[50 100 100]" {
		t.Fatalf("create calls: %v, want [100 100 50]", got)
	}
	u, _ := s.em.UserByID(res["c7"].ExternalID)
	want := map[string]string{PropEmail: "User007@Example.com", PropFirstName: "First", PropLastName: "Last7",
		"hs_job_title": "Engineer", "seniority": "7", "remote": "false"}
	for k, v := range want {
		if u.Properties[k] != v {
			t.Errorf("property %s = %q, want %q", k, u.Properties[k], v)
		}
	}

	s.em.ResetCounters()
	var upd []providers.Change
	for i := 0; i < 5; i++ {
		ch := chs[i*40]
		ch.Op, ch.ExternalID = providers.OpUpdate, res[ch.ID].ExternalID
		ch.User.Attributes = map[string]any{"hs_job_title": "Manager"}
		upd = append(upd, ch)
	}
	res2 := apply(t, s.c, upd)
	checkWritten(t, s.em, upd, res2, providers.ActionUpdated)
	if got := s.em.Inputs(hsemu.EndpointUpdate); fmt.Sprint(got) != "[5]" {
		t.Fatalf("update calls: %v, want [5]", got)
	}
	if n := s.em.Calls(hsemu.EndpointCreate); n != 0 {
		t.Fatalf("%d creates on update", n)
	}
	if u, _ := s.em.UserByID(upd[2].ExternalID); u.Properties["hs_job_title"] != "Manager" {
		t.Fatalf("update not applied: %+v", u)
	}
}

func TestResultsCorrelatedWithoutOrderOrTraceIDs(t *testing.T) {
	for _, eo := range []hsemu.Options{{ShuffleResults: true}, {ShuffleResults: true, OmitTraceIDs: true}} {
		t.Run(fmt.Sprintf("omitTrace=%v", eo.OmitTraceIDs), func(t *testing.T) {
			s := newSetup(t, eo, nil)
			chs := creates(30)
			res := apply(t, s.c, chs)
			checkWritten(t, s.em, chs, res, providers.ActionCreated)
			for i := range chs {
				chs[i].Op, chs[i].ExternalID = providers.OpUpdate, res[chs[i].ID].ExternalID
			}
			checkWritten(t, s.em, chs, apply(t, s.c, chs), providers.ActionUpdated)
		})
	}
}

func rejectTitle(props map[string]string) (string, string, bool) {
	if strings.Contains(props["hs_job_title"], "<") {
		return "VALIDATION_ERROR", "Property values were not valid: hs_job_title may not contain markup", true
	}
	return "", "", false
}

func TestRejectedRecordsFailAlone(t *testing.T) {
	for _, whole := range []bool{false, true} {
		t.Run(fmt.Sprintf("wholeCall=%v", whole), func(t *testing.T) {
			s := newSetup(t, hsemu.Options{Reject: rejectTitle, WholeCallErrors: whole}, nil)
			chs := creates(100)
			bad := map[string]bool{}
			for _, i := range []int{3, 47, 98} {
				chs[i].User.Attributes = map[string]any{"hs_job_title": "<b>x</b>"}
				bad[chs[i].ID] = true
			}
			res := apply(t, s.c, chs)
			for _, ch := range chs {
				r := res[ch.ID]
				if bad[ch.ID] {
					re := recErr(t, r)
					if !re.Permanent || re.Code != "VALIDATION_ERROR" || !strings.Contains(re.Message, "markup") {
						t.Fatalf("%s: %+v", ch.ID, re)
					}
					continue
				}
				if r.Err != nil || r.Action != providers.ActionCreated {
					t.Fatalf("%s: %+v", ch.ID, r)
				}
			}
			calls := s.em.Calls(hsemu.EndpointCreate)
			bound := 1 + 2*len(bad)*int(math.Ceil(math.Log2(100)))
			t.Logf("%d bad records in 100: %d create calls (bound %d)", len(bad), calls, bound)
			if !whole && calls != 1 {
				t.Fatalf("207 answer: %d calls, want 1", calls)
			}
			if calls > bound {
				t.Fatalf("%d calls, over the bound %d", calls, bound)
			}
			if n := len(s.em.Users()); n != 97 {
				t.Fatalf("%d users at HubSpot, want 97", n)
			}
		})
	}
}

func TestUpsertByIDProperty(t *testing.T) {
	s := newSetup(t, hsemu.Options{UniqueProperties: []string{"k8s_key"}}, &usersv1.HubSpotOptions{IDProperty: "k8s_key"})
	chs := creates(120)
	res := apply(t, s.c, chs)
	checkWritten(t, s.em, chs, res, providers.ActionCreated)
	if got := sorted(s.em.Inputs(hsemu.EndpointUpsert)); fmt.Sprint(got) != "[20 100]" {
		t.Fatalf("upsert calls: %v", got)
	}
	if s.em.Calls(hsemu.EndpointCreate)+s.em.Calls(hsemu.EndpointSearch) != 0 {
		t.Fatal("upsert mode must not create or search")
	}
	u, _ := s.em.UserByID(res["c5"].ExternalID)
	if u.Properties["k8s_key"] != "u005" {
		t.Fatalf("idProperty not written: %+v", u.Properties)
	}
	// A lost answer is harmless: the same upsert again updates.
	for i := range chs {
		chs[i].Retry = true
	}
	checkWritten(t, s.em, chs, apply(t, s.c, chs), providers.ActionUpdated)
	if n := len(s.em.Users()); n != 120 {
		t.Fatalf("%d users after a repeated upsert, want 120", n)
	}
}

func TestUpsertByNonUniquePropertyFailsWithoutBisecting(t *testing.T) {
	s := newSetup(t, hsemu.Options{}, &usersv1.HubSpotOptions{IDProperty: "nickname"})
	res := apply(t, s.c, creates(64))
	for _, r := range res {
		if re := recErr(t, r); !re.Permanent || !strings.Contains(re.Message, "non-unique") {
			t.Fatalf("%+v", re)
		}
	}
	if n := s.em.Calls(hsemu.EndpointUpsert); n != 1 {
		t.Fatalf("%d upsert calls, want 1", n)
	}
}

// A create whose answer is lost after HubSpot made the users: the retry
// finds them and adopts them, with batch/read by email where hs_email is
// unique, else with search (after a refused read, once per client).
func TestLostCreateAnswerNeverDuplicates(t *testing.T) {
	for name, tc := range map[string]struct {
		em              hsemu.Options
		reads, searches int
	}{
		"hs_email unique: batch/read":           {em: hsemu.Options{}, reads: 2},
		"hs_email not unique: search after 400": {em: hsemu.Options{DuplicateEmails: true}, reads: 1, searches: 2},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSetup(t, tc.em, nil)
			s.em.Inject(hsemu.EndpointCreate, hsemu.Fault{Status: http.StatusGatewayTimeout, Count: 1, AfterApply: true})
			chs := creates(10)
			res := apply(t, s.c, chs)
			for _, ch := range chs {
				if re := recErr(t, res[ch.ID]); re.Permanent || !re.Uncertain {
					t.Fatalf("%s: %+v, want uncertain", ch.ID, re)
				}
			}
			if n := s.em.Calls(hsemu.EndpointCreate); n != 1 {
				t.Fatalf("a create answered 5xx was resent %d times", n-1)
			}
			if n := len(s.em.Users()); n != 10 {
				t.Fatalf("%d users, want the 10 the lost call made", n)
			}
			// The engine resends with Retry: the client looks before creating.
			for i := range chs {
				chs[i].Retry = true
			}
			chs = append(chs, providers.Change{ID: "fresh", Op: providers.OpCreate, Retry: true, User: user(99)})
			res = apply(t, s.c, chs)
			checkWritten(t, s.em, chs[:10], res, providers.ActionAdopted)
			checkWritten(t, s.em, chs[10:], res, providers.ActionCreated)
			if n := len(s.em.Users()); n != 11 {
				t.Fatalf("%d users after the retry, want 11: a duplicate was made", n)
			}
			// One lookup before the first create (adoption found nothing),
			// one before the retry (it finds the 10 the lost call made).
			if r, q := s.em.Calls(hsemu.EndpointRead), s.em.Calls(hsemu.EndpointSearch); r != tc.reads || q != tc.searches {
				t.Fatalf("%d reads and %d searches, want %d and %d", r, q, tc.reads, tc.searches)
			}
		})
	}
}

// clock is a settable time for the client and the emulator.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// lostCreateUnderIndexLag creates 10 users whose create answer is lost,
// on a portal where hs_email is not unique (lookups search) and search
// trails creates by lag; it retries them as the engine does, every 5 s
// from the send until they are settled, with spec.hubspot.searchIndexDelay
// delay. It returns how many users HubSpot holds then, and how many
// retries answered AwaitingIndex.
func lostCreateUnderIndexLag(t *testing.T, lag, delay time.Duration) (users, waits int) {
	t.Helper()
	clk := &clock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)}
	em := hsemu.New(hsemu.Options{Tokens: map[string][]string{token: DefaultScopes}, RateLimit: -1,
		DuplicateEmails: true, SearchIndexDelay: lag, Now: clk.Now})
	em.Start()
	t.Cleanup(em.Close)
	cl, err := Factory{}.New(providers.Config{Endpoint: em.URL(), Credentials: map[string][]byte{"token": []byte(token)},
		Spec:  usersv1.ProviderSpec{HubSpot: &usersv1.HubSpotOptions{SearchIndexDelay: &metav1.Duration{Duration: delay}}},
		Sleep: (&sleeps{}).sleep, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	c := cl.(*Client)
	em.Inject(hsemu.EndpointCreate, hsemu.Fault{Status: http.StatusGatewayTimeout, Count: 1, AfterApply: true})
	chs := creates(10)
	sent := clk.Now()
	apply(t, c, chs)
	for round := 0; round < 40 && len(chs) > 0; round++ {
		clk.Add(5 * time.Second)
		for i := range chs {
			chs[i].Retry, chs[i].RetrySince = true, sent
		}
		res := apply(t, c, chs)
		var again []providers.Change
		for _, ch := range chs {
			var re *providers.RecordError
			switch {
			case errors.As(res[ch.ID].Err, &re) && re.Code == providers.ReasonAwaitingIndex:
				if !re.Uncertain || !strings.Contains(re.Message, "searchIndexDelay") {
					t.Fatalf("%s: %+v: an index wait must stay uncertain and name searchIndexDelay", ch.ID, re)
				}
				waits++
				again = append(again, ch)
			case res[ch.ID].Err != nil:
				t.Fatalf("%s: %v", ch.ID, res[ch.ID].Err)
			}
		}
		chs = again
	}
	if len(chs) > 0 {
		t.Fatalf("%d users still wait for the index after 200 s", len(chs))
	}
	return len(em.Users()), waits
}

// After a create whose answer was lost, a search that finds nothing is not
// trusted until spec.hubspot.searchIndexDelay has passed: with a delay
// longer than the index lag no user is made twice; with a shorter one the
// same scenario duplicates every user, which shows the wait is what
// prevents it (the check the first case passes would fail).
func TestLostCreateAwaitsTheSearchIndex(t *testing.T) {
	const lag = 30 * time.Second
	users, waits := lostCreateUnderIndexLag(t, lag, time.Minute)
	if users != 10 {
		t.Fatalf("%d users with searchIndexDelay 1m and an index 30 s behind, want 10: a user was created twice", users)
	}
	if waits == 0 {
		t.Fatal("no retry waited for the index")
	}
	if users, _ := lostCreateUnderIndexLag(t, lag, 10*time.Second); users != 20 {
		t.Fatalf("%d users with searchIndexDelay 10s and an index 30 s behind; the scenario should duplicate all 10 users, "+
			"or it does not test the wait", users)
	}
}

// noAdoption is a provider that creates without looking (adoption Never).
var noAdoption = &usersv1.HubSpotOptions{Adoption: usersv1.HubSpotAdoptNever}

// A portal that already holds 200 of 250 declared users (the normal case,
// or a status that was lost): they are adopted, not created again, at
// ⌈250/100⌉ lookups (batch/read by email: the emulator's hs_email is
// unique) + ⌈50/100⌉ creates + ⌈200/100⌉ updates.
func TestAdoptsExistingUsersBeforeCreating(t *testing.T) {
	s := newSetup(t, hsemu.Options{}, nil)
	chs := creates(250)
	existing := map[string]string{}
	for i := range 200 {
		// Stored with another case: HubSpot compares emails case-insensitively.
		existing[chs[i].ID] = s.em.Put(map[string]string{PropEmail: strings.ToUpper(chs[i].User.Email), "hs_job_title": "Old"})
	}
	res := apply(t, s.c, chs)
	checkWritten(t, s.em, chs[:200], res, providers.ActionAdopted)
	checkWritten(t, s.em, chs[200:], res, providers.ActionCreated)
	for id, ext := range existing {
		if res[id].ExternalID != ext {
			t.Fatalf("%s adopted as %s, the existing user is %s", id, res[id].ExternalID, ext)
		}
	}
	if n := len(s.em.Users()); n != 250 {
		t.Fatalf("%d users, want 250: a user was created twice", n)
	}
	calls := map[string]int{"read": s.em.Calls(hsemu.EndpointRead), "create": s.em.Calls(hsemu.EndpointCreate),
		"update": s.em.Calls(hsemu.EndpointUpdate), "search": s.em.Calls(hsemu.EndpointSearch)}
	if want := map[string]int{"read": 3, "create": 1, "update": 2, "search": 0}; !maps.Equal(calls, want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
}

// Two HubSpot users with one email: the oldest is adopted, and no third is
// made.
func TestAdoptsTheOldestOfUsersSharingAnEmail(t *testing.T) {
	s := newSetup(t, hsemu.Options{DuplicateEmails: true}, nil)
	chs := creates(1)
	oldest := s.em.Put(map[string]string{PropEmail: chs[0].User.Email})
	s.em.Put(map[string]string{PropEmail: chs[0].User.Email})
	res := apply(t, s.c, chs)
	if r := res["c0"]; r.Err != nil || r.Action != providers.ActionAdopted || r.ExternalID != oldest ||
		!strings.Contains(r.Note, "HubSpot holds 2 users with this email; the oldest (id "+oldest+") was adopted") {
		t.Fatalf("%+v, want the oldest user %s adopted, and said so", r, oldest)
	}
	if n := len(s.em.Users()); n != 2 {
		t.Fatalf("%d users, want the 2 there were", n)
	}
}

// adoption: Never creates without looking: a user HubSpot holds is created
// a second time (on a portal that allows duplicate emails). That is why it
// is not the default.
func TestAdoptionNeverCreatesWithoutLooking(t *testing.T) {
	s := newSetup(t, hsemu.Options{DuplicateEmails: true}, noAdoption)
	chs := creates(1)
	s.em.Put(map[string]string{PropEmail: chs[0].User.Email})
	res := apply(t, s.c, chs)
	checkWritten(t, s.em, chs, res, providers.ActionCreated)
	if n, searches := len(s.em.Users()), s.em.Calls(hsemu.EndpointSearch); n != 2 || searches != 0 {
		t.Fatalf("%d users after %d searches, want 2 after none", n, searches)
	}
}

// Without adoption a create HubSpot refuses as a conflict with a user it
// names (409 "Existing ID") adopts that user.
func TestConflictOnCreateAdoptsTheExistingUser(t *testing.T) {
	s := newSetup(t, hsemu.Options{}, noAdoption)
	id := s.em.Put(map[string]string{PropEmail: "user001@example.com", "hs_job_title": "Old"})
	chs := creates(3)
	res := apply(t, s.c, chs)
	if r := res["c1"]; r.Err != nil || r.Action != providers.ActionAdopted || r.ExternalID != id {
		t.Fatalf("conflict not adopted: %+v (existing %s)", r, id)
	}
	if u, _ := s.em.UserByID(id); u.Properties["hs_job_title"] != "Engineer" {
		t.Fatalf("adopted user not updated: %+v", u.Properties)
	}
	checkWritten(t, s.em, []providers.Change{chs[0], chs[2]}, res, providers.ActionCreated)
	if n := len(s.em.Users()); n != 3 {
		t.Fatalf("%d users, want 3", n)
	}
}

func TestUserDeletedAtHubSpotIsRecreated(t *testing.T) {
	s := newSetup(t, hsemu.Options{}, nil)
	chs := creates(2)
	res := apply(t, s.c, chs)
	old := res["c0"].ExternalID
	s.em.Archive(old)
	for i := range chs {
		chs[i].Op, chs[i].ExternalID = providers.OpUpdate, res[chs[i].ID].ExternalID
	}
	res = apply(t, s.c, chs)
	if r := res["c0"]; r.Err != nil || r.Action != providers.ActionCreated || r.ExternalID == old {
		t.Fatalf("vanished user: %+v", r)
	}
	checkWritten(t, s.em, chs[1:], res, providers.ActionUpdated)
}

func TestDelete(t *testing.T) {
	t.Run("by id", func(t *testing.T) {
		s := newSetup(t, hsemu.Options{}, nil)
		chs := creates(150)
		res := apply(t, s.c, chs)
		var del []providers.Change
		for i := 0; i < 150; i += 2 {
			del = append(del, providers.Change{ID: chs[i].ID, Op: providers.OpDelete, ExternalID: res[chs[i].ID].ExternalID,
				User: providers.User{Key: chs[i].User.Key}})
		}
		// A user already gone and one never known are deleted too.
		del = append(del, providers.Change{ID: "gone", Op: providers.OpDelete, ExternalID: "999999"},
			providers.Change{ID: "unknown", Op: providers.OpDelete, User: providers.User{Key: "x"}})
		for id, r := range apply(t, s.c, del) {
			if r.Err != nil || r.Action != providers.ActionDeleted {
				t.Fatalf("%s: %+v", id, r)
			}
		}
		if got := s.em.Inputs(hsemu.EndpointArchive); fmt.Sprint(got) != "[76]" {
			t.Fatalf("archive calls %v", got)
		}
		if n := len(s.em.Users()); n != 75 {
			t.Fatalf("%d users left, want 75", n)
		}
		if _, ok := s.em.UserByID(res["c1"].ExternalID); !ok {
			t.Fatal("a kept user vanished")
		}
	})
	t.Run("by idProperty without an id", func(t *testing.T) {
		s := newSetup(t, hsemu.Options{UniqueProperties: []string{"k8s_key"}}, &usersv1.HubSpotOptions{IDProperty: "k8s_key"})
		apply(t, s.c, creates(4))
		del := []providers.Change{
			{ID: "d1", Op: providers.OpDelete, User: providers.User{Key: "u001"}},
			{ID: "d9", Op: providers.OpDelete, User: providers.User{Key: "u009"}},
		}
		for id, r := range apply(t, s.c, del) {
			if r.Err != nil || r.Action != providers.ActionDeleted {
				t.Fatalf("%s: %+v", id, r)
			}
		}
		if s.em.Calls(hsemu.EndpointRead) != 1 || fmt.Sprint(s.em.Inputs(hsemu.EndpointArchive)) != "[1]" {
			t.Fatalf("read %d, archive %v", s.em.Calls(hsemu.EndpointRead), s.em.Inputs(hsemu.EndpointArchive))
		}
		if n := len(s.em.Users()); n != 3 {
			t.Fatalf("%d users, want 3", n)
		}
	})
}

func TestCredentialsRefused(t *testing.T) {
	s := newSetup(t, hsemu.Options{Tokens: map[string][]string{token: {ScopeRead}, "other": DefaultScopes}}, nil)
	cases := []struct {
		name, token, reason, msg string
	}{
		{"wrong token", "pat-wrong-secret", "Unauthorized", "Authentication credentials not found"},
		{"missing scope", token, "Forbidden", ScopeWrite},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, s.em.URL(), tc.token, nil, s.sleep.sleep)
			_, err := c.Apply(context.Background(), creates(3))
			var ae *providers.AuthError
			if !errors.Is(err, providers.ErrAuth) || !errors.As(err, &ae) || ae.Reason != tc.reason || !strings.Contains(ae.Message, tc.msg) {
				t.Fatalf("Apply: %v", err)
			}
			if strings.Contains(err.Error(), tc.token) {
				t.Fatal("the error holds the token")
			}
			if len(s.em.Users()) != 0 {
				t.Fatal("refused call wrote users")
			}
		})
	}
	if err := newClient(t, s.em.URL(), "pat-wrong-secret", nil, nil).Verify(context.Background()); !errors.Is(err, providers.ErrAuth) {
		t.Fatalf("Verify with a wrong token: %v", err)
	}
	if err := s.c.Verify(context.Background()); err != nil {
		t.Fatalf("Verify with a read scope: %v", err)
	}
}

func TestRetryableAnswers(t *testing.T) {
	cases := []struct {
		name     string
		endpoint string
		fault    hsemu.Fault
		op       providers.Op
		waits    string
		calls    int
		failCode string // empty: succeeds
	}{
		{"503 on update is retried", hsemu.EndpointUpdate, hsemu.Fault{Status: 503, Count: 2}, providers.OpUpdate, "[1s 2s]", 3, ""},
		{"423 waits two seconds", hsemu.EndpointUpdate, hsemu.Fault{Status: 423, Count: 1}, providers.OpUpdate, "[2s]", 2, ""},
		{"477 honours Retry-After", hsemu.EndpointCreate, hsemu.Fault{Status: 477, Count: 1, RetryAfter: "7"}, providers.OpCreate, "[7s]", 2, ""},
		{"429 on create is retried: nothing was done", hsemu.EndpointCreate, hsemu.Fault{Status: 429, Count: 1, RetryAfter: "3"}, providers.OpCreate, "[3s]", 2, ""},
		{"503 on create is not resent", hsemu.EndpointCreate, hsemu.Fault{Status: 503, Count: 1}, providers.OpCreate, "[]", 1, "VendorUnavailable"},
		{"persistent 502 gives up", hsemu.EndpointUpdate, hsemu.Fault{Status: 502, Count: 100}, providers.OpUpdate, "[1s 2s]", 3, "VendorUnavailable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newSetup(t, hsemu.Options{}, nil)
			chs := creates(5)
			if tc.op == providers.OpUpdate {
				res := apply(t, s.c, chs)
				for i := range chs {
					chs[i].Op, chs[i].ExternalID = providers.OpUpdate, res[chs[i].ID].ExternalID
				}
				s.em.ResetCounters()
			}
			s.em.Inject(tc.endpoint, tc.fault)
			res := apply(t, s.c, chs)
			if got := fmt.Sprint(s.sleep.all()); got != tc.waits {
				t.Errorf("waits %s, want %s", got, tc.waits)
			}
			if n := s.em.Calls(tc.endpoint); n != tc.calls {
				t.Errorf("%d calls, want %d", n, tc.calls)
			}
			for _, r := range res {
				if tc.failCode == "" && r.Err != nil {
					t.Fatalf("%s: %v", r.ID, r.Err)
				}
				if tc.failCode != "" {
					if re := recErr(t, r); re.Permanent || re.Code != tc.failCode {
						t.Fatalf("%s: %+v", r.ID, re)
					}
				}
			}
		})
	}
}

func TestRateLimitedByTheEmulatorStillConverges(t *testing.T) {
	s := newSetup(t, hsemu.Options{RateLimit: 3, RateWindow: 300 * time.Millisecond}, nil)
	s.c.api.Sleep = providers.SleepContext
	chs := creates(1000)
	checkWritten(t, s.em, chs, apply(t, s.c, chs), providers.ActionCreated)
	if s.em.Throttled() == 0 {
		t.Fatal("the emulator never throttled: the test proves nothing")
	}
	if m := s.em.MaxInWindow(); m > 3 {
		t.Fatalf("%d calls in one window, limit 3", m)
	}
	if n := s.em.Calls(hsemu.EndpointCreate); n != 10 {
		t.Fatalf("%d create calls made it, want 10", n)
	}
}

func TestDailyLimitIsNotWaitedFor(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		emulation.WriteJSON(w, http.StatusTooManyRequests, map[string]any{"status": "error", "message": "You have reached your daily limit.",
			"errorType": "RATE_LIMIT", "policyName": "DAILY"})
	}))
	defer srv.Close()
	s := &sleeps{}
	c := newClient(t, srv.URL, token, nil, s.sleep)
	res := apply(t, c, creates(2))
	for _, r := range res {
		if re := recErr(t, r); re.Permanent || re.Code != "RateLimited" || !strings.Contains(re.Message, "daily") {
			t.Fatalf("%+v", re)
		}
	}
	if len(s.all()) != 0 {
		t.Fatalf("waited %v for a daily limit", s.all())
	}
}

// TestTolerantParsing feeds answers shaped differently from the emulator's:
// numeric ids, no trace ids, errors naming inputs only in context.ids,
// unknown fields.
func TestTolerantParsing(t *testing.T) {
	cases := []struct {
		name   string
		op     providers.Op
		status int
		body   string
		want   map[string]string // change id -> ExternalID or "err:CODE" or "uncertain"
	}{
		{"numeric ids matched by email", providers.OpCreate, 201,
			`{"results":[{"id":12,"properties":{"hs_email":"user001@example.com"}},{"id":11,"properties":{"hs_email":"USER000@example.com"}}],"extra":{"x":1}}`,
			map[string]string{"c0": "11", "c1": "12"}},
		{"error names the trace id in context", providers.OpCreate, 207,
			`{"results":[{"id":"5","objectWriteTraceId":"c1"}],"errors":[{"category":"VALIDATION_ERROR","message":"bad","context":{"objectWriteTraceId":["c0"]}}]}`,
			map[string]string{"c0": "err:VALIDATION_ERROR", "c1": "5"}},
		{"update error names the record id", providers.OpUpdate, 207,
			`{"results":[{"id":"101"}],"errors":[{"category":"VALIDATION_ERROR","message":"bad","context":{"ids":["100"]}}]}`,
			map[string]string{"c0": "err:VALIDATION_ERROR", "c1": "101"}},
		{"a record the answer omits is uncertain", providers.OpCreate, 201,
			`{"status":"COMPLETE","results":[{"id":"7","objectWriteTraceId":"c0"}]}`,
			map[string]string{"c0": "7", "c1": "uncertain"}},
		{"an unreadable body is uncertain", providers.OpCreate, 201, `<html>`,
			map[string]string{"c0": "uncertain", "c1": "uncertain"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			chs := creates(2)
			if tc.op == providers.OpUpdate {
				for i := range chs {
					chs[i].Op, chs[i].ExternalID = providers.OpUpdate, fmt.Sprint(100+i)
				}
			}
			// The create path's answers: no adoption lookup before it.
			res := apply(t, newClient(t, srv.URL, token, noAdoption, (&sleeps{}).sleep), chs)
			for id, want := range tc.want {
				r := res[id]
				switch {
				case want == "uncertain":
					if re := recErr(t, r); !re.Uncertain || re.Permanent {
						t.Errorf("%s: %+v", id, re)
					}
				case strings.HasPrefix(want, "err:"):
					if re := recErr(t, r); re.Code != want[4:] || !re.Permanent {
						t.Errorf("%s: %+v", id, re)
					}
				default:
					if r.Err != nil || r.ExternalID != want {
						t.Errorf("%s: %+v, want id %s", id, r, want)
					}
				}
			}
		})
	}
}

func TestCancelledBeforeSending(t *testing.T) {
	s := newSetup(t, hsemu.Options{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := s.c.Apply(ctx, creates(3))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if re := recErr(t, r); re.Permanent || re.Uncertain || re.Code != "Cancelled" {
			t.Fatalf("%+v", re)
		}
	}
	if s.em.Calls(hsemu.EndpointCreate) != 0 {
		t.Fatal("sent after cancel")
	}
}

func TestFactoryNew(t *testing.T) {
	cases := []struct {
		name    string
		cfg     providers.Config
		wantErr string
		batch   int
	}{
		{"defaults", providers.Config{Credentials: map[string][]byte{"token": []byte("t")}}, "", 100},
		{"batch capped", providers.Config{Credentials: map[string][]byte{"token": []byte("t")}, BatchSize: 500}, "", 100},
		{"batch kept", providers.Config{Credentials: map[string][]byte{"token": []byte("t")}, BatchSize: 25}, "", 25},
		{"empty token", providers.Config{Credentials: map[string][]byte{"token": []byte(" \n")}}, "token in the Secret is empty", 0},
		{"relative endpoint", providers.Config{Endpoint: "api.hubapi.com", Credentials: map[string][]byte{"token": []byte("t")}}, "not an absolute URL", 0},
		{"idValueFrom alone", providers.Config{Credentials: map[string][]byte{"token": []byte("t")}, Spec: usersv1.ProviderSpec{HubSpot: &usersv1.HubSpotOptions{IDValueFrom: "Email"}}}, "needs hubspot.idProperty", 0},
		{"bad idValueFrom", providers.Config{Credentials: map[string][]byte{"token": []byte("t")}, Spec: usersv1.ProviderSpec{HubSpot: &usersv1.HubSpotOptions{IDProperty: "x", IDValueFrom: "Name"}}}, "must be Key or Email", 0},
		{"bad adoption", providers.Config{Credentials: map[string][]byte{"token": []byte("t")}, Spec: usersv1.ProviderSpec{HubSpot: &usersv1.HubSpotOptions{Adoption: "Sometimes"}}}, "must be Email or Never", 0},
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
			if got := c.(*Client).batch; got != tc.batch {
				t.Fatalf("batch %d, want %d", got, tc.batch)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	u := providers.User{Key: "alice", Email: "Alice@Example.com"}
	cases := []struct {
		opts *usersv1.HubSpotOptions
		want string
	}{
		{nil, "alice@example.com"},
		{&usersv1.HubSpotOptions{IDProperty: "k8s_key"}, "alice"},
		{&usersv1.HubSpotOptions{IDProperty: "k8s_key", IDValueFrom: IDFromKey}, "alice"},
		{&usersv1.HubSpotOptions{IDProperty: "hs_email", IDValueFrom: IDFromEmail}, "alice@example.com"},
	}
	for _, tc := range cases {
		c := newClient(t, "https://example.invalid", token, tc.opts, nil)
		if got := c.Identity(u); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.opts, got, tc.want)
		}
	}
}

func TestRecordsHubSpotCannotIdentify(t *testing.T) {
	s := newSetup(t, hsemu.Options{}, nil)
	chs := []providers.Change{{ID: "x", Op: providers.OpCreate, User: providers.User{Key: "noemail"}}}
	if re := recErr(t, apply(t, s.c, chs)["x"]); !re.Permanent || re.Code != "NoIdentity" {
		t.Fatalf("%+v", re)
	}
}

// BenchmarkApply measures the client's packing, encoding and correlation
// of N creates and N updates against the emulator (no latency, no limit).
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		for _, op := range []providers.Op{providers.OpCreate, providers.OpUpdate} {
			b.Run(fmt.Sprintf("%s-%d", op, n), func(b *testing.B) {
				s := newSetup(b, hsemu.Options{DuplicateEmails: true}, nil)
				chs := creates(n)
				if op == providers.OpUpdate {
					res := apply(b, s.c, chs)
					for i := range chs {
						chs[i].Op, chs[i].ExternalID = providers.OpUpdate, res[chs[i].ID].ExternalID
					}
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := s.c.Apply(context.Background(), chs); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(n), "records/op")
			})
		}
	}
}

// TestTransportFaults covers answers that never come or come broken. A
// create is never resent after the request may have reached HubSpot; an
// update (idempotent) is retried at most three times.
func TestTransportFaults(t *testing.T) {
	reset := func(w http.ResponseWriter, _ *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
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
	truncated := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"status":"COMPLETE","results":[{"id":"1","objectWriteTraceId":"c0"`))
	}
	html := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(`<html><body>Service temporarily unavailable</body></html>`))
	}
	cases := []struct {
		name      string
		handler   http.HandlerFunc
		op        providers.Op
		calls     int
		code      string
		uncertain bool
	}{
		{"connection reset on create", reset, providers.OpCreate, 1, "VendorUnreachable", true},
		{"connection reset on update", reset, providers.OpUpdate, 3, "VendorUnreachable", true},
		{"no answer on create", hang, providers.OpCreate, 1, "VendorUnreachable", true},
		{"no answer on update", hang, providers.OpUpdate, 3, "VendorUnreachable", true},
		{"truncated JSON", truncated, providers.OpCreate, 1, "BadResponse", true},
		{"HTML instead of JSON", html, providers.OpUpdate, 1, "BadResponse", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			calls := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				calls++
				mu.Unlock()
				tc.handler(w, r)
			}))
			defer srv.Close()
			s := &sleeps{}
			// The create path itself: no adoption lookup before it.
			cl, err := Factory{}.New(providers.Config{Endpoint: srv.URL, Credentials: map[string][]byte{"token": []byte(token)},
				Spec:       usersv1.ProviderSpec{HubSpot: &usersv1.HubSpotOptions{Adoption: usersv1.HubSpotAdoptNever}},
				HTTPClient: &http.Client{Timeout: 200 * time.Millisecond}, Sleep: s.sleep})
			if err != nil {
				t.Fatal(err)
			}
			chs := creates(3)
			if tc.op == providers.OpUpdate {
				for i := range chs {
					chs[i].Op, chs[i].ExternalID = providers.OpUpdate, fmt.Sprint(100+i)
				}
			}
			res := apply(t, cl.(*Client), chs)
			for _, r := range res {
				re := recErr(t, r)
				if re.Permanent || re.Code != tc.code || re.Uncertain != tc.uncertain {
					t.Fatalf("%s: %+v", r.ID, re)
				}
				if strings.Contains(re.Message, token) {
					t.Fatal("the token is in the message")
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if calls != tc.calls {
				t.Fatalf("%d calls, want %d", calls, tc.calls)
			}
		})
	}
}

// sorted returns the call sizes in order: calls go out concurrently.
func sorted(xs []int) []int {
	out := append([]int(nil), xs...)
	slices.Sort(out)
	return out
}

func TestSameValue(t *testing.T) {
	for _, tc := range []struct {
		prop, want, got string
		same            bool
	}{
		{"hs_job_title", "Engineer", "Engineer", true},
		{"hs_job_title", "Engineer", "engineer", false},
		{PropEmail, "User1@Example.com", "user1@example.com", true},
		{PropEmail, "a@example.com", "b@example.com", false},
		{"seniority", "3", "3.0", true},
		{"seniority", "3", "4", false},
		{"remote", "true", "True", true},
		{"remote", "true", "false", false},
		{PropFirstName, "", "", true},
		{PropFirstName, "", "Ann", false},
		{"hs_job_title", "Engineer", "", false},
	} {
		if got := sameValue(tc.prop, tc.want, tc.got); got != tc.same {
			t.Errorf("sameValue(%s, %q, %q) = %v, want %v", tc.prop, tc.want, tc.got, got, tc.same)
		}
	}
}

// Read finds users as written, names the property edited behind the
// operator's back, says Missing only for a user HubSpot says it does not
// hold, and Unknown for every user of a call that failed.
func TestReadBack(t *testing.T) {
	for _, idProp := range []string{"", "k8s_key"} {
		t.Run("idProperty="+idProp, func(t *testing.T) {
			eo := hsemu.Options{}
			var opts *usersv1.HubSpotOptions
			if idProp != "" {
				eo.UniqueProperties = []string{idProp}
				opts = &usersv1.HubSpotOptions{IDProperty: idProp}
			}
			s := newSetup(t, eo, opts)
			chs := creates(150)
			res := apply(t, s.c, chs)
			reqs := make([]providers.ReadRequest, len(chs))
			for i, ch := range chs {
				reqs[i] = providers.ReadRequest{ID: ch.ID, ExternalID: res[ch.ID].ExternalID, User: ch.User}
			}
			s.em.ResetCounters()
			obs := read(t, s.c, reqs)
			for _, ch := range chs {
				if o := obs[ch.ID]; o.Presence != providers.Found || len(o.Differs) != 0 {
					t.Fatalf("%s unchanged: %+v", ch.ID, o)
				}
			}
			if n := s.em.Calls(hsemu.EndpointRead); n != 2 {
				t.Fatalf("%d batch/read calls for 150 users, want 2", n)
			}
			s.em.Edit(res["c3"].ExternalID, map[string]string{"hs_job_title": "Manager", PropEmail: "USER003@example.com"})
			s.em.Archive(res["c7"].ExternalID)
			obs = read(t, s.c, reqs)
			if o := obs["c3"]; o.Presence != providers.Found || !slices.Equal(o.Differs, []string{"hs_job_title"}) {
				t.Fatalf("edited user: %+v, want Found differing in hs_job_title only", o)
			}
			if o := obs["c7"]; o.Presence != providers.Missing {
				t.Fatalf("archived user: %+v, want Missing", o)
			}
		})
	}
	for name, f := range map[string]hsemu.Fault{
		"5xx on every attempt": {Status: http.StatusInternalServerError, Count: 100},
		"429 on every attempt": {Status: http.StatusTooManyRequests, Count: 100},
		"malformed body":       {Status: http.StatusOK, Body: hsemu.Malformed, Count: 100},
		"truncated body":       {Status: http.StatusMultiStatus, Body: hsemu.Truncated, Count: 100},
	} {
		t.Run(name, func(t *testing.T) {
			s := newSetup(t, hsemu.Options{}, nil)
			chs := creates(20)
			res := apply(t, s.c, chs)
			reqs := make([]providers.ReadRequest, len(chs))
			for i, ch := range chs {
				reqs[i] = providers.ReadRequest{ID: ch.ID, ExternalID: res[ch.ID].ExternalID, User: ch.User}
			}
			s.em.Archive(res["c1"].ExternalID)
			s.em.Inject(hsemu.EndpointRead, f)
			obs := read(t, s.c, reqs)
			for _, r := range reqs {
				if o := obs[r.ID]; o.Presence != providers.Unknown || o.Err == nil {
					t.Fatalf("%s is %+v, want Unknown with a reason", r.ID, o)
				}
			}
		})
	}
}

func read(t *testing.T, c *Client, reqs []providers.ReadRequest) map[string]providers.Observation {
	t.Helper()
	obs, err := c.Read(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	if len(obs) != len(reqs) {
		t.Fatalf("%d observations for %d requests", len(obs), len(reqs))
	}
	out := map[string]providers.Observation{}
	for _, o := range obs {
		out[o.ID] = o
	}
	return out
}
