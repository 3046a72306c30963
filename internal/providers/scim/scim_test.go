package scim

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/emulation"
	"github.com/usersync/usersync-operator/internal/providers/scim/emulator"
)

const testToken = "scim-token-never-in-a-message-0123456789abcdef"

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

type setup struct {
	em    *emulator.Emulator
	c     *Client
	sleep *sleeps
	cfg   providers.Config
}

func newSetup(t testing.TB, p emulator.Profile, o Options) *setup {
	t.Helper()
	em := emulator.New(emulator.Options{Profile: p, Tokens: []string{testToken}})
	url := em.Start()
	t.Cleanup(em.Close)
	s := &setup{em: em, sleep: &sleeps{}}
	s.cfg = providers.Config{Endpoint: url, Credentials: map[string][]byte{"token": []byte(testToken)}, Sleep: s.sleep.sleep}
	c, err := Factory{Options: &o}.New(s.cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.c = c.(*Client)
	return s
}

func users(n int) []providers.User {
	out := make([]providers.User, n)
	for i := range out {
		key := fmt.Sprintf("u-%03d", i)
		out[i] = providers.User{Key: key, Email: key + "@example.com", FirstName: "First", LastName: fmt.Sprint("Last ", i),
			Attributes: map[string]any{"title": "Engineer", "enterprise.department": "R&D"}}
	}
	return out
}

func changes(op providers.Op, us []providers.User) []providers.Change {
	out := make([]providers.Change, len(us))
	for i, u := range us {
		out[i] = providers.Change{ID: "c-" + u.Key, Op: op, User: u}
	}
	return out
}

// apply runs Apply and returns the results by change id, checking there
// is one per change and that no message holds the token.
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
		if r.Err != nil && strings.Contains(r.Err.Error(), testToken) {
			t.Fatalf("an error holds the token: %v", r.Err)
		}
		out[r.ID] = r
	}
	return out
}

func expectOK(t testing.TB, res map[string]providers.Result, action providers.Action) {
	t.Helper()
	for id, r := range res {
		if r.Err != nil || r.Action != action {
			t.Fatalf("%s: %v %v, want %s", id, r.Action, r.Err, action)
		}
		if action != providers.ActionDeleted && r.ExternalID == "" {
			t.Fatalf("%s: no ExternalID", id)
		}
	}
}

// withIDs sets each change's ExternalID from earlier results.
func withIDs(chs []providers.Change, res map[string]providers.Result) []providers.Change {
	for i := range chs {
		chs[i].ExternalID = res[chs[i].ID].ExternalID
	}
	return chs
}

func TestCreate250(t *testing.T) {
	cases := map[string]struct {
		profile       emulator.Profile
		opts          Options
		bulk, creates int
	}{
		"full: 3 Bulk calls":         {profile: emulator.Full, bulk: 3},
		"nobulk: 250 POSTs":          {profile: emulator.NoBulk, creates: 250},
		"full with Bulk Never: POST": {profile: emulator.Full, opts: Options{Bulk: BulkNever}, creates: 250},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := newSetup(t, tc.profile, tc.opts)
			us := users(250)
			res := apply(t, s.c, changes(providers.OpCreate, us))
			expectOK(t, res, providers.ActionCreated)
			if got := s.em.Calls(emulator.EndpointBulk); got != tc.bulk {
				t.Errorf("%d Bulk calls, want %d (inputs %v)", got, tc.bulk, s.em.Inputs(emulator.EndpointBulk))
			}
			if got := s.em.Calls(emulator.EndpointCreate); got != tc.creates {
				t.Errorf("%d POST /Users, want %d", got, tc.creates)
			}
			if n := len(s.em.Users()); n != 250 {
				t.Fatalf("%d users at the server, want 250", n)
			}
			u, ok := s.em.UserByExternalID("u-007")
			if !ok || u.UserName != "u-007@example.com" || res["c-u-007"].ExternalID != u.ID {
				t.Fatalf("u-007: %+v %v", u, ok)
			}
			ent, _ := u.Resource[emulator.SchemaEnterprise].(map[string]any)
			name, _ := u.Resource["name"].(map[string]any)
			if u.Resource["title"] != "Engineer" || ent["department"] != "R&D" || name["familyName"] != "Last 7" ||
				u.Resource["displayName"] != "First Last 7" || !u.Active {
				t.Fatalf("u-007 stored as %v", u.Resource)
			}

			// Updates of the same users, by id.
			for i := range us {
				us[i].Attributes["title"] = "Manager"
			}
			res = apply(t, s.c, withIDs(changes(providers.OpUpdate, us), res))
			expectOK(t, res, providers.ActionUpdated)
			if u, _ := s.em.UserByExternalID("u-100"); u.Resource["title"] != "Manager" {
				t.Fatalf("u-100 not updated: %v", u.Resource)
			}
		})
	}
}

