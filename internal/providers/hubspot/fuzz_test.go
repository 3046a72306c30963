package hubspot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers"
)

// Fuzz targets of the HubSpot client: how it reads answers it cannot trust.
//
//	go test -run '^$' -fuzz '^FuzzDecodeBatchResponse$' -fuzztime 45s -fuzzminimizetime 10s ./internal/providers/hubspot
//	go test -run '^$' -fuzz '^FuzzErrorBody$' -fuzztime 45s ./internal/providers/hubspot
//
// FuzzDecodeBatchResponse makes real HTTP calls, so minimizing a new input
// within the default 60s budget can hold the workers for a while.

// fzStatuses are the statuses a fuzzed answer is given.
var fzStatuses = []int{
	http.StatusOK, http.StatusCreated, http.StatusMultiStatus, http.StatusBadRequest,
	http.StatusConflict, http.StatusTooManyRequests, http.StatusInternalServerError,
}

// fzAnswer is what one fuzz exec's server answers: the first call gets
// first, every later call (retries, follow-up calls) gets rest.
type fzAnswer struct {
	first, rest int
	body        []byte
	calls       atomic.Int32
}

// fzServer is one httptest.Server for every exec of a fuzz target. Each exec
// gets its own path prefix, so that execs never read each other's answers.
type fzServer struct {
	srv     *httptest.Server
	seq     atomic.Int64
	answers sync.Map // prefix -> *fzAnswer
}

func newFzServer(f *testing.F) *fzServer {
	s := &fzServer{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		prefix, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		v, ok := s.answers.Load(prefix)
		if !ok {
			http.Error(w, "no answer for "+prefix, http.StatusTeapot)
			return
		}
		a := v.(*fzAnswer)
		status := a.rest
		if a.calls.Add(1) == 1 {
			status = a.first
		}
		w.Header().Set("Content-Type", "application/json;charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write(a.body)
	}))
	f.Cleanup(s.srv.Close)
	return s
}

// client registers a and returns a client whose calls it answers.
func (s *fzServer) client(t *testing.T, a *fzAnswer, opts *usersv1.HubSpotOptions, batch int) *Client {
	t.Helper()
	prefix := "x" + strconv.FormatInt(s.seq.Add(1), 10)
	s.answers.Store(prefix, a)
	t.Cleanup(func() { s.answers.Delete(prefix) })
	cl, err := Factory{}.New(providers.Config{
		Endpoint:    s.srv.URL + "/" + prefix,
		Credentials: map[string][]byte{"token": []byte(token)},
		Spec:        usersv1.ProviderSpec{HubSpot: opts},
		BatchSize:   batch,
		HTTPClient:  s.srv.Client(),
		// Never wait: a retry after 429 or 5xx is immediate.
		Sleep: func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return cl.(*Client)
}

// fzScalars returns the text of every JSON scalar in body: decoded strings,
// number literals as written, and true/false. It is nil when body is not
// JSON.
func fzScalars(body []byte) map[string]bool {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil
	}
	out := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				out[k] = true
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case string:
			out[x] = true
		case json.Number:
			out[x.String()] = true
		case bool:
			out[strconv.FormatBool(x)] = true
		}
	}
	walk(v)
	return out
}

// fzChanges builds n changes (1–5); ops holds 3 bits per change choosing its
// shape. IDs are "0", "1", ... as the planner makes them.
func fzChanges(n uint8, ops uint16) []providers.Change {
	k := 1 + int(n)%5
	chs := make([]providers.Change, k)
	for i := range chs {
		u := providers.User{Key: fmt.Sprintf("u%d", i), Email: fmt.Sprintf("User%d@Example.com", i),
			FirstName: "Ada", LastName: "Lovelace",
			Attributes: map[string]any{"hs_job_title": "Engineer", "seniority": float64(i), "remote": i%2 == 0}}
		ch := providers.Change{ID: strconv.Itoa(i), Op: providers.OpCreate, User: u}
		id := strconv.Itoa(101 + i)
		switch (ops >> (3 * i)) & 7 {
		case 0: // a plain create
		case 1: // a create whose earlier attempt may have landed: looked up first
			ch.Retry = true
		case 2:
			ch.Op, ch.ExternalID = providers.OpUpdate, id
		case 3:
			ch.Op, ch.ExternalID = providers.OpDelete, id
		case 4: // a delete of a user never known to HubSpot, or found by key
			ch.Op = providers.OpDelete
		case 5: // no email: without an idProperty HubSpot cannot find it
			ch.User.Email = ""
		case 6:
			ch.Op = providers.OpUpdate
		case 7:
			ch.Op, ch.ExternalID, ch.Retry = providers.OpUpdate, id, true
		}
		chs[i] = ch
	}
	return chs
}

