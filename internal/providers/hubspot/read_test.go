package hubspot

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	usersv1 "github.com/usersync/usersync-operator/api/v1alpha1"
	"github.com/usersync/usersync-operator/internal/providers"
)

// wantedProps lists exactly what properties maps, whatever collides with
// what.
func TestWantedPropsAreTheWrittenProperties(t *testing.T) {
	users := map[string]providers.User{
		"plain":    user(3),
		"no email": {Key: "k", FirstName: "A", Attributes: map[string]any{"hs_email": "x@example.com", "team": "core"}},
		"attribute named like a name": {Key: "k", Email: "a@example.com", FirstName: "A", LastName: "B",
			Attributes: map[string]any{PropFirstName: "Z", PropLastName: "Y", PropEmail: "z@example.com", "n": 1.5, "b": false}},
		"attribute named like the idProperty": {Key: "k", Email: "a@example.com", Attributes: map[string]any{"k8s_key": "other"}},
		"empty":                               {},
	}
	opts := map[string]*usersv1.HubSpotOptions{
		"no idProperty":      nil,
		"idProperty":         {IDProperty: "k8s_key"},
		"idProperty = email": {IDProperty: "hs_email", IDValueFrom: IDFromEmail},
		"idProperty = name":  {IDProperty: PropFirstName},
	}
	for on, o := range opts {
		c := newClient(t, "https://example.invalid", token, o, nil)
		for un, u := range users {
			got := map[string]string{}
			for _, w := range c.wantedProps([]wanted{{name: "before"}}, u)[1:] {
				if _, dup := got[w.name]; dup {
					t.Errorf("%s, %s: %s listed twice", on, un, w.name)
				}
				got[w.name] = w.value
			}
			if want := c.properties(u); !maps.Equal(got, want) {
				t.Errorf("%s, %s: %v, want %v", on, un, got, want)
			}
		}
	}
}

// oldProps is how a read answer's properties were decoded before
// eachMember: a map of any, rendered by object.prop.
func oldProps(raw []byte) (map[string]string, bool) {
	var o object
	if json.Unmarshal(append(append([]byte(`{"properties":`), raw...), '}'), &o) != nil {
		return nil, false
	}
	out := map[string]string{}
	for k := range o.Properties {
		out[k] = o.prop(k)
	}
	return out, true
}

// newProps decodes raw as readPart does.
func newProps(raw []byte) (map[string]string, map[string]bool, bool) {
	out, bad := map[string]string{}, map[string]bool{}
	ok := rawJSON(raw).eachMember(func(name, value []byte) bool {
		n, ok := textOf(name, false)
		if !ok {
			bad["<name>"] = true
			return true
		}
		v := storedOf(value)
		out[string(n)] = string(v.text)
		bad[string(n)] = v.bad
		return true
	})
	return out, bad, ok
}

