package propel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers"
	propemu "github.com/usersync/usersync-operator/internal/providers/propel/emulator"
)

const (
	testClientID = "usersync"
	testSecret   = "s3cr3t-never-in-a-message"
)

// sleeps records the waits of a client instead of waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
	// hook runs on every wait, e.g. to cancel the sync.
	hook func()
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// setup starts an emulator and a client for it.
func setup(t testing.TB, opts propemu.Options, batch int, edit func(*providers.Config)) (*propemu.Emulator, providers.Client, *sleeps) {
	t.Helper()
	if opts.Clients == nil {
		opts.Clients = map[string]string{testClientID: testSecret}
	}
	em := propemu.New(opts)
	url := em.Start()
	t.Cleanup(em.Close)
	sl := &sleeps{}
	cfg := providers.Config{
		Endpoint: url + "/v2",
		Credentials: map[string][]byte{
			CredClientID:     []byte(testClientID),
			CredClientSecret: []byte(testSecret),
		},
		BatchSize: batch,
		Sleep:     sl.sleep,
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := Factory{}.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return em, c, sl
}

// creates returns n create changes with keys u-0000, u-0001, ...
func creates(n int) []providers.Change {
	out := make([]providers.Change, n)
	for i := range out {
		key := fmt.Sprintf("u-%04d", i)
		out[i] = providers.Change{
			ID: "c" + key,
			Op: providers.OpCreate,
			User: providers.User{
				Key:       key,
				Email:     key + "@example.com",
				FirstName: "First",
				LastName:  fmt.Sprintf("Last %d", i),
				Attributes: map[string]any{
					"phone":      "+31 20 555 0100",
					"gender":     "u",
					"department": "sales",
					"seats":      float64(i),
					"ratio":      0.5,
					"active":     true,
				},
			},
		}
	}
	return out
}

func byID(t testing.TB, changes []providers.Change, results []providers.Result) map[string]providers.Result {
	t.Helper()
	if len(results) != len(changes) {
		t.Fatalf("got %d results for %d changes", len(results), len(changes))
	}
	m := make(map[string]providers.Result, len(results))
	for _, r := range results {
		if _, dup := m[r.ID]; dup {
			t.Fatalf("two results for %s", r.ID)
		}
		m[r.ID] = r
	}
	for _, ch := range changes {
		if _, ok := m[ch.ID]; !ok {
			t.Fatalf("no result for %s", ch.ID)
		}
	}
	return m
}

func recordErr(t testing.TB, err error) *providers.RecordError {
	t.Helper()
	var re *providers.RecordError
	if !errors.As(err, &re) {
		t.Fatalf("error %v (%T) is not a RecordError", err, err)
	}
	return re
}

// assertStored checks that every change succeeded with action and the id
// the emulator stored for its key.
func assertStored(t *testing.T, em *propemu.Emulator, changes []providers.Change, results []providers.Result, action providers.Action) {
	t.Helper()
	res := byID(t, changes, results)
	for _, ch := range changes {
		r := res[ch.ID]
		if r.Err != nil {
			t.Fatalf("%s: %v", ch.User.Key, r.Err)
		}
		if r.Action != action {
			t.Errorf("%s: action %s, want %s", ch.User.Key, r.Action, action)
		}
		u, ok := em.UserBySourceID(DefaultSource, ch.User.Key)
		if !ok {
			t.Fatalf("%s not stored", ch.User.Key)
		}
		if want := fmt.Sprint(u["id"]); r.ExternalID != want {
			t.Errorf("%s: ExternalID %q, emulator id %s", ch.User.Key, r.ExternalID, want)
		}
	}
}

func TestApplyCreatesThenUpdates(t *testing.T) {
	em, c, _ := setup(t, propemu.Options{}, 100, nil)
	ctx := context.Background()
	changes := creates(250)

	results, err := c.Apply(ctx, changes)
	if err != nil {
		t.Fatal(err)
	}
	assertStored(t, em, changes, results, providers.ActionCreated)
	if got := em.Calls(propemu.PathBulkSource); got != 3 {
		t.Errorf("bulk calls = %d, want 3", got)
	}
	if got := fmt.Sprint(em.Inputs(propemu.PathBulkSource)); got != "[100 100 50]" {
		t.Errorf("inputs = %s, want [100 100 50]", got)
	}
	t.Logf("250 creates: %d bulk calls, inputs %v", em.Calls(propemu.PathBulkSource), em.Inputs(propemu.PathBulkSource))

	u, _ := em.UserBySourceID(DefaultSource, "u-0007")
	if u["phone"] != "+31 20 555 0100" || u["gender"] != "u" || u["email"] != "u-0007@example.com" {
		t.Errorf("Propel fields not at the top level: %v", u)
	}
	attrs := map[string]string{}
	for _, a := range u["attributes"].([]any) {
		a := a.(map[string]any)
		attrs[a["name"].(string)] = a["value"].(string) + "/" + a["type"].(string)
	}
	want := map[string]string{"department": "sales/text", "seats": "7/integer", "ratio": "0.5/decimal", "active": "true/text"}
	if fmt.Sprint(attrs) != fmt.Sprint(want) {
		t.Errorf("attributes = %v, want %v", attrs, want)
	}

	if got := em.Calls(propemu.PathToken); got != 1 {
		t.Errorf("token calls = %d, want 1", got)
	}
	em.ResetCounters()
	ids := map[string]string{}
	for _, r := range results {
		ids[r.ID] = r.ExternalID
	}
	var updates []providers.Change
	for _, i := range []int{5, 120, 249} {
		ch := changes[i]
		ch.Op, ch.ExternalID = providers.OpUpdate, ids[ch.ID]
		ch.User.LastName = "Renamed"
		updates = append(updates, ch)
	}
	results, err = c.Apply(ctx, updates)
	if err != nil {
		t.Fatal(err)
	}
	assertStored(t, em, updates, results, providers.ActionUpdated)
	if got := fmt.Sprint(em.Inputs(propemu.PathBulkSource)); got != "[3]" {
		t.Errorf("inputs = %s, want one call of 3", got)
	}
	if n := len(em.Users()); n != 250 {
		t.Errorf("emulator holds %d users, want 250", n)
	}
	if u, _ := em.UserBySourceID(DefaultSource, "u-0120"); u["lastName"] != "Renamed" {
		t.Errorf("update not applied: %v", u)
	}
	if got := em.Calls(propemu.PathToken); got != 0 {
		t.Errorf("token calls = %d, want 0 (cached)", got)
	}
}

func TestApplySchemaErrors(t *testing.T) {
	// Five bad records spread over a batch of 100, each failing a different
	// rule; the message each must report.
	bad := map[int]func(*providers.User) string{
		3:  func(u *providers.User) string { u.Attributes["gender"] = "x"; return "x is not a valid enum value" },
		27: func(u *providers.User) string { u.Email = "not-an-email"; return "is not a valid email address" },
		50: func(u *providers.User) string {
			u.Attributes["dateOfBirth"] = "1990-13-45"
			return "is not a valid date"
		},
		71: func(u *providers.User) string { u.Attributes["company"] = "Blocked BV"; return "company is blocked" },
		98: func(u *providers.User) string { u.Email = "two@@example.com"; return "is not a valid email address" },
	}
	validate := func(_ int, u map[string]any) (string, bool) {
		return "company is blocked", u["company"] == "Blocked BV"
	}
	const n = 100
	for _, tc := range []struct {
		name      string
		anonymous bool
		maxCalls  int
	}{
		{name: "pointers", maxCalls: 1 + 1},
		{name: "anonymous", anonymous: true, maxCalls: 1 + 2*len(bad)*int(math.Ceil(math.Log2(n)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			em, c, _ := setup(t, propemu.Options{AnonymousErrors: tc.anonymous, Validate: validate}, 100, nil)
			changes := creates(n)
			want := map[string]string{}
			for i, f := range bad {
				want[changes[i].ID] = f(&changes[i].User)
			}
			results, err := c.Apply(context.Background(), changes)
			if err != nil {
				t.Fatal(err)
			}
			ok := 0
			for _, r := range byID(t, changes, results) {
				msg, isBad := want[r.ID]
				if !isBad {
					if r.Err != nil || r.Action != providers.ActionCreated || r.ExternalID == "" {
						t.Errorf("%s: %+v", r.ID, r)
					}
					ok++
					continue
				}
				re := recordErr(t, r.Err)
				if !re.Permanent || re.Uncertain || re.Code != "SchemaValidation" || !strings.Contains(re.Message, msg) {
					t.Errorf("%s: %+v, want permanent SchemaValidation containing %q", r.ID, re, msg)
				}
			}
			if ok != n-len(bad) {
				t.Errorf("%d succeeded, want %d", ok, n-len(bad))
			}
			if got := len(em.Users()); got != n-len(bad) {
				t.Errorf("emulator holds %d users, want %d", got, n-len(bad))
			}
			calls := em.Calls(propemu.PathBulkSource)
			t.Logf("%s: %d bad of %d cost %d bulk calls (bound %d), inputs %v", tc.name, len(bad), n, calls, tc.maxCalls, em.Inputs(propemu.PathBulkSource))
			if calls > tc.maxCalls {
				t.Errorf("%d bulk calls, want at most %d", calls, tc.maxCalls)
			}
		})
	}
}

func TestApplyOversizedBatchIsSplit(t *testing.T) {
	// The emulator refuses more than 30 users per call without a pointer;
	// the client splits until the calls fit.
	em, c, _ := setup(t, propemu.Options{MaxBatch: 30}, 100, nil)
	changes := creates(100)
	results, err := c.Apply(context.Background(), changes)
	if err != nil {
		t.Fatal(err)
	}
	assertStored(t, em, changes, results, providers.ActionCreated)
	t.Logf("100 users against a limit of 30: inputs %v", em.Inputs(propemu.PathBulkSource))
}

// expireAfterFirstBulk expires the emulator's tokens once the first bulk
// call has been answered.
type expireAfterFirstBulk struct {
	em   *propemu.Emulator
	once sync.Once
}

func (x *expireAfterFirstBulk) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && strings.HasSuffix(r.URL.Path, propemu.PathBulkSource) {
		x.once.Do(x.em.ExpireTokens)
	}
	return resp, err
}

func TestApplyRefreshesExpiredToken(t *testing.T) {
	var rt expireAfterFirstBulk
	em, c, _ := setup(t, propemu.Options{}, 100, func(cfg *providers.Config) {
		cfg.HTTPClient = &http.Client{Transport: &rt}
	})
	rt.em = em
	changes := creates(250)
	results, err := c.Apply(context.Background(), changes)
	if err != nil {
		t.Fatal(err)
	}
	assertStored(t, em, changes, results, providers.ActionCreated)
	if got := em.Calls(propemu.PathToken); got != 2 {
		t.Errorf("token calls = %d, want 2", got)
	}
	t.Logf("token expired mid-sync: %d token calls, %d bulk calls", em.Calls(propemu.PathToken), em.Calls(propemu.PathBulkSource))
}

func TestAuthRefused(t *testing.T) {
	em, c, _ := setup(t, propemu.Options{Clients: map[string]string{testClientID: "the-right-one"}}, 100, nil)
	ctx := context.Background()
	check := func(what string, err error) {
		t.Helper()
		var ae *providers.AuthError
		if !errors.Is(err, providers.ErrAuth) || !errors.As(err, &ae) || ae.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: %v, want an AuthError 401", what, err)
		}
		if strings.Contains(err.Error(), testSecret) || !strings.Contains(err.Error(), "invalid client credentials") {
			t.Errorf("%s: message %q", what, err)
		}
	}
	results, err := c.Apply(ctx, creates(3))
	check("Apply", err)
	if results != nil {
		t.Errorf("Apply returned results with an auth error: %v", results)
	}
	check("Verify", c.Verify(ctx))
	if n := em.Calls(propemu.PathBulkSource); n != 0 {
		t.Errorf("%d bulk calls without a token", n)
	}
}