// fzOptions picks the client's configuration from mode.
func fzOptions(mode uint8) (*usersv1.HubSpotOptions, int) {
	var opts *usersv1.HubSpotOptions
	switch mode % 3 {
	case 1:
		opts = &usersv1.HubSpotOptions{IDProperty: "usersync_key"}
	case 2:
		opts = &usersv1.HubSpotOptions{IDProperty: "usersync_email", IDValueFrom: IDFromEmail}
	}
	batch := 0
	if mode&0x80 != 0 {
		batch = 2 // several calls per endpoint
	}
	return opts, batch
}

// fzStatus returns the statuses of the first and the later calls.
func fzStatus(s uint8) (first, rest int) {
	return fzStatuses[int(s&0x0f)%len(fzStatuses)], fzStatuses[int(s>>4)%len(fzStatuses)]
}

// Answers HubSpot's emulator (and HubSpot's documentation) gives.
const (
	fzCreated = `{"status":"COMPLETE","results":[` +
		`{"id":"512","properties":{"hs_email":"User0@Example.com","hs_given_name":"Ada","hs_family_name":"Lovelace","hs_job_title":"Engineer","hs_object_id":"512","remote":"true","seniority":"0"},"archived":false,"createdAt":"2026-11-23T12:00:00Z","updatedAt":"2026-11-23T12:00:00Z","objectWriteTraceId":"0"},` +
		`{"id":"513","properties":{"hs_email":"User1@Example.com","hs_object_id":"513"},"archived":false,"createdAt":"2026-11-23T12:00:00Z","updatedAt":"2026-11-23T12:00:00Z","objectWriteTraceId":"1"}],` +
		`"startedAt":"2026-11-23T12:00:00Z","completedAt":"2026-11-23T12:00:01Z"}`
	fzMultiStatus = `{"status":"COMPLETE","results":[{"id":"512","properties":{"hs_email":"User0@Example.com"},"archived":false,"objectWriteTraceId":"0"}],` +
		`"numErrors":1,"errors":[{"status":"error","category":"VALIDATION_ERROR","message":"Property values were not valid: hs_object_id is a read-only property",` +
		`"context":{"objectWriteTraceId":["1"]}}]}`
	fzDocumented = `{"status":"COMPLETE","requestedAt":"2026-11-23T12:00:00Z","startedAt":"2026-11-23T12:00:00Z","completedAt":"2026-11-23T12:00:01Z",` +
		`"results":[{"id":"512","properties":{"hs_job_title":"Engineer"},"createdAt":"2026-11-23T12:00:00Z","updatedAt":"2026-11-23T12:00:00Z","archived":false,"objectWriteTraceId":"2"}],` +
		`"numErrors":1,"errors":[{"status":"error","category":"VALIDATION_ERROR","message":"Property values were not valid","subCategory":{},` +
		`"context":{"ids":["101"]},"links":{},"id":"101","errors":[{"message":"hs_job_title is read-only","code":"READ_ONLY_VALUE","in":"hs_job_title","subCategory":"x","context":{"missingScopes":["crm.objects.users.write"]}}]}],"links":{}}`
	fzUpserted = `{"status":"COMPLETE","results":[{"id":"7","properties":{"usersync_key":"u0","hs_email":"User0@Example.com"},"new":true,"archived":false},` +
		`{"id":"8","properties":{"usersync_key":"u1","usersync_email":"user1@example.com"},"new":false,"archived":false}]}`
	fzNumericIDs = `{"results":[{"id":12,"properties":{"hs_email":"user1@example.com"}},{"id":11,"properties":{"hs_email":"USER0@example.com"}}],"extra":{"x":1}}`
	fzConflict   = `{"status":"error","message":"A user with hs_email \"user0@example.com\" already exists. Existing ID: 512","correlationId":"00000000-0000-4000-8000-000000000001","category":"CONFLICT"}`
	fzNonUnique  = `{"status":"error","message":"Unable to perform upsert by non-unique \"usersync_key\" property","correlationId":"00000000-0000-4000-8000-000000000002","category":"VALIDATION_ERROR"}`
	fzRateLimit  = `{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","correlationId":"00000000-0000-4000-8000-000000000003","policyName":"TEN_SECONDLY_ROLLING"}`
	fzDaily      = `{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","correlationId":"00000000-0000-4000-8000-000000000004","policyName":"DAILY"}`
	fzFault      = `{"status":"error","message":"injected fault: HTTP 500","correlationId":"00000000-0000-4000-8000-000000000005","category":"INTERNAL_ERROR"}`
	fzSearch     = `{"total":2,"results":[{"id":"513","properties":{"hs_email":"user0@example.com"}},{"id":"512","properties":{"hs_email":"user0@example.com"}}],"paging":{"next":{"after":"2"}}}`
	fzNotFound   = `{"status":"COMPLETE","results":[],"numErrors":1,"errors":[{"status":"error","category":"OBJECT_NOT_FOUND","message":"Could not get some users objects, they may be deleted or not exist.","context":{"ids":["101","102"]}}]}`
	fzMissing    = `{"status":"error","message":"This app hasn't been granted all required scopes to make this call.","correlationId":"00000000-0000-4000-8000-000000000006","category":"MISSING_SCOPES","context":{"missingScopes":["crm.objects.users.write"]}}`
)