// sameProps checks that eachMember and storedOf read a properties object
// as encoding/json into a map did: every scalar the same text; a value
// that is no scalar never equal to anything.
func sameProps(t *testing.T, raw []byte) {
	t.Helper()
	if !json.Valid(raw) {
		return // encoding/json refuses the answer before either runs
	}
	old, oldOK := oldProps(raw)
	got, bad, ok := newProps(raw)
	if !oldOK {
		// Not an object, or a number out of range: the whole answer was
		// unreadable before; now at most the values that are not scalars.
		if ok && !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) && string(bytes.TrimSpace(raw)) != "null" {
			t.Fatalf("%s: read as an object", raw)
		}
		return
	}
	if !ok {
		t.Fatalf("%s: not read (encoding/json read %v)", raw, old)
	}
	for k, v := range old {
		if bad[k] {
			continue
		}
		if got[k] != v {
			t.Fatalf("%s: %s = %q, want %q", raw, k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := old[k]; !ok {
			t.Fatalf("%s: %s read, encoding/json did not", raw, k)
		}
	}
}

func TestReadPropertiesAsEncodingJSON(t *testing.T) {
	for _, raw := range []string{
		`{}`, `null`, ` { } `, `{"a":"x"}`, `{"a":"x","b":null,"c":"","d":3,"e":3.50,"f":true,"g":false}`,
		`{"a":"x\"y","b":"\u00e9\\","c\u0041":"z"}`, "{\"a\":\"a\xffb\"}", `{"a" : "x" , "b":[1,{"c":"]"}],"d":{"e":"}"}}`,
		`{"a":"x","a":"y"}`, `{"n":-0.0,"m":1e3,"k":12345678901234567890}`, `{"big":1e400}`, `[1,2]`, `"str"`, `7`,
		"{\n\t\"a\":\r\n\"b\"\n}",
	} {
		sameProps(t, []byte(raw))
	}
}

// FuzzReadProperties: eachMember and storedOf read any valid JSON as
// encoding/json did.
func FuzzReadProperties(f *testing.F) {
	for _, s := range []string{`{"a":"x","b":null,"d":3,"f":true}`, `{"a":"x\"y"}`, `{"b":[1,{"c":"]"}]}`, `null`, `{"a":1e400}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { sameProps(t, raw) })
}

// Answers HubSpot may give to batch/read, read as the rules of
// providers.Reader ask: ids as numbers, escaped and numeric values,
// properties left out or null, properties not asked for, archived objects.
func TestReadTolerantAnswers(t *testing.T) {
	u := func(i int) providers.ReadRequest {
		return providers.ReadRequest{ID: fmt.Sprint("r", i), ExternalID: fmt.Sprint(100 + i), User: user(i)}
	}
	props := func(i int, extra string) string {
		return fmt.Sprintf(`{"hs_email":"user%03d@example.com","hs_given_name":"First","hs_family_name":"Last%d",`+
			`"hs_job_title":"Engineer","seniority":"%d","remote":"%v"%s}`, i, i, i, i%2 == 0, extra)
	}
	cases := map[string]struct {
		body string
		want map[string]string // request ID -> "Found", "Found:prop,prop", "Missing" or "Unknown"
	}{
		"numeric ids, values as JSON numbers and booleans, extra properties": {
			`{"status":"COMPLETE","results":[{"id":100,"properties":{"hs_email":"User000@Example.com","hs_given_name":"First",` +
				`"hs_family_name":"Last0","hs_job_title":"Engineer","seniority":0,"remote":true,"hs_object_id":"100","createdate":null}},` +
				`{"id":"101","properties":` + props(1, `,"hs_lastmodifieddate":"2026-01-01T00:00:00Z"`) + `,"archived":false}]}`,
			map[string]string{"r0": "Found", "r1": "Found", "r2": "Unknown"}},
		"escaped values and names": {
			`{"results":[{"id":"100","properties":{"hs_em\u0061il":"user000@example.com","hs_given_name":"Fir\u0073t",` +
				`"hs_family_name":"Last0","hs_job_title":"Engin\"eer","seniority":"0.0","remote":"TRUE"}}]}`,
			map[string]string{"r0": "Found:hs_job_title"}},
		"properties left out, null or cleared": {
			`{"results":[{"id":"100"},{"id":"101","properties":null},{"id":"102","properties":` + props(2, "") + `},` +
				// r3 is declared without a last name and a job title.
				`{"id":"103","properties":{"hs_email":"user003@example.com","hs_given_name":"First","hs_job_title":"","seniority":"3","remote":"false"}}]}`,
			map[string]string{"r0": "Found:hs_email,hs_family_name,hs_given_name,hs_job_title,remote,seniority",
				"r1": "Found:hs_email,hs_family_name,hs_given_name,hs_job_title,remote,seniority", "r2": "Found", "r3": "Found"}},
		"a value that is no scalar": {
			`{"results":[{"id":"100","properties":` + props(0, `,"hs_job_title":{"value":"Engineer"}`) + `}]}`,
			map[string]string{"r0": "Found:hs_job_title"}},
		"archived object, and not found": {
			`{"status":"COMPLETE","results":[{"id":"100","archived":true,"properties":` + props(0, "") + `}],` +
				`"numErrors":1,"errors":[{"status":"error","category":"OBJECT_NOT_FOUND","context":{"ids":["101"]}}]}`,
			map[string]string{"r0": "Unknown", "r1": "Missing"}},
		"properties that are not an object": {
			`{"results":[{"id":"100","properties":["x"]},{"id":"101","properties":` + props(1, "") + `}]}`,
			map[string]string{"r0": "Unknown", "r1": "Unknown"}},
		"an id of the wrong kind": {
			`{"results":[{"id":{"x":"100"},"properties":` + props(0, "") + `},{"id":"101","properties":` + props(1, "") + `}]}`,
			map[string]string{"r0": "Unknown", "r1": "Found"}},
		"truncated": {`{"results":[{"id":"100","properties":{"hs_email":"user000@ex`, map[string]string{"r0": "Unknown"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				status := http.StatusOK
				if strings.Contains(tc.body, "errors") {
					status = http.StatusMultiStatus
				}
				w.WriteHeader(status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			c := newClient(t, srv.URL, token, nil, (&sleeps{}).sleep)
			reqs := []providers.ReadRequest{u(0), u(1), u(2), u(3)}
			reqs[3].User.LastName, reqs[3].User.Attributes["hs_job_title"] = "", ""
			obs, err := c.Read(context.Background(), reqs)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range obs {
				want, ok := tc.want[o.ID]
				if !ok {
					continue
				}
				got := o.Presence.String()
				if len(o.Differs) > 0 {
					got += ":" + strings.Join(o.Differs, ",")
				}
				if got != want {
					t.Errorf("%s: %s (%v), want %s", o.ID, got, o.Err, want)
				}
				if o.Presence == providers.Unknown && o.Err == nil {
					t.Errorf("%s: Unknown without a reason", o.ID)
				}
				if !slices.IsSorted(o.Differs) {
					t.Errorf("%s: differs not sorted: %v", o.ID, o.Differs)
				}
			}
		})
	}
}

// BenchmarkRead measures Read of N unchanged users against answers of
// HubSpot's shape: building the calls, decoding the answers, comparing. The
// server answers from memory, so the client's own cost dominates.
func BenchmarkRead(b *testing.B) {
	const n = 10000
	reqs := make([]providers.ReadRequest, n)
	answers := map[string][]byte{}
	for i := range reqs {
		reqs[i] = providers.ReadRequest{ID: fmt.Sprint(i), ExternalID: fmt.Sprint(1000 + i), User: user(i)}
	}
	c0 := newClient(b, "https://example.invalid", token, nil, nil)
	for start := 0; start < n; start += 100 {
		var res []map[string]any
		for _, r := range reqs[start : start+100] {
			p := map[string]any{"hs_object_id": r.ExternalID, "createdate": "2026-01-01T00:00:00Z"}
			for k, v := range c0.properties(r.User) {
				p[k] = v
			}
			res = append(res, map[string]any{"id": r.ExternalID, "properties": p, "archived": false,
				"createdAt": "2026-01-01T00:00:00Z", "updatedAt": "2026-01-01T00:00:00Z"})
		}
		body, _ := json.Marshal(map[string]any{"status": "COMPLETE", "results": res})
		answers[reqs[start].ExternalID] = body
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req batchRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		_, _ = w.Write(answers[req.Inputs[0].ID])
	}))
	defer srv.Close()
	c := newClient(b, srv.URL, token, nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		obs, err := c.Read(context.Background(), reqs)
		if err != nil {
			b.Fatal(err)
		}
		for _, o := range obs {
			if o.Presence != providers.Found || len(o.Differs) > 0 {
				b.Fatalf("%+v", o)
			}
		}
	}
	b.ReportMetric(n, "users/op")
}

// readBothWays reads body with readAnswer and, as readPart did before it,
// with encoding/json into the wire types: whatever encoding/json reads,
// readAnswer reads the same (ids, archived, the requested properties, the
// errors); what it refuses, readAnswer may read more tolerantly, never
// reading what is not JSON.
func readBothWays(t *testing.T, body []byte) {
	t.Helper()
	names := []string{"a", "b", "hs_email"}
	type seen struct {
		id       string
		archived bool
		props    []string
	}
	var got []seen
	stored := make([]storedValue, len(names))
	errs, ok := readAnswer(body, names, stored, func(id []byte, archived bool) {
		s := seen{archived: archived}
		if text, ok := textOf(id, false); ok {
			s.id = string(text)
		}
		for _, v := range stored {
			if v.bad {
				s.props = append(s.props, "<not a scalar>")
			} else {
				s.props = append(s.props, string(v.text))
			}
		}
		got = append(got, s)
	})
	var br batchResponse
	if err := json.Unmarshal(body, &br); err != nil {
		if ok && !json.Valid(body) {
			t.Fatalf("%q: read, but it is not JSON", body)
		}
		return
	}
	if !ok {
		t.Fatalf("%q: not read; encoding/json read %+v", body, br)
	}
	var want []seen
	for _, o := range br.Results {
		s := seen{id: string(o.ID), archived: o.Archived}
		for _, n := range names {
			s.props = append(s.props, o.prop(n))
		}
		want = append(want, s)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%q:\n got %+v\nwant %+v", body, got, want)
	}
	if fmt.Sprint(errs) != fmt.Sprint(br.Errors) {
		t.Fatalf("%q: errors %+v, want %+v", body, errs, br.Errors)
	}
}

func TestReadAnswerAsEncodingJSON(t *testing.T) {
	for _, body := range []string{
		`{"status":"COMPLETE","results":[{"id":"1","properties":{"a":"x","b":null,"hs_email":"e@x"},"archived":false}]}`,
		`{"results":[{"id":12,"properties":{"a":3.50,"b":true,"c":{"x":[1]}}},{"id":"13","archived":true},null]}`,
		`{"RESULTS":[{"ID":"1","Properties":{"a":"y"},"Archived":true}]}`,
		`{"results":[],"errors":[{"category":"OBJECT_NOT_FOUND","context":{"ids":["7","8"]}}],"numErrors":1}`,
		`{"results":null,"errors":null}`, `{}`, `null`, `[]`, `{"results":{}}`, `{"results":[{"properties":[]}]}`,
		`{"results":[{"archived":"yes"}]}`, `{"results":[{"id":"1","properties":{"a":"x\u00e9\"","a":"last"}}]}`,
		`{"results":[{"id":"1"}]} trailing`, `{"results":[{"id":"1"`, ` { "results" : [ { "id" : "1" , "properties" : { "a" : "x" } } ] } `,
		`{"results":[{"id":{"x":1},"properties":{"a":"x"}},{"id":"2"}]}`, `{"results":[{"id":"1","properties":{"a":1e400}}]}`,
	} {
		readBothWays(t, []byte(body))
	}
}

// FuzzReadAnswer: readAnswer reads whatever encoding/json reads, the same.
func FuzzReadAnswer(f *testing.F) {
	for _, s := range []string{
		`{"status":"COMPLETE","results":[{"id":"1","properties":{"a":"x","b":null,"hs_email":"e@x"},"archived":false}]}`,
		`{"results":[{"id":12,"properties":{"a":3.50,"b":true}},{"id":"13","archived":true}]}`,
		`{"results":[],"errors":[{"category":"OBJECT_NOT_FOUND","context":{"ids":["7"]}}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { readBothWays(t, body) })
}