func TestInvalidUsersFailAlone(t *testing.T) {
	for _, p := range []emulator.Profile{emulator.Full, emulator.NoBulk} {
		t.Run(p.Name, func(t *testing.T) {
			s := newSetup(t, p, Options{})
			us := users(20)
			us[3].Attributes["favouriteColour"] = "blue"
			us[5].Attributes["enterprise.manager"] = "x"
			us[8].Email = "not-an-email"
			res := apply(t, s.c, changes(providers.OpCreate, us))
			for id, r := range res {
				var re *providers.RecordError
				switch id {
				case "c-u-003", "c-u-005":
					if !errors.As(r.Err, &re) || !re.Permanent || re.Code != ReasonInvalidSpec || !strings.Contains(re.Message, "attribute") {
						t.Fatalf("%s: %v, want InvalidSpec", id, r.Err)
					}
				case "c-u-008":
					if !errors.As(r.Err, &re) || !re.Permanent || re.Code != "invalidValue" || !strings.Contains(re.Message, "not-an-email") {
						t.Fatalf("%s: %v, want the server's invalidValue", id, r.Err)
					}
				default:
					if r.Err != nil || r.Action != providers.ActionCreated {
						t.Fatalf("%s: %v %v", id, r.Action, r.Err)
					}
				}
			}
			if n := len(s.em.Users()); n != 17 {
				t.Fatalf("%d users, want 17", n)
			}
		})
	}
}

func TestLostBulkAnswerCreatesNoDuplicate(t *testing.T) {
	s := newSetup(t, emulator.Full, Options{})
	us := users(30)
	s.em.Inject(emulator.EndpointBulk, emulation.Fault{Status: 504, AfterApply: true})
	chs := changes(providers.OpCreate, us)
	res := apply(t, s.c, chs)
	for id, r := range res {
		var re *providers.RecordError
		if !errors.As(r.Err, &re) || !re.Uncertain {
			t.Fatalf("%s: %v, want uncertain", id, r.Err)
		}
	}
	if s.em.Calls(emulator.EndpointBulk) != 1 {
		t.Fatalf("the Bulk call was resent: %d calls", s.em.Calls(emulator.EndpointBulk))
	}
	for i := range chs {
		chs[i].Retry = true
	}
	res = apply(t, s.c, chs)
	expectOK(t, res, providers.ActionAdopted)
	if n := len(s.em.Users()); n != 30 {
		t.Fatalf("%d users after the retry, want 30", n)
	}
	if got := s.em.Calls(emulator.EndpointLookup); got != 30 {
		t.Fatalf("%d lookups, want 30", got)
	}
}

func TestConflictAdopted(t *testing.T) {
	for _, p := range []emulator.Profile{emulator.Full, emulator.NoBulk} {
		t.Run(p.Name, func(t *testing.T) {
			s := newSetup(t, p, Options{})
			us := users(3)
			// Another client created u-001 with its userName in other case.
			id, err := s.em.AddUser(map[string]any{"userName": "U-001@Example.com"})
			if err != nil {
				t.Fatal(err)
			}
			res := apply(t, s.c, changes(providers.OpCreate, us))
			if r := res["c-u-001"]; r.Err != nil || r.Action != providers.ActionAdopted || r.ExternalID != id {
				t.Fatalf("u-001: %+v, want adopted %s", r, id)
			}
			if r := res["c-u-000"]; r.Err != nil || r.Action != providers.ActionCreated {
				t.Fatalf("u-000: %+v", r)
			}
			u, ok := s.em.UserByExternalID("u-001")
			// userName is not case-exact: the minimal PATCH leaves its case.
			if !ok || u.ID != id || !strings.EqualFold(u.UserName, "u-001@example.com") || u.Resource["title"] != "Engineer" {
				t.Fatalf("u-001 at the server: %+v", u)
			}
			if n := len(s.em.Users()); n != 3 {
				t.Fatalf("%d users, want 3", n)
			}
		})
	}
}

func TestDeprovision(t *testing.T) {
	for _, p := range []emulator.Profile{emulator.Full, emulator.NoBulk} {
		for _, d := range []Deprovision{DeprovisionDeactivate, DeprovisionDelete} {
			t.Run(p.Name+"/"+string(d), func(t *testing.T) {
				s := newSetup(t, p, Options{Deprovision: d})
				us := users(10)
				res := apply(t, s.c, changes(providers.OpCreate, us))
				dels := withIDs(changes(providers.OpDelete, us), res)
				dels[9].ExternalID = "" // found by externalId
				res = apply(t, s.c, dels)
				expectOK(t, res, providers.ActionDeleted)
				if d == DeprovisionDelete {
					if n := len(s.em.Users()); n != 0 {
						t.Fatalf("%d users left", n)
					}
				} else {
					for _, u := range s.em.Users() {
						if u.Active {
							t.Fatalf("%s still active", u.ExternalID)
						}
					}
					if n := len(s.em.Users()); n != 10 {
						t.Fatalf("%d users, want 10", n)
					}
				}
				// Again: already gone, or already inactive.
				res = apply(t, s.c, dels)
				expectOK(t, res, providers.ActionDeleted)
			})
		}
	}
}