// FuzzDecodeBatchResponse answers every call of a real Client's Apply with
// fuzzed bytes and a fuzzed status, and checks what Apply makes of them.
func FuzzDecodeBatchResponse(f *testing.F) {
	srv := newFzServer(f)
	// status: low nibble the first call's, high nibble the later calls'
	// (indexes into fzStatuses: 0=200 1=201 2=207 3=400 4=409 5=429 6=500).
	seeds := []struct {
		body   string
		status uint8
		n      uint8
		ops    uint16
		mode   uint8
	}{
		{fzCreated, 0x11, 1, 0, 0},         // two creates, 201
		{fzCreated, 0x11, 4, 0o1100, 0},    // creates and updates
		{fzMultiStatus, 0x22, 1, 0, 0},     // 207: one written, one refused
		{fzDocumented, 0x22, 2, 0o232, 0},  // the documented shape
		{fzUpserted, 0x00, 1, 0, 1},        // upsert by idProperty
		{fzUpserted, 0x00, 1, 0o55, 2},     // upsert by email
		{fzNumericIDs, 0x11, 1, 0, 0},      // ids as numbers, matched by email
		{fzConflict, 0x04, 0, 0, 0},        // 409 naming the existing user, then 200
		{fzConflict, 0x44, 2, 0o010, 0},    // 409 on every call
		{fzNonUnique, 0x33, 2, 0, 1},       // a call refused whole
		{fzRateLimit, 0x05, 1, 0o20, 0},    // 429, then 200
		{fzDaily, 0x55, 1, 0, 0},           // the daily limit: not waited for
		{fzFault, 0x66, 2, 0o272, 0},       // 5xx on every call
		{fzSearch, 0x00, 1, 0o11, 0},       // retried creates: looked up
		{fzNotFound, 0x22, 1, 0o22, 0},     // updates of users gone at HubSpot
		{fzNotFound, 0x22, 2, 0o343, 0x81}, // deletes, in calls of two
		{fzMissing, 0x33, 0, 0, 0},         // an error body where results are expected
		{`<html><body>Bad gateway</body></html>`, 0x00, 1, 0, 0},
		{``, 0x00, 2, 0o33, 0}, // an empty answer to archive
		{`{"results":[{"objectWriteTraceId":"0"}]}`, 0x00, 0, 0, 0},
	}
	for _, s := range seeds {
		f.Add([]byte(s.body), s.status, s.n, s.ops, s.mode)
	}
	f.Fuzz(func(t *testing.T, body []byte, status uint8, n uint8, ops uint16, mode uint8) {
		first, rest := fzStatus(status)
		opts, batch := fzOptions(mode)
		c := srv.client(t, &fzAnswer{first: first, rest: rest, body: body}, opts, batch)
		chs := fzChanges(n, ops)

		res, err := c.Apply(context.Background(), chs)
		if err != nil {
			var ae *providers.AuthError
			if !errors.As(err, &ae) {
				t.Fatalf("Apply returned %v (%T); only an *AuthError may end it", err, err)
			}
			return
		}
		if len(res) != len(chs) {
			t.Fatalf("%d results for %d changes: %+v", len(res), len(chs), res)
		}
		byID := make(map[string]providers.Result, len(res))
		for _, r := range res {
			if _, dup := byID[r.ID]; dup {
				t.Fatalf("two results for change %q", r.ID)
			}
			byID[r.ID] = r
		}
		scalars := fzScalars(body)
		for _, ch := range chs {
			r, ok := byID[ch.ID]
			if !ok {
				t.Fatalf("no result for change %q", ch.ID)
			}
			if r.Err != nil {
				var re *providers.RecordError
				if !errors.As(r.Err, &re) {
					t.Fatalf("%s: error %v (%T) is not a RecordError", ch.ID, r.Err, r.Err)
				}
				if re.Code == "" {
					t.Fatalf("%s: record error without a code: %+v", ch.ID, re)
				}
				continue
			}
			if ch.Op == providers.OpDelete {
				if r.Action != providers.ActionDeleted || r.ExternalID != "" {
					t.Fatalf("%s: a delete succeeded as %+v", ch.ID, r)
				}
				continue
			}
			switch r.Action {
			case providers.ActionCreated, providers.ActionUpdated, providers.ActionAdopted:
			default:
				t.Fatalf("%s: a %s succeeded with action %q", ch.ID, ch.Op, r.Action)
			}
			if r.ExternalID != "" && !scalars[r.ExternalID] {
				t.Fatalf("%s: ExternalID %q is no value of the answer %q", ch.ID, r.ExternalID, body)
			}
			if r.ExternalID == "" {
				t.Fatalf("%s of change %s succeeded without an ExternalID", ch.Op, ch.ID)
			}
		}
	})
}

