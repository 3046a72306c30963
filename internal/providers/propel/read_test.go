package propel

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/usersync/usersync-operator/internal/providers"
	propemu "github.com/usersync/usersync-operator/internal/providers/propel/emulator"
)

// readReqs is a read request per change's user, with ID "r-<key>".
func readReqs(changes []providers.Change) []providers.ReadRequest {
	out := make([]providers.ReadRequest, len(changes))
	for i, ch := range changes {
		out[i] = providers.ReadRequest{ID: "r-" + ch.User.Key, User: ch.User}
	}
	return out
}

// observe runs Read and returns the observations by ID, checking that
// there is one per request, that Presence, Err and Differs agree, and that
// no error holds a credential.
func observe(ctx context.Context, t testing.TB, c providers.Client, reqs []providers.ReadRequest) map[string]providers.Observation {
	t.Helper()
	obs, err := c.(providers.Reader).Read(ctx, reqs)
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
		if o.Err != nil && strings.Contains(o.Err.Error(), testSecret) {
			t.Fatalf("%s: the error holds the secret", o.ID)
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

// written applies changes and fails the test unless all succeed.
func written(t testing.TB, c providers.Client, changes []providers.Change) {
	t.Helper()
	res, err := c.Apply(context.Background(), changes)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range byID(t, changes, res) {
		if r.Err != nil {
			t.Fatalf("%s: %v", r.ID, r.Err)
		}
	}
}

// TestReadFindsEditsAndDeletions writes users, then reads them back
// unchanged, after edits in Propel behind the operator's back, and after
// deletions.
func TestReadFindsEditsAndDeletions(t *testing.T) {
	em, c, _ := setup(t, propemu.Options{}, 100, nil)
	changes := creates(8)
	changes[1].User.Attributes["dateOfBirth"] = "1990-01-01"
	changes[2].User.Attributes["language"] = "nl"
	written(t, c, changes)
	reqs := readReqs(changes)
	ctx := context.Background()
	for id, o := range observe(ctx, t, c, reqs) {
		if o.Presence != providers.Found || len(o.Differs) > 0 {
			t.Fatalf("unchanged %s: %+v", id, o)
		}
	}
	if n := em.Lookups(); n != len(changes) {
		t.Fatalf("%d lookups for %d users", n, len(changes))
	}

	fields := map[string]map[string]any{
		"u-0000": {"firstName": "Someone"},
		"u-0001": {"email": "U-0001@EXAMPLE.COM", "dateOfBirth": "1990-01-01T00:00:00Z"}, // case and form only
		"u-0002": {"phone": nil, "company": "Acme"},
		"u-0003": {"gender": "f", "lastName": ""},
	}
	attrs := map[string]map[string]any{
		"u-0001": {"seats": 1, "active": "TRUE", "ratio": "0.50"}, // types only
		"u-0002": {"department": nil},
		"u-0003": {"seats": "99", "unrelated": "x"},
		"u-0004": {"active": "false"},
	}
	for key, f := range fields {
		if !em.EditUser(DefaultSource, key, f) {
			t.Fatalf("EditUser %s", key)
		}
	}
	for key, a := range attrs {
		if !em.EditAttributes(DefaultSource, key, a) {
			t.Fatalf("EditAttributes %s", key)
		}
	}
	if !em.DeleteUser(DefaultSource, "u-0005") || em.EditUser(DefaultSource, "u-0005", nil) || em.DeleteUser("other", "u-0006") {
		t.Fatal("DeleteUser")
	}
	want := map[string][]string{
		"r-u-0000": {"firstName"},
		"r-u-0002": {"department", "phone"},
		"r-u-0003": {"gender", "lastName", "seats"},
		"r-u-0004": {"active"},
	}
	got := observe(ctx, t, c, reqs)
	for _, r := range reqs {
		o := got[r.ID]
		switch {
		case r.ID == "r-u-0005":
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

// TestReadRepeatedKeysAndLanguages: requests that repeat a lookup get one
// observation each, compared with their own user, from one call; a user of
// another language is another lookup.
func TestReadRepeatedKeysAndLanguages(t *testing.T) {
	em, c, _ := setup(t, propemu.Options{}, 100, nil)
	nl, en := creates(1)[0], creates(1)[0]
	nl.User.Attributes["language"], en.User.Attributes["language"] = "nl", "en"
	en.ID = "c-en"
	written(t, c, []providers.Change{nl, en})
	if len(em.Users()) != 2 {
		t.Fatalf("%d users, want one per language", len(em.Users()))
	}
	other := nl.User
	other.FirstName = "Other"
	reqs := []providers.ReadRequest{{ID: "nl", User: nl.User}, {ID: "en", User: en.User}, {ID: "other", User: other}, {ID: "nl2", User: nl.User}}
	got := observe(context.Background(), t, c, reqs)
	for _, id := range []string{"nl", "en", "nl2"} {
		if got[id].Presence != providers.Found || len(got[id].Differs) > 0 {
			t.Errorf("%s: %+v", id, got[id])
		}
	}
	if diff := cmp.Diff([]string{"firstName"}, got["other"].Differs); diff != "" {
		t.Errorf("other: %s", diff)
	}
	if n := em.Lookups(); n != 2 {
		t.Errorf("%d lookups for 2 users", n)
	}
	// EditUser edits the first (nl) user: the en user is as declared.
	em.EditUser(DefaultSource, nl.User.Key, map[string]any{"lastName": "Changed"})
	got = observe(context.Background(), t, c, reqs[:2])
	if !cmp.Equal(got["nl"].Differs, []string{"lastName"}) || len(got["en"].Differs) > 0 {
		t.Errorf("after an edit of the nl user: %+v", got)
	}
}

// TestReadFailuresAreUnknown: a read that fails, is throttled, times out
// or answers something unreadable verifies nothing; only Propel's 404 is
// Missing.
func TestReadFailuresAreUnknown(t *testing.T) {
	cases := map[string]struct {
		fault propemu.Fault
		want  providers.Presence
		// notSpent: the fault may last after the read (net/http resends a
		// reset GET of a reused connection itself).
		notSpent bool
	}{
		"5xx":                 {fault: propemu.Fault{Status: http.StatusBadGateway, Count: 3}},
		"429":                 {fault: propemu.Fault{Status: http.StatusTooManyRequests, Count: 5, RetryAfter: "1"}},
		"reset":               {fault: propemu.Fault{Reset: true, Count: 6}, notSpent: true},
		"timeout":             {fault: propemu.Fault{Delay: 5 * time.Second, Count: 3}},
		"malformed":           {fault: propemu.Fault{Body: propemu.Malformed}},
		"truncated":           {fault: propemu.Fault{Body: propemu.Truncated}},
		"HTML 404":            {fault: propemu.Fault{Body: propemu.Malformed, Status: http.StatusNotFound}},
		"400":                 {fault: propemu.Fault{Status: http.StatusBadRequest}},
		"404 NotFound":        {fault: propemu.Fault{Status: http.StatusNotFound}, want: providers.Missing},
		"429 then the answer": {fault: propemu.Fault{Status: http.StatusTooManyRequests, Count: 2}, want: providers.Found},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			em, c, _ := setup(t, propemu.Options{}, 100, func(cfg *providers.Config) {
				cfg.HTTPClient = &http.Client{Timeout: 200 * time.Millisecond}
			})
			changes := creates(2)
			written(t, c, changes)
			em.Inject("/users/sourceId/u-0000", tc.fault)
			got := observe(context.Background(), t, c, readReqs(changes))
			if o := got["r-u-0000"]; o.Presence != tc.want {
				t.Fatalf("%+v, want %v", o, tc.want)
			}
			if o := got["r-u-0001"]; o.Presence != providers.Found || len(o.Differs) > 0 {
				t.Fatalf("the other user: %+v", o)
			}
			if refused, why := c.(providers.ReadRefusal).ReadsRefused(); refused {
				t.Fatalf("reads refused: %s", why)
			}
			if tc.notSpent {
				return
			}
			if o := observe(context.Background(), t, c, readReqs(changes))["r-u-0000"]; o.Presence != providers.Found || len(o.Differs) > 0 {
				t.Fatalf("after the fault: %+v", o)
			}
		})
	}
}

// TestReadsRefused: an account that refuses reads turns reads off: the
// client says why, and sends no further read.
func TestReadsRefused(t *testing.T) {
	em, c, _ := setup(t, propemu.Options{RefuseReads: true}, 100, nil)
	changes := creates(20)
	written(t, c, changes)
	rr := c.(providers.ReadRefusal)
	if refused, _ := rr.ReadsRefused(); refused {
		t.Fatal("refused before any read")
	}
	for _, o := range observe(context.Background(), t, c, readReqs(changes)) {
		if o.Presence != providers.Unknown || !strings.Contains(o.Err.Error(), "refuses to read users") {
			t.Fatalf("%+v", o)
		}
	}
	refused, why := rr.ReadsRefused()
	if !refused || !strings.Contains(why, "HTTP 403") || !strings.Contains(why, "not allowed to read users") ||
		strings.Contains(why, testSecret) {
		t.Fatalf("ReadsRefused %v %q", refused, why)
	}
	sent := em.Lookups()
	if sent < 1 || sent > readInFlight {
		t.Fatalf("%d lookups, want at most the ones in flight", sent)
	}
	em.SetRefuseReads(false)
	for _, o := range observe(context.Background(), t, c, readReqs(changes)) {
		if o.Presence != providers.Unknown || o.Err.Error() != why {
			t.Fatalf("after the refusal: %+v", o)
		}
	}
	if em.Lookups() != sent {
		t.Fatalf("%d lookups after the refusal", em.Lookups()-sent)
	}
	// A new client (new credentials) starts afresh.
	_, c2, _ := setup(t, propemu.Options{}, 100, nil)
	if refused, _ := c2.(providers.ReadRefusal).ReadsRefused(); refused {
		t.Fatal("a new client starts refused")
	}
}

// TestReadsRefusedMidway: SetRefuseReads takes effect on the next read.
func TestReadsRefusedMidway(t *testing.T) {
	em, c, _ := setup(t, propemu.Options{}, 100, nil)
	changes := creates(3)
	written(t, c, changes)
	for _, o := range observe(context.Background(), t, c, readReqs(changes)) {
		if o.Presence != providers.Found {
			t.Fatalf("%+v", o)
		}
	}
	em.SetRefuseReads(true)
	observe(context.Background(), t, c, readReqs(changes))
	if refused, _ := c.(providers.ReadRefusal).ReadsRefused(); !refused {
		t.Fatal("not refused")
	}
}

// TestReadCredentialsRefused: refused credentials leave every user
// Unknown with an AuthError; that is not a refusal of reads.
func TestReadCredentialsRefused(t *testing.T) {
	em, c, _ := setup(t, propemu.Options{Clients: map[string]string{testClientID: "the-right-one"}}, 100, nil)
	changes := creates(10)
	for _, o := range observe(context.Background(), t, c, readReqs(changes)) {
		if o.Presence != providers.Unknown || !errors.Is(o.Err, providers.ErrAuth) {
			t.Fatalf("%+v", o)
		}
	}
	if refused, why := c.(providers.ReadRefusal).ReadsRefused(); refused {
		t.Fatalf("refused: %s", why)
	}
	if n := em.Lookups(); n != 0 {
		t.Fatalf("%d lookups without a token", n)
	}
	if n := em.Calls(propemu.PathToken); n > readInFlight {
		t.Errorf("%d token requests", n)
	}
}

// TestReadCancelled: users not read when the context ends are Unknown.
func TestReadCancelled(t *testing.T) {
	em, c, _ := setup(t, propemu.Options{}, 100, nil)
	changes := creates(6)
	written(t, c, changes)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, o := range observe(ctx, t, c, readReqs(changes)) {
		if o.Presence != providers.Unknown {
			t.Fatalf("%+v", o)
		}
	}
	if n := em.Lookups(); n != 0 {
		t.Errorf("%d lookups after the context ended", n)
	}
	o := observe(context.Background(), t, c, []providers.ReadRequest{{ID: "x", User: providers.User{Email: "a@example.com"}}})["x"]
	if o.Presence != providers.Unknown || !strings.Contains(o.Err.Error(), "no key") {
		t.Errorf("no key: %+v", o)
	}
	if n := c.(providers.Reader).ReadBatch(); n != 1 {
		t.Errorf("ReadBatch %d", n)
	}
}

// TestReadAnswers feeds answers shaped otherwise than the emulator's, and
// checks the request.
func TestReadAnswers(t *testing.T) {
	user := providers.User{Key: "a/b c", Email: "a@example.com", FirstName: "A",
		Attributes: map[string]any{"language": "nl", "plan": "pro"}}
	const found = `"email":"A@example.com","firstName":"A","language":"nl","attributes":[{"name":"plan","value":"pro"}]`
	cases := map[string]struct {
		status int
		body   string
		want   providers.Presence
		// differs or, for Unknown, a part of the error.
		differs []string
		err     string
	}{
		"found":              {200, `{"data":{"sourceId":"a/b c","source":"usersync-operator",` + found + `}}`, providers.Found, nil, ""},
		"no identity fields": {200, `{"data":{"id":5,` + found + `}}`, providers.Found, nil, ""},
		"another sourceId":   {200, `{"data":{"sourceId":"x",` + found + `}}`, providers.Unknown, nil, "another user"},
		"another source":     {200, `{"data":{"sourceId":"a/b c","source":"crm",` + found + `}}`, providers.Unknown, nil, "another user"},
		"another language": {200, `{"data":{"sourceId":"a/b c","email":"a@example.com","firstName":"A","language":"en"}}`,
			providers.Unknown, nil, "another user"},
		"unreadable":               {200, `{"data":5}`, providers.Unknown, nil, "could not be read"},
		"Propel's 404":             {404, `{"error":{"code":"10008","status":404,"type":"NotFound","messages":["not found"]}}`, providers.Missing, nil, ""},
		"Propel's 404, by type":    {404, `{"error":{"code":10008,"type":"NotFoundException"}}`, providers.Missing, nil, ""},
		"404 of another server":    {404, `404 page not found`, providers.Unknown, nil, "spec.endpoint"},
		"404 with another error":   {404, `{"error":{"code":"10006","type":"InvalidLookupKey"}}`, providers.Unknown, nil, "not its NotFound"},
		"400":                      {400, `{"error":{"code":"10006","type":"InvalidLookupKey","messages":["bad key"]}}`, providers.Unknown, nil, "bad key"},
		"error quoting the secret": {500, `{"error":{"messages":["no ` + testSecret + `"]}}`, providers.Unknown, nil, "[redacted]"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var method, path, query string
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == tokenPath {
					w.Header().Set("Content-Type", "application/json")
					_, _ = io.WriteString(w, `{"access_token":"at-1","token_type":"BearerToken","expires_in":"1800"}`)
					return
				}
				if r.Header.Get("Authorization") != "Bearer at-1" {
					w.WriteHeader(http.StatusUnauthorized)
					return
				}
				method, path, query = r.Method, r.URL.EscapedPath(), r.URL.RawQuery
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			c, err := Factory{}.New(providers.Config{Endpoint: srv.URL + "/v2",
				Credentials: map[string][]byte{CredClientID: []byte("id"), "token": []byte(testSecret)},
				Sleep:       func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
			if err != nil {
				t.Fatal(err)
			}
			o := observe(context.Background(), t, c, []providers.ReadRequest{{ID: "x", User: user}})["x"]
			if method != http.MethodGet || path != "/v2/users/sourceId/a%2Fb%20c" || query != "language=nl&source=usersync-operator" {
				t.Errorf("sent %s %s?%s", method, path, query)
			}
			if o.Presence != tc.want || !cmp.Equal(tc.differs, o.Differs) || tc.err != "" && !strings.Contains(o.Err.Error(), tc.err) {
				t.Errorf("%+v (%v), want %v %v %q", o, o.Err, tc.want, tc.differs, tc.err)
			}
		})
	}
}

// TestReadTokenEndpointForbidden: a 403 of the token endpoint refuses the
// credentials, not reads.
func TestReadTokenEndpointForbidden(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"error":"access_denied","error_description":"client disabled"}`)
	}))
	defer srv.Close()
	c, err := Factory{}.New(providers.Config{Endpoint: srv.URL,
		Credentials: map[string][]byte{CredClientID: []byte("id"), "token": []byte(testSecret)},
		Sleep:       func(ctx context.Context, _ time.Duration) error { return ctx.Err() }})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range observe(context.Background(), t, c, readReqs(creates(3))) {
		if o.Presence != providers.Unknown || !errors.Is(o.Err, providers.ErrAuth) {
			t.Fatalf("%+v", o)
		}
	}
	if refused, why := c.(providers.ReadRefusal).ReadsRefused(); refused {
		t.Fatalf("refused: %s", why)
	}
}
