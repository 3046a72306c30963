package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers"
	"github.com/usersync/usersync-operator/internal/providers/scim/emulator"
)

// sent is a request the client sent, as a recording transport saw it.
type sent struct {
	method, path, ifMatch string
	body                  []byte
}

// recorder records the client's requests and can act before one is
// forwarded (to change a user between the client's read and its write).
type recorder struct {
	mu     sync.Mutex
	reqs   []sent
	before func(r *http.Request)
}

func (rec *recorder) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, sent{r.Method, r.URL.Path, r.Header.Get("If-Match"), body})
	before := rec.before
	rec.mu.Unlock()
	if before != nil {
		before(r)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// of returns the recorded requests of a method.
func (rec *recorder) of(method string) []sent {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []sent
	for _, s := range rec.reqs {
		if s.method == method {
			out = append(out, s)
		}
	}
	return out
}

// recorded builds a client of s's emulator whose requests rec records.
func (s *setup) recorded(t *testing.T, o Options) (*Client, *recorder) {
	t.Helper()
	rec := &recorder{}
	cfg := s.cfg
	cfg.HTTPClient = &http.Client{Transport: rec}
	c, err := Factory{Options: &o}.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c.(*Client), rec
}

func patchOps(t *testing.T, body []byte) []string {
	t.Helper()
	var p struct {
		Operations []struct {
			Op, Path string
		}
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("a PATCH body: %v", err)
	}
	var out []string
	for _, o := range p.Operations {
		out = append(out, o.Op+" "+o.Path)
	}
	return out
}

func TestProfiles(t *testing.T) {
	// tight: maxPayloadSize 16 KiB = 16,384 bytes; a create of these users
	// is 496 to 502 bytes encoded and the envelope 81, so 32 fit a request
	// (32 × 503 - 1 + 81 = 16,176) and 33 never do (33 × 497 - 1 + 81 =
	// 16,481): ⌈250/32⌉ = 8 requests, none refused. 100 in one request
	// (50,050 bytes) would get 413.
	cases := map[string]struct {
		profile       emulator.Profile
		bulk, creates int
	}{
		"full":   {emulator.Full, 3, 0},
		"tight":  {emulator.Tight, 8, 0},
		"nobulk": {emulator.NoBulk, 0, 250},
		"aws":    {emulator.AWS, 0, 250},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := newSetup(t, tc.profile, Options{})
			res := apply(t, s.c, changes(providers.OpCreate, users(250)))
			expectOK(t, res, providers.ActionCreated)
			if got := s.em.Calls(emulator.EndpointBulk); got != tc.bulk {
				t.Errorf("%d Bulk calls, want %d (inputs %v)", got, tc.bulk, s.em.Inputs(emulator.EndpointBulk))
			}
			if got := s.em.Calls(emulator.EndpointCreate); got != tc.creates {
				t.Errorf("%d POST /Users, want %d", got, tc.creates)
			}
			for _, l := range s.em.Log() {
				if l.Fault != nil {
					t.Fatalf("a fault: %+v", l)
				}
			}
			if n := len(s.em.Users()); n != 250 {
				t.Fatalf("%d users", n)
			}
			caps, ok := s.c.Capabilities()
			p := tc.profile
			want := usersv1.ProviderCapabilities{Patch: p.Patch, ETag: p.ETag,
				Bulk:   usersv1.BulkCapability{Supported: p.Bulk, MaxOperations: int32(p.MaxOperations), MaxPayloadSize: int64(p.MaxPayloadSize)},
				Filter: usersv1.FilterCapability{Supported: true, MaxResults: int32(p.MaxResults)}}
			if !ok || caps != want {
				t.Fatalf("capabilities %+v %v, want %+v", caps, ok, want)
			}
		})
	}
}