func TestVerify(t *testing.T) {
	em, c, _ := setup(t, propemu.Options{}, 0, nil)
	for range 2 {
		if err := c.Verify(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := em.Calls(propemu.PathToken); got != 2 {
		t.Errorf("token calls = %d, want one per Verify", got)
	}
}

func TestApplyRetries(t *testing.T) {
	s := time.Second
	for _, tc := range []struct {
		name       string
		status     int
		count      int
		afterApply bool
		waits      []time.Duration
		// code is the failure of every record; "" for success.
		code      string
		uncertain bool
		action    providers.Action
		stored    int
	}{
		{name: "429 twice", status: 429, count: 2, waits: []time.Duration{s, s}, action: providers.ActionCreated, stored: 20},
		{name: "503 twice", status: 503, count: 2, waits: []time.Duration{s, 2 * s}, action: providers.ActionCreated, stored: 20},
		{name: "500 once", status: 500, count: 1, waits: []time.Duration{s}, action: providers.ActionCreated, stored: 20},
		{name: "lost response 504", status: 504, count: 1, afterApply: true, waits: []time.Duration{s}, action: providers.ActionUpdated, stored: 20},
		{name: "429 exhausted", status: 429, count: 5, waits: []time.Duration{s, s, s, s}, code: codeRateLimited},
		// Past a short blip the engine's per-record backoff takes over.
		{name: "503 exhausted", status: 503, count: 5, waits: []time.Duration{s, 2 * s}, code: codeVendorUnavailable, uncertain: true},
		{name: "lost responses exhausted", status: 502, count: 5, afterApply: true, waits: []time.Duration{s, 2 * s},
			code: codeVendorUnavailable, uncertain: true, stored: 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			em, c, sl := setup(t, propemu.Options{}, 100, nil)
			f := propemu.Fault{Status: tc.status, Count: tc.count, AfterApply: tc.afterApply}
			if tc.status == http.StatusTooManyRequests {
				f.RetryAfter = "1"
			}
			em.Inject(propemu.PathBulkSource, f)
			changes := creates(20)
			results, err := c.Apply(context.Background(), changes)
			if err != nil {
				t.Fatal(err)
			}
			if tc.code == "" {
				assertStored(t, em, changes, results, tc.action)
			} else {
				for _, r := range byID(t, changes, results) {
					re := recordErr(t, r.Err)
					if re.Permanent || re.Code != tc.code || re.Uncertain != tc.uncertain {
						t.Errorf("%s: %+v", r.ID, re)
					}
				}
			}
			if got := fmt.Sprint(sl.all()); got != fmt.Sprint(tc.waits) {
				t.Errorf("waits = %s, want %v", got, tc.waits)
			}
			if got := len(em.Users()); got != tc.stored {
				t.Errorf("emulator holds %d users, want %d", got, tc.stored)
			}
			t.Logf("%s: %d bulk calls", tc.name, em.Calls(propemu.PathBulkSource))
		})
	}
}

func TestApplyCancelled(t *testing.T) {
	em, c, sl := setup(t, propemu.Options{}, 100, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sl.hook = cancel
	em.Inject(propemu.PathBulkSource, propemu.Fault{Status: http.StatusServiceUnavailable, Count: 1, AfterApply: true})
	changes := creates(250)
	results, err := c.Apply(ctx, changes)
	if err != nil {
		t.Fatal(err)
	}
	res := byID(t, changes, results)
	for i, ch := range changes {
		re := recordErr(t, res[ch.ID].Err)
		sent := i < 100
		if re.Code != codeCancelled || re.Permanent || re.Uncertain != sent {
			t.Errorf("%s: %+v, want Cancelled with Uncertain=%v", ch.ID, re, sent)
		}
	}
	if got := em.Calls(propemu.PathBulkSource); got != 1 {
		t.Errorf("bulk calls = %d, want 1", got)
	}
}

func TestApplyCorrelatesShuffledResults(t *testing.T) {
	em, c, _ := setup(t, propemu.Options{ShuffleResults: true}, 100, nil)
	changes := creates(60)
	for i := range changes {
		// Numeric sourceIds come back as JSON numbers.
		if i%2 == 0 {
			changes[i].User.Key = fmt.Sprint(3002196 + i)
		}
	}
	results, err := c.Apply(context.Background(), changes)
	if err != nil {
		t.Fatal(err)
	}
	assertStored(t, em, changes, results, providers.ActionCreated)
}

func TestApplyDeletesAreUnsupported(t *testing.T) {
	em, c, _ := setup(t, propemu.Options{}, 100, nil)
	changes := append(creates(2), providers.Change{ID: "d1", Op: providers.OpDelete, ExternalID: "1234", User: providers.User{Key: "gone"}})
	results, err := c.Apply(context.Background(), changes)
	if err != nil {
		t.Fatal(err)
	}
	res := byID(t, changes, results)
	re := recordErr(t, res["d1"].Err)
	if !re.Permanent || re.Code != "Unsupported" || !strings.Contains(re.Message, "deletionPolicy: Orphan") {
		t.Errorf("delete: %+v", re)
	}
	assertStored(t, em, changes[:2], results[:2], providers.ActionCreated)
	if got := em.Calls(propemu.PathBulkSource); got != 1 {
		t.Errorf("bulk calls = %d, want 1", got)
	}
}

func TestApplyDuplicateKeysGoToSeparateCalls(t *testing.T) {
	em, c, _ := setup(t, propemu.Options{}, 100, nil)
	changes := creates(3)
	dup := changes[1]
	dup.ID, dup.User.LastName = "again", "Second"
	changes = append(changes, dup)
	results, err := c.Apply(context.Background(), changes)
	if err != nil {
		t.Fatal(err)
	}
	res := byID(t, changes, results)
	if r := res["again"]; r.Err != nil || r.Action != providers.ActionUpdated {
		t.Errorf("second write of a key: %+v", r)
	}
	if got := fmt.Sprint(em.Inputs(propemu.PathBulkSource)); got != "[3 1]" {
		t.Errorf("inputs = %s, want [3 1]", got)
	}
	if u, _ := em.UserBySourceID(DefaultSource, dup.User.Key); u["lastName"] != "Second" {
		t.Errorf("last write did not win: %v", u)
	}
}

// TestApplyToleratesAnswers runs the client against hand-written answers:
// expires_in as a number, keys as numbers, items missing or failed.
func TestApplyToleratesAnswers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == tokenPath {
			_, _ = w.Write([]byte(`{"access_token":"tok","token_type":"BearerToken","expires_in":1899}`))
			return
		}
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"data":[
			{"key":"b","success":false,"messages":["UserMultipleFound","provide additional filtering"]},
			{"action":"update","id":"77","key":42,"lookupKey":"sourceId","success":true},
			{"id":14713,"key":"unknown","success":true},
			{"key":"d","success":false},
			{"id":900,"key":"a"}
		],"messages":["Completed"],"total":4}`))
	}))
	defer srv.Close()
	c, err := Factory{}.New(providers.Config{Endpoint: srv.URL, Credentials: map[string][]byte{
		CredClientID: []byte("id"), CredClientSecret: []byte("secret")}})
	if err != nil {
		t.Fatal(err)
	}
	changes := []providers.Change{
		{ID: "1", Op: providers.OpCreate, User: providers.User{Key: "a"}},
		{ID: "2", Op: providers.OpCreate, User: providers.User{Key: "b"}},
		{ID: "3", Op: providers.OpUpdate, ExternalID: "77", User: providers.User{Key: "0042"}},
		{ID: "4", Op: providers.OpCreate, User: providers.User{Key: "c"}},
		{ID: "5", Op: providers.OpCreate, User: providers.User{Key: "d"}},
	}
	results, err := c.Apply(context.Background(), changes)
	if err != nil {
		t.Fatal(err)
	}
	res := byID(t, changes, results)
	if r := res["1"]; r.Err != nil || r.ExternalID != "900" || r.Action != providers.ActionCreated {
		t.Errorf("a: %+v", r)
	}
	if re := recordErr(t, res["2"].Err); !re.Permanent || re.Code != codeRejected || re.Message != "UserMultipleFound; provide additional filtering" {
		t.Errorf("b: %+v", re)
	}
	if r := res["3"]; r.Err != nil || r.ExternalID != "77" || r.Action != providers.ActionUpdated {
		t.Errorf("0042: %+v", r)
	}
	if re := recordErr(t, res["4"].Err); re.Permanent || !re.Uncertain || re.Code != codeNoResult {
		t.Errorf("c: %+v", re)
	}
	if re := recordErr(t, res["5"].Err); !re.Permanent || re.Message != "rejected by Propel" {
		t.Errorf("d: %+v", re)
	}
}

func TestEmulatorLookup(t *testing.T) {
	em, c, _ := setup(t, propemu.Options{}, 100, nil)
	if _, err := c.Apply(context.Background(), creates(2)); err != nil {
		t.Fatal(err)
	}
	tok, err := c.(*Client).tokens.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, em.URL()+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	status, body := get("/v2/users/sourceId/u-0001?source=" + DefaultSource)
	if status != http.StatusOK || body["data"].(map[string]any)["email"] != "u-0001@example.com" {
		t.Errorf("lookup by sourceId: %d %v", status, body)
	}
	id := fmt.Sprint(body["data"].(map[string]any)["id"])
	if status, _ := get("/users/id/" + id); status != http.StatusOK {
		t.Errorf("lookup by id: %d", status)
	}
	if status, body := get("/users/sourceId/nobody?source=" + DefaultSource); status != http.StatusNotFound ||
		body["error"].(map[string]any)["type"] != "NotFound" {
		t.Errorf("missing user: %d %v", status, body)
	}
	if got := em.Calls("/users/id/" + id); got != 1 {
		t.Errorf("lookup calls = %d", got)
	}
}

func TestFactory(t *testing.T) {
	creds := func(id, secret string) map[string][]byte {
		m := map[string][]byte{}
		if id != "" {
			m[CredClientID] = []byte(id)
		}
		if secret != "" {
			m[CredClientSecret] = []byte(secret)
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		cfg     providers.Config
		wantErr string
	}{
		{name: "no clientId", cfg: providers.Config{Credentials: creds("", testSecret)}, wantErr: CredClientID},
		{name: "no clientSecret", cfg: providers.Config{Credentials: creds("id", "")}, wantErr: "client secret"},
		{name: "blank clientSecret", cfg: providers.Config{Credentials: map[string][]byte{CredClientID: []byte("id"), CredClientSecret: []byte(" \n")}}, wantErr: "client secret"},
		{name: "client id under another key", cfg: providers.Config{Credentials: map[string][]byte{"token": []byte(testSecret)}, Spec: usersv1.ProviderSpec{Propel: &usersv1.PropelOptions{ClientIDKey: "appId"}}}, wantErr: "appId"},
		{name: "secret from credentialsRef, id from clientIDKey", cfg: providers.Config{Credentials: map[string][]byte{"appId": []byte("id"), "token": []byte(testSecret)}, Spec: usersv1.ProviderSpec{Propel: &usersv1.PropelOptions{ClientIDKey: "appId"}}}},
		{name: "relative endpoint", cfg: providers.Config{Endpoint: "api.helice.cloud/v2", Credentials: creds("id", testSecret)}, wantErr: "endpoint"},
		{name: "relative tokenURL", cfg: providers.Config{Credentials: creds("id", testSecret), Spec: usersv1.ProviderSpec{Propel: &usersv1.PropelOptions{TokenURL: "/oauth2/token"}}}, wantErr: "tokenURL"},
		{name: "defaults", cfg: providers.Config{Credentials: creds("id", testSecret)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Factory{}.New(tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				pc := c.(*Client)
				if pc.api.Base != DefaultEndpoint || pc.tokens.url != "https://api.helice.cloud/oauth2/token" ||
					pc.source != DefaultSource || pc.batch != MaxBatch || pc.api.HTTP != http.DefaultClient {
					t.Errorf("defaults: %+v", pc)
				}
				return
			}
			if !errors.Is(err, providers.ErrInvalidConfig) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want ErrInvalidConfig naming %s", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("error holds the secret: %v", err)
			}
		})
	}

	c, err := Factory{}.New(providers.Config{Credentials: creds("id", "x"), BatchSize: 500,
		Spec: usersv1.ProviderSpec{Propel: &usersv1.PropelOptions{Source: "crm", TokenURL: "https://auth.example.com/token"}}})
	if err != nil {
		t.Fatal(err)
	}
	pc := c.(*Client)
	if pc.batch != MaxBatch || pc.source != "crm" || pc.tokens.url != "https://auth.example.com/token" {
		t.Errorf("options: batch %d source %q token %q", pc.batch, pc.source, pc.tokens.url)
	}
	if got := c.Identity(providers.User{Key: "k-1", Email: "a@b.c"}); got != "k-1" {
		t.Errorf("Identity = %q", got)
	}
	f := Factory{}
	if n, p := f.DefaultRateLimit(); f.DefaultEndpoint() != DefaultEndpoint || f.MaxBatchSize() != 100 || n != 10 || p != time.Second {
		t.Errorf("factory defaults: %s %d %d/%s", f.DefaultEndpoint(), f.MaxBatchSize(), n, p)
	}
}

// BenchmarkApply measures the client's packing, encoding and correlation of
// N upserts against the emulator.
func BenchmarkApply(b *testing.B) {
	for _, n := range []int{1000, 10000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			em, c, _ := setup(b, propemu.Options{}, 100, nil)
			changes := creates(n)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				results, err := c.Apply(ctx, changes)
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range results {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
				}
			}
			b.StopTimer()
			if got := len(em.Users()); got != n {
				b.Fatalf("emulator holds %d users", got)
			}
		})
	}
}