// FuzzErrorBody decodes arbitrary bytes as HubSpot's Error object and reads
// it with every helper the client uses.
func FuzzErrorBody(f *testing.F) {
	for _, s := range []string{
		fzConflict, fzNonUnique, fzRateLimit, fzDaily, fzFault, fzMissing, fzNotFound, fzDocumented,
		`{"status":"error","message":"Contact already exists. Existing ID: 9001","category":"CONFLICT","context":{"existingId":["9001"]}}`,
		`{"status":"error","message":"bad","category":"VALIDATION_ERROR","context":{"objectWriteTraceId":"3","ids":[101,"102"]},"id":7}`,
		`{"message":"","errors":[{"message":"a"},{"message":""},{"message":"b","context":{"requiredGranularScopes":["crm.objects.users.read"]}}]}`,
		`{"category":"CONFLICT","message":"existing id:\"42\""}`,
		`not json`,
	} {
		f.Add([]byte(s), "ids")
	}
	f.Add([]byte(`{"context":{"missingScopes":"crm.objects.users.write"}}`), "missingScopes")
	// A non-numeric existing id is not an id (once a bug).
	f.Add([]byte(`{"category":"CONFLICT","message":"already exists","context":{"existingId":["abc"]}}`), "existingId")
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		for _, e := range fzErrorBodies(body) {
			fzCheckErrorBody(t, e, key)
		}
	})
}

// fzErrorBodies are the ways the client decodes an error body.
func fzErrorBodies(body []byte) []errorBody {
	out := []errorBody{errorOf(http.StatusBadRequest, body)}
	var e errorBody
	if json.Unmarshal(body, &e) == nil {
		out = append(out, e)
	}
	var br batchResponse
	if json.Unmarshal(body, &br) == nil {
		out = append(out, br.Errors...)
	}
	return out
}

// fzCheckErrorBody asserts the properties of one decoded error.
func fzCheckErrorBody(t *testing.T, e errorBody, key string) {
	t.Helper()
	code := e.code()
	switch {
	case e.Category != "" && code != e.Category,
		e.Category == "" && e.ErrorType != "" && code != e.ErrorType,
		e.Category == "" && e.ErrorType == "" && code != "Rejected":
		t.Fatalf("code() = %q for category %q, errorType %q", code, e.Category, e.ErrorType)
	}
	text := e.text()
	if !strings.HasPrefix(text, e.Message) {
		t.Fatalf("text() %q does not start with the message %q", text, e.Message)
	}
	for _, d := range e.Errors {
		if !strings.Contains(text, d.Message) {
			t.Fatalf("text() %q leaves out the detail %q", text, d.Message)
		}
	}
	if r := refusal(e); r.Code != code || r.Message != text {
		t.Fatalf("refusal() = %+v, want code %q and message %q", r, code, text)
	}
	_ = splittable(e)
	_, _ = notFound(&e), conflict(&e)

	// contextValues reads a map of name to list of strings (ids may be
	// numbers); where the context is exactly that, it returns the list.
	for _, k := range []string{key, "ids", "missingScopes", "objectWriteTraceId", "existingId"} {
		got := e.contextValues(k)
		var m map[string][]string
		if json.Unmarshal(e.Context, &m) == nil {
			want, ok := m[k]
			if !ok {
				want = nil
			}
			if len(got) != len(want) || (len(want) > 0 && !reflect.DeepEqual(got, want)) {
				t.Fatalf("contextValues(%q) = %q, the context %s holds %q", k, got, e.Context, want)
			}
		}
	}
	scopes := e.missingScopes()
	if own := e.contextValues("missingScopes"); len(scopes) < len(own) || !slices.Equal(scopes[:len(own)], own) {
		t.Fatalf("missingScopes() = %q leaves out the error's own %q", scopes, own)
	}
	keys := errorKeys(e)
	for _, v := range []flexString{e.ObjectWriteTraceID, e.ID} {
		if v != "" && !slices.Contains(keys, string(v)) {
			t.Fatalf("errorKeys() = %q leaves out %q", keys, v)
		}
	}

	if id := e.existingID(); strings.Trim(id, "0123456789") != "" {
		t.Fatalf("existingID() = %q is not a record id (message %q)", id, e.Message)
	}
}