func TestTightRequestOf100IsRefused(t *testing.T) {
	// What the tight profile is for: a request of 100 users exceeds it.
	s := newSetup(t, emulator.Tight, Options{})
	ws := make([]*write, 100)
	for i, u := range users(100) {
		res, err := s.c.toResource(u)
		if err != nil {
			t.Fatal(err)
		}
		ws[i] = &write{i: i, kind: kCreate, res: res}
	}
	ops, _ := encodeOps(ws)
	body := bulkBody(ws, ops)
	if len(body) <= emulator.Tight.MaxPayloadSize {
		t.Fatalf("100 users are %d bytes, within the tight profile's %d", len(body), emulator.Tight.MaxPayloadSize)
	}
	req, _ := http.NewRequest(http.MethodPost, s.em.URL()+"/Bulk", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || len(s.em.Users()) != 0 {
		t.Fatalf("HTTP %d, %d users", resp.StatusCode, len(s.em.Users()))
	}
}

func TestBulk413HalvesAndLearns(t *testing.T) {
	// A proxy in front of the server refuses bodies over 32 KiB, which the
	// ServiceProviderConfig (1 MiB) does not say: 100 users (~50 KiB) get
	// 413 and are sent again as 2 × 50; later requests are halved at once.
	p := emulator.Full
	p.ProxyLimit = 32 << 10
	s := newSetup(t, p, Options{})
	us := users(200)
	res := apply(t, s.c, changes(providers.OpCreate, us[:100]))
	expectOK(t, res, providers.ActionCreated)
	if got := fmt.Sprint(s.em.Inputs(emulator.EndpointBulk)); got != "[50 50]" {
		t.Fatalf("Bulk inputs %s (calls %d), want the refused request then [50 50]", got, s.em.Calls(emulator.EndpointBulk))
	}
	if got := s.em.Calls(emulator.EndpointBulk); got != 3 {
		t.Fatalf("%d Bulk calls, want 3 (one refused)", got)
	}
	s.em.ResetCounters()
	res = apply(t, s.c, changes(providers.OpCreate, us[100:]))
	expectOK(t, res, providers.ActionCreated)
	if got := fmt.Sprint(s.em.Inputs(emulator.EndpointBulk)); got != "[50 50]" || s.em.Calls(emulator.EndpointBulk) != 2 {
		t.Fatalf("second sync: Bulk inputs %s in %d calls, want [50 50] in 2", got, s.em.Calls(emulator.EndpointBulk))
	}
	if n := len(s.em.Users()); n != 200 {
		t.Fatalf("%d users, want 200", n)
	}
}

func TestBulkRetriesFailedOperationsOnly(t *testing.T) {
	s := newSetup(t, emulator.Full, Options{})
	// Of the first request, operations 1-2 answer 503 after being carried
	// out, operation 3 answers 429 (not carried out).
	s.em.InjectOperation(emulator.OpFault{Status: 503, Count: 2, AfterApply: true})
	s.em.InjectOperation(emulator.OpFault{Status: 429})
	res := apply(t, s.c, changes(providers.OpCreate, users(10)))
	for id, r := range res {
		if r.Err != nil || r.ExternalID == "" {
			t.Fatalf("%s: %+v", id, r)
		}
	}
	if got := fmt.Sprint(s.em.Inputs(emulator.EndpointBulk)); got != "[10 3]" {
		t.Fatalf("Bulk inputs %s, want [10 3]: the three failed operations alone", got)
	}
	// The two 503 creates were looked up (they were carried out) and
	// updated, not created again; the 429 one was created.
	if got := s.em.Calls(emulator.EndpointLookup); got != 2 {
		t.Fatalf("%d lookups, want 2", got)
	}
	if n := len(s.em.Users()); n != 10 {
		t.Fatalf("%d users, want 10", n)
	}
	if fmt.Sprint(s.sleep.d) != "[1s]" {
		t.Fatalf("waits %v, want [1s]", s.sleep.d)
	}

	// An operation that keeps failing is reported after three sends, and
	// alone.
	s.em.ResetCounters()
	s.em.InjectOperation(emulator.OpFault{Status: 500, Count: 3, BulkID: "w0"})
	us := users(14)[10:]
	res = apply(t, s.c, changes(providers.OpCreate, us))
	var re *providers.RecordError
	if r := res["c-u-010"]; !errors.As(r.Err, &re) || re.Permanent || !re.Uncertain {
		t.Fatalf("u-010: %+v, want a transient, uncertain error", r)
	}
	for _, k := range []string{"c-u-011", "c-u-012", "c-u-013"} {
		if r := res[k]; r.Err != nil {
			t.Fatalf("%s: %v", k, r.Err)
		}
	}
	if got := fmt.Sprint(s.em.Inputs(emulator.EndpointBulk)); got != "[4 1 1]" {
		t.Fatalf("Bulk inputs %s, want [4 1 1]", got)
	}
}

func TestIfMatchAnd412(t *testing.T) {
	s := newSetup(t, emulator.Full, Options{})
	c, rec := s.recorded(t, Options{Bulk: BulkNever})
	us := users(1)
	res := apply(t, c, changes(providers.OpCreate, us))
	id := res["c-u-000"].ExternalID
	// An admin changes the user between the client's read and its write:
	// the write, conditional on the version read, gets 412; the client
	// reads again and writes once more.
	var once sync.Once
	rec.before = func(r *http.Request) {
		if r.Method == http.MethodPatch {
			once.Do(func() { s.em.EditUser("u-000", map[string]any{"nickName": "Al"}) })
		}
	}
	us[0].Attributes["title"] = "Manager"
	res = apply(t, c, withIDs(changes(providers.OpUpdate, us), res))
	expectOK(t, res, providers.ActionUpdated)
	patches, gets := rec.of(http.MethodPatch), rec.of(http.MethodGet)
	if len(patches) != 2 {
		t.Fatalf("%d PATCHes, want 2", len(patches))
	}
	reads := 0
	for _, g := range gets {
		if strings.HasSuffix(g.path, "/Users/"+id) {
			reads++
		}
	}
	if reads != 2 || patches[0].ifMatch != `W/"1"` || patches[1].ifMatch != `W/"2"` {
		t.Fatalf("%d reads; If-Match %q then %q, want W/\"1\" then W/\"2\"", reads, patches[0].ifMatch, patches[1].ifMatch)
	}
	u, _ := s.em.UserByExternalID("u-000")
	if u.Resource["title"] != "Manager" || u.Resource["nickName"] != "Al" {
		t.Fatalf("stored %v: want the declared title and the admin's nickName", u.Resource)
	}

	// Changed before every write: the second 412 is reported, transient.
	us[0].Attributes["title"] = "Director"
	rec.before = func(r *http.Request) {
		if r.Method == http.MethodPatch {
			s.em.EditUser("u-000", map[string]any{"title": "Intern"})
		}
	}
	res = apply(t, c, withIDs(changes(providers.OpUpdate, us), res))
	var re *providers.RecordError
	if r := res["c-u-000"]; !errors.As(r.Err, &re) || re.Permanent || re.Code != "VersionMismatch" {
		t.Fatalf("%+v, want a transient VersionMismatch", r)
	}
	if n := len(rec.of(http.MethodPatch)); n != 4 {
		t.Fatalf("%d PATCHes in all, want 4: the write and its one retry", n)
	}
}

func TestMinimalPatch(t *testing.T) {
	for _, p := range []emulator.Profile{emulator.NoBulk, emulator.AWS} {
		t.Run(p.Name, func(t *testing.T) {
			s := newSetup(t, p, Options{})
			c, rec := s.recorded(t, Options{})
			us := users(2)
			res := apply(t, c, changes(providers.OpCreate, us))
			us[0].Attributes["title"] = "Manager"
			us[0].LastName = "Other"
			res = apply(t, c, withIDs(changes(providers.OpUpdate, us), res))
			expectOK(t, res, providers.ActionUpdated)
			patches := rec.of(http.MethodPatch)
			if len(patches) != 1 {
				t.Fatalf("%d PATCHes, want 1 (u-001 is unchanged)", len(patches))
			}
			if got := fmt.Sprint(patchOps(t, patches[0].body)); got != "[replace displayName replace name.familyName replace title]" {
				t.Fatalf("PATCH operations %s", got)
			}
			if patches[0].ifMatch != "" {
				t.Fatalf("If-Match %q to a server without ETags", patches[0].ifMatch)
			}
			u, _ := s.em.UserByExternalID("u-000")
			if u.Resource["title"] != "Manager" || u.Resource["displayName"] != "First Other" {
				t.Fatalf("stored %v", u.Resource)
			}
		})
	}
}

func TestPutKeepsUndeclaredAttributes(t *testing.T) {
	p := emulator.Profile{Name: "noPatch", ETag: true, MaxResults: 100}
	s := newSetup(t, p, Options{})
	c, rec := s.recorded(t, Options{})
	us := users(1)
	res := apply(t, c, changes(providers.OpCreate, us))
	s.em.EditUser("u-000", map[string]any{"nickName": "Al", "name.middleName": "Q"})
	us[0].Attributes["title"] = "Manager"
	res = apply(t, c, withIDs(changes(providers.OpUpdate, us), res))
	expectOK(t, res, providers.ActionUpdated)
	puts := rec.of(http.MethodPut)
	if len(puts) != 1 || puts[0].ifMatch != `W/"2"` {
		t.Fatalf("PUTs %+v, want one with If-Match W/\"2\"", puts)
	}
	u, _ := s.em.UserByExternalID("u-000")
	name, _ := u.Resource["name"].(map[string]any)
	if u.Resource["title"] != "Manager" || u.Resource["nickName"] != "Al" || name["middleName"] != "Q" || name["givenName"] != "First" {
		t.Fatalf("stored %v", u.Resource)
	}
	// Deactivation without PATCH: the user as read, active false.
	res = apply(t, c, withIDs(changes(providers.OpDelete, us), res))
	expectOK(t, res, providers.ActionDeleted)
	if u, _ := s.em.UserByExternalID("u-000"); u.Active || u.Resource["nickName"] != "Al" || u.Resource["title"] != "Manager" {
		t.Fatalf("deactivated as %+v", u)
	}
}

func TestExtensionSchema(t *testing.T) {
	const ext = "urn:example:params:scim:schemas:extension:acme:2.0:User"
	s := newSetup(t, emulator.Full, Options{ExtensionSchema: ext})
	us := users(3)
	us[0].Attributes["costCode"] = "CC-7"
	us[0].Attributes["level"] = float64(3)
	us[1].Attributes["bad.name"] = "x"
	res := apply(t, s.c, changes(providers.OpCreate, us))
	var re *providers.RecordError
	if r := res["c-u-001"]; !errors.As(r.Err, &re) || re.Code != ReasonInvalidSpec || !strings.Contains(re.Message, `"bad.name"`) {
		t.Fatalf("u-001: %v, want InvalidSpec naming bad.name", r.Err)
	}
	u, _ := s.em.UserByExternalID("u-000")
	got, _ := u.Resource[ext].(map[string]any)
	if got["costCode"] != "CC-7" || got["level"] != float64(3) {
		t.Fatalf("u-000 stored %v", u.Resource)
	}
	// Read back: a change in the extension is drift.
	s.em.EditUser("u-000", map[string]any{ext + ":costCode": "CC-8"})
	obs, _ := s.c.Read(context.Background(), []providers.ReadRequest{{ID: "r", ExternalID: res["c-u-000"].ExternalID, User: us[0]}})
	if fmt.Sprint(obs[0].Differs) != "["+ext+":costCode]" {
		t.Fatalf("differs %v", obs[0].Differs)
	}

	// Without the option, the same attribute fails its record.
	plain := newSetup(t, emulator.Full, Options{})
	res = apply(t, plain.c, changes(providers.OpCreate, us[:1]))
	if r := res["c-u-000"]; !errors.As(r.Err, &re) || re.Code != ReasonInvalidSpec || !strings.Contains(re.Message, "extensionSchema") {
		t.Fatalf("without extensionSchema: %v", r.Err)
	}
	for _, bad := range []string{"acme", "urn:", "urn:ietf:params:scim:schemas:core:2.0:User", "urn:x: y"} {
		cfg := plain.cfg
		if _, err := (Factory{Options: &Options{ExtensionSchema: bad}}).New(cfg); !errors.Is(err, providers.ErrInvalidConfig) {
			t.Errorf("extensionSchema %q: %v", bad, err)
		}
	}
}

func TestCapabilitiesWithoutServiceProviderConfig(t *testing.T) {
	em := emulator.New(emulator.Options{Tokens: []string{testToken}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/ServiceProviderConfig") {
			http.NotFound(w, r)
			return
		}
		em.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cfg := providers.Config{Endpoint: srv.URL + emulator.BasePath, Credentials: map[string][]byte{"token": []byte(testToken)},
		Sleep: (&sleeps{}).sleep}
	c, err := Factory{}.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(providers.CapabilityReporter).Capabilities(); ok {
		t.Fatal("capabilities before any read")
	}
	if err := c.Verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	caps, ok := c.(providers.CapabilityReporter).Capabilities()
	if !ok || caps != (usersv1.ProviderCapabilities{}) {
		t.Fatalf("%+v %v, want nothing offered", caps, ok)
	}
	// Nothing optional: one POST per user, even though /Bulk would answer.
	res := apply(t, c, changes(providers.OpCreate, users(3)))
	expectOK(t, res, providers.ActionCreated)
	if em.Calls(emulator.EndpointBulk) != 0 || em.Calls(emulator.EndpointCreate) != 3 {
		t.Fatalf("Bulk %d, POST %d", em.Calls(emulator.EndpointBulk), em.Calls(emulator.EndpointCreate))
	}
}

func TestRetriedCreateFoundByUserName(t *testing.T) {
	// A server that filters on userName only: the lookup of a create
	// whose answer was lost falls back to it.
	p := emulator.NoBulk
	p.FilterAttrs = []string{"userName"}
	s := newSetup(t, p, Options{})
	us := users(2)
	apply(t, s.c, changes(providers.OpCreate, us[:1]))
	chs := changes(providers.OpCreate, us)
	for i := range chs {
		chs[i].Retry = true
	}
	res := apply(t, s.c, chs)
	if r := res["c-u-000"]; r.Err != nil || r.Action != providers.ActionAdopted {
		t.Fatalf("u-000: %+v", r)
	}
	if r := res["c-u-001"]; r.Err != nil || r.Action != providers.ActionCreated {
		t.Fatalf("u-001: %+v", r)
	}
	if n := len(s.em.Users()); n != 2 {
		t.Fatalf("%d users", n)
	}
}

func TestBulk412ReadsAndWritesAlone(t *testing.T) {
	s := newSetup(t, emulator.Full, Options{})
	us := users(5)
	res := apply(t, s.c, changes(providers.OpCreate, us))
	s.em.ResetCounters()
	s.em.InjectOperation(emulator.OpFault{Status: 412, BulkID: "w2"})
	for i := range us {
		us[i].Attributes["title"] = "Manager"
	}
	res = apply(t, s.c, withIDs(changes(providers.OpUpdate, us), res))
	expectOK(t, res, providers.ActionUpdated)
	if s.em.Calls(emulator.EndpointBulk) != 1 || s.em.Calls(emulator.EndpointGet) != 1 || s.em.Calls(emulator.EndpointPatch) != 1 {
		t.Fatalf("Bulk %d, GET %d, PATCH %d: want the Bulk, then u-002 read and written alone", s.em.Calls(emulator.EndpointBulk),
			s.em.Calls(emulator.EndpointGet), s.em.Calls(emulator.EndpointPatch))
	}
	if u, _ := s.em.UserByExternalID("u-002"); u.Resource["title"] != "Manager" {
		t.Fatalf("u-002 %v", u.Resource)
	}
}