func TestUnauthorized(t *testing.T) {
	s := newSetup(t, emulator.Full, Options{})
	s.cfg.Credentials["token"] = []byte("wrong-token")
	c, _ := Factory{}.New(s.cfg)
	_, err := c.Apply(context.Background(), changes(providers.OpCreate, users(2)))
	var ae *providers.AuthError
	if !errors.As(err, &ae) || ae.StatusCode != 401 || !strings.Contains(ae.Message, "bearer token is missing or invalid") {
		t.Fatalf("Apply: %v, want a 401 AuthError with the server's detail", err)
	}
	if err := c.Verify(context.Background()); !errors.Is(err, providers.ErrAuth) {
		t.Fatalf("Verify: %v", err)
	}
	if err := s.c.Verify(context.Background()); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

func TestRateLimited(t *testing.T) {
	for _, tc := range []struct {
		p        emulator.Profile
		endpoint string
	}{{emulator.Full, emulator.EndpointBulk}, {emulator.NoBulk, emulator.EndpointCreate}} {
		t.Run(tc.p.Name, func(t *testing.T) {
			s := newSetup(t, tc.p, Options{})
			s.em.Inject(tc.endpoint, emulation.Fault{Status: 429, RetryAfter: "7"})
			res := apply(t, s.c, changes(providers.OpCreate, users(5)))
			expectOK(t, res, providers.ActionCreated)
			if fmt.Sprint(s.sleep.d) != "[7s]" {
				t.Fatalf("waits %v, want [7s]", s.sleep.d)
			}
			if n := len(s.em.Users()); n != 5 {
				t.Fatalf("%d users", n)
			}
		})
	}
}

func TestBulkPayloadSplit(t *testing.T) {
	// A server whose maxPayloadSize fits about 20 users: the client sizes
	// its chunks by the encoded body, and never gets a 413.
	p := emulator.Full
	p.Name, p.MaxPayloadSize = "tight", 8<<10
	s := newSetup(t, p, Options{})
	res := apply(t, s.c, changes(providers.OpCreate, users(100)))
	expectOK(t, res, providers.ActionCreated)
	inputs := s.em.Inputs(emulator.EndpointBulk)
	sum := 0
	for _, n := range inputs {
		sum += n
	}
	if sum != 100 || len(inputs) < 4 {
		t.Fatalf("Bulk inputs %v", inputs)
	}
	for _, l := range s.em.Log() {
		if l.Fault != nil {
			t.Fatalf("a fault: %+v", l)
		}
	}
}

func TestRead(t *testing.T) {
	s := newSetup(t, emulator.NoBulk, Options{})
	us := users(3)
	res := apply(t, s.c, changes(providers.OpCreate, us))
	reqs := []providers.ReadRequest{
		{ID: "r0", ExternalID: res["c-u-000"].ExternalID, User: us[0]},
		{ID: "r1", ExternalID: res["c-u-001"].ExternalID, User: us[1]},
		{ID: "r2", User: us[2]},
	}
	s.em.EditUser("u-001", map[string]any{"title": "Intern", "name.givenName": "Other", emulator.SchemaEnterprise + ":department": "Sales"})
	s.em.DeleteUser("u-002")
	obs, err := s.c.Read(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"r0 Found []",
		"r1 Found [name.givenName title " + emulator.SchemaEnterprise + ":department]",
		"r2 Missing []",
	}
	for i, o := range obs {
		if got := fmt.Sprintf("%s %s %v", o.ID, o.Presence, o.Differs); got != want[i] || o.Err != nil {
			t.Errorf("got %s (%v), want %s", got, o.Err, want[i])
		}
	}
	s.em.DeleteUser("u-000")
	obs, _ = s.c.Read(context.Background(), reqs[:1])
	if obs[0].Presence != providers.Missing {
		t.Fatalf("r0 after deletion: %+v", obs[0])
	}
}

func TestFactory(t *testing.T) {
	cfg := providers.Config{Endpoint: "https://example.com/scim/v2/", Credentials: map[string][]byte{"token": []byte("t")}}
	if _, err := (Factory{}).New(cfg); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		cfg  providers.Config
		opts *Options
	}{
		"no endpoint": {cfg: providers.Config{Credentials: cfg.Credentials}},
		"no token":    {cfg: providers.Config{Endpoint: cfg.Endpoint}},
		"bad bulk":    {cfg: cfg, opts: &Options{Bulk: "Sometimes"}},
	} {
		if _, err := (Factory{Options: c.opts}).New(c.cfg); !errors.Is(err, providers.ErrInvalidConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
